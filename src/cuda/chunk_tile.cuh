// Block-level building blocks of the chunk kernels (forward and backward): one CTA of 256 threads owns one
// chunk of one head. A C x D tile (C = 64 rows) is spread over a 16 x 16 grid of threads: thread (tr, tc)
// holds rows tr + 16 i (i < 4) and columns tc + 16 j (j < D/16) in registers. Operands live in shared
// memory in fp32 with padded leading dimensions (D + 1, C + 1) so the products below are conflict-free.
// All products accumulate in fp32 with fmaf in a fixed order: results are bitwise reproducible.
// The Chebyshev solver loop (cheb_solve) runs its products on tensor cores instead (mma.sync m16n8k8 tf32
// with 3xTF32 splitting, see below), in a warp-tile layout of its own; the leading dimensions are
// chosen (== 4 mod 32) so that those fragment loads are conflict-free.
#pragma once

#include "cuda/common.cuh"
#include "cuda/mma.cuh"

namespace gka::cuda {

template <int D>
struct Cfg {
  static constexpr int C = kChunkMax;
  static constexpr int LD = D + 4;  // leading dim of C x D and D x D tiles (== 4 mod 32: mma fragments)
  static constexpr int LC = C + 4;  // leading dim of C x C tiles
  static constexpr int TN = D / 16; // columns per thread of a C x D tile
  static constexpr int TM = C / 16; // rows per thread
};

// acc[i][j] += sum_{k < K} A(tr + 16 i, k) B(k, tc + 16 j) with A(r, k) = A[r ar + k ak], B(k, c) = B[k bk + c bc].
template <int RM, int RN>
__device__ __forceinline__ void tile_mac(float (&acc)[RM][RN], const float* A, int ar, int ak, const float* B, int bk,
                                         int bc, int K, int tr, int tc) {
#pragma unroll 2
  for (int k = 0; k < K; ++k) {
    float a[RM], b[RN];
#pragma unroll
    for (int i = 0; i < RM; ++i) a[i] = A[(tr + 16 * i) * ar + k * ak];
#pragma unroll
    for (int j = 0; j < RN; ++j) b[j] = B[k * bk + (tc + 16 * j) * bc];
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
      for (int j = 0; j < RN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
  }
}

template <int RM, int RN>
__device__ __forceinline__ void tile_zero(float (&acc)[RM][RN]) {
#pragma unroll
  for (int i = 0; i < RM; ++i)
#pragma unroll
    for (int j = 0; j < RN; ++j) acc[i][j] = 0.f;
}

// Sum over the 16 threads that share a row (lanes tc = 0..15 of one half-warp).
__device__ __forceinline__ float row_sum16(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 8);
  v += __shfl_xor_sync(0xffffffffu, v, 4);
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v;
}

// Deterministic block sum (fixed order); `red` holds >= 8 floats. Every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float s = 0.f;
  for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) s += red[w];
  __syncthreads();
  return s;
}

// The backward recurrence x_j = b_j + a_j x_{j+1} over j < 64 (x_64 = 0) in one warp, lane l holding j = 2 l, 2 l + 1
// (a0, b0 and a1, b1; x0, x1 out): a suffix scan of the affine maps, log2(32) shuffle steps where thread 0 took 64
// dependent steps while the CTA waited.
__device__ __forceinline__ void warp_suffix_affine(float a0, float b0, float a1, float b1, float& x0, float& x1) {
  const int lane = threadIdx.x & 31;
  float A = a0 * a1, B = fmaf(a0, b1, b0);  // x_{2l} = B + A x_{2l+2}
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {  // compose with lanes l + o..: (A, B) o (A', B') = (A A', B + A B')
    const float An = __shfl_down_sync(0xffffffffu, A, o), Bn = __shfl_down_sync(0xffffffffu, B, o);
    if (lane + o < 32) {
      B = fmaf(A, Bn, B);
      A *= An;
    }
  }
  const float next = __shfl_down_sync(0xffffffffu, B, 1);  // x_{2l+2}
  x0 = B;
  x1 = fmaf(a1, lane < 31 ? next : 0.f, b1);
}

// Shared memory of one chunk CTA. H: a D x D state; K, X, V: C x D tiles (V doubles as the second
// iterate buffer of the solver); P: C x C scores; M: C x C decay mask.
template <int D>
struct ChunkSmem {
  using F = Cfg<D>;
  float H[D * F::LD];
  float K[F::C * F::LD];
  float X[F::C * F::LD];
  float V[F::C * F::LD];
  float P[F::C * F::LC];
  float M[F::C * F::LC];
  float G[F::C], eG[F::C], Gg[F::C], eGg[F::C], alpha[F::C], f[F::C], eta[F::C], lam[F::C], w[F::C], t0[F::C],
      t1[F::C];
  float rowp[2 * F::C];  // per-column-half row partials (frag_row_sum)
  float red[32];
};

// Where a chunk CTA (grid (items, H)) works: its item and head, its index in the per-(item, head) scratch (id)
// and its chunk-start state's in the per-(slot, head) state buffers (tile).
struct ChunkPos {
  Item it;
  int h, n;
  int64_t id, tile;
};
__device__ __forceinline__ ChunkPos chunk_pos_at(const Item* items, int H, int64_t item, int h) {
  const Item it = items[item];
  return {it, h, it.n, item * H + h, static_cast<int64_t>(it.slot) * H + h};
}
__device__ __forceinline__ ChunkPos chunk_pos(const Item* items, int H) {
  return chunk_pos_at(items, H, blockIdx.x, blockIdx.y);
}

// Rows [t0, t0+n) of head h of a [B,T,H,D] view into a C x D tile (ld LDT, rows >= n zeroed), times `scale`.
// Fast path (16-byte aligned rows): 8 elements per 16-byte (bf16/f16) or 2 x 16-byte (f32) load (W = 2 words per
// 8 elements, or 1 where the view is known to be 16-bit), all of a thread's loads issued before any store (the
// kernels run few CTAs per SM: load latency, not bandwidth, bounds them). rows_fetch / rows_put split a load in
// two, so that its global loads can be issued a step ahead of their use.
template <int D, int W = 2>
struct RowsFetch {
  static constexpr int PER = Cfg<D>::C * (D / 8) / kThreads;
  uint4 raw[PER][W];
  bool fast;
};

__device__ __forceinline__ bool rows_fast(const DView& v) {
  const int64_t esz = v.dt == 1 ? 4 : 2;
  const bool aligned =
      ((reinterpret_cast<uintptr_t>(v.p) | static_cast<uintptr_t>((v.s0 * esz) | (v.s1 * esz) | (v.s2 * esz))) & 15) == 0;
  return aligned && blockDim.x == kThreads;
}

template <int D, int W>
__device__ __forceinline__ void rows_fetch_fast(uint4 (&raw)[RowsFetch<D, W>::PER][W], const DView& v, const Item& it,
                                                int h) {
  constexpr int VPR = D / 8;
  const int64_t esz = v.dt == 1 ? 4 : 2;
#pragma unroll
  for (int p = 0; p < RowsFetch<D, W>::PER; ++p) {
    const int idx = threadIdx.x + p * kThreads, r = idx / VPR, c8 = (idx % VPR) * 8;
#pragma unroll
    for (int u = 0; u < W; ++u) raw[p][u] = make_uint4(0u, 0u, 0u, 0u);
    if (r < it.n) {
      const uint4* src =
          reinterpret_cast<const uint4*>(static_cast<const char*>(v.p) + (drow(v, it.batch, it.t0 + r, h) + c8) * esz);
      raw[p][0] = __ldg(src);
      if (W == 2 && v.dt == 1) raw[p][W - 1] = __ldg(src + 1);
    }
  }
}

template <int D, int LDT, int W>
__device__ __forceinline__ void rows_put_fast(float* dst, const uint4 (&raw)[RowsFetch<D, W>::PER][W], const DView& v,
                                              float scale) {
  constexpr int VPR = D / 8;
#pragma unroll
  for (int p = 0; p < RowsFetch<D, W>::PER; ++p) {
    const int idx = threadIdx.x + p * kThreads, r = idx / VPR, c8 = (idx % VPR) * 8;
    float f[8];
    const uint4 lo = raw[p][0], hi = raw[p][W - 1];
    const uint32_t w[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    if (W == 2 && v.dt == 1) {
#pragma unroll
      for (int e = 0; e < 8; ++e) f[e] = __uint_as_float(w[e]);
    } else if (v.dt == 2) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        f[2 * e] = __uint_as_float(w[e] << 16);
        f[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
      }
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        __half2 hv;
        memcpy(&hv, &w[e], 4);
        const float2 ff = __half22float2(hv);
        f[2 * e] = ff.x;
        f[2 * e + 1] = ff.y;
      }
    }
    float4* d4 = reinterpret_cast<float4*>(dst + r * LDT + c8);
    d4[0] = make_float4(scale * f[0], scale * f[1], scale * f[2], scale * f[3]);
    d4[1] = make_float4(scale * f[4], scale * f[5], scale * f[6], scale * f[7]);
  }
}

template <int D, int LDT>
__device__ __forceinline__ void rows_put_slow(float* dst, const DView& v, const Item& it, int h, float scale) {
  for (int idx = threadIdx.x; idx < Cfg<D>::C * D; idx += blockDim.x) {
    const int r = idx / D, c = idx % D;
    float x = 0.f;
    if (r < it.n) x = scale * dload(v, drow(v, it.batch, it.t0 + r, h) + c);
    dst[r * LDT + c] = x;
  }
}

template <int D>
__device__ void rows_load(float* dst, const DView& v, const Item& it, int h, float scale = 1.f) {
  if (rows_fast(v)) {
    uint4 raw[RowsFetch<D>::PER][2];
    rows_fetch_fast<D, 2>(raw, v, it, h);
    rows_put_fast<D, Cfg<D>::LD, 2>(dst, raw, v, scale);
    return;
  }
  rows_put_slow<D, Cfg<D>::LD>(dst, v, it, h, scale);
}

template <int D, int W>
__device__ __forceinline__ void rows_fetch(RowsFetch<D, W>& f, const DView& v, const Item& it, int h) {
  f.fast = rows_fast(v);
  if (f.fast) rows_fetch_fast<D, W>(f.raw, v, it, h);
}

template <int D, int LDT, int W>
__device__ __forceinline__ void rows_put(float* dst, const RowsFetch<D, W>& f, const DView& v, const Item& it, int h) {
  if (f.fast)
    rows_put_fast<D, LDT, W>(dst, f.raw, v, 1.f);
  else
    rows_put_slow<D, LDT>(dst, v, it, h, 1.f);
}

// Calls f(r, c, v) for each of this thread's float4s v (columns c .. c + 3 of row r) of a contiguous ROWS x COLS
// fp32 tile in global memory (ld COLS, 16-byte aligned), in rolled batches of BATCH float4s, each batch's loads
// issued before its first call (a smaller BATCH: less straight-line code, which costs instruction fetch).
template <int ROWS, int COLS, int BATCH = ROWS * COLS / 4 / kThreads, class Fn>
__device__ __forceinline__ void tile_ldg_each(const float* src, Fn&& f) {
  constexpr int PER = ROWS * COLS / 4 / kThreads;
  static_assert(PER * 4 * kThreads == ROWS * COLS && PER % BATCH == 0, "whole float4s per thread, whole batches");
#pragma unroll 1
  for (int b = 0; b < PER; b += BATCH) {
    float4 v[BATCH];
#pragma unroll
    for (int p = 0; p < BATCH; ++p)
      v[p] = __ldg(reinterpret_cast<const float4*>(src) + threadIdx.x + (b + p) * kThreads);
#pragma unroll
    for (int p = 0; p < BATCH; ++p) {
      const int idx = 4 * (threadIdx.x + (b + p) * kThreads);
      f(idx / COLS, idx % COLS, v[p]);
    }
  }
}

// rows x D fp32 tile (row-major, ld D, 16-byte aligned) into shared memory (ld LD), all copies in flight at once;
// !wait: the caller waits (cp_async_wait_all), so that its other loads go out meanwhile.
template <int D>
__device__ __forceinline__ void tile_copy_async(float* dst, const float* src, int rows, bool wait = true) {
  for (int idx = threadIdx.x; idx < rows * (D / 4); idx += blockDim.x) {
    const int r = idx / (D / 4), c = (idx % (D / 4)) * 4;
    cp_async16(dst + r * Cfg<D>::LD + c, src + r * D + c);
  }
  if (wait) cp_async_wait_all();
}

// A D x D fp32 tile (row-major, ld D) into shared memory (ld LD). Callers sync before use.
template <int D>
__device__ void square_load(float* dst, const float* src, bool wait = true) {
  tile_copy_async<D>(dst, src, D, wait);
}

// The chunk's k rows into s.K and its start state H̄ into s.H (again after a warpgroup solve, which overlays them).
// H̄'s copies go first, in flight while the k rows load; !wait as in tile_copy_async.
template <int D>
__device__ void k_state_load(ChunkSmem<D>& s, const DView& k, const float* Hs, const ChunkPos& c, bool wait = true) {
  square_load<D>(s.H, Hs + c.tile * D * D, false);
  rows_load<D>(s.K, k, c.it, c.h);
  if (wait) cp_async_wait_all();
}

// The decay mask M_ij = e^{G_i - G_j} (j <= i < n) of a gate's chunk-local sums G.
template <int D>
__device__ void gate_mask(const float* G, int n, float* M) {
  using F = Cfg<D>;
  for (int idx = threadIdx.x; idx < F::C * F::C; idx += blockDim.x) {
    const int i = idx / F::C, j = idx % F::C;
    M[i * F::LC + j] = (j <= i && i < n) ? expf(G[i] - G[j]) : 0.f;
  }
}

// Chunk-local inclusive cumulative sum G of a gate, e^G, and (if M) its mask. A second gate (gate2: G2, eG2, no
// mask) comes out of the same passes: its loads in flight with the first's, its sum on another warp.
template <int D>
__device__ void gate_build(const DView& gate, const Item& it, int h, float* G, float* eG, float* M,
                           const DView* gate2 = nullptr, float* G2 = nullptr, float* eG2 = nullptr) {
  using F = Cfg<D>;
  static_assert(2 * F::C <= kThreads, "a thread per gate entry");
  const int i = threadIdx.x % F::C;
  const bool first = threadIdx.x < F::C, second = gate2 && !first && threadIdx.x < 2 * F::C;
  if (first || second) {  // the loads in parallel, the sums serial (fixed order) below
    float* g = first ? G : G2;
    g[i] = i < it.n ? dscalar(first ? gate : *gate2, it.batch, it.t0 + i, h, 0.f) : 0.f;
  }
  __syncthreads();
  if (threadIdx.x == 0 || (gate2 && threadIdx.x == kThreads / 2)) {
    float* g = threadIdx.x == 0 ? G : G2;
    float v[F::C];
#pragma unroll
    for (int j = 0; j < F::C; ++j) v[j] = g[j];
    float acc = 0.f;
#pragma unroll
    for (int j = 0; j < F::C; ++j) {
      acc += v[j];
      g[j] = acc;
    }
  }
  __syncthreads();
  if (first || second) (first ? eG : eG2)[i] = i < it.n ? expf((first ? G : G2)[i]) : 0.f;
  __syncthreads();
  if (M) gate_mask<D>(G, it.n, M);
}

// Registers of a C x D tile held by this thread.
template <int D>
using Regs = float[Cfg<D>::TM][Cfg<D>::TN];

// A C x D tile (row-major, leading dimension ld: LD in shared memory, D in the fp32 scratch) <-> registers.
template <int D>
__device__ __forceinline__ void regs_from_smem(Regs<D>& r, const float* src, int ld = Cfg<D>::LD) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
#pragma unroll
  for (int i = 0; i < F::TM; ++i)
#pragma unroll
    for (int j = 0; j < F::TN; ++j) r[i][j] = src[(tr + 16 * i) * ld + tc + 16 * j];
}

template <int D>
__device__ __forceinline__ void regs_to_smem(const Regs<D>& r, float* dst, int ld = Cfg<D>::LD) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
#pragma unroll
  for (int i = 0; i < F::TM; ++i)
#pragma unroll
    for (int j = 0; j < F::TN; ++j) dst[(tr + 16 * i) * ld + tc + 16 * j] = r[i][j];
}

// Stores rows < n of a register tile into a [B,T,H,D] view.
template <int D>
__device__ __forceinline__ void regs_store(const Regs<D>& r, const DView& v, const Item& it, int h) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
#pragma unroll
  for (int i = 0; i < F::TM; ++i) {
    const int row = tr + 16 * i;
    if (row >= it.n) continue;
    const int64_t base = drow(v, it.batch, it.t0 + row, h);
#pragma unroll
    for (int j = 0; j < F::TN; ++j) dstore(v, base + tc + 16 * j, r[i][j]);
  }
}

// Contiguous C x D fp32 scratch tile (ld D) <-> registers.
template <int D>
__device__ __forceinline__ void regs_to_global(const Regs<D>& r, float* dst) {
  regs_to_smem<D>(r, dst, D);
}
template <int D>
__device__ __forceinline__ void regs_from_global(Regs<D>& r, const float* src) {
  regs_from_smem<D>(r, src, D);
}

// P = (A Bᵀ) ⊙ mask on and below the diagonal (rows < n), 0 elsewhere; A, B are C x D tiles (ld lda/ldb).
// The mask is M (ld LC) when `masked`, else ones. Result times `sign`.
template <int D>
__device__ __forceinline__ void scores_lower(float* P, const float* A, int lda, const float* B, int ldb,
                                             const float* M, int n, float sign) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
  float acc[F::TM][F::TM];
  tile_zero(acc);
  tile_mac(acc, A, lda, 1, B, 1, ldb, D, tr, tc);
#pragma unroll
  for (int i = 0; i < F::TM; ++i)
#pragma unroll
    for (int j = 0; j < F::TM; ++j) {
      const int r = tr + 16 * i, c = tc + 16 * j;
      P[r * F::LC + c] = (c <= r && r < n) ? sign * acc[i][j] * M[r * F::LC + c] : 0.f;
    }
}

// The chunk operator on the iterate in X (docs/algorithm.md): acc = diag(e^G) X H̄ᵀ + ((X Kᵀ) ⊙ M) K, i.e.
// row i holds H_i x_i (adjoint = true: H_iᵀ x_i, with H̄ read transposed). Overwrites P. Caller syncs
// before (X ready) and after (before X or P change).
template <int D>
__device__ __forceinline__ void op_apply(ChunkSmem<D>& s, const float* X, int n, bool adjoint, Regs<D>& acc) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
  scores_lower<D>(s.P, X, F::LD, s.K, F::LD, s.M, n, 1.f);
  tile_zero(acc);
  if (adjoint)
    tile_mac(acc, X, F::LD, 1, s.H, F::LD, 1, D, tr, tc);
  else
    tile_mac(acc, X, F::LD, 1, s.H, 1, F::LD, D, tr, tc);
#pragma unroll
  for (int i = 0; i < F::TM; ++i) {
    const float e = s.eG[tr + 16 * i];
#pragma unroll
    for (int j = 0; j < F::TN; ++j) acc[i][j] *= e;
  }
  __syncthreads();
  tile_mac(acc, s.P, F::LC, 1, s.K, F::LD, 1, n, tr, tc);
}


// Solver loop knobs (experiments): k-loop unroll of op_mma's phase 1, and k-pair fragments in phase 1
// (phase 2 always uses them: its k-major B loads are conflict-free only that way).
#ifndef GKA_SOLVE_UNROLL
#define GKA_SOLVE_UNROLL 2
#endif
#ifndef GKA_P1_PAIR
#define GKA_P1_PAIR 0
#endif
constexpr int kSolveUnroll = GKA_SOLVE_UNROLL;

// Warp tiling of the solver: warp w owns rows [16 rb, 16 rb + 16) and columns [ch D/2, ch D/2 + D/2) of the
// C x D iterate (rb pairs 0/3 and 1/2 on the warps that share a scheduler, w and w + 4, so the triangular
// work is balanced), and the score tiles (rb, nt = ch + 2p), p <= rb, of the lower triangle.
struct SolveWarp {
  int rb, ch, g, t;
  __device__ SolveWarp() {
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    ch = w & 1;
    rb = w < 4 ? (w >> 1) : 5 - (w >> 1);
    g = lane >> 2;
    t = lane & 3;
  }
};

// hx = diag(e^G) X H̄ᵀ + ((X Kᵀ) ⊙ M) K for this warp's tile, X in s.X (H̄ stored so that H̄[c][k] = s.H[c LD + k];
// the adjoint solve transposes s.H in place). mk: the mask values of this warp's score tiles. Writes P, syncs
// once (between the scores and their use); the caller syncs before (X ready) and after (before X/P change).
// Generalized (readout, dq~): scores with Kp, P times Vp, diag(eG), and HT = false reads H̄ k-major
// (X H̄ instead of X H̄ᵀ). KVX: Kp and Vp are exact in tf32 (mma3's BEXACT).
template <int D, bool SPLIT, bool HT = true, bool KVX = false>
__device__ __forceinline__ void op_mma(ChunkSmem<D>& s, const SolveWarp& w, const float (&mk)[4][4],
                                       float (&hx)[D / 16][4], const float* Kp = nullptr,
                                       const float* Vp = nullptr, const float* eGp = nullptr) {
  if (!Kp) Kp = s.K;
  if (!Vp) Vp = s.K;
  if (!eGp) eGp = s.eG;
  using F = Cfg<D>;
  constexpr int NT = D / 16, LD = F::LD, LC = F::LC;
  const int rb = w.rb, ch = w.ch, g = w.g, t = w.t;
  float pc[4][4];
#pragma unroll
  for (int p = 0; p < 4; ++p)
#pragma unroll
    for (int e = 0; e < 4; ++e) pc[p][e] = 0.f;
#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) hx[j][e] = 0.f;
  const float* xa = s.X + 16 * rb * LD;
  const float* hb = HT ? s.H + ch * (D / 2) * LD : s.H + ch * (D / 2);
#pragma unroll kSolveUnroll
  for (int ks = 0; ks < D / 8; ++ks) {
    uint32_t ah[4], al[4];
    if (GKA_P1_PAIR)
      frag_a_kp<SPLIT>(xa + 8 * ks, LD, g, t, ah, al);
    else
      frag_a<SPLIT>(xa + 8 * ks, LD, g, t, ah, al);
#pragma unroll
    for (int p = 0; p < 4; ++p)
      if (p <= rb) {
        uint32_t bh[2], bl[2];
        if (GKA_P1_PAIR)
          frag_b_kp<SPLIT && !KVX, true>(Kp + 8 * (ch + 2 * p) * LD + 8 * ks, LD, g, t, bh, bl);
        else
          frag_b<SPLIT && !KVX, true>(Kp + 8 * (ch + 2 * p) * LD + 8 * ks, LD, g, t, bh, bl);
        mma3<SPLIT, KVX>(pc[p], ah, al, bh, bl);
      }
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      uint32_t bh[2], bl[2];
      if (GKA_P1_PAIR) {
        if (HT)
          frag_b_kp<SPLIT, true>(hb + 8 * j * LD + 8 * ks, LD, g, t, bh, bl);
        else
          frag_b_kp<SPLIT, false>(hb + 8 * ks * LD + 8 * j, LD, g, t, bh, bl);
      } else {
        if (HT)
          frag_b<SPLIT, true>(hb + 8 * j * LD + 8 * ks, LD, g, t, bh, bl);
        else
          frag_b<SPLIT, false>(hb + 8 * ks * LD + 8 * j, LD, g, t, bh, bl);
      }
      mma3<SPLIT>(hx[j], ah, al, bh, bl);
    }
  }
  const int r0 = 16 * rb + g, r1 = r0 + 8;
  const float e0 = eGp[r0], e1 = eGp[r1];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    hx[j][0] *= e0;
    hx[j][1] *= e0;
    hx[j][2] *= e1;
    hx[j][3] *= e1;
  }
#pragma unroll
  for (int p = 0; p < 4; ++p)
    if (p <= rb) {
      const int c = 8 * (ch + 2 * p) + 2 * t;
      s.P[r0 * LC + c] = pc[p][0] * mk[p][0];
      s.P[r0 * LC + c + 1] = pc[p][1] * mk[p][1];
      s.P[r1 * LC + c] = pc[p][2] * mk[p][2];
      s.P[r1 * LC + c + 1] = pc[p][3] * mk[p][3];
    }
  __syncthreads();
  const float* pa = s.P + 16 * rb * LC;
  const float* kb = Vp + ch * (D / 2);
#pragma unroll 2
  for (int ks = 0; ks < 2 * rb + 2; ++ks) {  // P is zero right of column 16 rb + 15
    uint32_t ah[4], al[4];
    frag_a_kp<SPLIT>(pa + 8 * ks, LC, g, t, ah, al);
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      uint32_t bh[2], bl[2];
      frag_b_kp<SPLIT && !KVX, false>(kb + 8 * ks * LD + 8 * j, LD, g, t, bh, bl);
      mma3<SPLIT, KVX>(hx[j], ah, al, bh, bl);
    }
  }
}

// The mask values of this warp's score tiles (rb, ch + 2p), p <= rb (0 for p > rb), from M (ld LC).
template <int D>
__device__ __forceinline__ void mask_frag(const float* M, const SolveWarp& w, float (&mk)[4][4]) {
  constexpr int LC = Cfg<D>::LC;
  const int r0 = 16 * w.rb + w.g, r1 = r0 + 8;
#pragma unroll
  for (int p = 0; p < 4; ++p) {
    const int c = 8 * (w.ch + 2 * p) + 2 * w.t;
    const bool on = p <= w.rb;
    mk[p][0] = on ? M[r0 * LC + c] : 0.f;
    mk[p][1] = on ? M[r0 * LC + c + 1] : 0.f;
    mk[p][2] = on ? M[r1 * LC + c] : 0.f;
    mk[p][3] = on ? M[r1 * LC + c + 1] : 0.f;
  }
}

// ---- General tensor-core products outside the solver (3xTF32 ~ fp32) ----
// A fragment with A(r, k) = p[k ld + r] (transposed: Aᵀ B gram products).
template <bool SPLIT>
__device__ __forceinline__ void frag_at(const float* p, int ld, int g, int t, uint32_t (&hi)[4], uint32_t (&lo)[4]) {
  tf32_split<SPLIT>(p[t * ld + g], hi[0], lo[0]);
  tf32_split<SPLIT>(p[t * ld + g + 8], hi[1], lo[1]);
  tf32_split<SPLIT>(p[(t + 4) * ld + g], hi[2], lo[2]);
  tf32_split<SPLIT>(p[(t + 4) * ld + g + 8], hi[3], lo[3]);
}

// acc[mi][nj] += A(16 mi + .., k) B(k, 8 nj + ..) over k < K (K a multiple of 8), warp-level, 3xTF32.
// A(r, k) = A[r lda + k] (AT: A[k lda + r]); B(k, n) = B[k ldb + n] (BN: B[n ldb + k]). A and B point at the
// warp's origin (row m0 / column n0 already applied). Operands in shared or global memory. AX (BX): A (B) is
// exact in tf32 (mma3's AEXACT, BEXACT).
template <int MI, int NJ, bool AT, bool BN, bool AX = false, bool BX = false>
__device__ __forceinline__ void warp_gemm(float (&acc)[MI][NJ][4], const float* A, int lda, const float* B, int ldb,
                                          int K, int g, int t) {
#pragma unroll 1
  for (int k = 0; k < K; k += 8) {
    uint32_t ah[MI][4], al[MI][4];
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
      if (AT)
        frag_at<!AX>(A + k * lda + 16 * mi, lda, g, t, ah[mi], al[mi]);
      else
        frag_a<!AX>(A + 16 * mi * lda + k, lda, g, t, ah[mi], al[mi]);
    }
#pragma unroll
    for (int nj = 0; nj < NJ; ++nj) {
      uint32_t bh[2], bl[2];
      if (BN)
        frag_b<!BX, true>(B + 8 * nj * ldb + k, ldb, g, t, bh, bl);
      else
        frag_b<!BX, false>(B + k * ldb + 8 * nj, ldb, g, t, bh, bl);
#pragma unroll
      for (int mi = 0; mi < MI; ++mi) mma3<true, BX, AX>(acc[mi][nj], ah[mi], al[mi], bh, bl);
    }
  }
}

template <int MI, int NJ>
__device__ __forceinline__ void frag_zero(float (&acc)[MI][NJ][4]) {
#pragma unroll
  for (int mi = 0; mi < MI; ++mi)
#pragma unroll
    for (int nj = 0; nj < NJ; ++nj)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][nj][e] = 0.f;
}

// A C x N tile (N = D or C) in the SolveWarp layout: warp (rb, ch) holds rows 16 rb + g (+ 8) and columns
// ch N/2 + 8 j + 2 t (+ 1), j < N/16: element (j, e) is (row 16 rb + g + 8 (e >> 1), col ch N/2 + 8 j + 2 t + (e & 1)).
template <int N>
using FragC = float[1][N / 16][4];

// acc += A B for this warp's part of a C x N product: A(r, k) as in warp_gemm over the chunk rows.
template <int N, bool AT, bool BN, bool AX = false, bool BX = false>
__device__ __forceinline__ void tile_gemm(FragC<N>& acc, const SolveWarp& w, const float* A, int lda, const float* B,
                                          int ldb, int K) {
  const float* a0 = AT ? A + 16 * w.rb : A + 16 * w.rb * lda;
  const float* b0 = BN ? B + w.ch * (N / 2) * ldb : B + w.ch * (N / 2);
  warp_gemm<1, N / 16, AT, BN, AX, BX>(acc, a0, lda, b0, ldb, K, w.g, w.t);
}

// Row sums of per-thread partials v0 (row 16 rb + g), v1 (row + 8) over the whole row, in a fixed order, into
// dst[row] (rows < C). Uses s.rowp; syncs twice (dst readable by all threads afterwards).
__device__ __forceinline__ void frag_row_sum(float v0, float v1, const SolveWarp& w, float* rowp, float* dst) {
  v0 += __shfl_xor_sync(0xffffffffu, v0, 1);
  v0 += __shfl_xor_sync(0xffffffffu, v0, 2);
  v1 += __shfl_xor_sync(0xffffffffu, v1, 1);
  v1 += __shfl_xor_sync(0xffffffffu, v1, 2);
  const int r0 = 16 * w.rb + w.g;
  if (w.t == 0) {
    rowp[w.ch * kChunkMax + r0] = v0;
    rowp[w.ch * kChunkMax + r0 + 8] = v1;
  }
  __syncthreads();
  if (threadIdx.x < kChunkMax) dst[threadIdx.x] = rowp[threadIdx.x] + rowp[kChunkMax + threadIdx.x];
  __syncthreads();
}

// Per-thread partial row dots of a C x D frag tile with a C x D matrix B (B(r, c) = B[r ldb + c]).
template <int D>
__device__ __forceinline__ void frag_row_dot(const FragC<D>& a, const SolveWarp& w, const float* B, int ldb, float& v0,
                                             float& v1) {
  const int r0 = 16 * w.rb + w.g, cb = w.ch * (D / 2) + 2 * w.t;
  v0 = 0.f;
  v1 = 0.f;
#pragma unroll
  for (int j = 0; j < D / 16; ++j) {
    const float* b0 = B + r0 * ldb + cb + 8 * j;
    const float* b1 = b0 + 8 * ldb;
    v0 = fmaf(a[0][j][0], b0[0], v0);
    v0 = fmaf(a[0][j][1], b0[1], v0);
    v1 = fmaf(a[0][j][2], b1[0], v1);
    v1 = fmaf(a[0][j][3], b1[1], v1);
  }
}

// dst += diag(e) src on a C x D frag tile (e0 for row 16 rb + g, e1 for row + 8).
template <int D>
__device__ __forceinline__ void frag_add_rows(FragC<D>& dst, const FragC<D>& src, float e0, float e1) {
#pragma unroll
  for (int j = 0; j < D / 16; ++j) {
    dst[0][j][0] = fmaf(e0, src[0][j][0], dst[0][j][0]);
    dst[0][j][1] = fmaf(e0, src[0][j][1], dst[0][j][1]);
    dst[0][j][2] = fmaf(e1, src[0][j][2], dst[0][j][2]);
    dst[0][j][3] = fmaf(e1, src[0][j][3], dst[0][j][3]);
  }
}

// P[t][u] = f(t, u, sc_tu) for this warp's part of a C x C frag tile (P ld C + 4).
template <int C, class Fn>
__device__ __forceinline__ void frag_put(float* P, const FragC<C>& sc, const SolveWarp& w, Fn f) {
  const int r0 = 16 * w.rb + w.g, c0 = w.ch * (C / 2) + 2 * w.t;
#pragma unroll
  for (int j = 0; j < C / 16; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int t = e < 2 ? r0 : r0 + 8, u = c0 + 8 * j + (e & 1);
      P[t * (C + 4) + u] = f(t, u, sc[0][j][e]);
    }
}

// Stores rows < n of a C x D frag tile (times `scale`) into a [B,T,H,D] view.
template <int D>
__device__ __forceinline__ void frag_store(const FragC<D>& a, const SolveWarp& w, const DView& v, const Item& it, int h,
                                           float scale) {
  const int r0 = 16 * w.rb + w.g, cb = w.ch * (D / 2) + 2 * w.t;
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int row = r0 + 8 * hf;
    if (row >= it.n) continue;
    const int64_t base = drow(v, it.batch, it.t0 + row, h) + cb;
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
      dstore(v, base + 8 * j, scale * a[0][j][2 * hf]);
      dstore(v, base + 8 * j + 1, scale * a[0][j][2 * hf + 1]);
    }
  }
}

// Gram products G = Aᵀ B of two C x D tiles over rows k < K (D x D result): warp w holds rows
// [D/4 (w >> 1), + D/4) x columns [D/2 (w & 1), + D/2): MI = D/64 row blocks, NJ = D/16 column blocks.
template <int D>
using FragG = float[D / 64][D / 16][4];

template <int D, bool BN = false, bool AX = false>
__device__ __forceinline__ void gram_gemm(FragG<D>& acc, const float* A, int lda, const float* B, int ldb, int K) {
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int m0 = (w >> 1) * (D / 4), n0 = (w & 1) * (D / 2);
  warp_gemm<D / 64, D / 16, true, BN, AX>(acc, A + m0, lda, BN ? B + n0 * ldb : B + n0, ldb, K, lane >> 2, lane & 3);
}

// Calls f(r, c, v0, v1) for the element pairs (r, c), (r, c + 1) of this thread in a gram tile.
template <int D, class Fn>
__device__ __forceinline__ void gram_each(const FragG<D>& acc, Fn&& f) {
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int m0 = (w >> 1) * (D / 4), n0 = (w & 1) * (D / 2);
#pragma unroll
  for (int mi = 0; mi < D / 64; ++mi)
#pragma unroll
    for (int nj = 0; nj < D / 16; ++nj) {
      const int r = m0 + 16 * mi + g, c = n0 + 8 * nj + 2 * t;
      f(r, c, acc[mi][nj][0], acc[mi][nj][1]);
      f(r + 8, c, acc[mi][nj][2], acc[mi][nj][3]);
    }
}

// Per-token Frobenius norms by the closed form (spec §B.2) into s.f; needs H (= H̄), K, M, eG. Uses P.
// Products on tensor cores (3xTF32; KX: the K tile is exact in tf32).
template <int D, bool KX>
__device__ void fro_norms(ChunkSmem<D>& s, int n) {
  using F = Cfg<D>;
  constexpr int LD = F::LD, LC = F::LC, C = F::C;
  const SolveWarp w;
  float4 h4 = make_float4(0.f, 0.f, 0.f, 0.f);  // four sums: 16-byte loads, short dependency chains
  for (int idx = threadIdx.x; idx < D * D / 4; idx += blockDim.x) {
    const float4 x = *reinterpret_cast<const float4*>(s.H + (idx / (D / 4)) * LD + (idx % (D / 4)) * 4);
    h4 = make_float4(fmaf(x.x, x.x, h4.x), fmaf(x.y, x.y, h4.y), fmaf(x.z, x.z, h4.z), fmaf(x.w, x.w, h4.w));
  }
  const float hh = block_sum((h4.x + h4.y) + (h4.z + h4.w), s.red);
  {  // w_j = k_jᵀ H̄ k_j
    FragC<D> acc;
    frag_zero(acc);
    tile_gemm<D, false, false, KX>(acc, w, s.K, LD, s.H, LD, D);
    float v0, v1;
    frag_row_dot<D>(acc, w, s.K, LD, v0, v1);
    frag_row_sum(v0, v1, w, s.rowp, s.w);
  }
  const int r0 = 16 * w.rb + w.g, cb = w.ch * (C / 2) + 2 * w.t;
  {  // P = (K Kᵀ)²
    FragC<C> acc;
    frag_zero(acc);
    tile_gemm<C, false, true, KX, KX>(acc, w, s.K, LD, s.K, LD, D);
#pragma unroll
    for (int j = 0; j < C / 16; ++j) {
      float* p0 = s.P + r0 * LC + cb + 8 * j;
      float* p1 = p0 + 8 * LC;
      p0[0] = acc[0][j][0] * acc[0][j][0];
      p0[1] = acc[0][j][1] * acc[0][j][1];
      p1[0] = acc[0][j][2] * acc[0][j][2];
      p1[1] = acc[0][j][3] * acc[0][j][3];
    }
  }
  __syncthreads();
  {  // third_i = rowsum((M P²) ⊙ M)_i
    FragC<C> acc;
    frag_zero(acc);
    tile_gemm<C, false, false>(acc, w, s.M, LC, s.P, LC, (n + 7) & ~7);
    float v0, v1;
    frag_row_dot<C>(acc, w, s.M, LC, v0, v1);
    frag_row_sum(v0, v1, w, s.rowp, s.t0);
  }
  {  // mw_i = sum_{j <= i} M_ij w_j: four threads per row (adjacent lanes), a quarter of the columns each
    static_assert(kThreads == 4 * C, "fro_norms: four threads per row");
    const int i = threadIdx.x >> 2, q = threadIdx.x & 3, end = min(i + 1, n);
    float mw = 0.f;
#pragma unroll 4
    for (int j = q * (C / 4); j < (q + 1) * (C / 4); ++j)
      if (j < end) mw = fmaf(s.M[i * F::LC + j], s.w[j], mw);
    mw += __shfl_xor_sync(0xffffffffu, mw, 1);
    mw += __shfl_xor_sync(0xffffffffu, mw, 2);
    if (q == 0) {
      const float e = s.eG[i];
      s.f[i] = i < n ? sqrtf(fmaxf(0.f, e * e * hh + 2.f * e * mw + s.t0[i])) : 0.f;
    }
  }
  __syncthreads();
}

// In-place transpose of the D x D tile s.H (for the adjoint solve). Caller syncs before and after.
template <int D>
__device__ void square_transpose(float* H) {
  constexpr int LD = Cfg<D>::LD;
  for (int idx = threadIdx.x; idx < D * D; idx += blockDim.x) {
    const int r = idx / D, c = idx % D;
    if (c > r) {
      const float a = H[r * LD + c];
      H[r * LD + c] = H[c * LD + r];
      H[c * LD + r] = a;
    }
  }
}


}  // namespace gka::cuda
