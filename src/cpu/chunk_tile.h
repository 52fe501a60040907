// Chunk bookkeeping of the CPU backend: the list of chunks of all sequences, where each chunk-start
// state lives, and the per-thread tiles one chunk is loaded into (compute type T, columns padded with
// zeros to the SIMD width so the GEMM kernel never needs a column tail).
#pragma once

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/access.h"
#include "common/problem.h"
#include "cpu/gemm.h"

namespace gka::cpu {

template <class T>
using AlignedVec = std::vector<T, Eigen::aligned_allocator<T>>;

inline int thread_count(const Problem& p) { return p.num_threads > 0 ? p.num_threads : omp_get_max_threads(); }

// All chunks of all sequences. Sequence s owns chunks [first[s], first[s] + count[s]) and the state slots
// [first[s] + s, first[s] + s + count[s]] (count[s] + 1 slots: chunk starts plus the final state).
struct ChunkPlan {
  struct Item {
    int64_t seq, chunk, t0, n;  // sequence index, chunk index within it, first row, rows
  };
  std::vector<Item> items;
  std::vector<int64_t> first, count;
  int64_t slots = 0;

  int64_t slot(int64_t seq, int64_t chunk) const { return first[seq] + seq + chunk; }
};

inline ChunkPlan chunk_plan(const Problem& p) {
  ChunkPlan plan;
  const int64_t C = p.chunk_size;
  for (int64_t s = 0; s < p.num_seqs(); ++s) {
    const Sequence& q = p.seqs[s];
    plan.first.push_back(static_cast<int64_t>(plan.items.size()));
    const int64_t nc = q.state < 0 ? 0 : (q.length + C - 1) / C;  // skipped sequences get no work
    plan.count.push_back(nc);
    for (int64_t c = 0; c < nc; ++c)
      plan.items.push_back({s, c, q.start + c * C, std::min(C, q.length - c * C)});
  }
  plan.slots = static_cast<int64_t>(plan.items.size()) + p.num_seqs();
  return plan;
}

// Padded sizes shared by every tile of a call.
template <class T>
struct Dims {
  int64_t D, Dv, C, Dp, Dvp, Cp;
  explicit Dims(const Problem& p)
      : D(p.D), Dv(p.Dv), C(p.chunk_size), Dp(round_up(p.D, kLanes<T>)), Dvp(round_up(p.Dv, kLanes<T>)),
        Cp(round_up(p.chunk_size, kLanes<T>)) {}
  int64_t hsize() const { return Dp * Dp; }
  int64_t ssize() const { return Dp * Dvp; }
};

// The tiles one thread uses during one call: zero-initialised, aligned, allocated once per call (never in
// the per-chunk loops). Each tile is its own block, so a tile overrun shows up in sanitizer builds.
template <class T>
class Arena {
 public:
  T* take(int64_t n) {
    blocks_.emplace_back(static_cast<size_t>(std::max<int64_t>(n, 1)), T(0));
    return blocks_.back().data();
  }

 private:
  std::vector<AlignedVec<T>> blocks_;
};

// Loads rows [t0, t0+n) of head h of a [B,T,H,X] view into a tile with leading dimension ld; rows n..rows
// of the tile are zeroed so stale rows of a previous (longer) chunk never leak in.
template <class T>
void tile_load(const TensorView& v, int64_t b, int64_t t0, int64_t n, int64_t h, int64_t width, T* tile,
               int64_t ld, int64_t rows) {
  for (int64_t i = 0; i < n; ++i) load(v, row_offset(v, b, t0 + i, h), tile + i * ld, width);
  std::fill(tile + n * ld, tile + rows * ld, T(0));
}

template <class T>
void tile_store(const TensorView& v, int64_t b, int64_t t0, int64_t n, int64_t h, int64_t width, const T* tile,
                int64_t ld) {
  for (int64_t i = 0; i < n; ++i) store(v, row_offset(v, b, t0 + i, h), tile + i * ld, width);
}

// dst[c][r] = src[r][c] for r < rows, c < cols.
template <class T>
void transpose(const T* src, int64_t lds, int64_t rows, int64_t cols, T* dst, int64_t ldd) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c];
}

// Chunk-local inclusive cumulative log-decays G (0 when the gate is absent), e^G, and the decay mask
// M_ij = e^{G_i - G_j} (j <= i; exponents are <= 0 for non-positive gates), ld Cp.
template <class T>
struct Gate {
  T* G;
  T* eG;
  T* M;
  void build(const TensorView& gate, int64_t b, int64_t t0, int64_t n, int64_t h, int64_t Cp) {
    T acc = 0;
    for (int64_t i = 0; i < n; ++i) {
      acc += load_scalar<T>(gate, b, t0 + i, h, T(0));
      G[i] = acc;
      eG[i] = std::exp(acc);
    }
    for (int64_t i = 0; i < n; ++i) {
      T* row = M + i * Cp;
      for (int64_t j = 0; j <= i; ++j) row[j] = std::exp(G[i] - G[j]);
      std::fill(row + i + 1, row + Cp, T(0));
    }
  }
};

}  // namespace gka::cpu
