// Gradient accuracy through a stack of GKA layers (the paper's 5-layer experiment, spec §H.6).
//
// Layer l (width D, one head): q_t = normalize(Wq x_t), k_t = beta_t normalize(Wk x_t), v_t = Wv x_t,
// the GKA core (gk = g tied, lambda mode and solver of the run, alpha_t fixed), y_t = x_t + tanh(Wo o_t).
// Loss L = sum_t <c_t, y_t> at the top. Gates, alpha, beta and c are fixed random inputs.
// The backward is written by hand: the core's implicit gradient of spec §C.3 with the lambda path
// (docs/algorithm.md, per token), the adjoint solve done by the run's own solver (CG therefore gets the
// "CG with implicit differentiation" gradient of the paper), and plain chain rule for the rest.
#pragma once

#include <cstdint>
#include <vector>

#include "study/forward.h"

namespace gka::study {

struct GradProblem {
  int64_t D = 32, T = 128;
  int layers = 5;
  uint64_t seed = 7;
  double gamma_lo = 0.8, gamma_hi = 0.999;
  int64_t perturb_index = -1;  // for finite-difference tests: x0[perturb_index] += perturb
  double perturb = 0.0;
};

struct GradRun {
  double loss = 0;
  std::vector<std::vector<double>> dx;  // [layers + 1]: dL/dX at the input of layer l (l = 0 bottom), [T*D]
  std::vector<std::vector<double>> dw;  // [layers]: (dWq, dWk, dWv, dWo) of layer l flattened
  bool finite = true;
};

// Forward and backward of the whole stack with the given solver (spec.solver: chebyshev | cg | exact).
GradRun gradient_run(const GradProblem& prob, const RunnerSpec& spec);

}  // namespace gka::study
