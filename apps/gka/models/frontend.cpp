#include "models/frontend.h"

#include <cmath>

namespace gka::cli {

namespace F = ::torch::nn::functional;

int64_t MixerCache::bytes() const {
  int64_t n = 0;
  for (const auto& x : t)
    if (x.defined()) n += x.numel() * static_cast<int64_t>(x.element_size());
  return n;
}

at::Tensor causal_conv(const at::Tensor& u, const at::Tensor& weight, at::Tensor* prefix) {
  const int64_t B = u.size(0), C = u.size(2), W = weight.size(-1);
  at::Tensor pre = (prefix && prefix->defined()) ? *prefix : at::zeros({B, W - 1, C}, u.options());
  const at::Tensor ue = at::cat({pre, u}, 1);
  if (prefix) *prefix = ue.slice(1, ue.size(1) - (W - 1)).detach().clone();
  const at::Tensor y = F::conv1d(ue.transpose(1, 2), weight, F::Conv1dFuncOptions().groups(C));
  return y.transpose(1, 2);
}

at::Tensor l2_normalize(const at::Tensor& x) { return x / (x.norm(2, {-1}, true) + 1e-6); }

QkvFrontendImpl::QkvFrontendImpl(int64_t d, int64_t heads, int64_t head_dim, int64_t W) : H(heads), D(head_dim) {
  auto lin = [&](const char* name) {
    return register_module(name, ::torch::nn::Linear(::torch::nn::LinearOptions(d, H * D).bias(false)));
  };
  auto conv = [&](const char* name) {
    return register_module(
        name, ::torch::nn::Conv1d(::torch::nn::Conv1dOptions(H * D, H * D, W).groups(H * D).bias(false)));
  };
  q_proj = lin("q_proj");
  k_proj = lin("k_proj");
  v_proj = lin("v_proj");
  conv_q = conv("conv_q");
  conv_k = conv("conv_k");
  conv_v = conv("conv_v");
}

std::array<at::Tensor, 3> QkvFrontendImpl::forward(const at::Tensor& x, MixerCache* cache, size_t first) {
  const int64_t B = x.size(0), T = x.size(1);
  if (cache && cache->t.size() < first + 3) cache->t.resize(first + 3);
  auto branch = [&](::torch::nn::Linear& p, ::torch::nn::Conv1d& c, size_t slot) {
    at::Tensor y = F::silu(causal_conv(p->forward(x), c->weight, cache ? &cache->t[slot] : nullptr));
    return y.reshape({B, T, H, D});
  };
  return {branch(q_proj, conv_q, first), branch(k_proj, conv_k, first + 1), branch(v_proj, conv_v, first + 2)};
}

GatedOutputImpl::GatedOutputImpl(int64_t d, int64_t heads, int64_t head_dim) : H(heads), D(head_dim) {
  g_proj = register_module("g_proj", ::torch::nn::Linear(::torch::nn::LinearOptions(d, H * D).bias(false)));
  o_proj = register_module("o_proj", ::torch::nn::Linear(::torch::nn::LinearOptions(H * D, d).bias(false)));
  o_norm_weight = register_parameter("o_norm_weight", at::ones({D}));
}

at::Tensor GatedOutputImpl::forward(const at::Tensor& o, const at::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1);
  at::Tensor y = at::rms_norm(o, {D}, o_norm_weight, 1e-6);
  y = y * F::silu(g_proj->forward(x).reshape({B, T, H, D}));
  return o_proj->forward(y.reshape({B, T, H * D}));
}

DecayGateImpl::DecayGateImpl(int64_t d, int64_t H) {
  a_proj = register_module("a_proj", ::torch::nn::Linear(::torch::nn::LinearOptions(d, H).bias(false)));
  A_log = register_parameter("A_log", at::empty({H}).uniform_(0, 16).log());
  const at::Tensor dt = (at::rand({H}) * (std::log(1e-1) - std::log(1e-3)) + std::log(1e-3)).exp().clamp_min(1e-4);
  dt_bias = register_parameter("dt_bias", dt + at::log(-at::expm1(-dt)));
}

at::Tensor DecayGateImpl::forward(const at::Tensor& x) {
  return -at::exp(A_log.to(at::kFloat)) * F::softplus(a_proj->forward(x).to(at::kFloat) + dt_bias.to(at::kFloat));
}

}  // namespace gka::cli
