// The Chebyshev solver of the chunk kernels (spec §A.3): iterations on mma.sync (chunk_tile.cuh's op_mma) or,
// for the mixed schedule on Hopper, on warpgroup products (cheb_wgmma.cuh).
#pragma once

#include "cuda/cheb_wgmma.cuh"
#include "cuda/chunk_tile.cuh"

namespace gka::cuda {

// Chebyshev iteration (spec §A.3) on all rows: (H_i + lambda_i I) x_i = rhs_i with f from s.f. The result
// is returned in x. The schedule (common.cuh) says where the iterations run: all on warpgroup products
// (cheb_wgmma.cuh; after them `reload` brings back from global memory what the caller reads next of s.K and
// s.H, untransposed), or all here on mma.sync (op_mma) with plain tf32 products before sched.one_term and 3xTF32
// after (the iteration damps the earlier rounding). Here the iterate lives in registers in the warp-tile layout
// of SolveWarp and in s.X (one buffer: the scores are formed before the update overwrites it); P holds the
// scores, V the right-hand side. Uses X, V, P; leaves the result in s.X (ld LD) too. Inlined by force: a wgmma
// chain across a call is serialized (C7510), and with v16's solve the compiler stopped inlining it on its own.
template <int D, bool KX, class Reload>
__device__ __forceinline__ void cheb_solve(ChunkSmem<D>& s, int n, const ChebConst& cc, const float* omega,
                                           const Regs<D>& rhs, bool adjoint, Regs<D>& x, const SolveSchedule& sched,
                                           Reload&& reload) {
  using F = Cfg<D>;
  constexpr int NT = D / 16, LD = F::LD;
  if (threadIdx.x < F::C) {
    const int i = threadIdx.x;
    const float f = s.f[i];
    s.eta[i] = i < n && f > 0.f ? cc.eta_f / f : 0.f;  // H = 0: x stays 0 (docs/algorithm.md)
    s.lam[i] = i < n ? cc.r * f : 0.f;
  }
  regs_to_smem<D>(rhs, s.X);
  if (adjoint) {
    __syncthreads();
    square_transpose<D>(s.H);
  }
  __syncthreads();
  if (sched.wgmma) {  // every iteration on warpgroup products; x comes back in s.X, s.H and s.K by reload
    cheb_wgmma<D, KX>(s, omega, cc.n, sched.one_term, sched.k_bf16);
    reload();
    __syncthreads();
    regs_from_smem<D>(x, s.X);
    __syncthreads();
    return;
  }
  const SolveWarp w;
  const int r0 = 16 * w.rb + w.g, r1 = r0 + 8, cb = w.ch * (D / 2) + 2 * w.t;
  const float eta0 = s.eta[r0], eta1 = s.eta[r1], el0 = eta0 * s.lam[r0], el1 = eta1 * s.lam[r1];
  // The right-hand side stays in s.V (same positions as the iterate in s.X): it is read once per iteration,
  // and keeping it out of registers leaves room for the fragment pipeline.
  float xc[NT][4], xp[NT][4], mk[4][4];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    float* p0 = s.X + r0 * LD + cb + 8 * j;
    float* p1 = s.X + r1 * LD + cb + 8 * j;
    float* v0 = s.V + r0 * LD + cb + 8 * j;
    float* v1 = s.V + r1 * LD + cb + 8 * j;
    const float b[4] = {p0[0], p0[1], p1[0], p1[1]};
    v0[0] = b[0];
    v0[1] = b[1];
    v1[0] = b[2];
    v1[1] = b[3];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      xc[j][e] = (e < 2 ? eta0 : eta1) * b[e];
      xp[j][e] = 0.f;
    }
    p0[0] = xc[j][0];
    p0[1] = xc[j][1];
    p1[0] = xc[j][2];
    p1[1] = xc[j][3];
  }
  mask_frag<D>(s.M, w, mk);
  __syncthreads();
  for (int it = 0; it < cc.n; ++it) {
    float hx[NT][4];
    if (it >= sched.one_term)
      op_mma<D, true, true, KX>(s, w, mk, hx);
    else
      op_mma<D, false>(s, w, mk, hx);
    const float om = omega[it], w1 = 1.f - om;
    const float a0 = om * (1.f - el0), a1 = om * (1.f - el1), q0 = om * eta0, q1 = om * eta1;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const float* v0 = s.V + r0 * LD + cb + 8 * j;
      const float* v1 = s.V + r1 * LD + cb + 8 * j;
      const float b[4] = {v0[0], v0[1], v1[0], v1[1]};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float a = e < 2 ? a0 : a1, bq = e < 2 ? q0 : q1;
        const float xn = a * xc[j][e] + bq * (b[e] - hx[j][e]) + w1 * xp[j][e];
        xp[j][e] = xc[j][e];
        xc[j][e] = xn;
      }
      float* p0 = s.X + r0 * LD + cb + 8 * j;
      float* p1 = s.X + r1 * LD + cb + 8 * j;
      p0[0] = xc[j][0];
      p0[1] = xc[j][1];
      p1[0] = xc[j][2];
      p1[1] = xc[j][3];
    }
    __syncthreads();
  }
  if (adjoint) square_transpose<D>(s.H);
  regs_from_smem<D>(x, s.X);
  __syncthreads();
}

}  // namespace gka::cuda
