// Pieces the backward's warpgroup kernels share (step_d_wg.cu, step_b2_wg.cu): 16-bit rows and fp32 values as bf16
// tiles (raw, or hi + lo pairs) in wgmma's 128-byte swizzled layout, descriptors into them, and a product with A read
// MN-major (Aᵀ B for the chunk sums).
#pragma once

#include "cuda/fwd_wg_tiles.cuh"

namespace gka::cuda {

// Rows [t0, t0 + n) of a bf16 [B,T,H,D] view with 16-byte aligned rows into a swizzled C x D tile by cp.async, rows
// >= n zero (the caller waits and fences).
template <int D>
__device__ __forceinline__ void rows_to_tile(char* tile, const DView& v, const ChunkPos& c) {
  constexpr int VPR = D / 8;
#pragma unroll 1
  for (int idx = threadIdx.x; idx < kChunkMax * VPR; idx += kThreads) {
    const int r = idx / VPR, c8 = (idx % VPR) * 8;
    const auto* src =
        static_cast<const __nv_bfloat16*>(v.p) + (r < c.n ? drow(v, c.it.batch, c.it.t0 + r, c.h) + c8 : 0);
    cp_async16_zfill(tile + sw128_bf16(kChunkMax, r, c8), src, r < c.n);
  }
}

// v (four fp32 values) at byte offset off of a pair of swizzled tiles at byte offsets hi, lo of shared memory sm.
__device__ __forceinline__ void put_pair(char* sm, uint32_t hi, uint32_t lo, uint32_t off, float4 v) {
  uint32_t h0, l0, h1, l1;
  bf16_pair(v.x, v.y, h0, l0);
  bf16_pair(v.z, v.w, h1, l1);
  *reinterpret_cast<uint2*>(sm + hi + off) = make_uint2(h0, h1);
  *reinterpret_cast<uint2*>(sm + lo + off) = make_uint2(l0, l1);
}

// gate_build's work for the backward's warpgroup kernels: each gate's chunk-local inclusive sums G (one warp per gate,
// two entries per lane, a shuffle scan where gate_build has one thread add 64 in a row), e^G, and the first gate's
// decay mask M_ij = e^{G_i - G_j} (j <= i < n; ld C + 4) where M is given, its exponentials outside branches. The
// scan adds in another order than the forward's kernels: G may differ from theirs by ~|G| 2^-24 (deterministic; far
// below the pairs' 2^-16). Syncs once, twice with M.
__device__ __forceinline__ void gate_sums(const DView& gate, const ChunkPos& c, float* G, float* eG, float* M,
                                          const DView* gate2 = nullptr, float* G2 = nullptr, float* eG2 = nullptr) {
  constexpr int C = kChunkMax, LC = C + 4;
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, n = c.n, i = 2 * lane;
  if (w == 0 || (gate2 && w == 1)) {
    const DView& g = w == 0 ? gate : *gate2;
    float *Gd = w == 0 ? G : G2, *eGd = w == 0 ? eG : eG2;
    const float a0 = i < n ? dscalar(g, c.it.batch, c.it.t0 + i, c.h, 0.f) : 0.f;
    const float a1 = i + 1 < n ? dscalar(g, c.it.batch, c.it.t0 + i + 1, c.h, 0.f) : 0.f;
    float s = a0 + a1;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float v = __shfl_up_sync(0xffffffffu, s, o);
      if (lane >= o) s = v + s;
    }
    const float before = __shfl_up_sync(0xffffffffu, s, 1), g0 = (lane ? before : 0.f) + a0, g1 = g0 + a1;
    Gd[i] = g0, Gd[i + 1] = g1;
    eGd[i] = i < n ? expf(g0) : 0.f, eGd[i + 1] = i + 1 < n ? expf(g1) : 0.f;
  }
  __syncthreads();
  if (M) {
    for (int idx = threadIdx.x; idx < C * C; idx += blockDim.x) {
      const int r = idx / C, j = idx % C;
      const float e = expf(G[r] - G[j]);
      M[r * LC + j] = (j <= r && r < n) ? e : 0.f;
    }
    __syncthreads();
  }
}

// Leading dimension of the fp32 stages (128 columns) through which accumulators go out: 8 floats of padding put the
// rows of one float2 store (the accumulator's rows g, g + 8 per quad) on distinct banks (a 128-float stride: 8-way).
constexpr int kStageLd = 128 + 8;

// Descriptors: rows [r0, r0 + N) x k-step ks of a swizzled tile of R rows at `b` (K-major), and k rows [16 ks, + 16) x
// columns [n0, n0 + N) of it read MN-major.
__device__ __forceinline__ uint64_t kmaj(uint32_t b, int R, int r0, int ks) {
  return sw128_desc_bf16_at(b, R, r0, 16 * ks);
}
__device__ __forceinline__ uint64_t mnmaj(uint32_t b, int R, int ks, int n0) {
  return sw128_desc_mn_at(b, R, 16 * ks, n0);
}

// d (+)= Aᵀ B for a 64 x 64 x 16 step, A and B bf16 by descriptor, both read MN-major (A's M index and B's N index
// contiguous: A is stored K x M).
__device__ __forceinline__ void wgmma_at_b(float (&d)[32], uint64_t a, uint64_t b, int accumulate) {
  wgmma_bf16_n64<1, 1>(d, a, b, accumulate);
}

}  // namespace gka::cuda
