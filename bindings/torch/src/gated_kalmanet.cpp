// GatedKalmaNet torch::nn::Module: the C++ twin of python/gka/nn.py (same parameter names and forward).
#include "gka/torch/gated_kalmanet.h"

#include <cmath>

namespace gka::torch {
namespace {

namespace F = ::torch::nn::functional;

at::Tensor positions(const at::Tensor& cu, int64_t T) {
  const at::Tensor t = at::arange(T, cu.options().dtype(at::kLong));
  const at::Tensor seq = at::searchsorted(cu.slice(0, 1).contiguous(), t, false, /*right=*/true);
  return t - cu.index_select(0, seq).to(at::kLong);
}

// y_t = sum_s w[:, W-1-s] x_{t-s}; `prefix` [B, W-1, C] are the inputs before t = 0; `pos` masks packed starts.
at::Tensor causal_conv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& prefix,
                       const std::optional<at::Tensor>& pos) {
  const int64_t W = weight.size(-1), B = x.size(0), T = x.size(1), C = x.size(2);
  const at::Tensor pre = prefix.defined() ? prefix.to(x.scalar_type()) : at::zeros({B, W - 1, C}, x.options());
  const at::Tensor xe = at::cat({pre, x}, 1);
  const at::Tensor w = weight.reshape({C, W}).to(x.scalar_type());
  at::Tensor y = x * w.select(1, W - 1);
  for (int64_t s = 1; s < W; ++s) {
    at::Tensor xs = xe.slice(1, W - 1 - s, W - 1 - s + T);
    if (pos) xs = xs * pos->ge(s).to(x.scalar_type()).view({1, T, 1});
    y = y + xs * w.select(1, W - 1 - s);
  }
  return y;
}

at::Tensor conv_tail(const at::Tensor& x, const at::Tensor& prefix, int64_t W,
                     const std::optional<at::Tensor>& cu) {
  const int64_t B = x.size(0), C = x.size(2);
  if (!cu) {
    const at::Tensor pre = prefix.defined() ? prefix.to(x.scalar_type()) : at::zeros({B, W - 1, C}, x.options());
    return at::cat({pre, x}, 1).slice(1, -(W - 1));
  }
  const at::Tensor ends = cu->slice(0, 1).to(at::kLong), starts = cu->slice(0, 0, -1).to(at::kLong);
  const at::Tensor idx = ends.unsqueeze(1) - (W - 1) + at::arange(W - 1, ends.options()).unsqueeze(0);
  const at::Tensor valid = idx.ge(starts.unsqueeze(1)).to(x.scalar_type());
  return x.select(0, 0).index({idx.clamp_min(0)}) * valid.unsqueeze(-1);
}

}  // namespace

GatedKalmaNetImpl::GatedKalmaNetImpl(GatedKalmaNetOptions options_) : options(std::move(options_)) { reset(); }

void GatedKalmaNetImpl::reset() {
  const auto& o = options;
  TORCH_CHECK_VALUE(o.solver_type() == "chebyshev" || o.solver_type() == "exact",
                    "GatedKalmaNet: solver_type must be \"chebyshev\" or \"exact\", got \"", o.solver_type(), "\"");
  TORCH_CHECK_VALUE(o.precision() == "fp32" || o.precision() == "mixed",
                    "GatedKalmaNet: precision must be \"fp32\" or \"mixed\", got \"", o.precision(), "\"");
  const int64_t hq = o.num_heads(), hk = o.num_kv_heads() > 0 ? o.num_kv_heads() : o.num_heads();
  const int64_t H = std::max(hq, hk), D = o.head_dim(), d = o.hidden_size();
  TORCH_CHECK_VALUE(H % hq == 0 && H % hk == 0, "GatedKalmaNet: head counts ", hq, " (q) and ", hk,
                    " (k/v) must divide ", H);
  num_expanded_heads = H;
  auto lin = [&](const char* name, int64_t in, int64_t out, bool bias) {
    return register_module(name, ::torch::nn::Linear(::torch::nn::LinearOptions(in, out).bias(bias)));
  };
  auto conv = [&](const char* name, int64_t ch) {
    return register_module(
        name, ::torch::nn::Conv1d(::torch::nn::Conv1dOptions(ch, ch, o.conv_size()).groups(ch).bias(false)));
  };
  q_proj = lin("q_proj", d, hq * D, false);
  k_proj = lin("k_proj", d, hk * D, false);
  v_proj = lin("v_proj", d, hk * D, false);
  conv_q = conv("conv_q", hq * D);
  conv_k = conv("conv_k", hk * D);
  if (o.use_v_conv()) conv_v = conv("conv_v", hk * D);
  a_proj = lin("a_proj", d, H, false);
  if (o.use_beta_gate()) b_proj = lin("b_proj", d, H, true);
  if (o.use_alpha_connection()) alpha_proj = lin("alpha_proj", d, H, true);
  if (o.use_gate()) g_proj = lin("g_proj", d, H * D, false);
  o_norm_weight = register_parameter("o_norm_weight", at::ones({D}));
  o_proj = lin("o_proj", H * D, d, false);
  // Spec §E.2: A ~ U(0, 16); dt = exp(U(ln 1e-3, ln 1e-1)) clamped >= 1e-4; dt_bias = softplus^-1(dt).
  A_log = register_parameter("A_log", at::empty({H}).uniform_(0, 16).log());
  const at::Tensor dt = (at::rand({H}) * (std::log(1e-1) - std::log(1e-3)) + std::log(1e-3)).exp().clamp_min(1e-4);
  dt_bias = register_parameter("dt_bias", dt + at::log(-at::expm1(-dt)));
}

std::tuple<at::Tensor, std::optional<GatedKalmaNetCache>> GatedKalmaNetImpl::forward(
    const at::Tensor& x, const std::optional<GatedKalmaNetCache>& cache, bool use_cache,
    const std::optional<at::Tensor>& cu_seqlens) {
  const auto& c = options;
  const int64_t B = x.size(0), T = x.size(1), D = c.head_dim(), H = num_expanded_heads, W = c.conv_size();
  const int64_t hq = c.num_heads(), hk = c.num_kv_heads() > 0 ? c.num_kv_heads() : c.num_heads();
  TORCH_CHECK_VALUE(!cu_seqlens || (B == 1 && !cache),
                    "GatedKalmaNet: cu_seqlens needs B == 1 and no incoming cache (prefill of packed sequences)");
  std::optional<at::Tensor> pos;
  if (cu_seqlens) pos = positions(*cu_seqlens, T);
  auto branch = [&](::torch::nn::Linear& proj, ::torch::nn::Conv1d& layer, const at::Tensor& prefix) {
    at::Tensor u = proj->forward(x);
    return std::pair{u, layer ? F::silu(causal_conv(u, layer->weight, prefix, pos)) : u};
  };
  auto [uq, q] = branch(q_proj, conv_q, cache ? cache->conv_q : at::Tensor());
  auto [uk, k] = branch(k_proj, conv_k, cache ? cache->conv_k : at::Tensor());
  auto [uv, v] = branch(v_proj, conv_v, cache ? cache->conv_v : at::Tensor());
  q = q.reshape({B, T, hq, D}).repeat_interleave(H / hq, 2);
  k = k.reshape({B, T, hk, D}).repeat_interleave(H / hk, 2);
  v = v.reshape({B, T, hk, D}).repeat_interleave(H / hk, 2);
  q = q / (q.norm(2, {-1}, true) + 1e-6);
  k = k / (k.norm(2, {-1}, true) + 1e-6);
  if (b_proj) {
    const at::Tensor beta = at::sigmoid(b_proj->forward(x)).unsqueeze(-1) + 1e-6;
    k = k * beta;
    v = v * beta;
  }
  GkaArgs args;
  if (alpha_proj) args.alpha = at::sigmoid(alpha_proj->forward(x));
  if (c.use_forgetting_gate()) {
    const at::Tensor g = -at::exp(A_log.to(at::kFloat)) * F::softplus(a_proj->forward(x).to(at::kFloat) +
                                                                         dt_bias.to(at::kFloat));
    args.g = g;
    if (c.use_forgetting_gate_kk()) args.gk = g;
  }
  if (cache) {
    args.initial_kk = cache->h_kk;
    args.initial_kv = cache->h_kv;
  }
  args.cu_seqlens = cu_seqlens;
  if (!c.gla_rescale()) args.scale = 1.0;
  args.ridge_ratio = c.ridge_strength();
  args.num_iter = c.num_iter();
  args.chunk_size = c.chunk_size();
  args.solver = c.solver_type();
  args.lambda_grad = c.bp_lambda();
  args.precision = c.precision();
  const at::Tensor qc = q.contiguous(), kc = k.to(q.scalar_type()).contiguous(), vc = v.to(q.scalar_type()).contiguous();
  const GkaResult r = T == 1 ? fused_recurrent_gka(qc, kc, vc, args) : chunk_gka(qc, kc, vc, args);
  at::Tensor of = r.o.to(at::kFloat);
  of = of * at::rsqrt(of.pow(2).mean({-1}, true) + c.norm_eps()) * o_norm_weight.to(at::kFloat);
  if (g_proj) of = of * F::silu(g_proj->forward(x).to(at::kFloat).reshape({B, T, H, D}));
  at::Tensor y = o_proj->forward(of.to(x.scalar_type()).reshape({B, T, H * D}));
  std::optional<GatedKalmaNetCache> out;
  if (use_cache || cache) {
    auto tail = [&](const at::Tensor& u, bool has_conv, const at::Tensor& prefix) {
      return has_conv ? conv_tail(u, prefix, W, cu_seqlens) : at::Tensor();
    };
    out = GatedKalmaNetCache{tail(uq, true, cache ? cache->conv_q : at::Tensor()),
                             tail(uk, true, cache ? cache->conv_k : at::Tensor()),
                             tail(uv, !conv_v.is_empty(), cache ? cache->conv_v : at::Tensor()), r.final_kk,
                             r.final_kv};
  }
  return {y, out};
}

}  // namespace gka::torch
