// Chunk-start states by a sequential scan over each sequence's chunks (parallel over sequences x heads):
//   H̄_{c+1} = e^{G_last} H̄_c + Kᵀ diag(e^{G_last - G}) K,   S̄_{c+1} = e^{Gg_last} S̄_c + Kᵀ diag(e^{Gg_last - Gg}) V.
#pragma once

#include "cpu/chunk_tile.h"

namespace gka::cpu {

// Buffers indexed by (state slot, head): Dp x Dp tiles for H̄ and Dp x Dvp tiles for S̄, slot 0 of a
// sequence holding its initial state and slot count[s] its final state.
template <class T>
struct ChunkStates {
  AlignedVec<T> H, S;
  T* h(const Dims<T>& d, int64_t slot, int64_t head, int64_t heads) {
    return H.data() + (slot * heads + head) * d.hsize();
  }
  T* s(const Dims<T>& d, int64_t slot, int64_t head, int64_t heads) {
    return S.data() + (slot * heads + head) * d.ssize();
  }
};

template <class T>
void chunk_states_scan(const Problem& p, const ChunkPlan& plan, ChunkStates<T>& st);

// Writes the final states of every sequence (slot count[s]) to out views when defined.
template <class T>
void chunk_states_store(const Problem& p, const ChunkPlan& plan, ChunkStates<T>& st, const TensorView& final_kk,
                        const TensorView& final_kv);

}  // namespace gka::cpu
