// Chunked forward of the CUDA backend (docs/algorithm.md, "Forward"): chunk-start states (chunk_states.cu),
// then one CTA per (chunk, head): norms, N Chebyshev iterations, alpha-mix and readout fused, so x and q~
// stay in fp32 registers/shared memory until the output is stored. With precision mixed on Hopper and 16-bit k,
// fwd_wg_kernel (fwd_wg.cuh: a warpgroup per chunk, two chunks per SM) solves the chunks first, out_wg_kernel
// (out_wg.cuh) reads them out, and chunk_fwd_kernel does only those outside their f16 range.
#include "backends.h"
#include "cuda/chunk_states.h"
#include "cuda/cheb_solve.cuh"
#include "cuda/fwd_wg.cuh"
#include "cuda/out_wg.cuh"

namespace gka::cuda {

struct FwdArgs {
  DView q, k, v, alpha, g, gk;
  DView o, x, fro, res;
  StateBufs st;
  ChebConst cc;
  const float* omega;
  float scale;
  int H;
  SolveSchedule sched;
  const int64_t* redo = nullptr;  // where fwd_wg_kernel ran: the chunks it and out_wg_kernel gave up
};

template <int D, bool KX>
__device__ __forceinline__ void chunk_fwd_one(const FwdArgs& a, const ChunkPos& c) {
  using F = Cfg<D>;
  extern __shared__ __align__(1024) float4 smem_raw[];  // 1024: the wgmma tiles (cheb_wgmma.cuh)
  ChunkSmem<D>& s = *reinterpret_cast<ChunkSmem<D>*>(smem_raw);
  const auto [it, h, n, id, tile] = c;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;

  k_state_load<D>(s, a.k, a.st.Hs, c, false);  // H̄ still in flight through the loads below
  rows_load<D>(s.X, a.q, it, h);
  if (threadIdx.x < F::C)
    s.alpha[threadIdx.x] = threadIdx.x < n ? dscalar(a.alpha, it.batch, it.t0 + threadIdx.x, h, 1.f) : 0.f;
  gate_build<D>(a.gk, it, h, s.G, s.eG, s.M, &a.g, s.Gg, s.eGg);  // g's sums too: its loads would wait after the solve
  cp_async_wait_all();
  __syncthreads();

  Regs<D> q, x;
  bool s_early = false;  // the readout's S̄ already on its way into s.H
  regs_from_smem<D>(q, s.X);
  if (a.cc.n > 0) {
    fro_norms<D, KX>(s, n);
    // After a warpgroup solve (it overlays s.H and s.K): k for the readout; into s.H H̄ for the residual, else
    // already the readout's S̄ (in flight while k loads).
    cheb_solve<D, KX>(s, n, a.cc, a.omega, q, false, x, a.sched, [&] {
      s_early = !a.res.dt;
      square_load<D>(s.H, (s_early ? a.st.Ss : a.st.Hs) + c.tile * D * D, !s_early);
      rows_load<D>(s.K, a.k, c.it, c.h);
    });
    regs_from_smem<D>(q, s.V);  // the solve leaves its right-hand side, q, there (kept in registers, q spilled)
  } else {
    if (a.fro.dt || a.res.dt) fro_norms<D, KX>(s, n);
#pragma unroll
    for (int i = 0; i < F::TM; ++i)
#pragma unroll
      for (int j = 0; j < F::TN; ++j) x[i][j] = q[i][j];
  }
  if (a.x.dt) regs_store<D>(x, a.x, it, h);
  if (a.fro.dt && threadIdx.x < n) dstore(a.fro, drow(a.fro, it.batch, it.t0 + threadIdx.x, h), s.f[threadIdx.x]);
  if (a.res.dt) {  // ||(H_i + lambda_i I) x_i - q_i|| / ||q_i||
    __syncthreads();
    regs_to_smem<D>(x, s.X);
    __syncthreads();
    Regs<D> hx;
    op_apply<D>(s, s.X, n, false, hx);
#pragma unroll
    for (int i = 0; i < F::TM; ++i) {
      const int row = tr + 16 * i;
      const float lam = a.cc.r * s.f[row];
      float num = 0.f, den = 0.f;
#pragma unroll
      for (int j = 0; j < F::TN; ++j) {
        const float r = hx[i][j] + lam * x[i][j] - q[i][j];
        num = fmaf(r, r, num);
        den = fmaf(q[i][j], q[i][j], den);
      }
      num = row_sum16(num);
      den = row_sum16(den);
      if (tc == 0 && row < n) dstore(a.res, drow(a.res, it.batch, it.t0 + row, h), sqrtf(num) / sqrtf(den));
    }
  }

  // q~ = q + alpha (x - q) into X; readout O = s [diag(e^Gg) Q~ S̄ + ((Q~ Kᵀ) ⊙ Mg) V].
  __syncthreads();
#pragma unroll
  for (int i = 0; i < F::TM; ++i) {
    const float al = s.alpha[tr + 16 * i];
#pragma unroll
    for (int j = 0; j < F::TN; ++j) q[i][j] = q[i][j] + al * (x[i][j] - q[i][j]);
  }
  if (!s_early) square_load<D>(s.H, a.st.Ss + tile * D * D, false);
  regs_to_smem<D>(q, s.X);
  rows_load<D>(s.V, a.v, it, h);
  gate_mask<D>(s.Gg, n, s.M);
  cp_async_wait_all();
  __syncthreads();
  {  // on tensor cores (3xTF32): the solver's operator with S̄ (k-major), V and the g gates
    const SolveWarp w;
    float mk[4][4], o[D / 16][4];
    mask_frag<D>(s.M, w, mk);
    op_mma<D, true, false, KX>(s, w, mk, o, s.K, s.V, s.eGg);
    frag_store<D>(reinterpret_cast<const FragC<D>&>(o), w, a.o, it, h, a.scale);
  }
}

template <int D, bool KX>
__global__ void __launch_bounds__(kThreads, 1) chunk_fwd_kernel(const Item* items, const __grid_constant__ FwdArgs a) {
  chunk_fwd_one<D, KX>(a, chunk_pos(items, a.H));
}

// The chunks fwd_wg_kernel and out_wg_kernel gave up (their inputs are 16-bit: KX).
template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    chunk_fwd_redo_kernel(const Item* items, const __grid_constant__ FwdArgs a) {
  for_redo_chunks(items, a.H, a.redo,
                  [&](const ChunkPos& c) __attribute__((always_inline)) { chunk_fwd_one<D, true>(a, c); });
}

// Rows of sequences without a state slot (pool padding) produce zeros.
__global__ void zero_rows_kernel(DView v, int64_t b, int64_t start, int64_t len, int64_t H, int64_t width) {
  const int64_t total = len * H * width;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / (H * width), h = (idx / width) % H, c = idx % width;
    dstore(v, drow(v, b, start + t, h) + c, 0.f);
  }
}

// fwd_wg_kernel takes the chunks where the wgmma schedule runs with an accurate iteration (0 < lead) on 16-bit q, k,
// v: k, v rows 16-byte aligned, q, o pairs 4-byte aligned, x pairs 8-byte aligned (one code path
// each: its code runs once per CTA, and its size costs instruction fetch); not for the residual output (which
// needs the chunk kernel's H̄). GKA_CUDA_WG1=0: off.
bool fwd_wg_usable(const Problem& p, const SolveSchedule& s, const ForwardOutputs& out) {
  const bool off = env_off("GKA_CUDA_WG1");  // read per call: the tests switch it
  const bool k16 = wg_16bit(p.in.q) && wg_16bit(p.in.k) && wg_16bit(p.in.v) && wg_16bit(out.o) &&
                   wg_rows_aligned(p.in.k, 16) && wg_rows_aligned(p.in.v, 16) && wg_rows_aligned(p.in.q, 4) &&
                   wg_rows_aligned(out.o, 4) &&
                   (!out.x.defined() || (out.x.dtype == DType::f32 && wg_rows_aligned(out.x, 8)));
  return !off && s.wgmma && k16 && p.num_iter > 0 && s.one_term > 0 && !out.residual.defined();
}

// fwd_wg_kernel, then out_wg_kernel (the readout) on the chunks it solved; x: the saved x's view, or a scratch's.
template <int D>
void fwd_wg_launch(const FwdArgs& a, const DView& x, int* ok, int64_t* redo, const Item* items, size_t n_items,
                   cudaStream_t stream, const char* fn) {
  const StateBufs& st = a.st;
  WgFwdArgs w{a.q, a.k, a.v, a.alpha, a.g, a.gk, a.o, x, a.fro, st.Hs, st.Ss, a.omega, ok, redo, a.cc, a.scale, a.H,
              a.sched.one_term};
  w.stat = st.stat;
  const dim3 grid(static_cast<unsigned>(n_items), static_cast<unsigned>(a.H));
  wg_launch<D>(fwd_wg_kernel<D>, grid, items, w, stream, fn);
  wg_launch<D>(out_wg_kernel<D>, grid, items, w, stream, fn, WgOutSmem<D>::kBytes);
}

void zero_rows(const TensorView& v, const Sequence& sq, int64_t H, int64_t width, cudaStream_t stream) {
  if (!v.defined() || sq.length == 0) return;
  zero_rows_kernel<<<64, 256, 0, stream>>>(dview(v), sq.batch, sq.start, sq.length, H, width);
}

template <int D>
void forward_run(const Problem& p, const ForwardOutputs& out) {
  const char* fn = "gka::chunk_forward (cuda)";
  const Plan plan = plan_make(p);
  const cudaStream_t stream = stream_of(p);
  const Upload<Item> items(fn, plan.items, stream);
  const Upload<SeqInfo> seqs(fn, plan.seqs, stream);
  const std::vector<float> om = omegas(p);
  const Upload<float> omega(fn, om.empty() ? std::vector<float>{0.f} : om, stream);
  const size_t tile = static_cast<size_t>(D) * D;
  Scratch hs(fn, plan.slots * p.H * tile * sizeof(float), stream), ss(fn, plan.slots * p.H * tile * sizeof(float), stream);
  Scratch dec(fn, std::max<size_t>(1, plan.items.size() * p.H * 2) * sizeof(float), stream);
  Scratch stat(fn, plan.slots * p.H * 2 * kStateParts * sizeof(float2), stream);
  const StateBufs st{hs.as<float>(), ss.as<float>(), dec.as<float>(), stat.as<float2>(), plan.slots};
  states_compute(p, items.get(), seqs.get(), st, out.final_kk, out.final_kv, fn);
  if (!plan.items.empty()) {
    FwdArgs a{dview(p.in.q), dview(p.in.k), dview(p.in.v), dview(p.in.alpha), dview(p.in.g), dview(p.in.gk),
              dview(out.o), dview(out.x), dview(out.fro), dview(out.residual), st, cheb_const(p), omega.get(),
              static_cast<float>(p.scale), static_cast<int>(p.H), solve_schedule(p)};
    const bool wg = fwd_wg_usable(p, a.sched, out);
    Scratch ok(fn, wg ? plan.items.size() * p.H * sizeof(int) : 0, stream);
    const RedoList redo(fn, wg ? plan.items.size() * p.H : 0, stream);
    // The readout takes q~ from fwd_wg_kernel's x: a scratch of the same layout where the caller saves none.
    Scratch xs(fn, wg && !out.x.defined() ? p.B * p.T * p.H * p.D * sizeof(float) : 0, stream);
    if (wg) {
      a.redo = redo.get();
      const DView x = out.x.defined()
                          ? a.x
                          : dview(TensorView::contiguous(xs.as<float>(), DType::f32, {p.B, p.T, p.H, p.D}, Device::cuda,
                                                         p.in.q.device_index));
      fwd_wg_launch<D>(a, x, ok.as<int>(), redo.get(), items.get(), plan.items.size(), stream, fn);
    }
    const size_t smem = solve_smem_bytes<D>();
    const auto kernel = wg                     ? chunk_fwd_redo_kernel<D>
                        : inputs_tf32_exact(p) ? chunk_fwd_kernel<D, true>
                                               : chunk_fwd_kernel<D, false>;
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), fn,
          "cudaFuncSetAttribute");
    const dim3 grid = wg ? redo_grid(static_cast<int64_t>(plan.items.size()) * p.H)
                         : dim3(static_cast<unsigned>(plan.items.size()), static_cast<unsigned>(p.H));
    kernel<<<grid, kThreads, smem, stream>>>(items.get(), a);
    launch_check(fn);
  }
  for (const Sequence& sq : p.seqs)
    if (sq.state < 0) {
      zero_rows(out.o, sq, p.H, p.Dv, stream);
      zero_rows(out.x, sq, p.H, p.D, stream);
      zero_rows(out.fro, sq, p.H, 1, stream);
      zero_rows(out.residual, sq, p.H, 1, stream);
    }
}

void chunk_forward(const Problem& p, const ForwardOutputs& out) {
  supported_check(p, "gka::chunk_forward (cuda)", false);
  if (p.D == 64)
    forward_run<64>(p, out);
  else
    forward_run<128>(p, out);
}

}  // namespace gka::cuda
