// GPU benchmark of the CUDA backend at the issue's anchor shapes (H = 16, D = 128, bf16, r = 0.02, N = 30,
// chunk 64): chunked forward, forward + backward, and decode. CUDA events around each call, warm-up,
// median of the repetitions, and a 512 MiB L2 flush (memset) before every timed repetition.
// Usage: gka_bench_cuda [reps]   (prints the card, then one table row per measurement; a decode row adds the
// back-to-back and CUDA-graph times and a cudaMemcpy of the same state bytes)
// GKA_BENCH_ITERS=N overrides num_iter (diagnostics); GKA_BENCH_PARTS=chunk|decode runs one half only;
// GKA_BENCH_LONG=1 adds 1x131072 (the linear-time check); GKA_BENCH_PRECISION=fp32|mixed times one precision
// only; GKA_BENCH_DECODE_DROP=ikk,ikv,fkk,fkv leaves those decode states out (what each transfer costs);
// GKA_BENCH_DECODE_B=B times decode at that batch only; GKA_CUDA_WGMMA and GKA_CUDA_ONE_TERM_ITERS, see
// src/cuda/common.cuh, and GKA_CUDA_DECODE_SPLIT, src/cuda/decode.cu.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gka/gka.h"

namespace {

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

__device__ float hash_uniform(uint64_t i, uint32_t seed) {  // in [0, 1)
  uint64_t x = i * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  return static_cast<float>(x >> 40) * (1.0f / 16777216.0f);
}

// kind 0: q/k/v entries ~ U(-1,1) sqrt(3/D) (unit rows on average); 1: alpha = U(0,1); 2: log U(0.8, 0.999).
template <class T>
__global__ void fill(T* p, int64_t n, int kind, float sc, uint32_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += gridDim.x * 256ll) {
    const float u = hash_uniform(static_cast<uint64_t>(i), seed);
    float v = kind == 0 ? (2.f * u - 1.f) * sc : kind == 1 ? u : logf(0.8f + 0.199f * u);
    p[i] = static_cast<T>(v);
  }
}

struct Buf {
  void* p = nullptr;
  explicit Buf(size_t bytes) { ck(cudaMalloc(&p, std::max<size_t>(bytes, 4)), "cudaMalloc"); }
  ~Buf() { cudaFree(p); }
};

gka::TensorView tv(const Buf& b, gka::DType dt, std::initializer_list<int64_t> sizes) {
  return gka::TensorView::contiguous(b.p, dt, sizes, gka::Device::cuda);
}

template <class F>
double median_ms(F&& fn, int reps, void* flush, size_t flush_bytes) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  fn();  // warm-up
  ck(cudaDeviceSynchronize(), "warm-up");
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    if (flush) cudaMemset(flush, r & 0xff, flush_bytes);
    cudaEventRecord(a);
    fn();
    cudaEventRecord(b);
    ck(cudaEventSynchronize(b), "timed run");
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 5;
  if (gka::cuda_device_count() == 0) {
    std::printf("no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  const char* wg = std::getenv("GKA_CUDA_WGMMA");
  const bool hopper = prop.major == 9 && !(wg && std::string(wg) == "0");  // the library's rule (src/cuda/common.cuh)
  std::printf("card: %s (sm_%d%d), CUDA runtime %d, libgka CUDA backend v30 (fp32: mma.sync 3xTF32; mixed: %s)\n",
              prop.name, prop.major, prop.minor, rt,
              hopper ? "wgmma, scaled f16 products (1 term), one iteration on f16 pairs, then the offset form; "
                       "with 16-bit inputs the forward's solve, its readout, and the backward's dq~ and "
                       "adjoint solve, in one warpgroup per chunk (f16x2 updates); bf16 states, chunk sums and "
                       "dk / dv on wgmma; states out by tensor-map stores; scratch from a kept pool; decode's H in "
                       "4-row blocks, 88 instructions an iteration; one-token steps on small grids as "
                       "three-CTA clusters; decode's states moved with an evict-first L2 policy, CTAs head "
                       "fastest; past one wave of CTAs, decode reads only H's upper triangle and staggers the "
                       "first wave's start"
                     : "mma.sync, tf32 then 3xTF32");
  const size_t flush_bytes = size_t(512) << 20;
  Buf flush(flush_bytes);
  const int64_t H = 16, D = 128;
  gka::Options opt;
  opt.backend = gka::Backend::cuda;
  if (const char* e = std::getenv("GKA_BENCH_ITERS")) {  // diagnostics: the cost outside the solver (N = 0)
    opt.num_iter = std::atoi(e);
    std::printf("num_iter = %d (GKA_BENCH_ITERS; FLOP/s still count N = 30)\n", opt.num_iter);
  }
  std::printf("%-22s %10s %10s %10s %10s\n", "shape", "ms", "Mtok/s", "TFLOP/s", "authors_ms");
  struct Anchor {
    int64_t B, T;
    double fwd, fb;
  };
  const char* parts_env = std::getenv("GKA_BENCH_PARTS");
  const std::string parts = parts_env ? parts_env : "chunk,decode";
  std::vector<Anchor> anchors;
  if (parts.find("chunk") != std::string::npos) {
    anchors = {Anchor{8, 2048, 2.17, 6.96}, Anchor{1, 32768, 4.88, 17.23}, Anchor{1, 65536, 9.71, 34.51}};
    if (std::getenv("GKA_BENCH_LONG")) anchors.push_back(Anchor{1, 131072, 0, 0});  // authors: not measured
  }
  for (const Anchor& an : anchors) {
    const int64_t B = an.B, T = an.T, n = B * T * H * D, ns = B * T * H;
    Buf q(n * 2), k(n * 2), v(n * 2), o(n * 2), alpha(ns * 4), g(ns * 4), x(n * 4), fro(ns * 4);
    Buf dq(n * 2), dk(n * 2), dv(n * 2), d_o(n * 2), dalpha(ns * 4), dg(ns * 4);
    const float sc = std::sqrt(3.f / D);
    fill<<<1024, 256>>>(static_cast<__nv_bfloat16*>(q.p), n, 0, sc, 1);
    fill<<<1024, 256>>>(static_cast<__nv_bfloat16*>(k.p), n, 0, sc, 2);
    fill<<<1024, 256>>>(static_cast<__nv_bfloat16*>(v.p), n, 0, sc, 3);
    fill<<<1024, 256>>>(static_cast<__nv_bfloat16*>(d_o.p), n, 0, sc, 4);
    fill<<<1024, 256>>>(static_cast<float*>(alpha.p), ns, 1, 1.f, 5);
    fill<<<1024, 256>>>(static_cast<float*>(g.p), ns, 2, 1.f, 6);
    ck(cudaDeviceSynchronize(), "fill");
    gka::Inputs in;
    in.q = tv(q, gka::DType::bf16, {B, T, H, D});
    in.k = tv(k, gka::DType::bf16, {B, T, H, D});
    in.v = tv(v, gka::DType::bf16, {B, T, H, D});
    in.alpha = tv(alpha, gka::DType::f32, {B, T, H});
    in.g = tv(g, gka::DType::f32, {B, T, H});
    in.gk = in.g;
    gka::ForwardOutputs out;
    out.o = tv(o, gka::DType::bf16, {B, T, H, D});
    const double tok = static_cast<double>(B * T);
    const double ff = gka::forward_flops_per_token(D, D, 64, 30) * H, bf = gka::backward_flops_per_token(D, D, 64, 30) * H;
    // Both solver precisions (gka::Precision): fp32 everywhere, and mixed (cheaper leading iterations).
    for (const gka::Precision prec : {gka::Precision::fp32, gka::Precision::mixed}) {
      const char* only = std::getenv("GKA_BENCH_PRECISION");  // fp32 or mixed: that one only (profiling)
      if (only && std::string(only) != (prec == gka::Precision::mixed ? "mixed" : "fp32")) continue;
      gka::Options po = opt;
      po.precision = prec;
      const char* tag = prec == gka::Precision::mixed ? " mixed" : "";
      const double fwd = median_ms([&] { gka::chunk_forward(in, out, po); }, reps, flush.p, flush_bytes);
      char name[64];
      std::snprintf(name, sizeof name, "fwd %ldx%ld%s", static_cast<long>(B), static_cast<long>(T), tag);
      std::printf("%-22s %10.3f %10.3f %10.1f %10.2f\n", name, fwd, tok / fwd / 1e3, tok * ff / fwd / 1e9, an.fwd);
      if (std::getenv("GKA_BENCH_FWD_ONLY")) continue;
      gka::ForwardOutputs outs = out;
      outs.x = tv(x, gka::DType::f32, {B, T, H, D});
      outs.fro = tv(fro, gka::DType::f32, {B, T, H});
      gka::BackwardInputs gin;
      gin.d_o = tv(d_o, gka::DType::bf16, {B, T, H, D});
      gin.x = outs.x;
      gin.fro = outs.fro;
      gka::Gradients gr;
      gr.dq = tv(dq, gka::DType::bf16, {B, T, H, D});
      gr.dk = tv(dk, gka::DType::bf16, {B, T, H, D});
      gr.dv = tv(dv, gka::DType::bf16, {B, T, H, D});
      gr.dalpha = tv(dalpha, gka::DType::f32, {B, T, H});
      gr.dg = tv(dg, gka::DType::f32, {B, T, H});
      const double fb = median_ms(
          [&] {
            gka::chunk_forward(in, outs, po);
            gka::chunk_backward(in, gin, gr, po);
          },
          reps, flush.p, flush_bytes);
      std::snprintf(name, sizeof name, "fwd+bwd %ldx%ld%s", static_cast<long>(B), static_cast<long>(T), tag);
      std::printf("%-22s %10.3f %10.3f %10.1f %10.2f\n", name, fb, tok / fb / 1e3, tok * (ff + bf) / fb / 1e9,
                  an.fb);
    }
  }
  std::vector<int64_t> decode_batches;
  if (parts.find("decode") != std::string::npos) decode_batches = {1, 64};
  if (const char* e = std::getenv("GKA_BENCH_DECODE_B")) decode_batches = {std::atoi(e)};  // diagnostics: one batch
  // Diagnostics: decode at another head size (64 or 128).
  const char* decode_d = std::getenv("GKA_BENCH_DECODE_D");
  const int64_t Dd = decode_d ? std::atoi(decode_d) : D;
  cudaStream_t stream;
  ck(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  for (int64_t B : decode_batches) {
    const int64_t n = B * H * Dd, ns = B * H;
    Buf q(n * 2), k(n * 2), v(n * 2), o(n * 2), alpha(ns * 4), g(ns * 4), hkk(B * H * Dd * Dd * 4),
        hkv(B * H * Dd * Dd * 4);
    const float sc = std::sqrt(3.f / Dd);
    fill<<<64, 256>>>(static_cast<__nv_bfloat16*>(q.p), n, 0, sc, 1);
    fill<<<64, 256>>>(static_cast<__nv_bfloat16*>(k.p), n, 0, sc, 2);
    fill<<<64, 256>>>(static_cast<__nv_bfloat16*>(v.p), n, 0, sc, 3);
    fill<<<64, 256>>>(static_cast<float*>(alpha.p), ns, 1, 1.f, 5);
    fill<<<64, 256>>>(static_cast<float*>(g.p), ns, 2, 1.f, 6);
    fill<<<1024, 256>>>(static_cast<float*>(hkk.p), B * H * Dd * Dd, 0, 0.01f, 7);
    fill<<<1024, 256>>>(static_cast<float*>(hkv.p), B * H * Dd * Dd, 0, 0.01f, 8);
    ck(cudaDeviceSynchronize(), "fill");
    gka::Inputs in;
    in.q = tv(q, gka::DType::bf16, {B, 1, H, Dd});
    in.k = tv(k, gka::DType::bf16, {B, 1, H, Dd});
    in.v = tv(v, gka::DType::bf16, {B, 1, H, Dd});
    in.alpha = tv(alpha, gka::DType::f32, {B, 1, H});
    in.g = tv(g, gka::DType::f32, {B, 1, H});
    in.gk = in.g;
    in.initial_kk = tv(hkk, gka::DType::f32, {B, H, Dd, Dd});
    in.initial_kv = tv(hkv, gka::DType::f32, {B, H, Dd, Dd});
    gka::ForwardOutputs out;
    out.o = tv(o, gka::DType::bf16, {B, 1, H, Dd});
    out.final_kk = in.initial_kk;  // in place
    out.final_kv = in.initial_kv;
    if (const char* drop = std::getenv("GKA_BENCH_DECODE_DROP")) {  // diagnostics: states left out
      const std::string d = drop;
      std::printf("decode B=%ld without %s (GKA_BENCH_DECODE_DROP)\n", static_cast<long>(B), drop);
      if (d.find("ikk") != std::string::npos) in.initial_kk = {};
      if (d.find("ikv") != std::string::npos) in.initial_kv = {};
      if (d.find("fkk") != std::string::npos) out.final_kk = {};
      if (d.find("fkv") != std::string::npos) out.final_kv = {};
    }
    const double ms = median_ms([&] { gka::recurrent_forward(in, out, opt); }, 4 * reps + 1, nullptr, 0);
    // Back-to-back calls: host overhead of the call included, no flush.
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    cudaEventRecord(a);
    for (int r = 0; r < 50; ++r) gka::recurrent_forward(in, out, opt);
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float tot = 0;
    cudaEventElapsedTime(&tot, a, b);
    // CUDA graph of one call replayed 100 times (how the authors measured decode): the call is one
    // launch with no allocation, so it captures on a non-default stream.
    gka::Options gopt = opt;
    gopt.cuda_stream = stream;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    ck(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "capture");
    gka::recurrent_forward(in, out, gopt);
    ck(cudaStreamEndCapture(stream, &graph), "capture end");
    ck(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    ck(cudaGraphLaunch(exec, stream), "graph warm-up");
    ck(cudaStreamSynchronize(stream), "graph warm-up");
    cudaEventRecord(a, stream);
    for (int r = 0; r < 100; ++r) cudaGraphLaunch(exec, stream);
    cudaEventRecord(b, stream);
    ck(cudaEventSynchronize(b), "graph replays");
    float gtot = 0;
    cudaEventElapsedTime(&gtot, a, b);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    // What cudaMemcpyAsync takes for the same bytes (both states read and written once): the card's practical
    // floor for a step, next to the issue's nominal one (bytes / peak bandwidth).
    const size_t state_bytes = static_cast<size_t>(B * H * Dd * Dd * 4);
    Buf copy_kk(state_bytes), copy_kv(state_bytes);
    cudaEventRecord(a, stream);
    for (int r = 0; r < 50; ++r) {
      ck(cudaMemcpyAsync(copy_kk.p, hkk.p, state_bytes, cudaMemcpyDeviceToDevice, stream), "state copy");
      ck(cudaMemcpyAsync(copy_kv.p, hkv.p, state_bytes, cudaMemcpyDeviceToDevice, stream), "state copy");
    }
    cudaEventRecord(b, stream);
    ck(cudaEventSynchronize(b), "state copies");
    float ctot = 0;
    cudaEventElapsedTime(&ctot, a, b);
    char name[64];
    std::snprintf(name, sizeof name, Dd == D ? "decode B=%ld (us)" : "decode B=%ld D=%ld (us)", static_cast<long>(B),
                  static_cast<long>(Dd));
    std::printf("%-22s %10.1f %10s %10s %10.1f   (back-to-back %.1f us, graph replay %.1f us; state copy %.1f us)\n",
                name, ms * 1e3, "-", "-", B == 1 ? 53.6 : 339.0, tot * 1e3 / 50, gtot * 1e3 / 100, ctot * 1e3 / 50);
  }
  return 0;
}
