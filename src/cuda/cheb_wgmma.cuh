// Chebyshev iterations on Hopper warpgroup products (wgmma, sm_90a): the whole solve with Precision::mixed on
// Hopper (common.cuh, SolveSchedule). Warpgroup wg owns columns [wg D/2, wg D/2 + D/2) of the iterate; each
// iteration it runs
//   S = X Kᵀ (all C columns: both warpgroups form the full scores, so P never leaves registers),
//   Y = X H̄ᵀ (its columns), then Y = diag(e^G) Y + P K with P = S ⊙ M packed straight into A registers,
// X read from a swizzled shared tile. The only barrier of an iteration follows the store of the new iterate; two X
// buffers alternate so that a warpgroup may store the next iterate while the other still reads the current one.
//
// Operands are bf16 pairs: v = hi + lo with hi = bf16(v), lo = bf16(v - hi) (16 significant bits). An
// iteration runs either one product per term (hi hi: bf16 rounding, ~2^-9 relative) or three (lo hi + hi lo +
// hi hi, lo lo dropped: ~2^-16), at the bf16 tensor rate. The iteration damps the rounding of earlier
// iterations, so the schedule (common.cuh, SolveSchedule) ends on accurate ones. Where k is bf16 its lo tile is
// zero, so the accurate iterations skip the hi lo term of S = X Kᵀ and P K (the same sums, bitwise).
//
// The swizzled tiles overlay the padded tiles of ChunkSmem for the duration of the solve. On exit,
// x is in s.X, the right-hand side in s.V and the mask in s.M (padded, exactly); s.H and s.K are lost (the
// caller reloads them).
#pragma once

#include <cstddef>

#include "cuda/chunk_tile.cuh"
#include "cuda/wgmma.cuh"

namespace gka::cuda {

// Byte offsets inside ChunkSmem: the bf16 tiles, each a hi tile followed by its lo tile: H̄ (D x D) and the
// two X buffers (C x D) from the start, K (C x D) from the V tile on; then the right-hand side in fp32, each
// thread's D / 4 values as float4s at RHS + 16 (kThreads j + thread). The small per-row arrays from G on are
// never touched.
template <int D>
struct WgTiles {
  static constexpr int C = kChunkMax;
  static constexpr uint32_t H = 0, X0 = D * D * 4, X1 = X0 + C * D * 4;
  static constexpr uint32_t K = (offsetof(ChunkSmem<D>, V) + 1023) / 1024 * 1024, RHS = K + C * D * 4;
  static_assert(X1 + C * D * 4 <= K && RHS + kThreads * D <= offsetof(ChunkSmem<D>, G),
                "wgmma tiles overflow ChunkSmem");
};

// Writes v0, v1 as hi/lo at byte offset off of a hi tile at p whose lo tile follows lo bytes later.
__device__ __forceinline__ void put_pair_at(char* p, uint32_t off, uint32_t lo, float v0, float v1) {
  const __nv_bfloat162 hi = __floats2bfloat162_rn(v0, v1);
  const float2 h = __bfloat1622float2(hi);
  *reinterpret_cast<__nv_bfloat162*>(p + off) = hi;
  *reinterpret_cast<__nv_bfloat162*>(p + lo + off) = __floats2bfloat162_rn(v0 - h.x, v1 - h.y);
}
// Writes v0, v1 (columns k, k + 1, k even) as hi/lo into the R x Kc tile at byte offset `tile`.
__device__ __forceinline__ void put_pair(char* sb, uint32_t tile, int R, int Kc, int r, int k, float v0, float v1) {
  put_pair_at(sb + tile, sw128_bf16(R, r, k), R * Kc * 2, v0, v1);
}
// Product terms: 1 = hi hi; 2 = lo hi + hi hi (B exact in bf16: its lo tile is zero); 3 = lo hi + hi lo + hi hi.
// A template argument: a branch between two products of a chain makes ptxas wait for each before the next.
//
// acc = A Bᵀ-tile product over Kc columns: A the 64 x Kc tile at a, B rows [rb0, rb0 + N) of the Rb x Kc tile
// at b (shared addresses).
template <int N, int TERMS>
__device__ __forceinline__ void wg_product(float (&acc)[N / 2], uint32_t a, uint32_t b, int Rb, int rb0, int Kc) {
  constexpr int C = kChunkMax;
  // Four base descriptors; each step's is one add away (desc_plus): the issue stream is the product's bound.
  const uint64_t da = sw128_desc(a), dalo = sw128_desc(a + C * Kc * 2);
  const uint64_t db = sw128_desc_bf16_at(b, Rb, rb0, 0), dblo = sw128_desc_bf16_at(b + Rb * Kc * 2, Rb, rb0, 0);
#pragma unroll
  for (int k = 0; k < Kc; k += 16) {
    const int first = k == 0 ? 0 : 1;
    const uint32_t oa = (k >> 6) * (C * 128) + (k & 63) * 2, ob = (k >> 6) * (Rb * 128) + (k & 63) * 2;
    if constexpr (TERMS == 1) {
      wgmma_bf16<N>(acc, desc_plus(da, oa), desc_plus(db, ob), first);
    } else {
      wgmma_bf16<N>(acc, desc_plus(dalo, oa), desc_plus(db, ob), first);
      if constexpr (TERMS == 3) wgmma_bf16<N>(acc, desc_plus(da, oa), desc_plus(dblo, ob), 1);
      wgmma_bf16<N>(acc, desc_plus(da, oa), desc_plus(db, ob), 1);
    }
  }
}

// acc += P B over the C columns of P: P in A registers (hi, and lo for TERMS > 1; k-step k in [k][0..3]), B
// columns [n0, n0 + N) of the C x Kc tile at b, read MN-major (the K tile serves both S = X Kᵀ and P K).
template <int N, int TERMS>
__device__ __forceinline__ void wg_product_rs(float (&acc)[N / 2], const uint32_t (&ph)[kChunkMax / 16][4],
                                              const uint32_t (&pl)[kChunkMax / 16][4], uint32_t b, int Kc, int n0) {
  constexpr int C = kChunkMax;
  const uint64_t db = sw128_desc_mn_at(b, C, 0, n0), dblo = sw128_desc_mn_at(b + C * Kc * 2, C, 0, n0);
#pragma unroll
  for (int k = 0; k < C / 16; ++k) {
    if constexpr (TERMS > 1) wgmma_bf16_rs<N>(acc, pl[k], desc_plus(db, 16 * k * 128), 1);
    if constexpr (TERMS == 3) wgmma_bf16_rs<N>(acc, ph[k], desc_plus(dblo, 16 * k * 128), 1);
    wgmma_bf16_rs<N>(acc, ph[k], desc_plus(db, 16 * k * 128), 1);
  }
}

// Moves a padded ROWS x D fp32 tile (ld LD) through registers: every thread reads its 16-byte pieces, the block
// syncs (the destination may overlap the source), then put(r, c, v) writes each (columns c .. c + 3 of row r).
template <int D, int ROWS, class Put>
__device__ __forceinline__ void padded_move(const float* src, Put&& put) {
  constexpr int PER = ROWS * D / 4 / kThreads;
  float4 v[PER];
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int idx = threadIdx.x + kThreads * i;
    v[i] = *reinterpret_cast<const float4*>(src + (idx / (D / 4)) * Cfg<D>::LD + (idx % (D / 4)) * 4);
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < PER; ++i) {
    const int idx = threadIdx.x + kThreads * i;
    put(idx / (D / 4), (idx % (D / 4)) * 4, v[i]);
  }
}

// Position of this thread in the warpgroup accumulators: rows r0, r0 + 8; Y columns yc + 8 j (+ 1),
// S columns 8 j + 2 t (+ 1).
struct WgThread {
  int wg, r0, r1, yc, sc;
  template <int D>
  __device__ static WgThread make() {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, wi = (threadIdx.x >> 5) & 3;
    WgThread w;
    w.wg = threadIdx.x >> 7;
    w.r0 = 16 * wi + g;
    w.r1 = w.r0 + 8;
    w.yc = w.wg * (D / 2) + 2 * t;
    w.sc = 2 * t;
    return w;
  }
  // v = this thread's accumulator pair at column c (c, c + 1 of rows r0, then r1) of a padded tile, and back.
  __device__ void load(const float* t, int ld, int c, float (&v)[4]) const {
    v[0] = t[r0 * ld + c];
    v[1] = t[r0 * ld + c + 1];
    v[2] = t[r1 * ld + c];
    v[3] = t[r1 * ld + c + 1];
  }
  __device__ void store(float* t, int ld, int c, const float (&v)[4]) const {
    *reinterpret_cast<float2*>(t + r0 * ld + c) = make_float2(v[0], v[1]);
    *reinterpret_cast<float2*>(t + r1 * ld + c) = make_float2(v[2], v[3]);
  }
};

// Runs iterations [0, iters) of cheb_solve's loop from x_0 = diag(eta) rhs (the right-hand side in s.X, the mask
// in s.M, H̄ already transposed for the adjoint), one product term for it < three_from, three after (two for
// the products with K where k_bf16: the K tile is exact). Leaves x_iters in s.X, the right-hand side in s.V, the
// mask in s.M. Needs kThreads = 256.
template <int D>
__device__ void cheb_wgmma(ChunkSmem<D>& s, const float* omega, int iters, int three_from, bool k_bf16) {
  using F = Cfg<D>;
  using T = WgTiles<D>;
  constexpr int C = F::C, LD = F::LD, LC = F::LC, NY = D / 16, NS = C / 8;
  char* sb = reinterpret_cast<char*>(&s);
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(&s));
  if (base & 1023u) __trap();  // the swizzle needs 1024-byte aligned tiles (the kernels align smem_raw)
  const WgThread w = WgThread::make<D>();
  const float eta0 = s.eta[w.r0], eta1 = s.eta[w.r1], el0 = eta0 * s.lam[w.r0], el1 = eta1 * s.lam[w.r1];
  const float eg0 = s.eG[w.r0], eg1 = s.eG[w.r1];
  float rhs[NY][4], xc[NY][4], xp[NY][4], mk[NS][4];
#pragma unroll
  for (int j = 0; j < NY; ++j) {
    w.load(s.X, LD, w.yc + 8 * j, rhs[j]);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      xc[j][e] = (e < 2 ? eta0 : eta1) * rhs[j][e];
      xp[j][e] = 0.f;
    }
  }
#pragma unroll
  for (int j = 0; j < NS; ++j) w.load(s.M, LC, w.sc + 8 * j, mk[j]);
  // K -> its tile (the V area), then H̄ -> its tile, x_0 -> X0 (over the padded H̄/K) and the right-hand side
  // -> RHS (over the padded V/P/M).
  padded_move<D, C>(s.K, [&](int r, int c, float4 v) {
    put_pair(sb, T::K, C, D, r, c, v.x, v.y);
    put_pair(sb, T::K, C, D, r, c + 2, v.z, v.w);
  });
  padded_move<D, D>(s.H, [&](int r, int c, float4 v) {
    put_pair(sb, T::H, D, D, r, c, v.x, v.y);
    put_pair(sb, T::H, D, D, r, c + 2, v.z, v.w);
  });
  float4* rhs_s = reinterpret_cast<float4*>(sb + T::RHS) + threadIdx.x;
#pragma unroll
  for (int j = 0; j < NY; ++j) rhs_s[kThreads * j] = make_float4(rhs[j][0], rhs[j][1], rhs[j][2], rhs[j][3]);
  // This thread's X pieces sit at xo ^ (j << 4) (rows r0, r1; n8 block j): columns yc + 8 j stay in one
  // 64-column block, and j only flips 16-byte-chunk bits that (yc / 8) % 8 leaves clear (0 for D = 128, 4 wg
  // for D = 64). Computed once: the general swizzle per store cost ~190 integer instructions per iteration.
  const uint32_t xo0 = sw128_bf16(C, w.r0, w.yc), xo1 = sw128_bf16(C, w.r1, w.yc);
  auto store_x = [&](uint32_t tile) {
#pragma unroll
    for (int j = 0; j < NY; ++j) {
      put_pair_at(sb + tile, xo0 ^ (j << 4), C * D * 2, xc[j][0], xc[j][1]);
      put_pair_at(sb + tile, xo1 ^ (j << 4), C * D * 2, xc[j][2], xc[j][3]);
    }
    fence_async_smem();
    __syncthreads();
  };
  store_x(T::X0);

  float S[NS * 4], Y[NY * 4];
  uint32_t ph[C / 16][4], pl[C / 16][4];
  // Y = diag(e^G) X H̄ᵀ + (S ⊙ M) K for the iterate in tile xt; KT terms for the products with K (1, 2 or 3),
  // one for X H̄ᵀ where KT = 1 and three otherwise.
  auto products = [&]<int KT>(uint32_t b, uint32_t xt) {
    wgmma_fence();
    wg_product<C, KT>(S, xt, b + T::K, C, 0, D);
    wgmma_commit();
    wg_product<D / 2, KT == 1 ? 1 : 3>(Y, xt, b + T::H, D, w.wg * (D / 2), D);
    wgmma_commit();
    wgmma_wait<1>();
    fence_regs(S);
    // P = S ⊙ M as the A registers of P K: k-step k takes n8 blocks 2k (a[0], a[1]) and 2k + 1 (a[2], a[3]).
#pragma unroll
    for (int k = 0; k < C / 16; ++k)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int j = 2 * k + (i >> 1), e = (i & 1) * 2;
        const float v0 = S[4 * j + e] * mk[j][e], v1 = S[4 * j + e + 1] * mk[j][e + 1];
        const __nv_bfloat162 hi = __floats2bfloat162_rn(v0, v1);
        ph[k][i] = *reinterpret_cast<const uint32_t*>(&hi);
        if constexpr (KT > 1) {
          const float2 h = __bfloat1622float2(hi);
          const __nv_bfloat162 lo = __floats2bfloat162_rn(v0 - h.x, v1 - h.y);
          pl[k][i] = *reinterpret_cast<const uint32_t*>(&lo);
        }
      }
    wgmma_wait<0>();
    fence_regs(Y);
#pragma unroll
    for (int j = 0; j < NY; ++j) {
      Y[4 * j] *= eg0;
      Y[4 * j + 1] *= eg0;
      Y[4 * j + 2] *= eg1;
      Y[4 * j + 3] *= eg1;
    }
    wgmma_fence();
    wg_product_rs<D / 2, KT>(Y, ph, pl, b + T::K, D, w.wg * (D / 2));
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(Y);
  };
  for (int it = 0; it < iters; ++it) {
    // The descriptors are loop-invariant: hoisted, they would take over 100 registers. An opaque base keeps
    // each one an add next to its use.
    uint32_t b = base;
    asm volatile("" : "+r"(b));
    const uint32_t xt = b + ((it & 1) ? T::X1 : T::X0);
    if (it < three_from)
      products.template operator()<1>(b, xt);
    else if (k_bf16)
      products.template operator()<2>(b, xt);
    else
      products.template operator()<3>(b, xt);
    const float om = omega[it], w1 = 1.f - om;
    const float a0 = om * (1.f - el0), a1 = om * (1.f - el1), q0 = om * eta0, q1 = om * eta1;
#pragma unroll
    for (int j = 0; j < NY; ++j) {
      const float4 r4 = rhs_s[kThreads * j];
      const float rj[4] = {r4.x, r4.y, r4.z, r4.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float xn = (e < 2 ? a0 : a1) * xc[j][e] + (e < 2 ? q0 : q1) * (rj[e] - Y[4 * j + e]) + w1 * xp[j][e];
        xp[j][e] = xc[j][e];
        xc[j][e] = xn;
      }
    }
    if (it + 1 < iters) store_x((it & 1) ? T::X0 : T::X1);  // its barrier: the only one of the iteration
  }

  // x, the right-hand side and the mask back into their padded tiles, once nobody reads the swizzled ones.
  __syncthreads();
#pragma unroll
  for (int j = 0; j < NY; ++j) {
    const float4 r4 = rhs_s[kThreads * j];
    rhs[j][0] = r4.x;
    rhs[j][1] = r4.y;
    rhs[j][2] = r4.z;
    rhs[j][3] = r4.w;
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < NY; ++j) {
    w.store(s.X, LD, w.yc + 8 * j, xc[j]);
    w.store(s.V, LD, w.yc + 8 * j, rhs[j]);
  }
  if (w.wg == 0) {  // both warpgroups hold the whole mask
#pragma unroll
    for (int j = 0; j < NS; ++j) w.store(s.M, LC, w.sc + 8 * j, mk[j]);
  }
  __syncthreads();
}

}  // namespace gka::cuda
