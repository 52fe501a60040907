// The CUDA backend against the fp64 oracle and the CPU backend over the shared case table. Cases whose head
// dim the CUDA backend does not support (D not in {64, 128}) run once more with D promoted to 64 (the same
// gates, lengths, varlen, states, solver settings), and the original shape must give a clear gka::Error.
// Skipped when no GPU is visible, so CI without a GPU passes. Outputs are NaN-poisoned before every call.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "support/cases.h"
#include "support/expect_close.h"
#include "support/metrics.h"
#include "support/tolerance.h"

namespace gka::test {
namespace {

bool have_gpu() { return cuda_device_count() > 0; }

#define GKA_CUDA_OK(x) ASSERT_EQ((x), cudaSuccess) << #x

// A device copy of a host test tensor; download() copies it back into the host tensor.
class DevTensor {
 public:
  DevTensor() = default;
  explicit DevTensor(Tensor& host) : host_(&host) {
    if (!host.defined()) return;
    const TensorView v = host.view();
    bytes_ = static_cast<size_t>(v.numel() * dtype_size(v.dtype));
    if (cudaMalloc(&ptr_, bytes_) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
    cudaMemcpy(ptr_, v.data, bytes_, cudaMemcpyHostToDevice);
  }
  ~DevTensor() {
    if (ptr_) cudaFree(ptr_);
  }
  DevTensor(const DevTensor&) = delete;
  DevTensor& operator=(const DevTensor&) = delete;
  TensorView view() const {
    if (!host_ || !host_->defined()) return TensorView{};
    TensorView v = host_->view();
    v.data = ptr_;
    v.device = Device::cuda;
    return v;
  }
  void download() {
    if (ptr_) cudaMemcpy(host_->view().data, ptr_, bytes_, cudaMemcpyDeviceToHost);
  }

 private:
  Tensor* host_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// The case's inputs on the device (cu_seqlens stays on the host: the CUDA backend reads it there).
struct DevInputs {
  CaseInputs host;
  DevTensor q, k, v, alpha, g, gk, h0_kk, h0_kv;
  explicit DevInputs(const CaseInputs& in)
      : host(in), q(host.q), k(host.k), v(host.v), alpha(host.alpha), g(host.g), gk(host.gk), h0_kk(host.h0_kk),
        h0_kv(host.h0_kv) {}
  Inputs view() const {
    Inputs i = host.view();
    i.q = q.view();
    i.k = k.view();
    i.v = v.view();
    i.alpha = alpha.view();
    i.g = g.view();
    i.gk = gk.view();
    i.initial_kk = h0_kk.view();
    i.initial_kv = h0_kv.view();
    return i;
  }
};

// With `residual`, the optional residual output too: sized [B, T, H] in the state dtype and poisoned here.
ForwardResult cuda_forward(const Case& c, const CaseInputs& in, bool recurrent = false,
                           Precision precision = Precision::fp32, Tensor* residual = nullptr) {
  ForwardResult r = harness::forward_buffers_make(c.shape());
  r.poison();
  Tensor no_residual;
  Tensor& res_host = residual ? *residual : no_residual;
  if (residual) {
    res_host = Tensor(r.fro.dtype(), r.fro.sizes());
    res_host.fill_nan();
  }
  DevInputs din(in);
  DevTensor o(r.o), fkk(r.final_kk), fkv(r.final_kv), x(r.x), fro(r.fro), res(res_host);
  ForwardOutputs out;
  out.o = o.view();
  out.final_kk = fkk.view();
  out.final_kv = fkv.view();
  out.x = x.view();
  out.fro = fro.view();
  out.residual = res.view();
  Options opt = c.options(Backend::cuda);
  opt.precision = precision;
  if (recurrent)
    recurrent_forward(din.view(), out, opt);
  else
    chunk_forward(din.view(), out, opt);
  if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("cuda error after forward");
  for (DevTensor* t : {&o, &fkk, &fkv, &x, &fro, &res}) t->download();
  return r;
}

// With `saved`, from a forward's x and fro (BackwardInputs::x, fro) instead of recomputing them.
BackwardResult cuda_backward(const Case& c, const CaseInputs& in, const BackwardSeeds& seeds,
                             Precision precision = Precision::fp32, const ForwardResult* saved = nullptr) {
  BackwardResult r = harness::gradient_buffers_make(c.shape(), in);
  r.poison();
  DevInputs din(in);
  BackwardSeeds s = seeds;
  Tensor saved_x = saved ? saved->x : Tensor(), saved_fro = saved ? saved->fro : Tensor();
  DevTensor d_o(s.d_o), dfk(s.d_final_kk), dfv(s.d_final_kv), sx(saved_x), sfro(saved_fro);
  DevTensor dq(r.dq), dk(r.dk), dv(r.dv), da(r.dalpha), dg(r.dg), dgk(r.dgk), dhk(r.dh0_kk), dhv(r.dh0_kv);
  BackwardInputs gin;
  gin.d_o = d_o.view();
  gin.d_final_kk = dfk.view();
  gin.d_final_kv = dfv.view();
  gin.x = sx.view();
  gin.fro = sfro.view();
  Gradients g;
  g.dq = dq.view();
  g.dk = dk.view();
  g.dv = dv.view();
  g.dalpha = da.view();
  g.dg = dg.view();
  g.dgk = dgk.view();
  g.d_initial_kk = dhk.view();
  g.d_initial_kv = dhv.view();
  Options opt = c.options(Backend::cuda);
  opt.precision = precision;
  chunk_backward(din.view(), gin, g, opt);
  if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("cuda error after backward");
  for (DevTensor* t : {&dq, &dk, &dv, &da, &dg, &dgk, &dhk, &dhv}) t->download();
  return r;
}

bool cuda_supported(const Case& c) {
  return (c.D == 64 || c.D == 128) && c.dv() == c.D && c.dtype != "f64" && c.solver == "chebyshev" &&
         c.chunk_size <= 64;
}

// The case with the head dim promoted to what the CUDA backend supports.
Case promoted(Case c) {
  if (!(c.D == 64 || c.D == 128)) c.D = c.D <= 64 ? 64 : 128;
  c.Dv = -1;
  return c;
}

class Cuda : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  }
  const Case& c() const { return GetParam(); }
  DType dtype() const { return dtype_parse(c().dtype); }
};

// Every chebyshev case, and a bf16 twin of each fp32 one: 16-bit inputs take other kernel instantiations
// (exact operands skip product terms: KX, the states' W = 1), which must match the oracle on every shape too.
std::vector<Case> params() {
  std::vector<Case> out;
  for (const Case& c : cases_load()) {
    if (c.solver != "chebyshev" || c.dtype == "f64") continue;
    Case p = promoted(c);
    if (!cuda_supported(c)) p.name += "_D" + std::to_string(p.D);
    out.push_back(p);
    if (p.dtype == "f32") {
      p.dtype = "bf16";
      p.name += "_bf16";
      out.push_back(p);
    }
  }
  return out;
}

std::string param_name(const ::testing::TestParamInfo<Case>& info) { return "cuda_" + case_id(info.param); }

TEST_P(Cuda, ForwardMatchesOracleAndCpu) {
  const CaseInputs in = inputs_make(c(), 1234);
  const ForwardResult got = cuda_forward(c(), in);
  const ForwardResult ref = forward_run(case_in_f64(c()), inputs_to_f64(in), Backend::reference);
  const ForwardResult cpu = forward_run(c(), in, Backend::cpu);
  const double tol = tol_forward(false, c().ridge_ratio);
  const double amp = readout_amplification(c(), inputs_to_f64(in), ref);
  const double tol_o = tol_output(dtype(), false, c().ridge_ratio, amp);
  expect_close(got.o, ref.o, tol_o, "o");
  expect_close(got.final_kk, ref.final_kk, tol, "final_kk");
  expect_close(got.final_kv, ref.final_kv, tol, "final_kv");
  expect_close(got.x, ref.x, tol, "x");
  expect_close(got.fro, ref.fro, tol, "fro");
  expect_close(got.o, cpu.o, 2 * tol_o, "o vs cpu");
  expect_close(got.x, cpu.x, 2 * tol, "x vs cpu");
}

// The gradients `got` of case c against the fp64 oracle's (`what` prefixes the failure messages).
void expect_gradients_match_oracle(const Case& c, const CaseInputs& in, const BackwardSeeds& seeds,
                                   const BackwardResult& got, const std::string& what = "") {
  const BackwardSeeds seeds64 = seeds_to_f64(seeds);
  const BackwardResult ref = backward_run(case_in_f64(c), inputs_to_f64(in), seeds64, Backend::reference);
  const double tol = tol_gradient(dtype_parse(c.dtype), false, c.ridge_ratio);
  expect_gradients_close(got, ref, tol, tol, tol_gradient(DType::f32, false, c.ridge_ratio), what);
}

TEST_P(Cuda, BackwardMatchesOracle) {
  const CaseInputs in = inputs_make(c(), 99);
  const BackwardSeeds seeds = seeds_make(c(), 7);
  expect_gradients_match_oracle(c(), in, seeds, cuda_backward(c(), in, seeds));
}

// The backward from the forward's saved x and fro (what the torch op passes; step_b then skips the solve, the norms
// and the H̄ load) against the backward that recomputes them, and against the oracle. Both solve the same
// chunk-start states with the same code, so the gradients agree to fp32 rounding (bitwise on an H200): tol_forward
// for fp32 gradients, and tol_stored for 16-bit ones (above one ulp, 2^-7 bf16 / 2^-10 f16, which a last-bit
// difference can flip). A saved-x path that read wrong rows, or solved without H̄, is off by O(1). Then a saved x
// and fro scaled by 3/2 must move the gradients by more than that agreement (by 6e-2 to 1.6 on an H200): else
// the backward never read them and the first check proved nothing.
TEST_P(Cuda, BackwardFromSavedMatchesRecomputed) {
  const CaseInputs in = inputs_make(c(), 99);
  const BackwardSeeds seeds = seeds_make(c(), 7);
  const ForwardResult fwd = cuda_forward(c(), in);
  const BackwardResult recomputed = cuda_backward(c(), in, seeds);
  const BackwardResult saved = cuda_backward(c(), in, seeds, Precision::fp32, &fwd);
  const double t32 = tol_forward(false, c().ridge_ratio), t16 = tol_stored(dtype(), false, c().ridge_ratio);
  expect_gradients_close(saved, recomputed, t16, t32, t32, "saved vs recomputed: ");
  expect_gradients_match_oracle(c(), in, seeds, saved, "saved x, fro: ");
  if (c().num_iter == 0) return;  // no solve: x = q and no lambda path, so x and fro do not enter the gradients
  ForwardResult off = fwd;
  for (Tensor* t : {&off.x, &off.fro})
    for (int64_t i = 0; i < t->numel(); ++i) t->set_f64(i, 1.5 * t->get_f64(i));
  const BackwardResult moved = cuda_backward(c(), in, seeds, Precision::fp32, &off);
  const double change = std::max({rel_err(moved.dq, recomputed.dq), rel_err(moved.dk, recomputed.dk),
                                  rel_err(moved.dv, recomputed.dv)});
  EXPECT_GT(change, 2 * t16) << "gradients from a saved x and fro scaled by 3/2 match the recomputed ones";
}

TEST_P(Cuda, RecurrentMatchesOracle) {
  if (c().T > 300) GTEST_SKIP() << "long cases: covered by the chunked test";
  const CaseInputs in = inputs_make(c(), 5);
  const ForwardResult got = cuda_forward(c(), in, /*recurrent=*/true);
  const ForwardResult ref = forward_run(case_in_f64(c()), inputs_to_f64(in), Backend::reference);
  const double tol = tol_forward(false, c().ridge_ratio);
  const double amp = readout_amplification(c(), inputs_to_f64(in), ref);
  expect_close(got.o, ref.o, tol_output(dtype(), false, c().ridge_ratio, amp), "o");
  expect_close(got.final_kk, ref.final_kk, tol, "final_kk");
  expect_close(got.final_kv, ref.final_kv, tol, "final_kv");
  expect_close(got.x, ref.x, tol, "x");
  expect_close(got.fro, ref.fro, tol, "fro");
}

TEST_P(Cuda, BitwiseDeterministic) {
  if (c().T > 200) GTEST_SKIP() << "long cases: covered by the short ones";
  const CaseInputs in = inputs_make(c(), 21);
  const ForwardResult a = cuda_forward(c(), in);
  const ForwardResult b = cuda_forward(c(), in);
  EXPECT_EQ(a.o.to_f64(), b.o.to_f64());
  EXPECT_EQ(a.x.to_f64(), b.x.to_f64());
  EXPECT_EQ(a.final_kk.to_f64(), b.final_kk.to_f64());
  const BackwardSeeds seeds = seeds_make(c(), 3);
  const BackwardResult ga = cuda_backward(c(), in, seeds);
  const BackwardResult gb = cuda_backward(c(), in, seeds);
  EXPECT_EQ(ga.dq.to_f64(), gb.dq.to_f64());
  EXPECT_EQ(ga.dk.to_f64(), gb.dk.to_f64());
  EXPECT_EQ(ga.dv.to_f64(), gb.dv.to_f64());
  if (ga.dgk.defined()) {
    EXPECT_EQ(ga.dgk.to_f64(), gb.dgk.to_f64());
  }
  EXPECT_EQ(ga.dh0_kk.to_f64(), gb.dh0_kk.to_f64());
}

INSTANTIATE_TEST_SUITE_P(Cases, Cuda, ::testing::ValuesIn(params()), param_name);

// Shapes and settings outside the CUDA backend give a clear gka::Error (never a wrong answer).
TEST(CudaErrors, UnsupportedShapesAndSolvers) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const Case& c : cases_load()) {
    if (cuda_supported(c)) continue;
    const CaseInputs in = inputs_make(c.dtype == "f64" ? c : c, 1);
    EXPECT_THROW(cuda_forward(c, in), Error) << c.name;
  }
  Case c;
  c.D = 64;
  c.chunk_size = 128;
  EXPECT_THROW(cuda_forward(c, inputs_make(c, 1)), Error);
}

TEST(CudaErrors, CpuTensorsWithCudaBackend) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  Case c;
  c.D = 64;
  EXPECT_THROW(forward_run(c, inputs_make(c, 1), Backend::cuda), Error);
}

// A state pool updated in place by slot (decode serving): matches the CPU backend's pool step.
TEST(CudaPool, MatchesCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  Case c;
  c.B = 3;
  c.T = 2;
  c.H = 2;
  c.D = 64;
  const CaseInputs in = inputs_make(c, 8);
  std::mt19937_64 rng(3);
  Tensor kk = Tensor::randn(DType::f32, {5, c.H, c.D, c.D}, rng, 0.05), kv = Tensor::randn(DType::f32, {5, c.H, c.D, c.D}, rng, 0.05);
  Tensor slots = Tensor::from_f64({4, -1, 1}, DType::i32, {3});
  Tensor kk_cpu = kk, kv_cpu = kv;
  Tensor o_cpu(DType::f32, {c.B, c.T, c.H, c.D}), o(DType::f32, {c.B, c.T, c.H, c.D});
  o.fill_nan();
  Inputs ic = in.view();
  decode_pool_step(ic, StatePool{kk_cpu.view(), kv_cpu.view(), slots.view()}, o_cpu.view(), c.options(Backend::cpu));
  DevInputs din(in);
  DevTensor dkk(kk), dkv(kv), dout(o);
  decode_pool_step(din.view(), StatePool{dkk.view(), dkv.view(), slots.view()}, dout.view(), c.options(Backend::cuda));
  GKA_CUDA_OK(cudaDeviceSynchronize());
  dkk.download();
  dkv.download();
  dout.download();
  expect_close(o, o_cpu, 1e-4, "o");
  expect_close(kk, kk_cpu, 1e-5, "pool.kk");
  expect_close(kv, kv_cpu, 1e-5, "pool.kv");
}

// A pool whose state rows are padded to D + 1 floats (no 16-byte alignment): the CUDA decode moves such states by
// per-thread copies instead of 16-byte or bulk ones. Matches the CPU backend on the states and the output, and both
// leave the padding alone (the whole buffers are compared).
TEST(CudaPool, PaddedStateRowsMatchCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128}) {
    Case c;
    c.B = 2;
    c.T = 1;
    c.H = 2;
    c.D = D;
    const CaseInputs in = inputs_make(c, 9);
    std::mt19937_64 rng(4);
    Tensor kk = Tensor::randn(DType::f32, {3, c.H, D, D + 1}, rng, 0.05);
    Tensor kv = Tensor::randn(DType::f32, {3, c.H, D, D + 1}, rng, 0.05);
    Tensor slots = Tensor::from_f64({2, 0}, DType::i32, {2});
    const auto rows = [D](TensorView v) {  // [3, H, D, D] in the padded buffer
      v.sizes[3] = D;
      return v;
    };
    Tensor kk_cpu = kk, kv_cpu = kv;
    Tensor o_cpu(DType::f32, {c.B, c.T, c.H, D}), o(DType::f32, {c.B, c.T, c.H, D});
    o.fill_nan();
    decode_pool_step(in.view(), StatePool{rows(kk_cpu.view()), rows(kv_cpu.view()), slots.view()}, o_cpu.view(),
                     c.options(Backend::cpu));
    DevInputs din(in);
    DevTensor dkk(kk), dkv(kv), dout(o);
    decode_pool_step(din.view(), StatePool{rows(dkk.view()), rows(dkv.view()), slots.view()}, dout.view(),
                     c.options(Backend::cuda));
    GKA_CUDA_OK(cudaDeviceSynchronize());
    dkk.download();
    dkv.download();
    dout.download();
    const std::string at = "D=" + std::to_string(D) + " ";
    expect_close(o, o_cpu, 1e-4, at + "o");
    expect_close(kk, kk_cpu, 1e-5, at + "pool.kk");
    expect_close(kv, kv_cpu, 1e-5, at + "pool.kv");
  }
}

// Varlen decode with empty sequences, initial states given and no final states asked for: an empty sequence's
// state loads must land before its CTA exits (bulk copies still in flight would write into shared memory that
// another CTA may own by then). The outputs match the oracle.
TEST(CudaDecode, EmptySequencesWithoutFinalStates) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  Case c;
  c.name = "empty";
  c.D = 128;
  c.H = 2;
  c.h0 = true;
  c.B = 1;
  c.varlen = {3, 0, 5, 0, 2};
  c.T = 10;
  const CaseInputs in = inputs_make(c, 17);
  const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
  ForwardResult r = harness::forward_buffers_make(c.shape());
  r.poison();
  DevInputs din(in);
  DevTensor o(r.o), x(r.x);
  ForwardOutputs out;
  out.o = o.view();
  out.x = x.view();
  recurrent_forward(din.view(), out, c.options(Backend::cuda));
  GKA_CUDA_OK(cudaDeviceSynchronize());
  o.download();
  x.download();
  const double tol = tol_forward(false, c.ridge_ratio);
  const double amp = readout_amplification(c, inputs_to_f64(in), ref);
  expect_close(r.o, ref.o, tol_output(dtype_parse(c.dtype), false, c.ridge_ratio, amp), "o");
  expect_close(r.x, ref.x, tol, "x");
}

// bf16 k and v whose rows are not 16-byte aligned (rows of D + 1 elements) take the 3xTF32 states kernel and the
// scalar loads of the chunk kernels, the aligned ones the bf16 states kernel (cp.async): both match the oracle,
// and each other within the fp32 tolerance (a wrong row or block in either is off by O(1)).
TEST(CudaStates, UnalignedBf16RowsMatchAligned) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128}) {
    Case c;
    c.T = 100;
    c.D = D;
    c.dtype = "bf16";
    c.gates = "untied";
    c.h0 = true;
    const CaseInputs in = inputs_make(c, 31);
    const ForwardResult aligned = cuda_forward(c, in);
    const auto padded = [&](const Tensor& t) {  // [B, T, H, D + 1] with t in the first D of each row
      Tensor p(t.dtype(), {c.B, c.T, c.H, D + 1});
      for (int64_t i = 0; i < t.numel(); ++i) p.set_f64(i / D * (D + 1) + i % D, t.get_f64(i));
      return p;
    };
    Tensor kp = padded(in.k), vp = padded(in.v);
    const auto rows = [D](TensorView v) {
      v.sizes[3] = D;
      return v;
    };
    ForwardResult r = harness::forward_buffers_make(c.shape());
    r.poison();
    DevInputs din(in);
    DevTensor dk(kp), dv(vp), o(r.o), fkk(r.final_kk), fkv(r.final_kv), x(r.x);
    Inputs i = din.view();
    i.k = rows(dk.view());
    i.v = rows(dv.view());
    ForwardOutputs out;
    out.o = o.view();
    out.final_kk = fkk.view();
    out.final_kv = fkv.view();
    out.x = x.view();
    chunk_forward(i, out, c.options(Backend::cuda));
    GKA_CUDA_OK(cudaDeviceSynchronize());
    for (DevTensor* t : {&o, &fkk, &fkv, &x}) t->download();
    const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
    const double tol = tol_forward(false, c.ridge_ratio);
    const std::string at = "D=" + std::to_string(D) + " ";
    expect_close(r.final_kk, ref.final_kk, tol, at + "final_kk (unaligned)");
    expect_close(r.final_kv, ref.final_kv, tol, at + "final_kv (unaligned)");
    expect_close(r.x, ref.x, tol, at + "x (unaligned)");
    expect_close(r.final_kk, aligned.final_kk, tol, at + "final_kk unaligned vs aligned");
    expect_close(r.final_kv, aligned.final_kv, tol, at + "final_kv unaligned vs aligned");
    expect_close(r.o, aligned.o, tol_stored(DType::bf16, false, c.ridge_ratio), at + "o unaligned vs aligned");
  }
}

// The accuracy target: bf16 inputs, layer-like gates, H = 16, D = 128, T = 1024: o within 0.5 % and
// gradients within 1 % of the fp64 oracle — with every product at fp32 accuracy, and with Precision::mixed
// (cheaper leading iterations), which must also differ from fp32 (else the option did nothing).
class CudaAccuracy : public ::testing::TestWithParam<Precision> {};
const char* precision_name(Precision p) { return p == Precision::mixed ? "mixed" : "fp32"; }
}  // namespace
void PrintTo(Precision p, std::ostream* os) { *os << precision_name(p); }  // GoogleTest's parameter printer
namespace {

TEST_P(CudaAccuracy, Bf16LayerLike) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Precision prec = GetParam();
  const char* tag = precision_name(prec);
  Case c;
  c.name = "bf16_layer";
  c.B = 1;
  c.T = 1024;
  c.H = 16;
  c.D = 128;
  c.gate_strength = "strong";
  c.dtype = "bf16";
  const CaseInputs in = inputs_make(c, 77);
  const ForwardResult got = cuda_forward(c, in, false, prec);
  const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
  const double err_o = rel_err(got.o, ref.o), err_x = rel_err(got.x, ref.x);
  std::printf("bf16 layer-like H=16 D=128 T=1024, precision %s: o rel err %.3e, x rel err %.3e\n", tag, err_o, err_x);
  EXPECT_LE(err_o, 5e-3);
  if (prec == Precision::mixed) {
    const ForwardResult full = cuda_forward(c, in, false, Precision::fp32);
    EXPECT_GT(rel_err(got.x, full.x), 0.0) << "precision mixed gave the fp32 result";
    EXPECT_LE(err_x, 1e-3);
  }
  const BackwardSeeds seeds = seeds_make(c, 7);
  const BackwardResult g = cuda_backward(c, in, seeds, prec);
  const BackwardSeeds s64 = seeds_to_f64(seeds);
  const BackwardResult gr = backward_run(case_in_f64(c), inputs_to_f64(in), s64, Backend::reference);
  const std::pair<const Tensor*, const Tensor*> pairs[] = {{&g.dq, &gr.dq}, {&g.dk, &gr.dk}, {&g.dv, &gr.dv},
                                                           {&g.dalpha, &gr.dalpha}, {&g.dg, &gr.dg}, {&g.dh0_kk, &gr.dh0_kk}};
  const char* names[] = {"dq", "dk", "dv", "dalpha", "dg", "dh0_kk"};
  for (int i = 0; i < 6; ++i) {
    if (!pairs[i].first->defined()) continue;
    const double e = rel_err(*pairs[i].first, *pairs[i].second);
    std::printf("  %s rel err %.3e\n", names[i], e);
    EXPECT_LE(e, 1e-2) << names[i];
  }
}

// Precision::mixed on awkward shapes (one token, chunk tails, initial states, both head dims): its one-term
// iterations (scaled f16 on wgmma, sm_90a; tf32 on mma.sync with GKA_CUDA_WGMMA=0) are damped by accurate ones (on
// wgmma one, whose residual the offset form keeps; on mma.sync the last ten), so x, o and the gradients land within
// 3e-3 of the fp64 oracle; a wrong product anywhere on either path leaves the solve far from converged (errors of
// order 1).
// The awkward shapes of the mixed tests: two sequences of T tokens, two heads of dim D, initial states, untied gates.
Case mixed_awkward_case(int64_t D, int64_t T, const char* dtype) {
  Case c;
  c.name = std::string("mixed_") + dtype;
  c.dtype = dtype;
  c.B = 2;
  c.T = T;
  c.H = 2;
  c.D = D;
  c.h0 = true;
  c.gates = "untied";
  return c;
}

TEST(CudaMixed, AwkwardShapesMatchOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128})
    for (const int64_t T : {1, 65, 130}) {
      const Case c = mixed_awkward_case(D, T, "f32");
      const std::string at = "D=" + std::to_string(D) + " T=" + std::to_string(T) + ": ";
      const CaseInputs in = inputs_make(c, 31 + T);
      const ForwardResult got = cuda_forward(c, in, false, Precision::mixed);
      const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
      expect_close(got.x, ref.x, 3e-3, (at + "x").c_str());
      expect_close(got.o, ref.o, 3e-3, (at + "o").c_str());
      const BackwardSeeds seeds = seeds_make(c, 5);
      const BackwardResult g = cuda_backward(c, in, seeds, Precision::mixed);
      const BackwardSeeds s64 = seeds_to_f64(seeds);
      const BackwardResult gr = backward_run(case_in_f64(c), inputs_to_f64(in), s64, Backend::reference);
      expect_close(g.dq, gr.dq, 3e-3, (at + "dq").c_str());
      expect_close(g.dk, gr.dk, 3e-3, (at + "dk").c_str());
      expect_close(g.dv, gr.dv, 3e-3, (at + "dv").c_str());
      expect_close(g.dh0_kk, gr.dh0_kk, 3e-3, (at + "d_initial_kk").c_str());
      // from the forward's saved x and fro (the torch op's path): step_b skips its solve, the adjoint one remains
      const BackwardResult gs = cuda_backward(c, in, seeds, Precision::mixed, &got);
      expect_close(gs.dq, gr.dq, 3e-3, (at + "saved: dq").c_str());
      expect_close(gs.dk, gr.dk, 3e-3, (at + "saved: dk").c_str());
      expect_close(gs.dv, gr.dv, 3e-3, (at + "saved: dv").c_str());
      expect_close(gs.dh0_kk, gr.dh0_kk, 3e-3, (at + "saved: d_initial_kk").c_str());
    }
}

// Other iteration counts move the wgmma schedule's switch to the offset form (at 2N/5: iterations 4 and 6 of 11
// and 17; none up to 10, all on bf16 pairs): x within 3e-3 of the oracle, o within that plus its bf16 storage. A
// wrong offset (x_lead or rho lost or misplaced) leaves x off by the whole solution or by the lead's residual (>= 1e-2
// at 4 iterations).
TEST(CudaMixed, IterationCountsMatchOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128})
    for (const int32_t iters : {7, 11, 17}) {
      Case c = mixed_awkward_case(D, 130, "bf16");
      c.num_iter = iters;
      const std::string at = "D=" + std::to_string(D) + " num_iter " + std::to_string(iters) + ": ";
      const CaseInputs in = inputs_make(c, 50 + iters);
      const ForwardResult got = cuda_forward(c, in, false, Precision::mixed);
      const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
      expect_close(got.x, ref.x, 3e-3, (at + "x").c_str());
      expect_close(got.o, ref.o, tol_stored(DType::bf16, false, c.ridge_ratio) + 3e-3, (at + "o").c_str());
    }
}

// On Hopper, mixed with 16-bit q, k, v runs in fwd_wg_kernel (a warpgroup per chunk, f16 iterates); GKA_CUDA_WG1=0
// keeps it in chunk_fwd_kernel. Both within 3e-3 of the oracle on the awkward shapes (bf16 and f16), f within 1e-4;
// on a Hopper device the two must differ (else the new path did not run).
TEST(CudaMixed, OneWarpgroupForwardMatchesOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  int dev = 0, major = (cudaGetDevice(&dev), 0);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  for (const char* dtype : {"bf16", "f16"})
    for (const int64_t D : {64, 128})
      for (const int64_t T : {1, 65, 130}) {
        const Case c = mixed_awkward_case(D, T, dtype);
        const std::string at = std::string(dtype) + " D=" + std::to_string(D) + " T=" + std::to_string(T) + ": ";
        const CaseInputs in = inputs_make(c, 61 + T);
        const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
        const ForwardResult got = cuda_forward(c, in, false, Precision::mixed);
        setenv("GKA_CUDA_WG1", "0", 1);
        const ForwardResult two = cuda_forward(c, in, false, Precision::mixed);
        unsetenv("GKA_CUDA_WG1");
        const double tol_o = tol_stored(c.dtype == "bf16" ? DType::bf16 : DType::f16, false, c.ridge_ratio) + 3e-3;
        for (const ForwardResult* r : {&got, &two}) {
          const std::string path = at + (r == &got ? "" : "GKA_CUDA_WG1=0: ");
          expect_close(r->x, ref.x, 3e-3, path + "x");
          expect_close(r->o, ref.o, tol_o, path + "o");
          expect_close(r->fro, ref.fro, 1e-4, path + "f");  // fp32 gate sums: e^G to ~1e-5 at strong gates
        }
        EXPECT_TRUE(major != 9 || rel_err(got.x, two.x) > 0.0) << at << "GKA_CUDA_WG1=0 changed nothing";
      }
}

// The same shapes with bf16 inputs, where Precision::mixed takes its 16-bit paths: k exact in one term in the
// accurate products (KX on f16 pairs, SolveSchedule::k_bf16 on bf16 pairs) and step_d on bf16 pair tiles
// (step_d_bf16_kernel). Gradients only, from a recomputed and from a saved forward: the 16-bit gradient bound plus
// mixed's 3e-3, and 3e-3 for the fp32 initial-state gradients (mixed's ∂H_0 sat near 5e-4 on layer-like inputs before
// v16, above tol_gradient's fp32 2e-4); a wrong tile, row or mask in either path is off by O(1).
TEST(CudaMixed, Bf16AwkwardShapesGradientsMatchOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128})
    for (const int64_t T : {1, 65, 130}) {
      const Case c = mixed_awkward_case(D, T, "bf16");
      const std::string at = "D=" + std::to_string(D) + " T=" + std::to_string(T) + ": ";
      const CaseInputs in = inputs_make(c, 41 + T);
      const BackwardSeeds seeds = seeds_make(c, 6);
      const BackwardSeeds s64 = seeds_to_f64(seeds);
      const BackwardResult ref = backward_run(case_in_f64(c), inputs_to_f64(in), s64, Backend::reference);
      const double tol = tol_gradient(DType::bf16, false, c.ridge_ratio) + 3e-3;
      const ForwardResult fwd = cuda_forward(c, in, false, Precision::mixed);
      expect_gradients_close(cuda_backward(c, in, seeds, Precision::mixed), ref, tol, tol, 3e-3, at);
      expect_gradients_close(cuda_backward(c, in, seeds, Precision::mixed, &fwd), ref, tol, tol, 3e-3, at + "saved: ");
    }
}

// Precision::mixed on inputs far from unit scale. On Hopper its one-term iterations run in f16 with power-of-two
// scales per chunk (k, H̄) and per row (the iterate), and the accurate one on f16 pairs of the same tiles. A scale
// not undone, or one off by a factor, gives errors of order 1; an f16 overflow, NaN. Cases:
// - q and k scaled together (2^40 / 2^-8, 2^-30 / 2^6), q alone at 2^-80 (squared row norms would underflow) and
//   at 2^90 (|x_0|² would overflow: the chunk falls back to accurate iterations): x within 1e-4 of the oracle, as
//   at unit scale;
// - the initial states alone scaled by 2^-10 against k² (H̄ far below K² takes its own f16 scale): the first
//   chunk's rank-deficient H_t puts its spectrum at the ends of the Chebyshev interval, where mixed precision
//   (either path) ends ~2e-4 from the oracle, so forward only, at the 3e-3 of the awkward shapes;
// - positive log-gates (mask entries up to e^6: the chunk falls back; mma.sync's tf32 lead ends ~2e-4 off): 3e-3.
TEST(CudaMixed, FarFromUnitScaleMatchesOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  struct Scaling {
    int q, k, h0;  // log2 of the factors of q, k and the initial states (beyond k²)
    double gate;   // > 0: every log-gate set to it
    double tol_x;
    bool grads;
  };
  const Scaling scalings[] = {{40, -8, 0, 0, 1e-4, true}, {-30, 6, 0, 0, 1e-4, true}, {-80, 0, 0, 0, 1e-4, true},
                              {90, 0, 0, 0, 1e-4, true},  {0, 0, -10, 0, 3e-3, false}, {0, 0, 0, 0.1, 3e-3, true}};
  for (const int64_t D : {64, 128})
    for (const Scaling& sc : scalings) {
      Case c;
      c.name = "mixed_scaled";
      c.B = 1;
      c.T = 130;
      c.H = 2;
      c.D = D;
      c.h0 = true;
      c.gates = "untied";
      c.dtype = "bf16";
      CaseInputs in = inputs_make(c, 11 + D);
      const auto scale = [](Tensor& t, int e) {
        for (int64_t i = 0; i < t.numel(); ++i) t.set_f64(i, std::ldexp(t.get_f64(i), e));
      };
      scale(in.q, sc.q);
      scale(in.k, sc.k);
      scale(in.h0_kk, 2 * sc.k + sc.h0);
      if (sc.gate > 0)
        for (Tensor* g : {&in.g, &in.gk})
          for (int64_t i = 0; i < g->numel(); ++i) g->set_f64(i, sc.gate);
      const std::string at = "D=" + std::to_string(D) + " q*2^" + std::to_string(sc.q) + " k*2^" +
                             std::to_string(sc.k) + " h0*2^" + std::to_string(sc.h0) + " gate " +
                             std::to_string(sc.gate) + ": ";
      const ForwardResult got = cuda_forward(c, in, false, Precision::mixed);
      const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
      expect_close(got.x, ref.x, sc.tol_x, (at + "x").c_str());
      expect_close(got.o, ref.o, 3e-3, (at + "o").c_str());
      if (!sc.grads) continue;
      const BackwardSeeds seeds = seeds_make(c, 5);
      const BackwardResult g = cuda_backward(c, in, seeds, Precision::mixed, &got);
      const BackwardSeeds s64 = seeds_to_f64(seeds);
      const BackwardResult gr = backward_run(case_in_f64(c), inputs_to_f64(in), s64, Backend::reference);
      expect_close(g.dq, gr.dq, 3e-3, (at + "dq").c_str());
      expect_close(g.dk, gr.dk, 3e-3, (at + "dk").c_str());
    }
}

// fp64 residuals ||(H_t + r ||H_t||_F I) x_t - q_t|| / ||q_t|| ([B, T, H] order) of a given x [B, T, H, D], with
// H_t = e^{gk_t} H_{t-1} + k_t k_tᵀ run token by token over each sequence from its initial state (or zero).
std::vector<double> residuals_of(const Case& c, const CaseInputs& in, const Tensor& x) {
  const int64_t T = c.T, H = c.H, D = c.D;
  const std::vector<double> q = in.q.to_f64(), k = in.k.to_f64(), xs = x.to_f64();
  const std::vector<double> gk = in.gk.defined() ? in.gk.to_f64() : std::vector<double>();
  const std::vector<double> h0 = in.h0_kk.defined() ? in.h0_kk.to_f64() : std::vector<double>();
  struct Seq {
    int64_t b, t0, len;
  };
  std::vector<Seq> seqs;
  if (c.varlen.empty()) {
    for (int64_t b = 0; b < c.B; ++b) seqs.push_back({b, 0, T});
  } else {
    int64_t t0 = 0;
    for (int64_t n : c.varlen) seqs.push_back({0, t0, n}), t0 += n;
  }
  std::vector<double> res(static_cast<size_t>(c.B * T * H), std::numeric_limits<double>::quiet_NaN());
  std::vector<double> Hm(static_cast<size_t>(D * D));
  for (size_t n = 0; n < seqs.size(); ++n)
    for (int64_t h = 0; h < H; ++h) {
      const size_t slot = (n * static_cast<size_t>(H) + static_cast<size_t>(h)) * static_cast<size_t>(D * D);
      for (size_t i = 0; i < Hm.size(); ++i) Hm[i] = h0.empty() ? 0.0 : h0[slot + i];
      for (int64_t t = seqs[n].t0; t < seqs[n].t0 + seqs[n].len; ++t) {
        const size_t row = static_cast<size_t>((seqs[n].b * T + t) * H + h), v = row * static_cast<size_t>(D);
        const double decay = gk.empty() ? 1.0 : std::exp(gk[row]);
        double ff = 0;
        for (int64_t i = 0; i < D; ++i)
          for (int64_t j = 0; j < D; ++j) {
            double& e = Hm[static_cast<size_t>(i * D + j)];
            e = decay * e + k[v + static_cast<size_t>(i)] * k[v + static_cast<size_t>(j)];
            ff += e * e;
          }
        const double lam = c.ridge_ratio * std::sqrt(ff);
        double num = 0, den = 0;
        for (int64_t i = 0; i < D; ++i) {
          double y = lam * xs[v + static_cast<size_t>(i)] - q[v + static_cast<size_t>(i)];
          for (int64_t j = 0; j < D; ++j) y += Hm[static_cast<size_t>(i * D + j)] * xs[v + static_cast<size_t>(j)];
          num += y * y;
          den += q[v + static_cast<size_t>(i)] * q[v + static_cast<size_t>(i)];
        }
        res[row] = std::sqrt(num / den);
      }
    }
  return res;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// The optional residual output ||(H_t + lambda_t I) x_t - q_t|| / ||q_t||, which reads H̄ after the solve (reloaded
// after a warpgroup solve, Precision::mixed on Hopper, only when the residual is asked for), of the chunked kernels
// and of the token-by-token one (fp32). Awkward shapes, both head dims and precisions, num_iter 0 (no solve: x = q,
// residuals up to ~1), 5 (unconverged: up to ~0.35) and 30 (the default: up to ~3e-4). Per token, absolute, within
// tol_forward (1e-5 at r = 0.02): fp32 states and fp32 evaluation leave ~eps32 ||H|| ||x|| / ||q|| <= kappa eps32,
// the suite's forward bound (measured <= 1.3e-6 on an H200). (a) Against the fp64 residual of the kernel's own x
// (either precision); (b) fp32 only, against the oracle's residual (its x differs by the fp32 solve's rounding: <=
// 9e-7 measured; mixed's x, ~1e-5 off, moves the residual by up to ~2e-4, so (a) is its check). A residual from a
// wrong or missing H̄, or a wrong lambda, is off by about the residual's own size (>= 3e-4), 30x the tolerance or
// more.
TEST(CudaResidual, MatchesOwnXAndOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128})
    for (int shape = 0; shape < 3; ++shape)
      for (const int32_t iters : {0, 5, 30}) {
        Case c;
        c.name = "residual";
        c.D = D;
        c.H = 2;
        c.h0 = true;
        c.gates = "untied";
        c.num_iter = iters;
        if (shape == 0) {  // one token per sequence
          c.B = 3;
          c.T = 1;
        } else if (shape == 1) {  // two chunks and a tail
          c.B = 1;
          c.T = 130;
        } else {  // sequences of 1, 63, 0, 100, 7 tokens packed in one row
          c.B = 1;
          c.varlen = {1, 63, 0, 100, 7};
          c.T = 171;
        }
        const CaseInputs in = inputs_make(c, 40 + static_cast<uint64_t>(shape));
        const CaseInputs in64 = inputs_to_f64(in);
        Tensor oracle_res(DType::f64, {c.B, c.T, c.H});
        oracle_res.fill_nan();
        {
          ForwardResult ref = harness::forward_buffers_make(case_in_f64(c).shape());
          ForwardOutputs out = ref.view(false);
          out.residual = oracle_res.view();
          chunk_forward(in64.view(), out, case_in_f64(c).options(Backend::reference));
        }
        const std::vector<double> want = oracle_res.to_f64();
        // The chunked kernels in both precisions, then the token-by-token one (decode.cu, fp32 only).
        for (const int path : {0, 1, 2}) {
          const Precision prec = path == 1 ? Precision::mixed : Precision::fp32;
          const bool recurrent = path == 2;
          const std::string at = std::string(recurrent ? "recurrent" : prec == Precision::mixed ? "mixed" : "fp32") +
                                 " D=" + std::to_string(D) + " shape " + std::to_string(shape) + " num_iter " +
                                 std::to_string(iters) + ": ";
          Tensor res;
          const ForwardResult got = cuda_forward(c, in, recurrent, prec, &res);
          ASSERT_EQ(nonfinite_count(res), 0) << at << "residual has NaN/Inf (poisoned output left unwritten?)";
          const std::vector<double> mine = res.to_f64(), own = residuals_of(c, in64, got.x);
          const double tol = tol_forward(false, c.ridge_ratio);
          EXPECT_LE(max_abs_diff(mine, own), tol) << at << "residual vs the fp64 residual of the kernel's own x";
          if (prec == Precision::fp32) {
            EXPECT_LE(max_abs_diff(mine, want), tol) << at << "residual vs the oracle's";
          }
        }
      }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaAccuracy, ::testing::Values(Precision::fp32, Precision::mixed),
                         [](const ::testing::TestParamInfo<Precision>& i) { return std::string(precision_name(i.param)); });

}  // namespace
}  // namespace gka::test
