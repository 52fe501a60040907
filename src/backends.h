// The backends' entry points: every backend implements the same calls over a validated Problem.
#pragma once

#include "common/problem.h"

namespace gka::reference {
// Token-by-token recurrence in fp64 (spec §A.4), for any solver; also the decode path of the oracle.
void forward(const Problem& p, const ForwardOutputs& out);
// Implicit-gradient backward in fp64 (spec §C.3) with the full initial-state and final-state terms.
void backward(const Problem& p, const BackwardInputs& gin, const Gradients& gout);
}  // namespace gka::reference

namespace gka::cpu {
void chunk_forward(const Problem& p, const ForwardOutputs& out);
void chunk_backward(const Problem& p, const BackwardInputs& gin, const Gradients& gout);
// Token-by-token forward with states in/out (decode); honours Sequence::state (pool slots, -1 = skip).
void recurrent_forward(const Problem& p, const ForwardOutputs& out);
}  // namespace gka::cpu

namespace gka::cuda {
// The CUDA backend (src/cuda/): device tensors, f32/bf16/f16 inputs, D in {64, 128}, Dv == D, chebyshev solver,
// chunk_size <= 64; anything else throws gka::Error. Runs on the legacy default stream.
void chunk_forward(const Problem& p, const ForwardOutputs& out);
void chunk_backward(const Problem& p, const BackwardInputs& gin, const Gradients& gout);
// Token-by-token forward with states in/out (decode); honours Sequence::state (pool slots, -1 = skip).
void recurrent_forward(const Problem& p, const ForwardOutputs& out);
}  // namespace gka::cuda
