// Options and argument bundles of the GKA operator (spec ../shared/spec/GKA.md, §A–§D).
//
// Layout: q, k [B,T,H,D]; v [B,T,H,Dv]; alpha, g, gk [B,T,H] (g, gk natural-log decays, absent = no decay;
// alpha absent = 1). States: h_kk [N,H,D,D], h_kv [N,H,D,Dv] with N = number of sequences (B, or the
// number of cu_seqlens segments when B == 1). Every view needs stride 1 in its last dimension.
#pragma once

#include <cstdint>
#include <optional>

#include "gka/tensor_view.h"

namespace gka {

enum class Solver : int32_t {
  chebyshev,  // the paper's fixed-step Chebyshev iteration (spec §A.3); default
  cg,         // conjugate gradient with the same number of mat-vecs (the paper's ablation); forward only
  exact,      // Cholesky: the exact ridge solution
};

// Accuracy of the solver's matrix products on backends that can trade it for speed (cuda).
enum class Precision : int32_t {
  fp32,   // every product at fp32 accuracy (3xTF32 on tensor cores); default
  mixed,  // cuda: cheaper products on the leading Chebyshev iterations of the forward and adjoint solves and
          // accurate ones on the last iterations, which damp the early rounding (the iterate x stays in fp32).
          // Hopper (wgmma): one scaled f16 product per term (rounds like tf32) except on one iteration at 2N/5,
          // which takes three (f16 hi/lo pairs) and from which the rest iterate on the offset x - x_{2N/5};
          // other GPUs (mma.sync): one tf32 product, then the last kMixedFinishIters in 3xTF32. bf16 layer-like
          // inputs at N = 30: o ~1.7e-3 (wgmma) / ~2.0e-3 (mma.sync), x ~2.7e-4 / ~2.5e-5 (docs/cuda_backend.md).
          // Backends without a faster product (reference, cpu) compute exactly as with fp32.
};
inline constexpr int32_t kMixedFinishIters = 10;

enum class Backend : int32_t {
  automatic,  // cuda for device tensors, cpu otherwise
  reference,  // the fp64 token-by-token oracle
  cpu,        // chunked CPU backend (fp32 compute, fp64 for fp64 inputs)
  cuda,
};

struct Options {
  double ridge_ratio = 0.02;          // r: lambda_t = r * ||H_t||_F, must be > 0
  int32_t num_iter = 30;              // N mat-vecs of the solver (0 = no solve: q~ = q)
  std::optional<double> tolerance;    // if set, num_iter := num_iter_for_tolerance(ridge_ratio, tolerance)
  int32_t chunk_size = 64;            // C of the chunked form; 16..256
  std::optional<double> scale;        // readout scale s, default D^-1/2
  Solver solver = Solver::chebyshev;
  Precision precision = Precision::fp32;
  bool lambda_grad = true;            // differentiate lambda_t through ||H_t||_F (the authors' bp_lambda)
  bool check_finite = false;          // reject NaN/Inf in inputs with an Error
  Backend backend = Backend::automatic;
  int32_t num_threads = 0;            // CPU threads, 0 = OpenMP default
  void* cuda_stream = nullptr;        // cudaStream_t the cuda backend runs on; nullptr = the legacy default stream
};

struct Inputs {
  TensorView q, k, v;                 // [B,T,H,D], [B,T,H,D], [B,T,H,Dv]
  TensorView alpha, g, gk;            // [B,T,H], optional
  // [N,H,D,D], [N,H,D,Dv], optional (zero), fp32 (fp64 with fp64 q). initial_kk is symmetric (a Gram matrix, like
  // every final_kk): the CUDA decode may read only its upper triangle (spec §14).
  TensorView initial_kk, initial_kv;
  TensorView cu_seqlens;              // [N+1] int32/int64 offsets into T, optional; requires B == 1
};

struct ForwardOutputs {
  TensorView o;                       // [B,T,H,Dv], dtype of v; required
  TensorView final_kk, final_kv;      // [N,H,D,D], [N,H,D,Dv], optional; may alias initial_* (in place)
  TensorView x;                       // [B,T,H,D] fp32/fp64, optional: solved queries, saved for backward
  TensorView fro;                     // [B,T,H] fp32/fp64, optional: ||H_t||_F, saved for backward
  TensorView residual;                // [B,T,H] fp32/fp64, optional: ||(H_t+lambda_t I) x_t - q_t|| / ||q_t||
};

struct BackwardInputs {
  TensorView d_o;                         // [B,T,H,Dv], required
  TensorView d_final_kk, d_final_kv;      // gradients arriving at the final states, optional
  TensorView x, fro;                      // saved by the forward; recomputed when absent
};

// Gradients to write; leave a view absent to skip it. dq/dk/dv/dalpha/dg/dgk take the dtype of their
// input; d_initial_* the state dtype.
struct Gradients {
  TensorView dq, dk, dv, dalpha, dg, dgk;
  TensorView d_initial_kk, d_initial_kv;
};

// A pool of per-request states updated in place by slot index (serving).
struct StatePool {
  TensorView kk, kv;                  // [P,H,D,D], [P,H,D,Dv] fp32 (fp64 with fp64 q)
  TensorView slots;                   // [B] int32/int64; row b uses slot slots[b]; a negative slot skips row b
};

}  // namespace gka
