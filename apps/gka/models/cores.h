// The state recurrences of the baseline mixers, as free functions so tests can check them against the
// literal definitions. Shapes: q, k, v [B, T, H, D]; g (natural-log decay <= 0), beta [B, T, H];
// state [B, H, Dk, Dv] (the transpose of S in S_t = ... v kᵀ), zero when undefined, replaced by the final one.
#pragma once

#include <ATen/ATen.h>

namespace gka::cli {

// Gated DeltaNet: S_t = e^{g_t} S_{t-1} (I - beta_t k_t k_tᵀ) + beta_t v_t k_tᵀ,  o_t = scale · S_t q_t.
// Token-by-token (differentiable through autograd): the reference, and the decode step.
at::Tensor gdn_recurrent(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                         const at::Tensor& beta, double scale, at::Tensor* state);

// The same recurrence in chunks of `chunk` tokens (WY/UT form, Yang et al. 2024): per chunk a unit-lower-
// triangular solve replaces the token loop; only the state is carried from chunk to chunk. Equal to
// gdn_recurrent up to rounding, for any T (the last chunk may be partial); differentiable through autograd.
at::Tensor gdn_chunked(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                       const at::Tensor& beta, double scale, at::Tensor* state, int64_t chunk = 64);

// Gated linear attention with a scalar decay per head (Mamba2-style): S_t = e^{g_t} S_{t-1} + v_t k_tᵀ,
// o_t = scale · S_t q_t. Evaluated in chunks of `chunk` tokens (quadratic inside a chunk, state across).
at::Tensor gla_chunked(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                       double scale, at::Tensor* state, int64_t chunk = 64);

}  // namespace gka::cli
