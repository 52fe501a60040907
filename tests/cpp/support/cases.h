// The shared case table (tests/cases.json) and the inputs, forward and backward runs built from it.
// Every backend is compared with the fp64 reference over the same cases.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "gka/gka.h"
#include "harness/layer_problem.h"
#include "harness/tensor.h"

namespace gka::test {

using harness::Tensor;

struct Case {
  std::string name;
  int64_t B = 2, T = 64, H = 2, D = 16, Dv = -1;  // Dv = -1: same as D
  std::string gates = "tied";       // tied (gk = g), untied, none, g_only, gk_only
  std::string gate_strength = "mild";  // mild: log U(0.8, 0.999); strong: layer-like -A softplus(.), A ~ U(0, 16)
  bool alpha = true;                // false: alpha absent (= 1)
  bool h0 = false;                  // random initial states
  std::vector<int64_t> varlen;      // sequence lengths packed into one row (B must be 1); empty: no varlen
  int32_t num_iter = 30;
  double ridge_ratio = 0.02;
  int32_t chunk_size = 64;
  std::string solver = "chebyshev";
  bool lambda_grad = true;
  std::string dtype = "f32";        // dtype of q, k, v (gates and states in fp32, fp64 with f64)

  int64_t dv() const { return Dv < 0 ? D : Dv; }
  int64_t num_seqs() const { return varlen.empty() ? B : static_cast<int64_t>(varlen.size()); }
  Options options(Backend backend) const;
  harness::Shape shape() const;  // throws on an unknown gates, gate_strength or dtype name
};

std::vector<Case> cases_load();   // tests/cases.json
std::string case_id(const Case& c);  // GoogleTest-safe name
void PrintTo(const Case& c, std::ostream* os);  // what GoogleTest prints for a Case parameter: its id

// Inputs of a case, drawn from `seed` as harness/layer_problem.h describes (layer-like: unit q, k; k, v
// scaled by sigmoid(randn) + 1e-6), and the buffers of its forward and backward.
using CaseInputs = harness::LayerInputs;
using ForwardResult = harness::ForwardBuffers;
using BackwardResult = harness::GradientBuffers;
using BackwardSeeds = harness::GradientSeeds;  // d_o and the gradients at both final states

CaseInputs inputs_make(const Case& c, uint64_t seed);
// Runs chunk_forward (or recurrent_forward) with NaN-poisoned outputs, x and fro included.
ForwardResult forward_run(const Case& c, const CaseInputs& in, Backend backend, bool recurrent = false);
BackwardSeeds seeds_make(const Case& c, uint64_t seed);
// Runs chunk_backward (x and fro recomputed) with NaN-poisoned gradients, one for each input `in` holds.
BackwardResult backward_run(const Case& c, const CaseInputs& in, const BackwardSeeds& seeds, Backend backend);

DType dtype_parse(const std::string& name);

}  // namespace gka::test

namespace gka::test {
// The same inputs (exactly: every supported dtype embeds in fp64) as fp64 tensors, and the case in fp64:
// what the oracle is run on.
CaseInputs inputs_to_f64(const CaseInputs& in);
Case case_in_f64(Case c);
BackwardSeeds seeds_to_f64(const BackwardSeeds& s);
}  // namespace gka::test

namespace gka::test {
// How much the readout o_t = s S_tᵀ q̃_t amplifies relative rounding of q̃ (or of x inside it):
// sqrt(Σ_t (s ‖S_t‖_F ‖q̃_t‖)²) / ‖o‖, from fp64 inputs and the oracle's x and o. Early tokens after a
// sequence start have ‖x_t‖ ~ ‖q_t‖/(r f_t) whose components outside the span of the keys cancel in
// S_tᵀ q̃_t (spec §A.3), so an fp32 x of relative accuracy eps gives o a relative error of eps times this.
double readout_amplification(const Case& c, const CaseInputs& in64, const ForwardResult& ref64);
}  // namespace gka::test
