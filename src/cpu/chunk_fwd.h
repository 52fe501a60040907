// One thread's tiles for one chunk of one head, shared by the chunked forward and backward.
#pragma once

#include <optional>

#include "cpu/chunk_solve.h"

namespace gka::cpu {

template <class T>
struct ChunkWork {
  Dims<T> d;
  Arena<T> arena;
  int64_t n = 0;                  // rows of the current chunk
  T *K, *Kt, *Q, *V;              // inputs (Cp x Dp, Dp x Cp, Cp x Dp, Cp x Dvp)
  T *Qt, *O, *X;                  // q~ (mixed query), readout, solution
  T* buf[3];                      // solver scratch, Cp x Dp each
  T *W, *Z, *M, *Mg, *P, *Y;      // operator tiles, masks, Cp x Cp scratch
  T* vec[12];                     // per-row scalars (see accessors)
  std::optional<ExactSolver<T>> exact;

  explicit ChunkWork(const Problem& p);
  Gate<T> gk() { return {vec[0], vec[1], M}; }
  Gate<T> g() { return {vec[3], vec[4], Mg}; }
  T* alpha() { return vec[2]; }
  T* fro() { return vec[5]; }

  // Rows [t0, t0+n) of head h: k, q, v, alpha, both gates and their masks.
  void load(const Problem& p, const Sequence& sq, int64_t t0, int64_t n, int64_t h);
  // The chunk operator (readout = false: Gram operator with gk; true: value readout with g).
  ChunkOp<T> op(bool readout);
  // Solves (H_i + lambda_i I) out_i = rhs_i with the configured solver; `op` must hold W for Hbar.
  void solve(const Problem& p, const ChebyshevPlan& plan, const ChunkOp<T>& op, const T* Hbar, const T* rhs,
             const T* f, T* out);
  // fro() and X from Q.
  void solve_forward(const Problem& p, const ChebyshevPlan& plan, const T* Hbar);
  void mix();                              // Qt = Q + alpha (X - Q)
  void readout(const T* Sbar, T scale);    // O = s [diag(e^Gg) Qt S̄ + ((Qt Kᵀ) ⊙ Mg) V]
};

}  // namespace gka::cpu
