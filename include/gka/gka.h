// libgka: the Gated KalmaNet (GKA) sequence operator. Torch-free C++20 API.
//
//   H_t = e^{gk_t} H_{t-1} + k_t k_t^T,   S_t = e^{g_t} S_{t-1} + k_t v_t^T,   lambda_t = r ||H_t||_F
//   x_t ~ (H_t + lambda_t I)^{-1} q_t,    q~_t = q_t + alpha_t (x_t - q_t),     o_t = s S_t^T q~_t
//
// All entry points validate their arguments and throw gka::Error on misuse.
#pragma once

#include "gka/error.h"
#include "gka/params.h"
#include "gka/tensor_view.h"

namespace gka {

// Chunked forward over whole sequences (training and prefill).
void chunk_forward(const Inputs& in, const ForwardOutputs& out, const Options& opt = {});

// Gradients of chunk_forward (spec §C, implicit differentiation of the solve, including the lambda path,
// the initial-state gradients and gradients arriving at the final states).
void chunk_backward(const Inputs& in, const BackwardInputs& grad_in, const Gradients& grad_out,
                    const Options& opt = {});

// Token-by-token forward for decoding T >= 1 tokens with state in/out (final_* may alias initial_*).
void recurrent_forward(const Inputs& in, const ForwardOutputs& out, const Options& opt = {});

// One decode call for a batch of requests whose states live in a pool: row b of q/k/v/... (T >= 1 tokens)
// continues the sequence in slot pool.slots[b]; the pool is updated in place. in.initial_* and
// in.cu_seqlens must be absent.
void decode_pool_step(const Inputs& in, const StatePool& pool, const TensorView& o, const Options& opt = {});

// Smallest num_iter whose Chebyshev worst-case relative error 2 s^{N+1} / (1 + s^{2(N+1)}), with
// s = (sqrt(kappa)-1)/(sqrt(kappa)+1) and kappa = (1+r)/r, is at most `tolerance` (spec §A.3).
int32_t num_iter_for_tolerance(double ridge_ratio, double tolerance);

// The a-priori Chebyshev bound above for a given num_iter.
double chebyshev_error_bound(double ridge_ratio, int32_t num_iter);

// Number of CUDA devices visible (0 when the CUDA backend is not built or no device/driver exists).
int32_t cuda_device_count();

// The CUDA backend keeps the device memory of its scratch buffers (intermediate states and sums, ~1.3 GB for a
// backward at 8 x 2048 x 16 heads) in a pool per device between calls, as a caching allocator does; this returns what
// no call is using to the system (synchronize the streams of earlier calls first: their scratch is freed in stream
// order). A no-op without the CUDA backend.
void cuda_release_scratch();

// Floating-point operations per token and head of the chunked forward / backward, spec §B.4 and §C.4.
double forward_flops_per_token(int64_t D, int64_t Dv, int64_t chunk, int32_t num_iter);
double backward_flops_per_token(int64_t D, int64_t Dv, int64_t chunk, int32_t num_iter);

}  // namespace gka
