// The GatedKalmaNet layer (spec §E) as a LibTorch torch::nn::Module, sharing the gka op with Python's
// gka.nn.GatedKalmaNet (same parameters, same names, same forward).
//
//   gka::torch::GatedKalmaNet layer(gka::torch::GatedKalmaNetOptions(256, 4, 64));
//   auto [y, cache] = layer->forward(x);                       // x [B, T, hidden_size]
//   auto [y2, cache2] = layer->forward(next, cache);           // decode with the cache
#pragma once

#include <torch/nn.h>

#include <optional>
#include <string>
#include <tuple>

#include "gka/torch/ops.h"

namespace gka::torch {

struct GatedKalmaNetOptions {
  GatedKalmaNetOptions(int64_t hidden_size, int64_t num_heads, int64_t head_dim)
      : hidden_size_(hidden_size), num_heads_(num_heads), head_dim_(head_dim) {}
  TORCH_ARG(int64_t, hidden_size);
  TORCH_ARG(int64_t, num_heads);          // query heads
  TORCH_ARG(int64_t, num_kv_heads) = 0;   // key/value heads (GQA); 0 = num_heads
  TORCH_ARG(int64_t, head_dim);
  TORCH_ARG(int64_t, num_iter) = 30;
  TORCH_ARG(double, ridge_strength) = 0.02;
  TORCH_ARG(int64_t, chunk_size) = 64;
  TORCH_ARG(int64_t, conv_size) = 4;
  TORCH_ARG(double, norm_eps) = 1e-6;
  TORCH_ARG(bool, use_alpha_connection) = true;
  TORCH_ARG(bool, use_v_conv) = true;
  TORCH_ARG(bool, use_forgetting_gate) = true;
  TORCH_ARG(bool, use_forgetting_gate_kk) = true;
  TORCH_ARG(bool, use_beta_gate) = true;
  TORCH_ARG(bool, use_gate) = true;
  TORCH_ARG(bool, gla_rescale) = true;
  TORCH_ARG(bool, bp_lambda) = true;
  TORCH_ARG(std::string, solver_type) = "chebyshev";
  TORCH_ARG(std::string, precision) = "fp32";  // "fp32" or "mixed" (cuda: faster solve, see gka::Precision)
};

// Decode cache for N sequences: last conv_size-1 pre-activation conv inputs [N, W-1, C] (conv_v undefined
// without the v conv) and the GKA states.
struct GatedKalmaNetCache {
  at::Tensor conv_q, conv_k, conv_v;
  at::Tensor h_kk, h_kv;
};

class GatedKalmaNetImpl : public ::torch::nn::Module {
 public:
  explicit GatedKalmaNetImpl(GatedKalmaNetOptions options);
  void reset();

  // x [B, T, hidden_size] -> y and, with use_cache or an incoming cache, the updated cache. cu_seqlens packs
  // sequences into B == 1 (prefill only).
  std::tuple<at::Tensor, std::optional<GatedKalmaNetCache>> forward(
      const at::Tensor& x, const std::optional<GatedKalmaNetCache>& cache = std::nullopt, bool use_cache = false,
      const std::optional<at::Tensor>& cu_seqlens = std::nullopt);

  GatedKalmaNetOptions options;
  ::torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, a_proj{nullptr}, b_proj{nullptr},
      alpha_proj{nullptr}, g_proj{nullptr}, o_proj{nullptr};
  ::torch::nn::Conv1d conv_q{nullptr}, conv_k{nullptr}, conv_v{nullptr};
  at::Tensor A_log, dt_bias, o_norm_weight;
  int64_t num_expanded_heads = 0;
};

// TORCH_MODULE(GatedKalmaNet) spelled out: the macro names torch::nn unqualified, which means gka::torch here.
class GatedKalmaNet : public ::torch::nn::ModuleHolder<GatedKalmaNetImpl> {
 public:
  using ::torch::nn::ModuleHolder<GatedKalmaNetImpl>::ModuleHolder;
  using Impl = GatedKalmaNetImpl;
};

}  // namespace gka::torch
