// Chebyshev iterations on Hopper warpgroup products (wgmma, sm_90a): the whole solve with Precision::mixed on
// Hopper (common.cuh, SolveSchedule). Warpgroup wg owns columns [wg D/2, wg D/2 + D/2) of the iterate; each
// iteration it runs
//   S = X Kᵀ (its half of the C score columns), Y = X H̄ᵀ (its columns), then Y = diag(e^G) Y + P K with
//   P = S ⊙ M: its own half packed straight into A registers, the other warpgroup's half read from a shared
//   tile that each warpgroup writes its half to (v15; before, both formed the full scores: 20 % more products),
// X read from a swizzled shared tile. In the loop the warpgroups meet only by named barriers (the switch to the
// offset form aside): each stores its half of the new iterate and signals it, starts both chains on that
// half (k over its own columns) and waits for the other's half only before the rest of them, so one warpgroup's
// products run while the other updates (v13). Two X buffers alternate: a warpgroup overwrites a buffer two
// iterations later, after its products of the iteration in between, which needed the other's half, stored after
// the other had finished reading that buffer.
//
// The schedule (v16; lead = SolveSchedule::one_term, 2N/5): products in scaled f16, one term each (~2^-12
// relative like tf32, where one bf16 term rounds to ~2^-9), on x_0 .. x_{lead-1}; one accurate iteration on
// x_lead in f16 pairs (v = hi + lo, ~2^-22; three products per term, lo lo dropped; two where k is 16-bit, which
// is exact in one f16 term); then the offset form: the accurate residual rho = rhs - (H + lambda) x_lead is kept,
// and the iterations after it run on z = x - x_lead, whose residual is rho - (H + lambda) z: one f16 term again,
// rounding relative to |z|, which the lead has already shrunk (x_lead is the accurate product's operand, hi + lo,
// so the product count stays N). v15 ran the last 10 iterations on bf16 pairs, each costing 2.35 one-term ones.
// Measured (bench/RESULTS.md, session 13): o and the gradients got more accurate (dalpha 1.6e-3 -> 6.3e-4), x
// less (5.2e-5 -> 2.7e-4): along directions orthogonal to the keys H + lambda I acts as lambda, and rounding z
// misplaces k . z by ~2^-11 |k| |z|, an error up to kappa = 1 + 1/r times larger than lambda z; o = S q~ reads
// x only along the keys.
// Scales, all powers of two: each row of X one that puts x_0's row norm under 2^-3.5 (from the row's largest
// element), K one that brings its rows' norms under 1, H̄ one that brings its largest element under 2^14. The
// iterate grows at most ~2 / (eta lambda) over x_0 (z less), so no operand nor P = S ⊙ M can overflow f16 for the
// whole solve (small elements may go subnormal: an absolute error below 2^-24 of their row's or tile's scale).
// The scales are undone in fp32: H̄'s and K's in e^G (after X H̄ᵀ), the rest per row in the update. A chunk whose
// magnitudes fall outside those ranges (extreme scales, eta lambda < 2^-12, a mask entry above 32, NaN or Inf)
// runs every iteration accurately on bf16 pairs (lo = bf16(v - hi): ~2^-16) instead.
//
// The swizzled tiles overlay the padded tiles of ChunkSmem for the duration of the solve. On exit,
// x is in s.X, the right-hand side in s.V and the mask in s.M (padded, exactly); s.H and s.K are lost (the
// caller reloads them).
#pragma once

#include <cstddef>

#include "cuda/chunk_tile.cuh"
#include "cuda/wgmma.cuh"

namespace gka::cuda {

// Byte offsets inside ChunkSmem: the 16-bit tiles, each a hi tile followed by its lo tile: H̄ (D x D) and the
// two X buffers (C x D) from the start, K (C x D) from the V tile on; then the right-hand side in fp32, each
// thread's D / 4 values as float4s at RHS + 16 (kThreads j + thread). The small per-row arrays from G on are
// never touched. The scores P (C x C) go past the end of ChunkSmem: kernels that solve allocate kSmem bytes.
// The offset form's rho_m (as the right-hand side) takes H̄'s lo tile, which only the accurate iteration reads,
// where it fits (D >= 2C), else room past P.
template <int D>
struct WgTiles {
  static constexpr int C = kChunkMax;
  static constexpr uint32_t H = 0, X0 = D * D * 4, X1 = X0 + C * D * 4;
  static constexpr uint32_t K = (offsetof(ChunkSmem<D>, V) + 1023) / 1024 * 1024, RHS = K + C * D * 4;
  static constexpr uint32_t P = (sizeof(ChunkSmem<D>) + 1023) / 1024 * 1024, PEnd = P + C * C * 4;
  static constexpr uint32_t RHO = D * D * 2 >= C * D * 4 ? H + D * D * 2 : PEnd;
  static constexpr uint32_t kSmem = RHO == PEnd ? PEnd + C * D * 4 : PEnd;
  static_assert(X1 + C * D * 4 <= K && RHS + kThreads * D <= offsetof(ChunkSmem<D>, G),
                "wgmma tiles overflow ChunkSmem");
};
// Dynamic shared memory of a chunk kernel that runs the solve (either path: the host does not tell them apart).
template <int D>
constexpr size_t solve_smem_bytes() {
  return WgTiles<D>::kSmem;
}

// Writes v0, v1 as hi/lo at byte offset off of a hi tile at p whose lo tile follows lo bytes later.
__device__ __forceinline__ void put_pair_at(char* p, uint32_t off, uint32_t lo, float v0, float v1) {
  uint32_t h, l;
  bf16_pair(v0, v1, h, l);
  *reinterpret_cast<uint32_t*>(p + off) = h;
  *reinterpret_cast<uint32_t*>(p + lo + off) = l;
}
// The value of an f16 hi/lo word pair: element e (0, 1).
__device__ __forceinline__ float f16_pair_value(uint32_t hi, uint32_t lo, int e) {
  __half2 h, l;
  memcpy(&h, &hi, 4);
  memcpy(&l, &lo, 4);
  const float2 fh = __half22float2(h), fl = __half22float2(l);
  return e ? fh.y + fl.y : fh.x + fl.x;
}
__device__ __forceinline__ void put_f16_pair_at(char* p, uint32_t off, uint32_t lo, float v0, float v1) {
  uint32_t h, l;
  f16_pair(v0, v1, h, l);
  *reinterpret_cast<uint32_t*>(p + off) = h;
  *reinterpret_cast<uint32_t*>(p + lo + off) = l;
}
// Writes v0, v1 (columns k, k + 1, k even) as hi/lo into the R x Kc tile at byte offset `tile`: bf16 pairs, or f16
// pairs of (v0, v1) * scale where F16.
template <bool F16 = false>
__device__ __forceinline__ void put_pair(char* sb, uint32_t tile, int R, int Kc, int r, int k, float v0, float v1,
                                         float scale = 1.f) {
  if constexpr (F16)
    put_f16_pair_at(sb + tile, sw128_bf16(R, r, k), R * Kc * 2, v0 * scale, v1 * scale);
  else
    put_pair_at(sb + tile, sw128_bf16(R, r, k), R * Kc * 2, v0, v1);
}
// Product terms: 1 = hi hi; 2 = lo hi + hi hi (B exact in one term: k in bf16); 3 = lo hi + hi lo + hi hi. F16:
// f16 tiles (else bf16). Template arguments: a branch between two products of a chain makes ptxas wait for each
// before the next.
//
// acc (+)= A Bᵀ-tile product over columns [k0, k0 + KN) of Kc: A the 64 x Kc tile at a, B rows [rb0, rb0 + N) of
// the Rb x Kc tile at b (shared addresses); FIRST overwrites acc. Either k0 = 0 or the range stays inside one
// 64-column block (the split iteration's halves).
template <int N, int TERMS, bool F16, int KN, bool FIRST>
__device__ __forceinline__ void wg_product(float (&acc)[N / 2], uint32_t a, uint32_t b, int Rb, int rb0, int Kc,
                                           int k0) {
  constexpr int C = kChunkMax;
  a += (k0 >> 6) * (C * 128) + (k0 & 63) * 2;
  b += (k0 >> 6) * (Rb * 128) + (k0 & 63) * 2;
  // Four base descriptors; each step's is one add away (desc_plus): the issue stream is the product's bound.
  const uint64_t da = sw128_desc(a), dalo = sw128_desc(a + C * Kc * 2);
  const uint64_t db = sw128_desc_bf16_at(b, Rb, rb0, 0), dblo = sw128_desc_bf16_at(b + Rb * Kc * 2, Rb, rb0, 0);
#pragma unroll
  for (int k = 0; k < KN; k += 16) {
    const int first = FIRST && k == 0 ? 0 : 1;
    const uint32_t oa = (k >> 6) * (C * 128) + (k & 63) * 2, ob = (k >> 6) * (Rb * 128) + (k & 63) * 2;
    if constexpr (TERMS == 1) {
      wgmma<N, F16>(acc, desc_plus(da, oa), desc_plus(db, ob), first);
    } else {
      wgmma<N, F16>(acc, desc_plus(dalo, oa), desc_plus(db, ob), first);
      if constexpr (TERMS == 3) wgmma<N, F16>(acc, desc_plus(da, oa), desc_plus(dblo, ob), 1);
      wgmma<N, F16>(acc, desc_plus(da, oa), desc_plus(db, ob), 1);
    }
  }
}

// acc = A Bᵀ-tile product over columns [k0, k0 + 16 KS) of Kc with A from registers (hi in ah, lo in al; k-step k
// in [k][0..3]), B rows [rb0, rb0 + N) of the Rb x Kc tile at b (K-major), inside one 64-column block.
template <int N, int TERMS, bool F16, int KS>
__device__ __forceinline__ void wg_product_ra(float (&acc)[N / 2], const uint32_t (&ah)[KS][4],
                                              const uint32_t (&al)[KS][4], uint32_t b, int Rb, int rb0, int Kc,
                                              int k0) {
  b += (k0 >> 6) * (Rb * 128) + (k0 & 63) * 2;
  const uint64_t db = sw128_desc_bf16_at(b, Rb, rb0, 0), dblo = sw128_desc_bf16_at(b + Rb * Kc * 2, Rb, rb0, 0);
#pragma unroll
  for (int k = 0; k < KS; ++k) {
    const int first = k == 0 ? 0 : 1;
    const uint32_t ob = 32 * k;
    if constexpr (TERMS == 1) {
      wgmma<N, F16, 0>(acc, ah[k], desc_plus(db, ob), first);
    } else {
      wgmma<N, F16, 0>(acc, al[k], desc_plus(db, ob), first);
      if constexpr (TERMS == 3) wgmma<N, F16, 0>(acc, ah[k], desc_plus(dblo, ob), 1);
      wgmma<N, F16, 0>(acc, ah[k], desc_plus(db, ob), 1);
    }
  }
}

// Named barriers of the solve (0 is __syncthreads): kHalfStored + wg, warpgroup wg's half of the next iterate is
// in shared memory (its 128 threads arrive, the other warpgroup's wait); kOwnStored + wg, the same for wg's own
// products (a 128-thread sync); kPStored + wg: wg's half of the scores P is in shared memory (as kHalfStored).
constexpr int kHalfStored = 1, kOwnStored = 3, kPStored = 5;
__device__ __forceinline__ void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// acc += P B over KS k-steps of 16 of P's columns from k-step k0 on: B rows [16 k0, 16 (k0 + KS)) x columns
// [n0, n0 + N) of the C x Kc tile at b, read MN-major (the K tile serves both S = X Kᵀ and P K). P in A registers
// (hi, and lo for TERMS > 1; k-step k0 + k in [k][0..3]), or where SMEM_A from the C x C tile at p (hi, then lo
// C * C * 2 bytes on).
template <int N, int TERMS, bool F16, int KS, bool SMEM_A>
__device__ __forceinline__ void wg_product_p(float (&acc)[N / 2], const uint32_t (&ph)[KS][4],
                                             const uint32_t (&pl)[KS][4], uint32_t p, uint32_t b, int Kc, int n0,
                                             int k0) {
  constexpr int C = kChunkMax;
  const uint64_t db = sw128_desc_mn_at(b, C, 16 * k0, n0), dblo = sw128_desc_mn_at(b + C * Kc * 2, C, 16 * k0, n0);
  const uint64_t dp = sw128_desc(p + 32 * k0), dplo = sw128_desc(p + C * C * 2 + 32 * k0);
#pragma unroll
  for (int k = 0; k < KS; ++k) {
    const uint32_t ob = 16 * k * 128, op = 32 * k;
    if constexpr (!SMEM_A) {
      if constexpr (TERMS > 1) wgmma<N, F16>(acc, pl[k], desc_plus(db, ob), 1);
      if constexpr (TERMS == 3) wgmma<N, F16>(acc, ph[k], desc_plus(dblo, ob), 1);
      wgmma<N, F16>(acc, ph[k], desc_plus(db, ob), 1);
    } else {
      if constexpr (TERMS > 1) wgmma<N, F16, 1>(acc, desc_plus(dplo, op), desc_plus(db, ob), 1);
      if constexpr (TERMS == 3) wgmma<N, F16, 1>(acc, desc_plus(dp, op), desc_plus(dblo, ob), 1);
      wgmma<N, F16, 1>(acc, desc_plus(dp, op), desc_plus(db, ob), 1);
    }
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

// Per-CTA scales of the f16 one-term iterations (the header): sigma_K = 2^ek, sigma_H = 2^eh, and per row the
// scale of the iterate sx and the factor that undoes the scales of Y, ux = 1 / (sx sigma_K²); Y ← Y * uy after
// X H̄ᵀ (folded into e^G, uy = sigma_K² / sigma_H) brings its H̄ part to K's scale. Kept in shared memory
// (F16Slots: every register counts in the solve loop).
struct F16Slots {
  static constexpr int SX = 0, UX = kChunkMax;       // in s.rowp, by row
  static constexpr int UY = 16;                       // in s.red
};
struct F16Build {
  float sk, sh;  // sigma_K, sigma_H
  bool ok;       // false where the chunk's magnitudes leave f16's range: then every iteration is accurate
};

// Block-wide: every thread calls it (two barriers; the slots are written after the second, read after the next
// barrier). xm0, xm1: this thread's largest |x_0| in rows r0, r1 (a maximum: squares of tiny rows underflow);
// el0, el1 = eta lambda of those rows (the iterate grows at most ~2 / (eta lambda) over x_0); mmax: the largest
// mask entry this thread holds (above 1 only for positive log-gates; it scales P = S ⊙ M); xsum: the sum of its
// x_0 and mask values (finite or not: fmaxf drops NaN).
template <int D>
__device__ F16Build f16_scales(ChunkSmem<D>& s, const WgThread& w, float xm0, float xm1, float el0, float el1,
                               float mmax, float xsum) {
  constexpr int C = kChunkMax, LD = Cfg<D>::LD;
  using SL = F16Slots;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float mk = 0.f, mh = 0.f;
  bool bad = !(mmax <= 32.f);  // |P| <= 2^10 max M below
  float sum = xsum;
  auto scan = [&](const float* t, int rows, float& m) {  // 16-byte loads
    for (int i = threadIdx.x; i < rows * D / 4; i += kThreads) {
      const float4 v = *reinterpret_cast<const float4*>(t + (i / (D / 4)) * LD + (i % (D / 4)) * 4);
      m = fmaxf(m, fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
      sum += (v.x + v.y) + (v.z + v.w);
    }
  };
  scan(s.K, C, mk);
  scan(s.H, D, mh);
  bad |= !isfinite(sum);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    mk = fmaxf(mk, __shfl_xor_sync(0xffffffffu, mk, o));
    mh = fmaxf(mh, __shfl_xor_sync(0xffffffffu, mh, o));
  }
#pragma unroll
  for (int o = 1; o < 4; o <<= 1) {  // the quad holds a row's columns of this warpgroup
    xm0 = fmaxf(xm0, __shfl_xor_sync(0xffffffffu, xm0, o));
    xm1 = fmaxf(xm1, __shfl_xor_sync(0xffffffffu, xm1, o));
  }
  if (lane == 0) {
    s.red[warp] = mk;
    s.red[8 + warp] = mh;
  }
  if ((lane & 3) == 0) {
    s.rowp[w.wg * C + w.r0] = xm0;
    s.rowp[w.wg * C + w.r1] = xm1;
  }
  __syncthreads();
  mk = 0.f;
  mh = 0.f;
  for (int i = 0; i < 8; ++i) {
    mk = fmaxf(mk, s.red[i]);
    mh = fmaxf(mh, s.red[8 + i]);
  }
  int e;
  const float kn = mk * sqrtf(static_cast<float>(D));
  frexpf(kn, &e);  // max row norm of K < 2^e
  const int ek = -e;
  // H̄ on its own scale (max |H̄| < 2^e: at most 2^14 after it): tied to sigma_K², a small H̄ went subnormal in
  // f16.
  frexpf(mh, &e);
  const int eh = 14 - e;
  bad |= !isfinite(kn) || !isfinite(mh) || abs(ek) > 60 || abs(eh) > 100 || abs(2 * ek - eh) > 100;
  const float xm[2] = {fmaxf(s.rowp[w.r0], s.rowp[C + w.r0]), fmaxf(s.rowp[w.r1], s.rowp[C + w.r1])};
  const float el[2] = {el0, el1};
  int ex[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    frexpf(xm[i], &e);  // max |x_0| < 2^e, so |x_0 row| < 2^(e + 3.5) (D <= 128)
    ex[i] = -7 - e;     // |row| < 2^-3.5 after scaling
    bad |= abs(ex[i] + 2 * ek) > 120 || (xm[i] > 0.f && !(el[i] >= 0x1p-12f));
  }
  F16Build f{ldexpf(1.f, ek), ldexpf(1.f, eh), !__syncthreads_or(bad)};
  if (w.wg == 0 && (lane & 3) == 0) {
    s.rowp[SL::SX + w.r0] = ldexpf(1.f, ex[0]);
    s.rowp[SL::SX + w.r1] = ldexpf(1.f, ex[1]);
    s.rowp[SL::UX + w.r0] = ldexpf(1.f, -ex[0] - 2 * ek);
    s.rowp[SL::UX + w.r1] = ldexpf(1.f, -ex[1] - 2 * ek);
  }
  if (threadIdx.x == 0) s.red[SL::UY] = ldexpf(1.f, 2 * ek - eh);
  return f;
}

// Runs iterations [0, iters) of cheb_solve's loop from x_0 = diag(eta) rhs (the right-hand side in s.X, the mask
// in s.M, H̄ already transposed for the adjoint): `lead` one-term f16 iterations, one on f16 pairs, the rest in the
// offset form (the header); where lead = 0 or the chunk leaves f16's range, all on bf16 pairs. Pairs take three
// terms, two for the products with K where k_bf16 (the K tile is exact). Leaves x_iters in s.X, the right-hand
// side in s.V, the mask in s.M. KX: k is 16-bit (exact in one f16 term). Needs kThreads = 256.
template <int D, bool KX>
__device__ __forceinline__ void cheb_wgmma(ChunkSmem<D>& s, const float* omega, int iters, int lead_iters,
                                           bool k_bf16) {
  using F = Cfg<D>;
  using T = WgTiles<D>;
  constexpr int C = F::C, LD = F::LD, LC = F::LC, NY = D / 16, NS = C / 16;  // NS: n8 blocks of the score half
  char* sb = reinterpret_cast<char*>(&s);
  const uint32_t base = smem_addr(&s);
  if (base & 1023u) __trap();  // the swizzle needs 1024-byte aligned tiles (the kernels align smem_raw)
  const WgThread w = WgThread::make<D>();
  const float eta0 = s.eta[w.r0], eta1 = s.eta[w.r1], el0 = eta0 * s.lam[w.r0], el1 = eta1 * s.lam[w.r1];
  const float eg0 = s.eG[w.r0], eg1 = s.eG[w.r1];
  float rhs[NY][4], xc[NY][4], xp[NY][4], mk[NS][4];
  const int pc = w.wg * (C / 2) + w.sc;  // this thread's first score column: warpgroup wg forms columns [wg C/2, ..)
  float xm0 = 0.f, xm1 = 0.f, xsum = 0.f, mmax = 0.f;
#pragma unroll
  for (int j = 0; j < NY; ++j) {
    w.load(s.X, LD, w.yc + 8 * j, rhs[j]);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      xc[j][e] = (e < 2 ? eta0 : eta1) * rhs[j][e];
      xp[j][e] = 0.f;
    }
    xm0 = fmaxf(xm0, fmaxf(fabsf(xc[j][0]), fabsf(xc[j][1])));
    xm1 = fmaxf(xm1, fmaxf(fabsf(xc[j][2]), fabsf(xc[j][3])));
    xsum += (xc[j][0] + xc[j][1]) + (xc[j][2] + xc[j][3]);
  }
#pragma unroll
  for (int j = 0; j < NS; ++j) {
    w.load(s.M, LC, pc + 8 * j, mk[j]);
    mmax = fmaxf(mmax, fmaxf(fmaxf(mk[j][0], mk[j][1]), fmaxf(mk[j][2], mk[j][3])));
    xsum += (mk[j][0] + mk[j][1]) + (mk[j][2] + mk[j][3]);
  }
  using SL = F16Slots;
  F16Build f{1.f, 1.f, false};
  if (lead_iters > 0) f = f16_scales<D>(s, w, xm0, xm1, el0, el1, mmax, xsum);
  const int lead = __shfl_sync(0xffffffffu, f.ok ? min(lead_iters, iters) : 0, 0);  // the f16 one-term iterations
  // The offset form runs iterations lead + 1 .. iters - 1 on z = x - x_lead (x_lead: hi + lo of the accurate
  // iteration's operand, which stays in its X buffer); z alternates between the hi and lo tiles of the other
  // buffer.
  const bool offset = lead > 0 && lead < iters;
  const uint32_t xm_tile = (lead & 1) ? T::X1 : T::X0;
  // K -> its tile (the V area), then H̄ -> its tile (f16 pairs where the solve starts on one-term iterations),
  // x_0 -> X0 (over the padded H̄/K) and the right-hand side -> RHS (over the padded V/P/M).
  auto build = [&]<bool F16>(float sk, float sh) {
    padded_move<D, C>(s.K, [&](int r, int c, float4 v) {
      put_pair<F16>(sb, T::K, C, D, r, c, v.x, v.y, sk);
      put_pair<F16>(sb, T::K, C, D, r, c + 2, v.z, v.w, sk);
    });
    padded_move<D, D>(s.H, [&](int r, int c, float4 v) {
      put_pair<F16>(sb, T::H, D, D, r, c, v.x, v.y, sh);
      put_pair<F16>(sb, T::H, D, D, r, c + 2, v.z, v.w, sh);
    });
  };
  if (lead > 0)
    build.template operator()<true>(f.sk, f.sh);
  else
    build.template operator()<false>(1.f, 1.f);
  float4* rhs_s = reinterpret_cast<float4*>(sb + T::RHS) + threadIdx.x;
  float4* rho_s = reinterpret_cast<float4*>(sb + T::RHO) + threadIdx.x;  // the offset form's right-hand side
#pragma unroll
  for (int j = 0; j < NY; ++j) rhs_s[kThreads * j] = make_float4(rhs[j][0], rhs[j][1], rhs[j][2], rhs[j][3]);
  // This thread's X pieces sit at xo ^ (j << 4) (rows r0, r1; n8 block j): columns yc + 8 j stay in one
  // 64-column block, and j only flips 16-byte-chunk bits that (yc / 8) % 8 leaves clear (0 for D = 128, 4 wg
  // for D = 64). Computed once: the general swizzle per store cost ~190 integer instructions per iteration.
  // Row r1 = r0 + 8 sits 1024 bytes further, same swizzle phase.
  const uint32_t xo0 = sw128_bf16(C, w.r0, w.yc);
  // The same for its pieces of the P tile: columns pc + 8 j, j < 4, flip bits that (pc / 8) % 8 = 4 wg leaves clear.
  const uint32_t po0 = T::P + sw128_bf16(C, w.r0, pc);
  // Stores the iterate of iteration i: scaled f16, hi only (one-term) or hi and lo (the accurate iteration of
  // the f16 schedule), or bf16 pairs (lead = 0). Then this warpgroup's half is ready for its own products and, by
  // arrival, for the other warpgroup's. The stored values also stay in registers as the A fragments of this
  // warpgroup's k-steps (xh, xl: n8 blocks 2k, 2k + 1 of the accumulator layout are k-step k). Where `full` (the
  // operand tiles were written too: by the whole CTA), every thread waits for all first.
  uint32_t xh[NY / 2][4], xl[NY / 2][4];
  enum { kF16Hi, kF16Pair, kBf16Pair };
  auto store_x = [&]<int MODE>(uint32_t tile, bool full) {
    const float sx0 = MODE == kBf16Pair ? 1.f : s.rowp[SL::SX + w.r0];
    const float sx1 = MODE == kBf16Pair ? 1.f : s.rowp[SL::SX + w.r1];
#pragma unroll
    for (int j = 0; j < NY; ++j)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float sx = r ? sx1 : sx0;
        uint32_t& ah = xh[j >> 1][(j & 1) * 2 + r];
        uint32_t& al = xl[j >> 1][(j & 1) * 2 + r];
        const uint32_t off = tile + (xo0 ^ (j << 4)) + 1024 * r;
        if constexpr (MODE == kF16Hi)
          ah = f16_word(xc[j][2 * r] * sx, xc[j][2 * r + 1] * sx);
        else if constexpr (MODE == kF16Pair)
          f16_pair(xc[j][2 * r] * sx, xc[j][2 * r + 1] * sx, ah, al);
        else
          bf16_pair(xc[j][2 * r], xc[j][2 * r + 1], ah, al);
        *reinterpret_cast<uint32_t*>(sb + off) = ah;
        if constexpr (MODE != kF16Hi) *reinterpret_cast<uint32_t*>(sb + off + C * D * 2) = al;
      }
    fence_proxy_async();  // then the barriers: the iterate visible to the wgmma reads
    if (full) __syncthreads();
    named_sync(kOwnStored + w.wg, 128);
    named_arrive(kHalfStored + w.wg, 2 * 128);
  };
  // x_lead (unscaled) at this thread's element e of n8 block j, from the words of the accurate iteration's operand.
  auto x_lead = [&](int j, int e) {
    const int r = e >> 1;
    const uint32_t off = xm_tile + (xo0 ^ (j << 4)) + 1024 * r;
    const uint32_t hi = *reinterpret_cast<const uint32_t*>(sb + off);
    const uint32_t lo = *reinterpret_cast<const uint32_t*>(sb + off + C * D * 2);
    const float sx = s.rowp[SL::SX + (r ? w.r1 : w.r0)];  // a power of 2
    return f16_pair_value(hi, lo, e & 1) * inv_pow2(sx);
  };

  // The warpgroup through a shuffle: the compiler then keeps the descriptors built from it on the uniform datapath.
  const int wgu = __shfl_sync(0xffffffffu, w.wg, 0);
  float S[NS * 4], Y[NY * 4];
  uint32_t ph[C / 32][4], pl[C / 32][4];
  // Y = diag(e^G) X H̄ᵀ + (S ⊙ M) K for the iterate in tile xt; KT terms for the products with K, one for X H̄ᵀ
  // where KT = 1 and three otherwise; f16 (then Y comes out scaled by sx sigma_K²) or bf16 tiles.
  auto products = [&]<int KT, bool F16>(uint32_t b, uint32_t xt) {
    // Both chains start on this warpgroup's own half of the iterate's columns, so that they run while the other
    // warpgroup still updates its half; then the other half, once it is stored.
    constexpr int KY = KT == 1 ? 1 : 3;
    const int own = wgu * (D / 2), other = (wgu ^ 1) * (D / 2), sr = wgu * (C / 2);
    wgmma_fence();
    wg_product_ra<C / 2, KT, F16, D / 32>(S, xh, xl, b + T::K, C, sr, D, own);  // A: this half, from registers
    wg_product_ra<D / 2, KY, F16, D / 32>(Y, xh, xl, b + T::H, D, own, D, own);
    named_sync(kHalfStored + (w.wg ^ 1), 2 * 128);
    wg_product<C / 2, KT, F16, D / 2, false>(S, xt, b + T::K, C, sr, D, other);
    wgmma_commit();
    wg_product<D / 2, KY, F16, D / 2, false>(Y, xt, b + T::H, D, own, D, other);
    wgmma_commit();
    wgmma_wait<1>();
    fence_regs(S);
    // P = S ⊙ M (this warpgroup's columns) as the A registers of its k-steps of P K (k-step k takes n8 blocks 2k
    // in a[0], a[1] and 2k + 1 in a[2], a[3]), and into the P tile for the other warpgroup's.
#pragma unroll
    for (int k = 0; k < C / 32; ++k)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int j = 2 * k + (i >> 1), e = (i & 1) * 2;
        const float v0 = S[4 * j + e] * mk[j][e], v1 = S[4 * j + e + 1] * mk[j][e + 1];
        const uint32_t at = (po0 ^ (j << 4)) + 512 * e;  // e = 2: row r1
        if constexpr (KT == 1) {
          ph[k][i] = f16_word(v0, v1);
        } else {
          if constexpr (F16)
            f16_pair(v0, v1, ph[k][i], pl[k][i]);
          else
            bf16_pair(v0, v1, ph[k][i], pl[k][i]);
          *reinterpret_cast<uint32_t*>(sb + at + C * C * 2) = pl[k][i];
        }
        *reinterpret_cast<uint32_t*>(sb + at) = ph[k][i];
      }
    fence_proxy_async();
    named_arrive(kPStored + w.wg, 2 * 128);
    wgmma_wait<0>();
    fence_regs(Y);
    const float uy = F16 ? s.red[SL::UY] : 1.f, e0 = eg0 * uy, e1 = eg1 * uy;  // X H̄ᵀ to K's scale
#pragma unroll
    for (int j = 0; j < NY; ++j) {
      Y[4 * j] *= e0;
      Y[4 * j + 1] *= e0;
      Y[4 * j + 2] *= e1;
      Y[4 * j + 3] *= e1;
    }
    // P K: this warpgroup's k-steps from registers, then the other's from the tile once it is there. The other
    // warpgroup overwrites its half only after its next S chain, which waits for this one's next iterate.
    wgmma_fence();
    wg_product_p<D / 2, KT, F16, C / 32, false>(Y, ph, pl, 0, b + T::K, D, own, wgu * (C / 32));
    named_sync(kPStored + (w.wg ^ 1), 2 * 128);
    wg_product_p<D / 2, KT, F16, C / 32, true>(Y, ph, pl, b + T::P, b + T::K, D, own, (wgu ^ 1) * (C / 32));
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(Y);
  };
  // One iteration: products for the iterate in tile xt, then the update from the right-hand side at src. SWITCH: the
  // switch to the offset form (rho = rhs - (H + lambda) x_lead is the right-hand side from here on, the iterates
  // become z = x - x_lead).
  float om = iters > 0 ? omega[0] : 0.f;
  auto step = [&]<int KT, bool F16, bool SWITCH>(int it, uint32_t xtile, const float4* src) {
    const float om_next = it + 1 < iters ? omega[it + 1] : 0.f;  // issued now, read by the next update
    // The descriptors are loop-invariant: hoisted, they would take over 100 registers. An opaque base keeps
    // each one an add next to its use.
    uint32_t b = base;
    asm volatile("" : "+r"(b));
    products.template operator()<KT, F16>(b, b + xtile);
    const float w1 = 1.f - om;
    const float a0 = om * (1.f - el0), a1 = om * (1.f - el1), q0 = om * eta0, q1 = om * eta1;
    const float u0 = F16 ? s.rowp[SL::UX + w.r0] : 1.f, u1 = F16 ? s.rowp[SL::UX + w.r1] : 1.f;
    // rho takes H̄'s lo tile, which the other warpgroup's products of this iteration may still read.
    if constexpr (SWITCH) __syncthreads();
#pragma unroll
    for (int j = 0; j < NY; ++j) {
      const float4 r4 = src[kThreads * j];
      const float rj[4] = {r4.x, r4.y, r4.z, r4.w};
      float res[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        res[e] = fmaf(-(e < 2 ? u0 : u1), Y[4 * j + e], rj[e]);
        const float xn = (e < 2 ? a0 : a1) * xc[j][e] + (e < 2 ? q0 : q1) * res[e] + w1 * xp[j][e];
        xp[j][e] = xc[j][e];
        xc[j][e] = xn;
      }
      if constexpr (SWITCH) {
        const float lam[2] = {s.lam[w.r0], s.lam[w.r1]};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float xl_e = x_lead(j, e);
          res[e] -= lam[e >> 1] * xl_e;
          xp[j][e] -= xl_e;
          xc[j][e] -= xl_e;
        }
        rho_s[kThreads * j] = make_float4(res[0], res[1], res[2], res[3]);
      }
    }
    om = om_next;
  };
  if (lead == 0) {  // every iteration on bf16 pairs
    if (iters > 0) store_x.template operator()<kBf16Pair>(T::X0, true);  // each store arrives once for the products
    for (int it = 0; it < iters; ++it) {
      const uint32_t xt = (it & 1) ? T::X1 : T::X0;
      if (k_bf16)
        step.template operator()<2, false, false>(it, xt, rhs_s);
      else
        step.template operator()<3, false, false>(it, xt, rhs_s);
      if (it + 1 < iters) store_x.template operator()<kBf16Pair>((it & 1) ? T::X0 : T::X1, false);
    }
  } else {
    // One loop for the lead and the offset form, so that both run the same code: code run once per CTA waits on
    // instruction fetch (a second copy of the loop for the offset form cost 0.4 ms of step_b2's 4.2 at 8 x 2048;
    // the switch's own code, run once, takes ~4 % of step_b2's samples). x_0 .. x_lead alternate between the X
    // buffers (cur, nxt), then z between the hi and lo tiles of the other buffer.
    constexpr int KA = KX ? 2 : 3;  // 16-bit k is exact in one f16 term (scaled by a power of 2)
    uint32_t cur = T::X0, nxt = T::X1;
    const float4* src = rhs_s;
    store_x.template operator()<kF16Hi>(cur, true);
    for (int it = 0; it < iters; ++it) {
      if (it != lead) {
        step.template operator()<1, true, false>(it, cur, src);
      } else {
        step.template operator()<KA, true, true>(it, cur, src);
        src = rho_s;
        cur = nxt + C * D * 2;  // becomes nxt below: z_{lead+2}'s tile, the lo half of z_{lead+1}'s buffer
      }
      const uint32_t t = cur;
      cur = nxt;
      nxt = t;
      if (it + 1 < iters) {
        if (it + 1 != lead)
          store_x.template operator()<kF16Hi>(cur, false);
        else
          store_x.template operator()<kF16Pair>(cur, false);
      }
    }
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
    if (offset)
#pragma unroll
      for (int e = 0; e < 4; ++e) xc[j][e] += x_lead(j, e);
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < NY; ++j) {
    w.store(s.X, LD, w.yc + 8 * j, xc[j]);
    w.store(s.V, LD, w.yc + 8 * j, rhs[j]);
  }
#pragma unroll
  for (int j = 0; j < NS; ++j) w.store(s.M, LC, pc + 8 * j, mk[j]);  // each warpgroup its half
  __syncthreads();
}

}  // namespace gka::cuda
