// bf16 tiles for the products of the backward's dk / dv kernel with precision mixed on bf16 inputs
// (step_d_bf16_kernel): a raw tile (bf16 inputs: exact in one term) or a pair tile of fp32 values v = hi + lo, hi =
// bf16(v), lo = bf16(v - hi) (16 significant bits, ~2^-17 relative), its lo tile right after its hi tile. A product of
// two tiles sums one mma.sync bf16 term per pair of pieces (lo lo dropped): A B ~ a_lo b_hi + a_hi b_lo + a_hi b_hi,
// fewer where a tile is raw. Split once per tile, where 3xTF32 (chunk_tile.cuh) split every fragment in every warp that
// loaded it; m16n8k16 against m16n8k8 halves the mma count again. Rows are padded by 8 halves (16 bytes), so the eight
// rows of an ldmatrix phase fall on distinct banks. Results land in the SolveWarp fragment layout (FragC), so the fp32
// helpers of chunk_tile.cuh apply to them.
#pragma once

#include "cuda/chunk_tile.cuh"

namespace gka::cuda {

// A ROWS x COLS bf16 tile at `hi` (ld COLS + 8 halves) and, for a pair tile, its lo tile at `lo` (else null).
struct BTile {
  __nv_bfloat16* hi;
  __nv_bfloat16* lo;
  int ld;
};

// Bytes of a raw (PAIR = false) or pair tile of ROWS x COLS.
template <int ROWS, int COLS, bool PAIR>
inline constexpr uint32_t kTileBytes = (PAIR ? 2u : 1u) * ROWS * (COLS + 8) * 2u;

template <int ROWS, int COLS, bool PAIR>
__device__ __forceinline__ BTile btile_at(void* smem, uint32_t offset) {
  auto* hi = reinterpret_cast<__nv_bfloat16*>(static_cast<char*>(smem) + offset);
  return {hi, PAIR ? hi + ROWS * (COLS + 8) : nullptr, COLS + 8};
}

// Writes v0, v1 at (r, c), (r, c + 1) of a pair tile (c even).
__device__ __forceinline__ void pair_put(const BTile& t, int r, int c, float v0, float v1) {
  uint32_t hi, lo;
  bf16_pair(v0, v1, hi, lo);
  *reinterpret_cast<uint32_t*>(t.hi + r * t.ld + c) = hi;
  *reinterpret_cast<uint32_t*>(t.lo + r * t.ld + c) = lo;
}

// The value at (r, c): hi + lo of a pair tile, hi of a raw one.
__device__ __forceinline__ float btile_at_rc(const BTile& t, int r, int c) {
  const float v = __bfloat162float(t.hi[r * t.ld + c]);
  return t.lo ? v + __bfloat162float(t.lo[r * t.ld + c]) : v;
}

// A contiguous ROWS x COLS fp32 tile (global, ld COLS, 16-byte aligned) into a pair tile; all of a thread's loads
// are issued before its first store, in rolled batches of at most 8 (a D x D tile unrolled to ~400 SASS
// instructions). Callers sync before use.
template <int ROWS, int COLS>
__device__ __forceinline__ void pairs_from_global(const BTile& t, const float* src) {
  constexpr int PER = ROWS * COLS / 4 / kThreads;
  tile_ldg_each<ROWS, COLS, (PER < 8 ? PER : 8)>(src, [&](int r, int c, float4 v) {
    pair_put(t, r, c, v.x, v.y);
    pair_put(t, r, c + 2, v.z, v.w);
  });
}

// Rows [t0, t0 + n) of head h of a bf16 [B,T,H,D] view into a raw C x D tile, rows >= n zeroed: cp.async copies
// where the rows are 16-byte aligned (the caller waits), else element by element.
template <int D>
__device__ __forceinline__ void rows_copy_bf16(const BTile& t, const DView& v, const Item& it, int h) {
  constexpr int VPR = D / 8;
  if (rows_fast(v)) {
    for (int idx = threadIdx.x; idx < kChunkMax * VPR; idx += kThreads) {
      const int r = idx / VPR, c8 = (idx % VPR) * 8;
      const auto* src = static_cast<const __nv_bfloat16*>(v.p) + (r < it.n ? drow(v, it.batch, it.t0 + r, h) + c8 : 0);
      cp_async16_zfill(t.hi + r * t.ld + c8, src, r < it.n);
    }
    return;
  }
  for (int idx = threadIdx.x; idx < kChunkMax * D; idx += kThreads) {
    const int r = idx / D, c = idx % D;
    t.hi[r * t.ld + c] = r < it.n ? static_cast<const __nv_bfloat16*>(v.p)[drow(v, it.batch, it.t0 + r, h) + c]
                                  : __float2bfloat16_rn(0.f);
  }
}

// Rows < n of a C x D frag tile into a [B,T,H,D] view, through `stage` (a raw C x D tile's room in shared memory,
// free): bf16 pairs in, 16-byte row pieces out (the fragments' own 2-byte stores were ~8 % of step_d's stall
// samples). Views that are not 16-byte aligned bf16: frag_store. Syncs once; the caller syncs before reusing stage.
template <int D>
__device__ __forceinline__ void frag_store_rows(const FragC<D>& a, const SolveWarp& w, const DView& v, const Item& it,
                                                int h, __nv_bfloat16* stage) {
  if (v.dt != 2 || !rows_fast(v)) {
    frag_store<D>(a, w, v, it, h, 1.f);
    return;
  }
  constexpr int LDS = D + 8, VPR = D / 8;
  const int r0 = 16 * w.rb + w.g, cb = w.ch * (D / 2) + 2 * w.t;
#pragma unroll
  for (int j = 0; j < D / 16; ++j)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf)
      *reinterpret_cast<__nv_bfloat162*>(stage + (r0 + 8 * hf) * LDS + cb + 8 * j) =
          __floats2bfloat162_rn(a[0][j][2 * hf], a[0][j][2 * hf + 1]);
  __syncthreads();
  for (int idx = threadIdx.x; idx < it.n * VPR; idx += kThreads) {
    const int r = idx / VPR, c8 = (idx % VPR) * 8;
    *reinterpret_cast<uint4*>(static_cast<__nv_bfloat16*>(v.p) + drow(v, it.batch, it.t0 + r, h) + c8) =
        *reinterpret_cast<const uint4*>(stage + r * LDS + c8);
  }
}

// acc += A B for this warp's part (SolveWarp layout) of a C x N product over k < K (K a multiple of 16): A the
// C x K tile a, row-major; B(k, n) = b[k][n] (k-major), or b[n][k] where BN. ALO / BLO: a / b is a pair tile.
template <int N, bool BN, bool ALO, bool BLO>
__device__ __forceinline__ void pair_gemm(FragC<N>& acc, const SolveWarp& w, const BTile& a, const BTile& b, int K) {
  const int lane = threadIdx.x & 31, q = lane >> 3, i = lane & 7, n0 = w.ch * (N / 2);
  // ldmatrix x4: lane 8 q + i gives row i of matrix q. A: matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15), q & 1
  // picking the rows. B, two n8 blocks: matrix q covers k 8 (q & 1) .. + 7 and n 8 (q >> 1) .. + 7, read
  // transposed from a k-major tile.
  const int ao = (16 * w.rb + (lane & 15)) * a.ld + 8 * (lane >> 4);
  const int bo = BN ? (n0 + 8 * (q >> 1) + i) * b.ld + 8 * (q & 1) : (8 * (q & 1) + i) * b.ld + n0 + 8 * (q >> 1);
#pragma unroll 1
  for (int k = 0; k < K; k += 16) {
    uint32_t ah[4], al[4];
    ldsm_x4(ah, a.hi + ao + k, false);
    if constexpr (ALO) ldsm_x4(al, a.lo + ao + k, false);
#pragma unroll
    for (int np = 0; np < N / 32; ++np) {
      const int o = BN ? bo + 16 * np * b.ld + k : bo + k * b.ld + 16 * np;
      uint32_t bh[4], bl[4];
      ldsm_x4(bh, b.hi + o, !BN);
      if constexpr (BLO) ldsm_x4(bl, b.lo + o, !BN);
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        float(&d)[4] = acc[0][2 * np + u];
        const uint32_t bhu[2] = {bh[2 * u], bh[2 * u + 1]};
        if constexpr (ALO) mma_bf16(d, al, bhu);
        if constexpr (BLO) {
          const uint32_t blu[2] = {bl[2 * u], bl[2 * u + 1]};
          mma_bf16(d, ah, blu);
        }
        mma_bf16(d, ah, bhu);
      }
    }
  }
}

// P[t][u] = f(t, u, sc_tu) into a C x C pair tile, for this warp's part of sc.
template <int C, class Fn>
__device__ __forceinline__ void frag_put_pair(const BTile& P, const FragC<C>& sc, const SolveWarp& w, Fn f) {
  const int r0 = 16 * w.rb + w.g, c0 = w.ch * (C / 2) + 2 * w.t;
#pragma unroll
  for (int j = 0; j < C / 16; ++j)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const int t = r0 + 8 * hf, u = c0 + 8 * j;
      pair_put(P, t, u, f(t, u, sc[0][j][2 * hf]), f(t, u + 1, sc[0][j][2 * hf + 1]));
    }
}

// Per-thread partial row dots of a C x D frag tile with a C x D bf16 tile (as frag_row_dot).
template <int D>
__device__ __forceinline__ void frag_row_dot_b(const FragC<D>& a, const SolveWarp& w, const BTile& b, float& v0,
                                               float& v1) {
  const int r0 = 16 * w.rb + w.g, cb = w.ch * (D / 2) + 2 * w.t;
  v0 = 0.f;
  v1 = 0.f;
#pragma unroll
  for (int j = 0; j < D / 16; ++j)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      v0 = fmaf(a[0][j][e], btile_at_rc(b, r0, cb + 8 * j + e), v0);
      v1 = fmaf(a[0][j][2 + e], btile_at_rc(b, r0 + 8, cb + 8 * j + e), v1);
    }
}

}  // namespace gka::cuda
