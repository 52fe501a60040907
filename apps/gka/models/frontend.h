// Pieces shared by the gdn, gla and attention mixers, built like the GatedKalmaNet layer (spec §E.1) so that
// all four mixers have the same widths, heads and (up to a few gate vectors) parameter count:
//   q, k, v = SiLU(short causal depthwise conv(x W)), split into heads;
//   y = o_proj(RMSNorm_head(o) * w * SiLU(x W_g)).
#pragma once

#include <torch/torch.h>

#include <array>

#include "models/mixer.h"

namespace gka::cli {

// TORCH_MODULE spelled out: the macro names torch::nn unqualified, which means gka::torch inside gka.
#define GKA_CLI_MODULE(Name)                                                  \
  class Name : public ::torch::nn::ModuleHolder<Name##Impl> {                 \
   public:                                                                    \
    using ::torch::nn::ModuleHolder<Name##Impl>::ModuleHolder;                \
    using Impl = Name##Impl;                                                  \
  }

// y_t = sum_s w[:, W-1-s] u_{t-s} over u [B, T, C] with the W-1 inputs before t = 0 taken from `*prefix`
// (zeros when undefined); `*prefix` is replaced by the last W-1 inputs when `prefix` is not null.
at::Tensor causal_conv(const at::Tensor& u, const at::Tensor& weight, at::Tensor* prefix);

class QkvFrontendImpl : public ::torch::nn::Module {
 public:
  QkvFrontendImpl(int64_t d_model, int64_t num_heads, int64_t head_dim, int64_t conv_size);
  // q, k, v [B, T, H, D]; cache slots cache->t[first .. first+2] hold the conv windows.
  std::array<at::Tensor, 3> forward(const at::Tensor& x, MixerCache* cache, size_t first);

  int64_t H, D;
  ::torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr};
  ::torch::nn::Conv1d conv_q{nullptr}, conv_k{nullptr}, conv_v{nullptr};
};
GKA_CLI_MODULE(QkvFrontend);

class GatedOutputImpl : public ::torch::nn::Module {
 public:
  GatedOutputImpl(int64_t d_model, int64_t num_heads, int64_t head_dim);
  // o [B, T, H, D], x the mixer input [B, T, d] -> [B, T, d]
  at::Tensor forward(const at::Tensor& o, const at::Tensor& x);

  int64_t H, D;
  ::torch::nn::Linear g_proj{nullptr}, o_proj{nullptr};
  at::Tensor o_norm_weight;
};
GKA_CLI_MODULE(GatedOutput);

// Mamba2-style scalar decay per head: g = -exp(A_log) * softplus(x W_a + dt_bias) <= 0 (natural log), with
// A_log and dt_bias initialised as in spec §E.2.
class DecayGateImpl : public ::torch::nn::Module {
 public:
  DecayGateImpl(int64_t d_model, int64_t num_heads);
  at::Tensor forward(const at::Tensor& x);  // [B, T, H] fp32
  ::torch::nn::Linear a_proj{nullptr};
  at::Tensor A_log, dt_bias;
};
GKA_CLI_MODULE(DecayGate);

at::Tensor l2_normalize(const at::Tensor& x);

}  // namespace gka::cli
