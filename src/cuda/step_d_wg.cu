// Step (D) of the chunked backward on Hopper warpgroup products (v22): step_d_bf16_kernel's math (chunk_bwd_d.cu),
// dk, dv, dgk and dg per (chunk, head), for D = 128 with precision mixed and bf16 q, k, v, dO (16-byte aligned rows).
// step_d_bf16_kernel ran its 280 mma.sync products per warp as dependent chains on ldmatrix fragments, one CTA per SM,
// and waited on them (ncu, H200: stall "wait" 32 %, short scoreboard 21 %). Here two warpgroups share the CTA, each
// owning half of the D output columns of dk (two parts: the solve's dks, the readout's dkr) and dv as 64 x 64
// accumulators; every product is a wgmma chain read from 128-byte swizzled tiles, the C x C scores formed whole by
// each warpgroup (no score tile, no barrier between the two), masked into bf16 A registers. Operands as in
// step_d_bf16_kernel: k, v, dO raw (exact in one bf16 term), every fp32 operand (the scratch X, U, R, Q_c, the state
// H̄, the scores, Q~) as bf16 hi + lo pairs, lo·lo dropped (~2^-16 relative).
#include "cuda/bwd_wg_tiles.cuh"
#include "cuda/chunk_bwd.cuh"

namespace gka::cuda {
namespace {

constexpr int C = kChunkMax;

// Shared memory (bytes) of the two kernels: bf16 tiles, 128-byte swizzled with rows as stored (K-major for A Bᵀ, read
// MN-major for A B), then per-row arrays of C floats. The solve's part: K raw; R, then H̄ (D x D pairs); X and U (C x D
// pairs); the decay mask M and the λ path's W2 (fp32: formed once, read by every score element).
template <int D>
struct StepDWgSolveSmem {
  static constexpr uint32_t CD = C * D * 2, DD = D * D * 2;  // one bf16 piece
  static constexpr uint32_t K = 0, R = CD, HB = R, X = R + 2 * DD, U = X + 2 * CD, M = U + 2 * CD;
  static constexpr uint32_t W2 = M + C * (C + 4) * 4, SMALL = W2 + C * (C + 4) * 4;  // fp32 masks, ld C + 4
  static constexpr uint32_t kBytes = SMALL + (8 * C + 16) * 4;  // G, eG, f, w, t0, dG, row partials (2), reduction
  static_assert(C * kStageLd * 4 <= 2 * DD, "dks stages over R");
};
// The readout's part: K, V, dO raw; Q_c (D x D pairs), Q~ (C x D pairs); the g gate's decay mask and dks (fp32).
template <int D>
struct StepDWgOutSmem {
  static constexpr uint32_t CD = C * D * 2, DD = D * D * 2;
  static constexpr uint32_t K = 0, V = CD, DO = 2 * CD, QC = 3 * CD, QT = QC + 2 * DD, M = QT + 2 * CD;
  static constexpr uint32_t DKS = M + C * (C + 4) * 4, SMALL = DKS + C * D * 4;  // dks (fp32), by cp.async
  static constexpr uint32_t kBytes = SMALL + (5 * C + 16) * 4;  // Gg, eGg, dGg, row partials (2), reduction
  static_assert(2 * C * kStageLd * 4 <= QT + 2 * CD - QC, "dkr and dv stage over Q_c and Q~");
};

// 64 rows of 128 fp32 columns (contiguous, global) bound for rows [row0, row0 + 64) of a pair of swizzled tiles of R
// rows at byte offsets hi, lo of the dynamic shared memory; source rows >= rows_in read as zero.
struct PairRows {
  uint32_t hi, lo;
  const float* src;
  int R, row0, rows_in;
};

// Two such jobs split in two: their 16 loads per thread issued into registers (fetch), then split into pairs and
// stored (put), so that a kernel issues its loads well ahead of the stores, over other work. Loads through L2 (ld.cg):
// the U scratch is overwritten later in the same kernel, where the non-coherent path (__ldg) is not for it.
constexpr int kRowsPer = C * 128 / 4 / kThreads;  // float4 per thread of one job
using Fetched = float4[2 * kRowsPer];
__device__ __forceinline__ void fetch(const PairRows& j0, const PairRows& j1, Fetched& v) {
#pragma unroll
  for (int u = 0; u < 2 * kRowsPer; ++u) {
    const PairRows& j = u < kRowsPer ? j0 : j1;
    const int i = 4 * (threadIdx.x + kThreads * (u % kRowsPer));
    v[u] = i / 128 < j.rows_in ? __ldcg(reinterpret_cast<const float4*>(j.src + i)) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
}
__device__ __forceinline__ void put(char* sm, const PairRows& j0, const PairRows& j1, const Fetched& v) {
#pragma unroll
  for (int u = 0; u < 2 * kRowsPer; ++u) {
    const PairRows& j = u < kRowsPer ? j0 : j1;
    const int i = 4 * (threadIdx.x + kThreads * (u % kRowsPer));
    put_pair(sm, j.hi, j.lo, sw128_bf16(j.R, j.row0 + i / 128, i % 128), v[u]);
  }
}
// The two halves of a D x D fp32 state or scratch tile (D = 128) bound for pair tiles at hi, lo.
__device__ __forceinline__ PairRows square_top(uint32_t hi, uint32_t lo, const float* src) {
  return {hi, lo, src, 128, 0, C};
}
__device__ __forceinline__ PairRows square_bottom(uint32_t hi, uint32_t lo, const float* src) {
  return {hi, lo, src + C * 128, 128, C, C};
}

// The scores S (64 x C accumulator, columns 8 j + 2 t, + 1) through mask(row half rw, column, value) as the bf16 hi
// and lo A registers of P's C / 16 k-steps.
template <class Mask>
__device__ __forceinline__ void scores_to_pairs(const float (&S)[32], int t, Mask&& mask, uint32_t (&ph)[C / 16][4],
                                                uint32_t (&pl)[C / 16][4]) {
#pragma unroll
  for (int k = 0; k < C / 16; ++k)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int j = 2 * k + (i >> 1), rw = i & 1, col = 8 * j + 2 * t;
      bf16_pair(mask(rw, col, S[4 * j + 2 * rw]), mask(rw, col + 1, S[4 * j + 2 * rw + 1]), ph[k][i], pl[k][i]);
    }
}

// acc += P B over the C k rows of B (a C x D tile at b, read MN-major at columns n0; its lo tile at bl where BL), P
// in A registers: P_hi B_hi (+ P_hi B_lo) + P_lo B_hi.
template <bool BL>
__device__ __forceinline__ void p_times(float (&acc)[32], const uint32_t (&ph)[C / 16][4],
                                        const uint32_t (&pl)[C / 16][4], uint32_t b, uint32_t bl, int n0) {
#pragma unroll
  for (int k = 0; k < C / 16; ++k) {
    wgmma<64>(acc, ph[k], mnmaj(b, C, k, n0), 1);
    if constexpr (BL) wgmma<64>(acc, ph[k], mnmaj(bl, C, k, n0), 1);
    wgmma<64>(acc, pl[k], mnmaj(b, C, k, n0), 1);
  }
}

__device__ __forceinline__ void scale_rows(float (&acc)[32], float e0, float e1) {
#pragma unroll
  for (int j = 0; j < 8; ++j) acc[4 * j] *= e0, acc[4 * j + 1] *= e0, acc[4 * j + 2] *= e1, acc[4 * j + 3] *= e1;
}

// Partial dots of this thread's accumulator (rows r0, r0 + 8; columns cb + 8 j, + 1) with a C x D swizzled tile (hi,
// plus lo where given).
__device__ __forceinline__ void row_dots(const float (&acc)[32], const char* hi, const char* lo, int r0, int cb,
                                         float& v0, float& v1) {
  v0 = 0.f, v1 = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int rw = 0; rw < 2; ++rw) {
      const uint32_t off = sw128_bf16(C, r0 + 8 * rw, cb + 8 * j);
      float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(hi + off));
      if (lo) {
        const float2 l = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(lo + off));
        b.x += l.x, b.y += l.y;
      }
      float& v = rw ? v1 : v0;
      v = fmaf(acc[4 * j + 2 * rw], b.x, v);
      v = fmaf(acc[4 * j + 2 * rw + 1], b.y, v);
    }
}

// dst[row] = the row's sum of the partials v0 (row r0), v1 (r0 + 8) in a fixed order: the quad, then warpgroup 0's
// columns + warpgroup 1's. Syncs twice.
__device__ __forceinline__ void row_sums(float v0, float v1, int r0, float* rowp, float* dst) {
  v0 = quad_sum(v0), v1 = quad_sum(v1);
  if ((threadIdx.x & 3) == 0) {
    rowp[(threadIdx.x >> 7) * C + r0] = v0;
    rowp[(threadIdx.x >> 7) * C + r0 + 8] = v1;
  }
  __syncthreads();
  if (threadIdx.x < C) dst[threadIdx.x] = rowp[threadIdx.x] + rowp[C + threadIdx.x];
  __syncthreads();
}

// This thread's accumulator (rows r0, r0 + 8; columns cb + 8 j, + 1) into a C x D fp32 stage (row-major, rows
// kStageLd apart: conflict-free, bwd_wg_tiles.cuh).
__device__ __forceinline__ void stage_acc(const float (&acc)[32], float* stage, int r0, int cb) {
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int rw = 0; rw < 2; ++rw)
      *reinterpret_cast<float2*>(stage + (r0 + 8 * rw) * kStageLd + cb + 8 * j) =
          make_float2(acc[4 * j + 2 * rw], acc[4 * j + 2 * rw + 1]);
}

// Rows < n of a C x D fp32 stage (plus `add`, a C x D row-major tile in shared memory, where given) into a
// [B,T,H,D] view: 16-byte row pieces where the view is bf16 with aligned rows, else element by element (one rolled
// loop either way). The caller syncs after staging.
template <int D>
__device__ __forceinline__ void store_rows(const float* stage, const float* add, const DView& v, const ChunkPos& c) {
  constexpr int VPR = D / 8;
  const bool fast = v.dt == 2 && rows_fast(v);
#pragma unroll 1
  for (int idx = threadIdx.x; idx < c.n * VPR; idx += kThreads) {
    const int r = idx / VPR, c8 = (idx % VPR) * 8;
    float4 x = *reinterpret_cast<const float4*>(stage + r * kStageLd + c8);
    float4 y = *reinterpret_cast<const float4*>(stage + r * kStageLd + c8 + 4);
    if (add) {
      const float4 p = *reinterpret_cast<const float4*>(add + r * D + c8);
      const float4 q = *reinterpret_cast<const float4*>(add + r * D + c8 + 4);
      x.x += p.x, x.y += p.y, x.z += p.z, x.w += p.w, y.x += q.x, y.y += q.y, y.z += q.z, y.w += q.w;
    }
    const int64_t o = drow(v, c.it.batch, c.it.t0 + r, c.h) + c8;
    if (fast) {
      uint4 w;
      w.x = bf16_word(x.x, x.y), w.y = bf16_word(x.z, x.w), w.z = bf16_word(y.x, y.y), w.w = bf16_word(y.z, y.w);
      *reinterpret_cast<uint4*>(static_cast<__nv_bfloat16*>(v.p) + o) = w;
    } else {
      const float e[8] = {x.x, x.y, x.z, x.w, y.x, y.y, y.z, y.w};
#pragma unroll
      for (int i = 0; i < 8; ++i) dstore(v, o + i, e[i]);
    }
  }
}

// One gate's gradient from its per-row sums d (rows < n): the suffix sums from row 1 on, with the state dot `end`
// (at the chunk's end) added at n - 1, and the state dot `first` at row 0; into the [B,T,H] view g. Warp 0 scans
// (fixed order); syncs.
__device__ __forceinline__ void gate_grad_store(float* d, float end, float first, const DView& g, const ChunkPos& c) {
  const int n = c.n;
  if (threadIdx.x < 32) {
    const int l = threadIdx.x;
    auto bm = [&](int m) { return m >= 1 && m < n ? d[m] + (m == n - 1 ? end : 0.f) : 0.f; };
    float x0, x1;
    warp_suffix_affine(1.f, bm(2 * l), 1.f, bm(2 * l + 1), x0, x1);
    d[2 * l] = l == 0 ? first : x0;
    d[2 * l + 1] = x1;
  }
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < n && g.dt)
    dstore(g, drow(g, c.it.batch, c.it.t0 + threadIdx.x, c.h), d[threadIdx.x]);
}

// This thread's partials of the two state dots of step_c for one gate (which 0: H̄, R; 1: S̄, Q), <·_{c-1}, state_c>
// and <·_c, state_{c+1}> (loaded early: their latency hides behind the kernel), and their sums over the CTA in a fixed
// order (red: 16 floats; syncs twice).
template <int D>
__device__ __forceinline__ float2 state_dot_parts(const BwdArgs& a, int64_t id, int which) {
  static_assert(kDotParts<D> <= kThreads, "one partial per thread");
  const int i = threadIdx.x;
  const float* d = a.dots + (id * 4 + 2 * which) * kDotParts<D> + i;
  return i < kDotParts<D> ? make_float2(d[0], d[kDotParts<D>]) : make_float2(0.f, 0.f);
}
__device__ __forceinline__ float2 state_dots(float2 v, float* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    v.x += __shfl_xor_sync(0xffffffffu, v.x, o);
    v.y += __shfl_xor_sync(0xffffffffu, v.y, o);
  }
  if ((threadIdx.x & 31) == 0) red[2 * (threadIdx.x >> 5)] = v.x, red[2 * (threadIdx.x >> 5) + 1] = v.y;
  __syncthreads();
  float2 r = make_float2(0.f, 0.f);
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) r.x += red[2 * w], r.y += red[2 * w + 1];
  __syncthreads();
  return r;
}

// Where a thread sits: rows r0, r0 + 8 of the 64-row accumulators, columns [nb, nb + D / 2) of the C x D ones (its
// warpgroup's half), cb = nb + 2 t its first.
struct WgPos {
  int t, r0, r1, nb, cb;
  __device__ WgPos(int DW)
      : t(threadIdx.x & 3),
        r0(16 * ((threadIdx.x >> 5) & 3) + ((threadIdx.x & 31) >> 2)),
        r1(r0 + 8),
        nb((threadIdx.x >> 7) * DW),
        cb(nb + 2 * t) {}
  __device__ int row(int rw) const { return rw ? r1 : r0; }  // an accumulator's row: rw 0 (r0) or 1 (r0 + 8)
};

// acc = K (T + Tᵀ) over this warpgroup's 64 columns nb: K the raw C x D tile at k, T a D x D pair tile at t (its lo
// tile at + lo), read MN-major for T and K-major for Tᵀ; issued, not committed.
template <int D>
__device__ __forceinline__ void k_sym_product(float (&acc)[32], uint32_t k, uint32_t t, uint32_t lo, int nb) {
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    const uint64_t dk = kmaj(k, C, 0, ks);
    wgmma<64, false, 1>(acc, dk, mnmaj(t, D, ks, nb), ks > 0);
    wgmma<64, false, 1>(acc, dk, mnmaj(t + lo, D, ks, nb), 1);
    wgmma<64, false, 0>(acc, dk, kmaj(t, D, nb, ks), 1);
    wgmma<64, false, 0>(acc, dk, kmaj(t + lo, D, nb, ks), 1);
  }
}

// (D), the solve's part: dks = e^{G_last - G} ⊙ K (R + Rᵀ) - ((K Xᵀ) ⊙ M̃) U - ((K Uᵀ) ⊙ M̃) X (+ the λ path), dgk;
// dks goes to the U scratch (read here first) for step_d_out_wg_kernel.
template <int D>
__global__ void __launch_bounds__(kThreads, 1) step_d_solve_wg_kernel(const Item* items, BwdArgs a) {
  static_assert(D == 128, "two warpgroups of 64 output columns");
  using L = StepDWgSolveSmem<D>;
  constexpr int KS = D / 16, DW = D / 2;
  constexpr int64_t DD = static_cast<int64_t>(D) * D;
  constexpr uint32_t CD = C * D * 2, DDb = D * D * 2;  // offset of a pair's lo tile
  extern __shared__ __align__(1024) char sm[];
  const ChunkPos c = chunk_pos(items, a.H);
  const int n = c.n;
  const int64_t id = c.id;
  const uint32_t base = smem_addr(sm);
  if (base & 1023u) __trap();  // the swizzle needs 1024-byte aligned tiles
  float* rows = reinterpret_cast<float*>(sm + L::SMALL);
  float *G = rows, *eG = rows + C, *f = rows + 2 * C, *w = rows + 3 * C, *t0 = rows + 4 * C, *dG = rows + 5 * C;
  float *rowp = rows + 6 * C, *red = rows + 8 * C;
  const WgPos q(DW);
  const int tid = threadIdx.x;
  const bool solve = a.cc.n > 0;
  const uint32_t tK = base + L::K, tR = base + L::R, tX = base + L::X, tU = base + L::U, tH = base + L::HB;

  rows_to_tile<D>(sm + L::K, a.k, c);
  // The loads that wait on nothing, issued first: R, X and U (registers), the state dots.
  const float* Rg = a.Psi + id * DD;
  const PairRows rt = square_top(L::R, L::R + DDb, Rg), rb = square_bottom(L::R, L::R + DDb, Rg);
  const PairRows x{L::X, L::X + CD, a.X + id * C * D, C, 0, n}, u{L::U, L::U + CD, a.U + id * C * D, C, 0, n};
  Fetched vr, vs;
  fetch(rt, rb, vr);
  if (solve) fetch(x, u, vs);
  const float2 dparts = state_dot_parts<D>(a, id, 0);
  if (tid < C) {
    f[tid] = a.scal[id * 3 * C + tid];
    w[tid] = a.scal[id * 3 * C + C + tid];
  }
  float* M = reinterpret_cast<float*>(sm + L::M);
  constexpr int LC = C + 4;
  gate_sums(a.gk, c, G, eG, M);
  put(sm, rt, rb, vr);
  cp_async_wait_all();
  fence_proxy_async();
  __syncthreads();

  // K (R + Rᵀ), rows scaled by e^{G_last - G_t}; X and U load meanwhile.
  float dks[32], tt[32], sc[32];
  uint32_t ph[C / 16][4], pl[C / 16][4];
  wgmma_fence();
  k_sym_product<D>(tt, tK, tR, DDb, q.nb);
  wgmma_commit();
  const float* Hg = a.st.Hs + c.tile * DD;
  const PairRows ht = square_top(L::HB, L::HB + DDb, Hg), hb = square_bottom(L::HB, L::HB + DDb, Hg);
  if (solve) {  // while the products run: X and U into their tiles, H̄'s loads (its tiles lie over R)
    put(sm, x, u, vs);
    fetch(ht, hb, vr);
  }
  wgmma_wait<0>();
  fence_regs(tt);
  {
    const float GL = G[n - 1], e0 = expf(GL - G[q.r0]), e1 = expf(GL - G[q.r1]);
#pragma unroll
    for (int i = 0; i < 32; ++i) dks[i] = tt[i] * ((i & 2) ? e1 : e0);
  }
  float k0, k1, u0 = 0.f, u1 = 0.f;
  if (solve) {
    fence_proxy_async();
    __syncthreads();  // X, U; R is read
                      // -((K Xᵀ) ⊙ M̃) U - ((K Uᵀ) ⊙ M̃) X with M̃_ts = M_st (s >= t).
#pragma unroll 1
    for (int pass = 0; pass < 2; ++pass) {
      const uint32_t b1 = pass == 0 ? tX : tU, b2 = pass == 0 ? tU : tX;
      wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) {
        wgmma<64, false, 0>(sc, kmaj(tK, C, 0, ks), kmaj(b1, C, 0, ks), ks > 0);
        wgmma<64, false, 0>(sc, kmaj(tK, C, 0, ks), kmaj(b1 + CD, C, 0, ks), 1);
      }
      wgmma_commit();
      if (pass == 0) put(sm, ht, hb, vr);  // over R (read: the barrier above), while the scores run
      wgmma_wait<0>();
      fence_regs(sc);
      scores_to_pairs(
          sc, q.t, [&](int rw, int u, float v) { return -v * M[u * LC + q.row(rw)]; }, ph, pl);
      wgmma_fence();
      p_times<true>(dks, ph, pl, b2, b2 + CD, q.nb);
      wgmma_commit();
      wgmma_wait<0>();
      fence_regs(dks);
    }
    fence_proxy_async();
    __syncthreads();  // H̄
    if (a.lambda_grad) {
      if (tid < 32) {  // Ŵ_m = w_m + e^{2 gk_{m+1}} Ŵ_{m+1}, a warp scan
        auto am = [&](int m) {
          const float e = m + 1 < n ? expf(G[m + 1] - G[m]) : 0.f;
          return e * e;
        };
        auto bm = [&](int m) { return m < n ? w[m] : 0.f; };
        warp_suffix_affine(am(2 * tid), bm(2 * tid), am(2 * tid + 1), bm(2 * tid + 1), t0[2 * tid], t0[2 * tid + 1]);
      }
      __syncthreads();
      float* W2 = reinterpret_cast<float*>(sm + L::W2);  // -2 M_mt M_mu Ŵ_m, m = max(t, u) (symmetric)
      for (int i = tid; i < C * C; i += kThreads) {
        const int tr = i / C, u = i % C, m = max(tr, u);
        W2[tr * LC + u] = -2.f * M[m * LC + min(tr, u)] * t0[m];
      }
      __syncthreads();
      wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) wgmma<64, false, 0>(sc, kmaj(tK, C, 0, ks), kmaj(tK, C, 0, ks), ks > 0);
      wgmma_commit();
      k_sym_product<D>(tt, tK, tH, DDb, q.nb);  // K (H̄ + H̄ᵀ)
      wgmma_commit();
      wgmma_wait<1>();
      fence_regs(sc);
      scores_to_pairs(
          sc, q.t, [&](int rw, int u, float v) { return v * W2[u * LC + q.row(rw)]; }, ph, pl);
      wgmma_fence();
      p_times<false>(dks, ph, pl, tK, 0, q.nb);
      wgmma_commit();
      wgmma_wait<0>();
      fence_regs(dks);
      fence_regs(tt);
      const float e0 = -eG[q.r0] * t0[q.r0], e1 = -eG[q.r1] * t0[q.r1];
#pragma unroll
      for (int i = 0; i < 32; ++i) dks[i] = fmaf(tt[i], (i & 2) ? e1 : e0, dks[i]);
    }
    // H_i x_i = diag(e^G) X H̄ᵀ + ((X Kᵀ) ⊙ M) K (one more operator application) for the gate gradient.
    float(&hx)[32] = tt;
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      wgmma<64, false, 0>(sc, kmaj(tX, C, 0, ks), kmaj(tK, C, 0, ks), ks > 0);
      wgmma<64, false, 0>(sc, kmaj(tX + CD, C, 0, ks), kmaj(tK, C, 0, ks), 1);
    }
    wgmma_commit();
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      wgmma<64, false, 0>(hx, kmaj(tX, C, 0, ks), kmaj(tH, D, q.nb, ks), ks > 0);
      wgmma<64, false, 0>(hx, kmaj(tX, C, 0, ks), kmaj(tH + DDb, D, q.nb, ks), 1);
      wgmma<64, false, 0>(hx, kmaj(tX + CD, C, 0, ks), kmaj(tH, D, q.nb, ks), 1);
    }
    wgmma_commit();
    wgmma_wait<1>();
    fence_regs(sc);
    scores_to_pairs(
        sc, q.t, [&](int rw, int u, float v) { return v * M[q.row(rw) * LC + u]; }, ph, pl);
    wgmma_wait<0>();
    fence_regs(hx);
    scale_rows(hx, eG[q.r0], eG[q.r1]);
    wgmma_fence();
    p_times<false>(hx, ph, pl, tK, 0, q.nb);
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(hx);
    row_dots(hx, sm + L::U, sm + L::U + CD, q.r0, q.cb, u0, u1);
  }
  row_dots(dks, sm + L::K, nullptr, q.r0, q.cb, k0, k1);
  row_sums(-0.5f * k0 - u0, -0.5f * k1 - u1, q.r0, rowp, dG);  // syncs: every tile is read
  if (solve && tid < C) dG[tid] -= w[tid] * f[tid] * f[tid];
  const float2 dots = state_dots(dparts, red);  // <R_{c-1}, H̄_c>, <R_c, H̄_{c+1}> (step_c)
  gate_grad_store(dG, dots.y, dots.x, a.dgk, c);
  // dks to the U scratch through an fp32 stage over R (free: the barriers above), whole rows.
  float* stage = reinterpret_cast<float*>(sm + L::R);
  stage_acc(dks, stage, q.r0, q.cb);
  __syncthreads();
  float* dst = a.U + id * C * D;
#pragma unroll 1
  for (int i = 4 * tid; i < C * D; i += 4 * kThreads)
    *reinterpret_cast<float4*>(dst + i) = *reinterpret_cast<const float4*>(stage + (i / D) * kStageLd + i % D);
}

// (D), the readout's part: dkr = e^{Gg_last - Gg} ⊙ V Q_cᵀ + P Q~ and dv = e^{Gg_last - Gg} ⊙ K Q_c + P' dO (P, P' the
// masked scores of V dOᵀ and K Q~ᵀ), dg; dk = dks (step_d_solve_wg_kernel's, in the U scratch) + dkr.
template <int D>
__global__ void __launch_bounds__(kThreads, 1) step_d_out_wg_kernel(const Item* items, BwdArgs a) {
  static_assert(D == 128, "two warpgroups of 64 output columns");
  using L = StepDWgOutSmem<D>;
  constexpr int KS = D / 16, DW = D / 2;
  constexpr int64_t DD = static_cast<int64_t>(D) * D;
  constexpr uint32_t CD = C * D * 2, DDb = D * D * 2;
  extern __shared__ __align__(1024) char sm[];
  const ChunkPos c = chunk_pos(items, a.H);
  const int n = c.n;
  const int64_t id = c.id;
  const uint32_t base = smem_addr(sm);
  if (base & 1023u) __trap();
  float* rows = reinterpret_cast<float*>(sm + L::SMALL);
  float *Gg = rows, *eGg = rows + C, *dGg = rows + 2 * C, *rowp = rows + 3 * C, *red = rows + 5 * C;
  const WgPos q(DW);
  const int tid = threadIdx.x;
  const uint32_t tK = base + L::K, tV = base + L::V, tDo = base + L::DO, tQc = base + L::QC, tQt = base + L::QT;

  rows_to_tile<D>(sm + L::K, a.k, c);
  rows_to_tile<D>(sm + L::V, a.v, c);
  rows_to_tile<D>(sm + L::DO, a.d_o, c);
  const float* dks = a.U + id * C * D;  // step_d_solve_wg_kernel's
#pragma unroll
  for (int i = 4 * tid; i < C * D; i += 4 * kThreads) cp_async16(sm + L::DKS + 4 * i, dks + i);
  // The loads that wait on nothing, issued first: Q_c; x, q and alpha for Q~ = q + alpha (x - q); the state dots.
  const float* Qg = a.Phi + id * DD;
  const PairRows qt = square_top(L::QC, L::QC + DDb, Qg), qb = square_bottom(L::QC, L::QC + DDb, Qg);
  Fetched vq;
  fetch(qt, qb, vq);
  float4 xv[kRowsPer];
  uint2 qv[kRowsPer];
  float al[kRowsPer];
#pragma unroll
  for (int u = 0; u < kRowsPer; ++u) {
    const int i = 4 * (tid + kThreads * u), r = i / D, col = i % D;
    const bool in = r < n;
    const auto* qrow = static_cast<const __nv_bfloat16*>(a.q.p) + (in ? drow(a.q, c.it.batch, c.it.t0 + r, c.h) : 0);
    xv[u] = in ? __ldg(reinterpret_cast<const float4*>(a.X + id * C * D + i)) : make_float4(0.f, 0.f, 0.f, 0.f);
    qv[u] = in ? __ldg(reinterpret_cast<const uint2*>(qrow + col)) : make_uint2(0u, 0u);
    al[u] = in ? dscalar(a.alpha, c.it.batch, c.it.t0 + r, c.h, 1.f) : 0.f;
  }
  const float2 dparts = state_dot_parts<D>(a, id, 1);
  const float t1 = tid < C ? a.scal[id * 3 * C + 2 * C + tid] : 0.f;
  float* Mg = reinterpret_cast<float*>(sm + L::M);
  constexpr int LC = C + 4;
  gate_sums(a.g, c, Gg, eGg, Mg);
  put(sm, qt, qb, vq);
#pragma unroll
  for (int u = 0; u < kRowsPer; ++u) {
    const int i = 4 * (tid + kThreads * u);
    const float2 q01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&qv[u].x));
    const float2 q23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&qv[u].y));
    const float4 x = xv[u];
    put_pair(sm, L::QT, L::QT + CD, sw128_bf16(C, i / D, i % D),
             make_float4(q01.x + al[u] * (x.x - q01.x), q01.y + al[u] * (x.y - q01.y), q23.x + al[u] * (x.z - q23.x),
                         q23.y + al[u] * (x.w - q23.y)));
  }
  cp_async_wait_all();
  fence_proxy_async();
  __syncthreads();  // K, V, dO, Q_c, Q~
  float sc[32], dkr[32], dv[32];
  uint32_t ph[C / 16][4], pl[C / 16][4];
  wgmma_fence();
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) wgmma<64, false, 0>(sc, kmaj(tV, C, 0, ks), kmaj(tDo, C, 0, ks), ks > 0);
  wgmma_commit();
  wgmma_fence();
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) {  // V Q_cᵀ
    wgmma<64, false, 0>(dkr, kmaj(tV, C, 0, ks), kmaj(tQc, D, q.nb, ks), ks > 0);
    wgmma<64, false, 0>(dkr, kmaj(tV, C, 0, ks), kmaj(tQc + DDb, D, q.nb, ks), 1);
  }
  wgmma_commit();
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) {  // K Q_c
    wgmma<64, false, 1>(dv, kmaj(tK, C, 0, ks), mnmaj(tQc, D, ks, q.nb), ks > 0);
    wgmma<64, false, 1>(dv, kmaj(tK, C, 0, ks), mnmaj(tQc + DDb, D, ks, q.nb), 1);
  }
  wgmma_commit();
  // P_ts = s v Mg_st for s >= t (rows t, columns u = s < n).
  const auto readout = [&](int rw, int u, float v) { return a.scale * v * Mg[u * LC + q.row(rw)]; };
  wgmma_wait<2>();
  fence_regs(sc);
  scores_to_pairs(sc, q.t, readout, ph, pl);  // P_ts = s (V_t·dO_s) Mg_st, dkr += P Q~
  const float GgL = Gg[n - 1], eg0 = expf(GgL - Gg[q.r0]), eg1 = expf(GgL - Gg[q.r1]);
  wgmma_wait<1>();
  fence_regs(dkr);
  scale_rows(dkr, eg0, eg1);
  wgmma_fence();
  p_times<true>(dkr, ph, pl, tQt, tQt + CD, q.nb);
  wgmma_commit();
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) {  // P_ts = s (K_t·Q~_s) Mg_st, dv += P dO
    wgmma<64, false, 0>(sc, kmaj(tK, C, 0, ks), kmaj(tQt, C, 0, ks), ks > 0);
    wgmma<64, false, 0>(sc, kmaj(tK, C, 0, ks), kmaj(tQt + CD, C, 0, ks), 1);
  }
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(sc);
  fence_regs(dkr);
  fence_regs(dv);
  scores_to_pairs(sc, q.t, readout, ph, pl);
  scale_rows(dv, eg0, eg1);
  wgmma_fence();
  p_times<false>(dv, ph, pl, tDo, 0, q.nb);
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(dv);

  float k0, k1;
  row_dots(dkr, sm + L::K, nullptr, q.r0, q.cb, k0, k1);
  row_sums(-k0, -k1, q.r0, rowp, dGg);  // syncs: every tile is read
  if (tid < C) dGg[tid] += t1;
  const float2 dots = state_dots(dparts, red);  // <Q_{c-1}, S̄_c>, <Q_c, S̄_{c+1}> (step_c)
  gate_grad_store(dGg, dots.y, dots.x, a.dg, c);
  // dk = dks + dkr and dv through fp32 stages over Q_c and Q~ (free: the barriers above).
  float* stage = reinterpret_cast<float*>(sm + L::QC);
  stage_acc(dkr, stage, q.r0, q.cb);
  stage_acc(dv, stage + C * kStageLd, q.r0, q.cb);
  __syncthreads();
  if (a.dk.dt) store_rows<D>(stage, reinterpret_cast<const float*>(sm + L::DKS), a.dk, c);
  if (a.dv.dt) store_rows<D>(stage + C * kStageLd, nullptr, a.dv, c);
}

}  // namespace

void step_d_wg_launch(const dim3& grid, cudaStream_t stream, const Item* items, const BwdArgs& a) {
  const char* fn = "gka::chunk_backward (cuda)";
  const int solve = static_cast<int>(StepDWgSolveSmem<128>::kBytes),
            out = static_cast<int>(StepDWgOutSmem<128>::kBytes);
  check(cudaFuncSetAttribute(step_d_solve_wg_kernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize, solve), fn,
        "cudaFuncSetAttribute");
  check(cudaFuncSetAttribute(step_d_out_wg_kernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize, out), fn,
        "cudaFuncSetAttribute");
  step_d_solve_wg_kernel<128><<<grid, kThreads, solve, stream>>>(items, a);
  launch_check(fn);
  step_d_out_wg_kernel<128><<<grid, kThreads, out, stream>>>(items, a);
  launch_check(fn);
}

}  // namespace gka::cuda
