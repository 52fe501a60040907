// The validated, resolved form of a call: what every backend sees.
#pragma once

#include <cstdint>
#include <vector>

#include "gka/params.h"

namespace gka {

// One independent sequence: rows [start, start+length) of batch row `batch`.
struct Sequence {
  int64_t batch = 0;
  int64_t start = 0;
  int64_t length = 0;
  int64_t state = 0;  // row of the initial/final state views; -1: skip (pool padding, output zeros)
};

struct Problem {
  Inputs in;                    // the caller's views (alpha/g/gk/initial may be absent)
  int64_t B = 0, T = 0, H = 0, D = 0, Dv = 0;
  std::vector<Sequence> seqs;   // N sequences
  bool fp64 = false;            // compute in fp64 (fp64 inputs); fp32 otherwise
  double scale = 1.0;           // readout scale s
  double ridge_ratio = 0.02;
  int32_t num_iter = 30;
  int32_t chunk_size = 64;
  Solver solver = Solver::chebyshev;
  Precision precision = Precision::fp32;
  bool lambda_grad = true;
  int32_t num_threads = 0;
  void* cuda_stream = nullptr;  // cudaStream_t for the cuda backend (Options::cuda_stream)

  int64_t num_seqs() const { return static_cast<int64_t>(seqs.size()); }
};

enum class Phase { chunk_forward, chunk_backward, recurrent_forward, pool_step };

// Checks every argument of a call and resolves it; throws gka::Error naming what is wrong.
Problem problem_make(const Inputs& in, const Options& opt, Phase phase);
void outputs_check(const Problem& p, const ForwardOutputs& out);
void backward_check(const Problem& p, const BackwardInputs& gin, const Gradients& gout);
void pool_check(const Problem& p, const StatePool& pool, const TensorView& o);

}  // namespace gka
