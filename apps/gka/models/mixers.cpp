// The four mixers behind make_mixer.
#include <gka/torch/gated_kalmanet.h>

#include <cmath>
#include <stdexcept>

#include "models/cores.h"
#include "models/frontend.h"
#include "models/mixer.h"

namespace gka::cli {
namespace {

namespace F = ::torch::nn::functional;

// Gated DeltaNet (Yang et al. 2024): frontend + beta gate + decay gate + delta rule + gated output norm.
class GdnMixer : public MixerImpl {
 public:
  explicit GdnMixer(const MixerOptions& o) : chunk_size(o.chunk_size) {
    qkv = register_module("qkv", QkvFrontend(o.d_model, o.num_heads, o.head_dim, o.conv_size));
    decay = register_module("decay", DecayGate(o.d_model, o.num_heads));
    b_proj = register_module("b_proj", ::torch::nn::Linear(o.d_model, o.num_heads));
    out = register_module("out", GatedOutput(o.d_model, o.num_heads, o.head_dim));
  }
  at::Tensor forward(const at::Tensor& x, MixerCache* cache) override {
    auto [q, k, v] = qkv->forward(x, cache, 0);
    if (cache && cache->t.size() < 4) cache->t.resize(4);
    const at::Tensor beta = at::sigmoid(b_proj->forward(x));
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
    // Chunked (WY form) for training and prefill; one decoded token goes through the recurrence (as gka does).
    at::Tensor* state = cache ? &cache->t[3] : nullptr;
    at::Tensor o = x.size(1) == 1
                       ? gdn_recurrent(l2_normalize(q), l2_normalize(k), v, decay->forward(x), beta, scale, state)
                       : gdn_chunked(l2_normalize(q), l2_normalize(k), v, decay->forward(x), beta, scale, state,
                                     chunk_size);
    return out->forward(o, x);
  }
  QkvFrontend qkv{nullptr};
  DecayGate decay{nullptr};
  ::torch::nn::Linear b_proj{nullptr};
  GatedOutput out{nullptr};
  int64_t chunk_size;
};

// Gated linear attention with a scalar decay per head (Mamba2-style), same frontend and output.
class GlaMixer : public MixerImpl {
 public:
  explicit GlaMixer(const MixerOptions& o) : chunk_size(o.chunk_size) {
    qkv = register_module("qkv", QkvFrontend(o.d_model, o.num_heads, o.head_dim, o.conv_size));
    decay = register_module("decay", DecayGate(o.d_model, o.num_heads));
    out = register_module("out", GatedOutput(o.d_model, o.num_heads, o.head_dim));
  }
  at::Tensor forward(const at::Tensor& x, MixerCache* cache) override {
    auto [q, k, v] = qkv->forward(x, cache, 0);
    if (cache && cache->t.size() < 4) cache->t.resize(4);
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
    at::Tensor o = gla_chunked(l2_normalize(q), l2_normalize(k), v, decay->forward(x), scale,
                               cache ? &cache->t[3] : nullptr, chunk_size);
    return out->forward(o, x);
  }
  QkvFrontend qkv{nullptr};
  DecayGate decay{nullptr};
  GatedOutput out{nullptr};
  int64_t chunk_size;
};

// Causal softmax attention with the same frontend (the short conv stands in for position encodings) and
// output; the cache is the growing key/value history.
class AttentionMixer : public MixerImpl {
 public:
  explicit AttentionMixer(const MixerOptions& o) {
    qkv = register_module("qkv", QkvFrontend(o.d_model, o.num_heads, o.head_dim, o.conv_size));
    out = register_module("out", GatedOutput(o.d_model, o.num_heads, o.head_dim));
  }
  at::Tensor forward(const at::Tensor& x, MixerCache* cache) override {
    auto [q, k, v] = qkv->forward(x, cache, 0);
    q = q.transpose(1, 2);  // [B, H, T, D]
    k = k.transpose(1, 2);
    v = v.transpose(1, 2);
    const int64_t T = q.size(2);
    int64_t past = 0;
    if (cache) {
      if (cache->t.size() < 5) cache->t.resize(5);
      if (cache->t[3].defined()) {
        past = cache->t[3].size(2);
        k = at::cat(std::vector<at::Tensor>{cache->t[3], k}, 2);
        v = at::cat(std::vector<at::Tensor>{cache->t[4], v}, 2);
      }
      cache->t[3] = k.detach();
      cache->t[4] = v.detach();
    }
    at::Tensor o;
    if (past == 0) {
      o = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
    } else {
      const at::Tensor i = at::arange(T, q.options().dtype(at::kLong)).unsqueeze(1) + past;
      const at::Tensor j = at::arange(past + T, q.options().dtype(at::kLong)).unsqueeze(0);
      o = at::scaled_dot_product_attention(q, k, v, j.le(i), 0.0, false);
    }
    return out->forward(o.transpose(1, 2), x);
  }
  QkvFrontend qkv{nullptr};
  GatedOutput out{nullptr};
};

// The GKA layer of the library (gka::torch::GatedKalmaNet, spec §E) behind the mixer interface.
class GkaMixer : public MixerImpl {
 public:
  explicit GkaMixer(const MixerOptions& o) {
    layer = register_module("layer", gka::torch::GatedKalmaNet(
                                         gka::torch::GatedKalmaNetOptions(o.d_model, o.num_heads, o.head_dim)
                                             .conv_size(o.conv_size)
                                             .chunk_size(o.chunk_size)
                                             .num_iter(o.gka_num_iter)));
  }
  at::Tensor forward(const at::Tensor& x, MixerCache* cache) override {
    if (!cache) return std::get<0>(layer->forward(x));
    std::optional<gka::torch::GatedKalmaNetCache> in;
    if (!cache->empty()) in = gka::torch::GatedKalmaNetCache{cache->t[0], cache->t[1], cache->t[2], cache->t[3],
                                                              cache->t[4]};
    auto [y, next] = layer->forward(x, in, /*use_cache=*/true);
    cache->t = {next->conv_q, next->conv_k, next->conv_v, next->h_kk, next->h_kv};
    return y;
  }
  gka::torch::GatedKalmaNet layer{nullptr};
};

}  // namespace

const std::vector<std::string>& mixer_kinds() {
  static const std::vector<std::string> kinds{"gka", "gdn", "gla", "attention"};
  return kinds;
}

std::shared_ptr<MixerImpl> make_mixer(const MixerOptions& o) {
  if (o.kind == "gka") return std::make_shared<GkaMixer>(o);
  if (o.kind == "gdn") return std::make_shared<GdnMixer>(o);
  if (o.kind == "gla") return std::make_shared<GlaMixer>(o);
  if (o.kind == "attention") return std::make_shared<AttentionMixer>(o);
  throw std::invalid_argument("unknown mixer '" + o.kind + "' (choose gka, gdn, gla or attention)");
}

}  // namespace gka::cli
