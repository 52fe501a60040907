// LibTorch C++ API of the gka ops: the same dispatcher ops Python calls (torch.ops.gka.*), differentiable
// through the C++ Autograd kernel, so C++ training programs get gradients without Python.
//
//   #include <gka/torch/ops.h>
//   auto [o, kk, kv] = gka::torch::chunk_gka(q, k, v, {.g = g, .gk = g, .alpha = alpha});
//   o.sum().backward();
//
// Shapes: q, k [B,T,H,D]; v [B,T,H,Dv]; g, gk, alpha [B,T,H] (g, gk natural-log decays <= 0); states
// kk [N,H,D,D], kv [N,H,D,Dv] fp32 (fp64 when q is fp64); N = B, or the number of cu_seqlens segments (B == 1).
// Link with the CMake target gka::torch.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>

namespace gka::torch {

// Optional inputs and knobs of chunk_gka / fused_recurrent_gka.
struct GkaArgs {
  std::optional<at::Tensor> g, gk, alpha;           // [B,T,H]; absent: no decay / alpha = 1
  std::optional<at::Tensor> initial_kk, initial_kv;  // [N,H,D,D], [N,H,D,Dv]; absent: zero
  std::optional<at::Tensor> cu_seqlens;              // [N+1] int32/int64 offsets; requires B == 1
  std::optional<double> scale;                       // readout scale, default D^-1/2
  double ridge_ratio = 0.02;                         // lambda_t = ridge_ratio * ||H_t||_F
  int64_t num_iter = 30;                             // Chebyshev mat-vecs
  int64_t chunk_size = 64;                           // chunk of the chunked forward and of the backward
  std::string solver = "chebyshev";                  // "chebyshev", "cg" (forward only) or "exact"
  bool lambda_grad = true;                           // differentiate lambda_t through ||H_t||_F
  std::string backend = "auto";                      // "auto", "reference" (fp64 oracle), "cpu", "cuda"
  std::string precision = "fp32";                    // "fp32" or "mixed" (cuda: cheaper leading iterations)
};

struct GkaResult {
  at::Tensor o;                   // [B,T,H,Dv], dtype of v
  at::Tensor final_kk, final_kv;  // [N,H,D,D], [N,H,D,Dv]
};

// Chunked forward (training, prefill). Differentiable in q, k, v, g, gk, alpha and the initial states.
GkaResult chunk_gka(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const GkaArgs& args = {});

// Token-by-token forward (decode T >= 1 tokens with states). Differentiable like chunk_gka.
GkaResult fused_recurrent_gka(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const GkaArgs& args = {});

// Serving: row b of q/k/v/gates continues the sequence stored in slot slots[b] of the pool (pool_kk
// [P,H,D,D], pool_kv [P,H,D,Dv]); the pool is updated in place, a negative slot skips the row. Not
// differentiable. Returns o [B,T,H,Dv]. args.initial_* and args.cu_seqlens must be absent.
at::Tensor decode_pool_step_(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& pool_kk,
                             at::Tensor& pool_kv, const at::Tensor& slots, const GkaArgs& args = {});

// The torch version this library was compiled against.
const char* built_torch_version();

}  // namespace gka::torch
