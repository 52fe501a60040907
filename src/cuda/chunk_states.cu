// Chunk-start states (see chunk_states.h).
#include "cuda/chunk_states.h"
#include "cuda/chunk_tile.cuh"

namespace gka::cuda {
namespace {

// grid (items, H, 2): which = 0 Gram state with gk, 1 value state with g. Writes L_c into slot + 1.
template <int D>
__global__ void __launch_bounds__(kThreads) local_states_kernel(const Item* items, DView k, DView v, DView gk, DView g,
                                                                 int H, StateBufs st) {
  using F = Cfg<D>;
  extern __shared__ float sm[];
  float* Kd = sm;                  // e^{G_last - G_j} k_j
  float* B = sm + F::C * F::LD;    // k_j or v_j
  float* G = B + F::C * F::LD;
  float* eG = G + F::C;
  const Item it = items[blockIdx.x];
  const int h = blockIdx.y, which = blockIdx.z;
  gate_build<D>(which == 0 ? gk : g, it, h, G, eG, nullptr);
  const float GL = G[it.n - 1];
  rows_load<D>(Kd, k, it, h);
  rows_load<D>(B, which == 0 ? k : v, it, h);
  __syncthreads();
  if (threadIdx.x < F::C) eG[threadIdx.x] = threadIdx.x < it.n ? expf(GL - G[threadIdx.x]) : 0.f;  // e^G unused here
  __syncthreads();
  for (int idx = threadIdx.x; idx < F::C * D; idx += blockDim.x) Kd[(idx / D) * F::LD + idx % D] *= eG[idx / D];
  __syncthreads();
  FragG<D> acc;  // Kdᵀ B on tensor cores (3xTF32), rows k < n (the tiles are zero below)
  frag_zero(acc);
  gram_gemm<D>(acc, Kd, F::LD, B, F::LD, (it.n + 7) & ~7);
  float* dst = (which == 0 ? st.Hs : st.Ss) + (static_cast<int64_t>(it.slot + 1) * H + h) * D * D;
  gram_each<D>(acc, [&](int r, int c, float v0, float v1) {
    *reinterpret_cast<float2*>(dst + r * D + c) = make_float2(v0, v1);
  });
  if (threadIdx.x == 0) st.decay[(static_cast<int64_t>(blockIdx.x) * H + h) * 2 + which] = expf(GL);
}

// grid (seqs * H, 2, D*D / 256): one element of one state per thread, sequential over the chunks.
template <int D>
__global__ void __launch_bounds__(kThreads) scan_kernel(const SeqInfo* seqs, int H, StateBufs st, DView init_kk,
                                                        DView init_kv, DView fin_kk, DView fin_kv) {
  const int s = blockIdx.x / H, h = blockIdx.x % H, which = blockIdx.y;
  const int e = blockIdx.z * blockDim.x + threadIdx.x;
  const SeqInfo sq = seqs[s];
  if (sq.state < 0 || e >= D * D) return;
  const int a = e / D, b = e % D;
  float* buf = which == 0 ? st.Hs : st.Ss;
  const DView& init = which == 0 ? init_kk : init_kv;
  const DView& fin = which == 0 ? fin_kk : fin_kv;
  float x = init.dt ? static_cast<const float*>(init.p)[drow(init, sq.state, h, a) + b] : 0.f;
  const int64_t tile = static_cast<int64_t>(D) * D;
  buf[(static_cast<int64_t>(sq.first + s) * H + h) * tile + e] = x;
  // The loads of kScanAhead chunks are issued before the chain consumes them (the compiler cannot move a
  // load above the previous store to the same buffer): latency, not bandwidth, bounds this loop.
  for (int c0 = 0; c0 < sq.count; c0 += kScanAhead) {
    float dec[kScanAhead], loc[kScanAhead];
#pragma unroll
    for (int u = 0; u < kScanAhead; ++u)
      if (c0 + u < sq.count) {
        dec[u] = st.decay[(static_cast<int64_t>(sq.first + c0 + u) * H + h) * 2 + which];
        loc[u] = buf[(static_cast<int64_t>(sq.first + s + c0 + u + 1) * H + h) * tile + e];
      }
#pragma unroll
    for (int u = 0; u < kScanAhead; ++u)
      if (c0 + u < sq.count) {
        x = fmaf(dec[u], x, loc[u]);
        buf[(static_cast<int64_t>(sq.first + s + c0 + u + 1) * H + h) * tile + e] = x;
      }
  }
  if (fin.dt) static_cast<float*>(fin.p)[drow(fin, sq.state, h, a) + b] = x;
}

template <int D>
void run(const Problem& p, const Plan& plan, const Item* items, const SeqInfo* seqs, const StateBufs& st,
         const TensorView& final_kk, const TensorView& final_kv, const char* fn) {
  using F = Cfg<D>;
  const int H = static_cast<int>(p.H);
  if (!plan.items.empty()) {
    const size_t smem = (2 * F::C * F::LD + 2 * F::C) * sizeof(float);
    check(cudaFuncSetAttribute(local_states_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(smem)), fn, "cudaFuncSetAttribute");
    local_states_kernel<D><<<dim3(static_cast<unsigned>(plan.items.size()), H, 2), kThreads, smem, stream_of(p)>>>(
        items, dview(p.in.k), dview(p.in.v), dview(p.in.gk), dview(p.in.g), H, st);
    launch_check(fn);
  }
  scan_kernel<D><<<dim3(static_cast<unsigned>(p.num_seqs() * H), 2, D * D / kThreads), kThreads, 0, stream_of(p)>>>(
      seqs, H, st, dview(p.in.initial_kk), dview(p.in.initial_kv), dview(final_kk), dview(final_kv));
  launch_check(fn);
}

}  // namespace

void states_compute(const Problem& p, const Plan& plan, const Item* items, const SeqInfo* seqs, const StateBufs& st,
                    const TensorView& final_kk, const TensorView& final_kv, const char* fn) {
  if (p.D == 64)
    run<64>(p, plan, items, seqs, st, final_kk, final_kv, fn);
  else
    run<128>(p, plan, items, seqs, st, final_kk, final_kv, fn);
}

}  // namespace gka::cuda
