// Chunked backward of the CUDA backend (docs/algorithm.md, "Backward", steps (A)-(D)):
//   (A) chunk-start states (chunk_states.cu);
//   (B) one CTA per (chunk, head), in two kernels: dq~ and dalpha (step_b), then the adjoint solve u, dq, and the
//       chunk sums Σ e^{G}Ψ, Σ e^{Gg}Φ (step_b2); on Hopper with Precision::mixed, adj_wg_kernel does step_b's work
//       and the solve first (fwd_wg.cuh, adj_wg.cuh), and the two kernels do only the chunks outside its range;
//   (C) elementwise reverse scan over each sequence's chunks: the adjoints R_c, Q_c arriving at each chunk's
//       end state, and the initial-state gradients;
//   (D) one CTA per (chunk, head): dk, dv, dgk, dg (chunk_bwd_d.cu).
// No float atomics: every CTA writes only its own rows and tiles, so the result is bitwise reproducible (the redo
// list's counter, redo_list.cuh, orders only which CTA redoes a chunk).
#include "backends.h"
#include "cuda/cheb_solve.cuh"
#include "cuda/chunk_bwd.cuh"
#include "cuda/fwd_wg.cuh"

namespace gka::cuda {


template <int D>
__device__ __forceinline__ void rows_scale(Regs<D>& r, const float* v) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16;
#pragma unroll
  for (int i = 0; i < F::TM; ++i)
#pragma unroll
    for (int j = 0; j < F::TN; ++j) r[i][j] *= v[tr + 16 * i];
}

// Σ over this thread's columns of a[i][j] * b[row][col] for each of its rows, reduced over the row's threads.
template <int D>
__device__ __forceinline__ void rows_dot(const Regs<D>& a, const float* b, int ldb, float (&out)[Cfg<D>::TM]) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
#pragma unroll
  for (int i = 0; i < F::TM; ++i) {
    float v = 0.f;
#pragma unroll
    for (int j = 0; j < F::TN; ++j) v = fmaf(a[i][j], b[(tr + 16 * i) * ldb + tc + 16 * j], v);
    out[i] = row_sum16(v);
  }
}

// A D x D product into registers, acc(a, b) = Σ_i A[i ld + a] B[i ld + b] over i < n (Aᵀ B of two C x D tiles).
template <int D>
__device__ __forceinline__ void gram_mac(float (&acc)[D / 16][D / 16], const float* A, const float* B, int n) {
  tile_mac(acc, A, 1, Cfg<D>::LD, B, Cfg<D>::LD, 1, n, threadIdx.x / 16, threadIdx.x % 16);
}

template <int D, bool KX>
__device__ __forceinline__ void step_b_one(const BwdArgs& a, const ChunkPos& c) {
  using F = Cfg<D>;
  extern __shared__ __align__(1024) float4 smem_raw[];  // 1024: the wgmma tiles (cheb_wgmma.cuh)
  ChunkSmem<D>& s = *reinterpret_cast<ChunkSmem<D>*>(smem_raw);
  const auto [it, h, n, id, tile] = c;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
  const bool solve = a.cc.n > 0;
  constexpr int64_t DD = static_cast<int64_t>(D) * D;
  const auto reload = [&] { rows_load<D>(s.K, a.k, c.it, c.h); };  // after a warpgroup solve: H̄ is not read again

  // H̄ only where it is read before S̄ replaces it in s.H: by the norms (no saved fro) or the solve (no saved x).
  if (!a.fro_in.dt || (solve && !a.x_in.dt)) square_load<D>(s.H, a.st.Hs + tile * DD, false);
  rows_load<D>(s.K, a.k, it, h);
  rows_load<D>(s.X, a.q, it, h);
  if (threadIdx.x < F::C)
    s.alpha[threadIdx.x] = threadIdx.x < n ? dscalar(a.alpha, it.batch, it.t0 + threadIdx.x, h, 1.f) : 0.f;
  gate_build<D>(a.gk, it, h, s.G, s.eG, s.M, &a.g, s.Gg, s.eGg);
  cp_async_wait_all();
  __syncthreads();
  Regs<D> q, x;
  regs_from_smem<D>(q, s.X);
  if (a.fro_in.dt) {
    if (threadIdx.x < F::C) s.f[threadIdx.x] = threadIdx.x < n ? dload(a.fro_in, drow(a.fro_in, it.batch, it.t0 + threadIdx.x, h)) : 0.f;
    __syncthreads();
  } else {
    fro_norms<D, KX>(s, n);
  }
  if (solve && a.x_in.dt) {
    __syncthreads();
    rows_load<D>(s.X, a.x_in, it, h);
    __syncthreads();
    regs_from_smem<D>(x, s.X);
  } else if (solve) {
    cheb_solve<D, KX>(s, n, a.cc, a.omega, q, false, x, a.sched, reload);
  } else {
#pragma unroll
    for (int i = 0; i < F::TM; ++i)
#pragma unroll
      for (int j = 0; j < F::TN; ++j) x[i][j] = q[i][j];
  }
  regs_to_global<D>(x, a.X + id * F::C * D);

  // dq~ = s [diag(e^Gg) dO S̄ᵀ + ((dO Vᵀ) ⊙ Mg) K]
  __syncthreads();
  square_load<D>(s.H, a.st.Ss + tile * DD, false);
  rows_load<D>(s.X, a.d_o, it, h);
  rows_load<D>(s.V, a.v, it, h);
  gate_mask<D>(s.Gg, n, s.M);
  cp_async_wait_all();
  __syncthreads();
  Regs<D> dqt;
  {  // on tensor cores (3xTF32): the solver's operator with S̄ᵀ, scores with V, P times K, the g gates;
     // through s.X (dO is no longer needed after op_mma's first phase) into the thread layout
    const SolveWarp w;
    float mk[4][4], o[D / 16][4];
    mask_frag<D>(s.M, w, mk);
    op_mma<D, true, true, KX>(s, w, mk, o, s.V, s.K, s.eGg);
    const int r0 = 16 * w.rb + w.g, cb = w.ch * (D / 2) + 2 * w.t;
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
      float* p0 = s.X + r0 * F::LD + cb + 8 * j;
      float* p1 = p0 + 8 * F::LD;
      p0[0] = o[j][0];
      p0[1] = o[j][1];
      p1[0] = o[j][2];
      p1[1] = o[j][3];
    }
    __syncthreads();
    regs_from_smem<D>(dqt, s.X);
  }
  Regs<D> qt, dx;
#pragma unroll
  for (int i = 0; i < F::TM; ++i) {
    const int row = tr + 16 * i;
    const float al = s.alpha[row];
    float da = 0.f, qd = 0.f;
#pragma unroll
    for (int j = 0; j < F::TN; ++j) {
      dqt[i][j] *= a.scale;
      qt[i][j] = q[i][j] + al * (x[i][j] - q[i][j]);
      da = fmaf(dqt[i][j], x[i][j] - q[i][j], da);
      qd = fmaf(qt[i][j], dqt[i][j], qd);
      dx[i][j] = al * dqt[i][j];
    }
    da = row_sum16(da);
    qd = row_sum16(qd);
    if (tc == 0) {
      if (a.dalpha.dt && row < n) dstore(a.dalpha, drow(a.dalpha, it.batch, it.t0 + row, h), da);
      a.scal[id * 3 * F::C + 2 * F::C + row] = qd;
    }
  }

  // x, dq~, q~ and the adjoint's right-hand side dx wait for step_b2 in this chunk's scratch (x already in X, dq~
  // in U's slot, q~ in Φ's, dx in Ψ's, each overwritten later), the norms in scal.
  regs_to_global<D>(dqt, a.U + id * F::C * D);
  regs_to_global<D>(qt, a.Phi + id * DD);
  regs_to_global<D>(dx, a.Psi + id * DD);
  if (threadIdx.x < F::C) a.scal[id * 3 * F::C + threadIdx.x] = threadIdx.x < n ? s.f[threadIdx.x] : 0.f;
}

template <int D, bool KX>
__global__ void __launch_bounds__(kThreads, 1) step_b_kernel(const Item* items, const __grid_constant__ BwdArgs a) {
  step_b_one<D, KX>(a, chunk_pos(items, a.H));
}

// The chunk sums of (B)'s second half, from x in s.X, u in s.V, w in s.w and K in s.K (either kernel's layout):
// Σ e^{G_s} Ψ_s = -Uᵀ diag(e^G) X - γ H̄ - Kᵀ diag(ρ) K and Σ e^{Gg_s} Φ_s = s Q~ᵀ diag(e^Gg) dO, into Ψ's and Φ's
// slots, all but γ H̄, which step_c subtracts (it streams H̄ anyway; here its scattered loads took a fifth of
// step_b2_lean's stall samples): γ into gamma[id]. Overwrites s.X and s.V.
template <int D, bool KX, class S>
__device__ __forceinline__ void step_b2_sums(S& s, const BwdArgs& a, const ChunkPos& c, bool solve) {
  using F = Cfg<D>;
  const auto [it, h, n, id, tile] = c;
  constexpr int64_t DD = static_cast<int64_t>(D) * D;
  __syncthreads();
  for (int idx = threadIdx.x; idx < F::C * D; idx += blockDim.x) s.X[(idx / D) * F::LD + idx % D] *= -s.eG[idx / D];
  if (threadIdx.x < 32) {  // ρ_j = Σ_{s>=j} c_s e^{G_s - G_j}, c_s = e^{G_s} w_s (a suffix scan);  γ = Σ c_s e^{G_s}
    const int j = 2 * threadIdx.x;
    auto cs = [&](int i) { return i < n ? s.eG[i] * s.w[i] : 0.f; };
    auto dec = [&](int i) { return i + 1 < n ? expf(s.G[i + 1] - s.G[i]) : 0.f; };  // the decay mask's entry
    warp_suffix_affine(dec(j), cs(j), dec(j + 1), cs(j + 1), s.t0[j], s.t0[j + 1]);
    float gamma = (j < n ? cs(j) * s.eG[j] : 0.f) + (j + 1 < n ? cs(j + 1) * s.eG[j + 1] : 0.f);
    for (int o = 16; o > 0; o >>= 1) gamma += __shfl_xor_sync(0xffffffffu, gamma, o);
    if (threadIdx.x == 0) a.gamma[id] = solve ? gamma : 0.f;
  }
  __syncthreads();
  const int n8 = (n + 7) & ~7;
  {
    FragG<D> acc;  // chunk sums on tensor cores (3xTF32)
    frag_zero(acc);
    gram_gemm<D>(acc, s.V, F::LD, s.X, F::LD, n8);
    __syncthreads();
    for (int idx = threadIdx.x; idx < F::C * D; idx += blockDim.x) {
      const int r = idx / D, col = idx % D;
      s.X[r * F::LD + col] = r < n ? -s.t0[r] * s.K[r * F::LD + col] : 0.f;
    }
    __syncthreads();
    gram_gemm<D, false, KX>(acc, s.K, F::LD, s.X, F::LD, n8);
    float* psi = a.Psi + id * DD;
    gram_each<D>(acc, [&](int r, int col, float v0, float v1) {
      *reinterpret_cast<float2*>(psi + r * D + col) = solve ? make_float2(v0, v1) : make_float2(0.f, 0.f);
    });
  }
  __syncthreads();
  {
    Regs<D> qt;
    regs_from_global<D>(qt, a.Phi + id * DD);
    regs_to_smem<D>(qt, s.X);
  }
  rows_load<D>(s.V, a.d_o, it, h, a.scale);
  __syncthreads();
  for (int idx = threadIdx.x; idx < F::C * D; idx += blockDim.x) s.V[(idx / D) * F::LD + idx % D] *= s.eGg[idx / D];
  __syncthreads();
  {
    FragG<D> acc;
    frag_zero(acc);
    gram_gemm<D>(acc, s.X, F::LD, s.V, F::LD, n8);
    float* phi = a.Phi + id * DD;
    gram_each<D>(acc, [&](int r, int col, float v0, float v1) {
      *reinterpret_cast<float2*>(phi + r * D + col) = make_float2(v0, v1);
    });
  }
}

// (B), second half: the adjoint solve Hᵀ u = dx, w, dq = (1 - alpha) dq~ + u, and the chunk sums. A kernel of its
// own: inlined after the first half, the solve's loop compiled to 1806 instructions (464 R2UR: its descriptors
// left the uniform datapath) against 1667 here, like chunk_fwd's (scripts/sass_loops.sh).
template <int D, bool KX>
__device__ __forceinline__ void step_b2_one(const BwdArgs& a, const ChunkPos& c) {
  using F = Cfg<D>;
  extern __shared__ __align__(1024) float4 smem_raw[];  // 1024: the wgmma tiles (cheb_wgmma.cuh)
  ChunkSmem<D>& s = *reinterpret_cast<ChunkSmem<D>*>(smem_raw);
  const auto [it, h, n, id, tile] = c;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
  const bool solve = a.cc.n > 0;
  constexpr int64_t DD = static_cast<int64_t>(D) * D;
  const auto reload = [&] { k_state_load<D>(s, a.k, a.st.Hs, c); };
  k_state_load<D>(s, a.k, a.st.Hs, c, false);
  if (threadIdx.x < F::C) {
    const int i = threadIdx.x;
    s.alpha[i] = i < n ? dscalar(a.alpha, it.batch, it.t0 + i, h, 1.f) : 0.f;
    s.f[i] = a.scal[id * 3 * F::C + i];
  }
  gate_build<D>(a.gk, it, h, s.G, s.eG, s.M, &a.g, s.Gg, s.eGg);
  cp_async_wait_all();
  __syncthreads();
  Regs<D> x, dqt, dx, u;
  regs_from_global<D>(dx, a.Psi + id * DD);
  if (solve) {
    cheb_solve<D, KX>(s, n, a.cc, a.omega, dx, true, u, a.sched, reload);
  } else {
#pragma unroll
    for (int i = 0; i < F::TM; ++i)
#pragma unroll
      for (int j = 0; j < F::TN; ++j) u[i][j] = dx[i][j];
  }
  regs_from_global<D>(x, a.X + id * F::C * D);
  regs_from_global<D>(dqt, a.U + id * F::C * D);
#pragma unroll
  for (int i = 0; i < F::TM; ++i) {
    const int row = tr + 16 * i;
    float ux = 0.f;
#pragma unroll
    for (int j = 0; j < F::TN; ++j) {
      ux = fmaf(u[i][j], x[i][j], ux);
      dqt[i][j] = (1.f - s.alpha[row]) * dqt[i][j] + u[i][j];
    }
    ux = row_sum16(ux);
    if (tc == 0) {
      const float w = (solve && a.lambda_grad && row < n && s.f[row] > 0.f) ? a.cc.r * ux / s.f[row] : 0.f;
      s.w[row] = w;
      a.scal[id * 3 * F::C + row] = row < n ? s.f[row] : 0.f;
      a.scal[id * 3 * F::C + F::C + row] = w;
    }
  }
  if (a.dq.dt) regs_store<D>(dqt, a.dq, it, h);
  regs_to_global<D>(u, a.U + id * F::C * D);
  __syncthreads();
  regs_to_smem<D>(x, s.X);
  regs_to_smem<D>(u, s.V);
  step_b2_sums<D, KX>(s, a, c, solve);
}

template <int D, bool KX>
__global__ void __launch_bounds__(kThreads, 1) step_b2_kernel(const Item* items, const __grid_constant__ BwdArgs a) {
  step_b2_one<D, KX>(a, chunk_pos(items, a.H));
}

// Steps (B) on the chunks adj_wg_kernel gave up (its inputs are 16-bit: KX).
template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    step_b_redo_kernel(const Item* items, const __grid_constant__ BwdArgs a) {
  for_redo_chunks(items, a.H, a.redo,
                  [&](const ChunkPos& c) __attribute__((always_inline)) { step_b_one<D, true>(a, c); });
}
template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    step_b2_redo_kernel(const Item* items, const __grid_constant__ BwdArgs a) {
  for_redo_chunks(items, a.H, a.redo,
                  [&](const ChunkPos& c) __attribute__((always_inline)) { step_b2_one<D, true>(a, c); });
}

// step_b2 where adj_wg_kernel solved the chunk (ok[id]): u from its scratch, then the same. With no solve it keeps no
// H̄, scores or mask in shared memory, ~104 KB at D = 128: two CTAs per SM (step_b2: one).
template <int D>
struct LeanSmem {
  using F = Cfg<D>;
  float K[F::C * F::LD];
  float X[F::C * F::LD];
  float V[F::C * F::LD];
  float G[F::C], eG[F::C], Gg[F::C], eGg[F::C], alpha[F::C], w[F::C], t0[F::C], t1[F::C];
};

template <int D, bool KX>
__global__ void __launch_bounds__(kThreads, 2) step_b2_lean_kernel(const Item* items, BwdArgs a) {
  using F = Cfg<D>;
  extern __shared__ __align__(1024) float4 smem_raw[];
  LeanSmem<D>& s = *reinterpret_cast<LeanSmem<D>*>(smem_raw);
  const ChunkPos c = chunk_pos(items, a.H);
  const auto [it, h, n, id, tile] = c;
  if (!a.ok[id]) return;  // given up: step_b2_redo_kernel's
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
  rows_load<D>(s.K, a.k, it, h);
  if (threadIdx.x < F::C)
    s.alpha[threadIdx.x] = threadIdx.x < n ? dscalar(a.alpha, it.batch, it.t0 + threadIdx.x, h, 1.f) : 0.f;
  gate_build<D>(a.gk, it, h, s.G, s.eG, nullptr, &a.g, s.Gg, s.eGg);
  Regs<D> dqt, r;
  regs_from_global<D>(dqt, a.U + id * F::C * D);
  regs_from_global<D>(r, a.uadj + id * F::C * D);
  regs_to_smem<D>(r, s.V);
  regs_to_global<D>(r, a.U + id * F::C * D);  // u over dq~ (this thread's own elements, read above)
  regs_from_global<D>(r, a.X + id * F::C * D);
  regs_to_smem<D>(r, s.X);
  cp_async_wait_all();
  __syncthreads();
#pragma unroll
  for (int i = 0; i < F::TM; ++i) {
    const int row = tr + 16 * i;
    float ux = 0.f;
#pragma unroll
    for (int j = 0; j < F::TN; ++j) {
      const float u = s.V[row * F::LD + tc + 16 * j];
      ux = fmaf(u, s.X[row * F::LD + tc + 16 * j], ux);
      dqt[i][j] = (1.f - s.alpha[row]) * dqt[i][j] + u;
    }
    ux = row_sum16(ux);
    if (tc == 0) {  // the norms are in scal already (adj_wg_kernel)
      const float f = a.scal[id * 3 * F::C + row];
      const float w = (a.lambda_grad && row < n && f > 0.f) ? a.cc.r * ux / f : 0.f;
      s.w[row] = w;
      a.scal[id * 3 * F::C + F::C + row] = w;
    }
  }
  if (a.dq.dt) regs_store<D>(dqt, a.dq, it, h);
  step_b2_sums<D, KX>(s, a, c, true);
}

// (C) grid (seqs * H, 2, D*D / 1024), four elements per thread: R_{c-1} = e^{G_last} R_c + Σ_c (Ψ's Σ_c completed
// here by its - γ H̄_c term, step_b2_sums); leaves R_c in the chunk-sum buffers, and the partial sums of the state dots
// (kDotParts), which spares step_d four D x D tile pairs. Four CTAs per SM (64 registers; 74 gave three): at
// 1 x 32768 x 16 heads its 512 CTAs are one round (H200: 938 -> 825 us; 8 x 2048 unchanged, 418).
template <int D>
__global__ void __launch_bounds__(kThreads, 4)
    step_c_kernel(const SeqInfo* seqs, BwdArgs a, DView dfin_kk, DView dfin_kv, DView dinit_kk, DView dinit_kv) {
  constexpr int AHEAD = 4;  // chunks whose loads are issued before the chain uses them
  const int H = a.H, s = blockIdx.x / H, h = blockIdx.x % H, which = blockIdx.y;
  const int e = 4 * (blockIdx.z * blockDim.x + threadIdx.x);
  const SeqInfo sq = seqs[s];
  if (sq.state < 0) return;
  const int r = e / D, c = e % D;
  constexpr int64_t DD = static_cast<int64_t>(D) * D;
  // copies: a reference to a kernel parameter puts the parameters in local memory
  const DView dfin = which == 0 ? dfin_kk : dfin_kv, dinit = which == 0 ? dinit_kk : dinit_kv;
  float* sums = which == 0 ? a.Psi : a.Phi;
  const float* states = which == 0 ? a.st.Hs : a.st.Ss;
  const int64_t slot0 = sq.first + s;  // the sequence's initial-state slot; chunk k starts at slot0 + k
  const int part = blockIdx.z * (kThreads / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  float R[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) R[i] = dfin.dt ? dload(dfin, drow(dfin, sq.state, h, r) + c + i) : 0.f;
  auto at = [&](const float* base, int64_t tile) { return *reinterpret_cast<const float4*>(base + tile * DD + e); };
  float4 next = at(states, (slot0 + sq.count) * H + h);  // the state at the end of chunk k
  for (int k0 = sq.count - 1; k0 >= 0; k0 -= AHEAD) {
    float4 sum[AHEAD], start[AHEAD];
    float dec[AHEAD], gam[AHEAD];
#pragma unroll
    for (int u = 0; u < AHEAD; ++u)
      if (k0 - u >= 0) {
        const int64_t id = static_cast<int64_t>(sq.first + k0 - u) * H + h;
        sum[u] = at(sums, id);
        dec[u] = a.st.decay[id * 2 + which];
        gam[u] = which == 0 ? a.gamma[id] : 0.f;
        start[u] = at(states, (slot0 + k0 - u) * H + h);
      }
#pragma unroll
    for (int u = 0; u < AHEAD; ++u)
      if (k0 - u >= 0) {
        const int64_t id = static_cast<int64_t>(sq.first + k0 - u) * H + h;
        *reinterpret_cast<float4*>(sums + id * DD + e) = make_float4(R[0], R[1], R[2], R[3]);
        const float sm[4] = {sum[u].x, sum[u].y, sum[u].z, sum[u].w};
        const float st[4] = {start[u].x, start[u].y, start[u].z, start[u].w}, nx[4] = {next.x, next.y, next.z, next.w};
        float pe = 0.f, ps = 0.f;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          pe = fmaf(R[i], nx[i], pe);
          R[i] = fmaf(dec[u], R[i], fmaf(-gam[u], st[i], sm[i]));  // Σ_c: step_b2's sum - γ H̄_c
          ps = fmaf(R[i], st[i], ps);
        }
        next = start[u];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
          pe += __shfl_xor_sync(0xffffffffu, pe, o);
          ps += __shfl_xor_sync(0xffffffffu, ps, o);
        }
        if (lane == 0) {
          a.dots[(id * 4 + 2 * which) * kDotParts<D> + part] = ps;
          a.dots[(id * 4 + 2 * which + 1) * kDotParts<D> + part] = pe;
        }
      }
  }
  if (dinit.dt)
#pragma unroll
    for (int i = 0; i < 4; ++i) dstore(dinit, drow(dinit, sq.state, h, r) + c + i, R[i]);
}

// adj_wg_kernel does step_b's work and the adjoint solve where the wgmma schedule runs with an accurate iteration, from
// the forward's saved x (fp32) and norms, on 16-bit q, k, v, dO (fwd_wg.cuh, adj_wg.cuh). GKA_CUDA_WG1=0: off (with
// the forward's).
bool adj_wg_usable(const Problem& p, const BackwardInputs& gin, const SolveSchedule& s) {
  const bool views = wg_16bit(p.in.q) && wg_16bit(p.in.k) && wg_16bit(p.in.v) && wg_16bit(gin.d_o) &&
                     wg_rows_aligned(p.in.k, 16) && wg_rows_aligned(p.in.v, 16) && wg_rows_aligned(p.in.q, 4) &&
                     wg_rows_aligned(gin.d_o, 4) && gin.x.defined() && gin.x.dtype == DType::f32 &&
                     wg_rows_aligned(gin.x, 8) && gin.fro.defined();
  return !env_off("GKA_CUDA_WG1") && s.wgmma && views && p.num_iter > 0 && s.one_term > 0;
}

template <int D>
void backward_run(const Problem& p, const BackwardInputs& gin, const Gradients& gout) {
  const char* fn = "gka::chunk_backward (cuda)";
  constexpr int C = Cfg<D>::C;
  const Plan plan = plan_make(p);
  const cudaStream_t stream = stream_of(p);
  const Upload<Item> items(fn, plan.items, stream);
  const Upload<SeqInfo> seqs(fn, plan.seqs, stream);
  const std::vector<float> om = omegas(p);
  const Upload<float> omega(fn, om.empty() ? std::vector<float>{0.f} : om, stream);
  const size_t DD = static_cast<size_t>(D) * D, ids = std::max<size_t>(1, plan.items.size() * p.H);
  const size_t fs = sizeof(float);
  Scratch hs(fn, plan.slots * p.H * DD * fs, stream), ss(fn, plan.slots * p.H * DD * fs, stream),
      dec(fn, ids * 2 * fs, stream), stat(fn, plan.slots * p.H * 2 * kStateParts * sizeof(float2), stream);
  const StateBufs st{hs.as<float>(), ss.as<float>(), dec.as<float>(), stat.as<float2>(), plan.slots};
  states_compute(p, items.get(), seqs.get(), st, TensorView{}, TensorView{}, fn);  // (A)
  Scratch X(fn, ids * C * D * fs, stream), U(fn, ids * C * D * fs, stream), Psi(fn, ids * DD * fs, stream),
      Phi(fn, ids * DD * fs, stream), scal(fn, ids * 3 * C * fs, stream),
      dots(fn, ids * 4 * kDotParts<D> * fs, stream), gamma(fn, ids * fs, stream);
  const bool adj = !plan.items.empty() && adj_wg_usable(p, gin, solve_schedule(p));
  Scratch uadj(fn, adj ? ids * C * D * fs : 0, stream), ok(fn, adj ? ids * sizeof(int) : 0, stream);
  const RedoList redo(fn, adj ? ids : 0, stream);
  BwdArgs a{dview(p.in.q), dview(p.in.k), dview(p.in.v), dview(p.in.alpha), dview(p.in.g), dview(p.in.gk),
            dview(gin.d_o), dview(gin.x), dview(gin.fro), dview(gout.dq), dview(gout.dk), dview(gout.dv),
            dview(gout.dalpha), dview(gout.dg), dview(gout.dgk), st, X.as<float>(), U.as<float>(), Psi.as<float>(),
            Phi.as<float>(), scal.as<float>(), dots.as<float>(), cheb_const(p), omega.get(),
            static_cast<float>(p.scale), static_cast<int>(p.H), p.lambda_grad ? 1 : 0, solve_schedule(p)};
  a.gamma = gamma.as<float>();
  const size_t smem = solve_smem_bytes<D>();  // step_b and step_b2 (step_d sets its own)
  const dim3 grid(static_cast<unsigned>(plan.items.size()), static_cast<unsigned>(p.H));
  const bool kx = inputs_tf32_exact(p, &gin.d_o);
  if (!plan.items.empty()) {
    // After adj_wg_kernel, only the chunks it gave up (16-bit inputs: kx).
    const auto step_b = adj ? step_b_redo_kernel<D> : kx ? step_b_kernel<D, true> : step_b_kernel<D, false>;
    const auto step_b2 = adj ? step_b2_redo_kernel<D> : kx ? step_b2_kernel<D, true> : step_b2_kernel<D, false>;
    for (const auto kernel : {step_b, step_b2})
      check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), fn,
            "cudaFuncSetAttribute");
    if (adj) {  // step_b's work and the adjoint solve, one warpgroup per chunk (fwd_wg.cuh, adj_wg.cuh)
      WgFwdArgs w{a.q, a.k, a.v, a.alpha, a.g, a.gk, DView{}, a.x_in, a.fro_in, st.Hs, st.Ss, a.omega, ok.as<int>(),
                  redo.get(), a.cc, a.scale, a.H, a.sched.one_term};
      w.d_o = a.d_o, w.dalpha = a.dalpha, w.adj_x = a.X, w.adj_dqt = a.U, w.adj_u = uadj.as<float>();
      w.adj_qt = a.Phi, w.adj_scal = a.scal, w.stat = st.stat;
      wg_launch<D>(adj_wg_kernel<D>, grid, items.get(), w, stream, fn);
      a.uadj = uadj.as<float>();
      a.ok = ok.as<int>();
      a.redo = redo.get();
    }
    const dim3 rest = adj ? redo_grid(static_cast<int64_t>(plan.items.size()) * p.H) : grid;
    step_b<<<rest, kThreads, smem, stream>>>(items.get(), a);  // (B)
    launch_check(fn);
    step_b2<<<rest, kThreads, smem, stream>>>(items.get(), a);
    launch_check(fn);
    // the chunks adj_wg_kernel solved: on warpgroup products (GKA_STEP_B2_WG=0: step_b2_lean_kernel, for A/B tests)
    static const bool b2_wg_off = env_off("GKA_STEP_B2_WG");
    const bool b2_wg = adj && a.sched.wgmma && D == 128 && !b2_wg_off && p.in.k.dtype == DType::bf16 &&
                       gin.d_o.dtype == DType::bf16 && wg_rows_aligned(p.in.k, 16) && wg_rows_aligned(gin.d_o, 16);
    if (b2_wg) {
      step_b2_wg_launch(grid, stream, items.get(), a);
    } else if (adj) {  // two CTAs per SM
      const auto lean = kx ? step_b2_lean_kernel<D, true> : step_b2_lean_kernel<D, false>;
      const int lsmem = static_cast<int>(sizeof(LeanSmem<D>));
      check(cudaFuncSetAttribute(lean, cudaFuncAttributeMaxDynamicSharedMemorySize, lsmem), fn, "cudaFuncSetAttribute");
      check(cudaFuncSetAttribute(lean, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared),
            fn, "cudaFuncSetAttribute");
      lean<<<grid, kThreads, lsmem, stream>>>(items.get(), a);
      launch_check(fn);
    }
  }
  step_c_kernel<D><<<dim3(static_cast<unsigned>(p.num_seqs() * p.H), 2, D * D / (4 * kThreads)), kThreads, 0, stream>>>(
      seqs.get(), a, dview(gin.d_final_kk), dview(gin.d_final_kv), dview(gout.d_initial_kk),
      dview(gout.d_initial_kv));  // (C)
  launch_check(fn);
  if (!plan.items.empty()) {
    // bf16 tiles with Precision::mixed where k, v and dO are bf16 (GKA_CUDA_STEP_D_BF16=0: 3xTF32, for A/B tests)
    static const bool bf16_off = env_off("GKA_CUDA_STEP_D_BF16");
    const bool bf16 = !bf16_off && p.precision == Precision::mixed && p.in.k.dtype == DType::bf16 &&
                      p.in.v.dtype == DType::bf16 && gin.d_o.dtype == DType::bf16;
    // Hopper: warpgroup products (GKA_STEP_D_WG=0: the bf16 tiles on mma.sync, for A/B tests)
    static const bool wg_off = env_off("GKA_STEP_D_WG");
    const bool wg = D == 128 && bf16 && a.sched.wgmma && !wg_off && p.in.q.dtype == DType::bf16 &&
                    wg_rows_aligned(p.in.q, 16) && wg_rows_aligned(p.in.k, 16) && wg_rows_aligned(p.in.v, 16) &&
                    wg_rows_aligned(gin.d_o, 16);
    if (wg)
      step_d_wg_launch(grid, stream, items.get(), a);  // (D)
    else
      step_d_launch<D>(grid, stream, items.get(), a, bf16, kx);
  }
}

void chunk_backward(const Problem& p, const BackwardInputs& gin, const Gradients& gout) {
  supported_check(p, "gka::chunk_backward (cuda)", true);
  if (p.D == 64)
    backward_run<64>(p, gin, gout);
  else
    backward_run<128>(p, gin, gout);
}

}  // namespace gka::cuda
