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

}  // namespace gka::cuda
