// Chunk-start states on the device (docs/algorithm.md, forward step 1), shared by the forward and backward:
// H̄_{c+1} = e^{G_last} H̄_c + L_c over each sequence's chunks, with L_c = Kᵀ diag(e^{G_last - G}) K (resp. V)
// the chunk's local contribution. Buffers: H̄ and S̄ tiles of D x D fp32,
// slot-major ((slot * H + h) * D * D); decay[(item * H + h) * 2 + {0: gk, 1: g}] = e^{G_last}; stat below.
#pragma once

#include "cuda/common.cuh"

namespace gka::cuda {

struct StateBufs {
  float* Hs;
  float* Ss;
  float* decay;
  float2* stat;  // per state, kStateParts partials (max |x|, Σ x²): state_stat_index
  int64_t slots = 0;  // states per head in Hs and Ss (Plan::slots)
};

// Partials per state of its largest |element| and squared Frobenius norm, one per warp of the states kernels (D / RB
// row blocks of 8 warps), so that their consumers (fwd_wg.cuh) need not read a state twice (once for its scale).
inline constexpr int kStateParts = 32;
__host__ __device__ constexpr int64_t state_stat_index(int64_t tile, int which) {
  return (tile * 2 + which) * kStateParts;  // tile: slot * H + h; which: 0 H̄, 1 S̄
}

// Fills every slot of the state buffers and writes final_kk / final_kv when defined.
void states_compute(const Problem& p, const Item* items, const SeqInfo* seqs, const StateBufs& st,
                    const TensorView& final_kk, const TensorView& final_kv, const char* fn);

// ---- device helpers of the states kernels (chunk_states.cu, states_wg.cu) ----

// One warp: the chunk's weights w_j = e^{G_last - G_j} (0 from row n on) into w[0, C) and e^{G_last} into w[C],
// from suffix sums of the gate (lane l holds rows 2l, 2l + 1, zero from n on).
__device__ __forceinline__ void gate_weights(float g0, float g1, int n, float* w) {
  const int lane = threadIdx.x & 31;
  float p = g0 + g1;  // becomes Σ over rows >= 2 lane
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float t = __shfl_down_sync(0xffffffffu, p, o);
    if (lane + o < 32) p += t;
  }
  const float after = __shfl_down_sync(0xffffffffu, p, 1);
  const float e1 = lane < 31 ? after : 0.f;  // Σ over rows > 2 lane + 1
  w[2 * lane] = 2 * lane < n ? expf(g1 + e1) : 0.f;
  w[2 * lane + 1] = 2 * lane + 1 < n ? expf(e1) : 0.f;
  if (lane == 0) w[kChunkMax] = expf(p);
}

// x0, x1 as three packed bf16 pairs hi + mid + lo, each the rounding of what the ones before left (the
// subtractions are exact): ~2^-24 relative, the fp32 level, for products whose other operand is exact in bf16.
__device__ __forceinline__ void bf16_pieces(float x0, float x1, uint32_t& hi, uint32_t& mid, uint32_t& lo) {
  bf16_pair(x0, x1, hi, mid);  // common.cuh: hi + mid
  __nv_bfloat162 h, m;
  memcpy(&h, &hi, 4);
  memcpy(&m, &mid, 4);
  const float2 hf = __bfloat1622float2(h), mf = __bfloat1622float2(m);
  uint32_t unused;
  bf16_pair((x0 - hf.x) - mf.x, (x1 - hf.y) - mf.y, lo, unused);
}

// The Hopper states kernel (states_wg.cu) for bf16 k and v with 16-byte aligned rows: the recurrence of
// states_compute on warpgroup products, the same outputs. False (nothing launched) where the driver cannot encode
// the tensor maps it reads k and v by.
bool states_wg_compute(const Problem& p, const SeqInfo* seqs, const StateBufs& st, const TensorView& final_kk,
                       const TensorView& final_kv, const char* fn);

}  // namespace gka::cuda
