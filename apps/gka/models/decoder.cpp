#include "models/decoder.h"

#include <string>

namespace gka::cli {

namespace F = ::torch::nn::functional;

BlockImpl::BlockImpl(const MixerOptions& o) : d(o.d_model) {
  norm_mixer = register_parameter("norm_mixer", at::ones({d}));
  mixer = register_module("mixer", make_mixer(o));
  norm_mlp = register_parameter("norm_mlp", at::ones({d}));
  mlp_in = register_module("mlp_in", ::torch::nn::Linear(::torch::nn::LinearOptions(d, 4 * d).bias(false)));
  mlp_out = register_module("mlp_out", ::torch::nn::Linear(::torch::nn::LinearOptions(2 * d, d).bias(false)));
}

at::Tensor BlockImpl::forward(const at::Tensor& x_in, MixerCache* cache) {
  at::Tensor x = x_in + mixer->forward(at::rms_norm(x_in, {d}, norm_mixer, 1e-6), cache);
  const auto gu = mlp_in->forward(at::rms_norm(x, {d}, norm_mlp, 1e-6)).chunk(2, -1);
  return x + mlp_out->forward(F::silu(gu[0]) * gu[1]);
}

DecoderImpl::DecoderImpl(const DecoderOptions& o) : options(o) {
  const int64_t d = o.mixer.d_model;
  embed = register_module("embed", ::torch::nn::Embedding(o.vocab_size, d));
  for (int64_t l = 0; l < o.num_layers; ++l)
    blocks.push_back(register_module("block" + std::to_string(l), Block(o.mixer)));
  norm_final = register_parameter("norm_final", at::ones({d}));
  head = register_module("head", ::torch::nn::Linear(::torch::nn::LinearOptions(d, o.vocab_size).bias(false)));
}

at::Tensor DecoderImpl::forward(const at::Tensor& tokens, std::vector<MixerCache>* caches) {
  const int64_t d = options.mixer.d_model;
  if (caches) caches->resize(blocks.size());
  at::Tensor x = embed->forward(tokens);
  for (size_t l = 0; l < blocks.size(); ++l) x = blocks[l]->forward(x, caches ? &(*caches)[l] : nullptr);
  return head->forward(at::rms_norm(x, {d}, norm_final, 1e-6));
}

int64_t DecoderImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

int64_t DecoderImpl::num_mixer_parameters() const {
  int64_t n = 0;
  for (const auto& b : blocks)
    for (const auto& p : b->mixer->parameters()) n += p.numel();
  return n;
}

}  // namespace gka::cli
