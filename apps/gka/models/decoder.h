// The small decoder `gka train` trains: embedding -> N x [x + mixer(RMSNorm x); x + MLP(RMSNorm x)] ->
// RMSNorm -> head. The MLP is SwiGLU with hidden width 2·d.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "models/frontend.h"
#include "models/mixer.h"

namespace gka::cli {

struct DecoderOptions {
  int64_t vocab_size = 128;
  int64_t num_layers = 2;
  MixerOptions mixer;
};

// One block: x + mixer(RMSNorm x), then x + SwiGLU(RMSNorm x).
class BlockImpl : public ::torch::nn::Module {
 public:
  explicit BlockImpl(const MixerOptions& o);
  at::Tensor forward(const at::Tensor& x, MixerCache* cache);
  int64_t d;
  at::Tensor norm_mixer, norm_mlp;
  std::shared_ptr<MixerImpl> mixer;
  ::torch::nn::Linear mlp_in{nullptr}, mlp_out{nullptr};
};
GKA_CLI_MODULE(Block);

class DecoderImpl : public ::torch::nn::Module {
 public:
  explicit DecoderImpl(const DecoderOptions& o);
  // tokens [B, T] int64 -> logits [B, T, vocab]. With caches (one per layer, resized here) the mixers
  // continue from and update their decode state.
  at::Tensor forward(const at::Tensor& tokens, std::vector<MixerCache>* caches = nullptr);
  int64_t num_parameters() const;
  int64_t num_mixer_parameters() const;  // summed over layers

  DecoderOptions options;
  ::torch::nn::Embedding embed{nullptr};
  std::vector<Block> blocks;
  at::Tensor norm_final;
  ::torch::nn::Linear head{nullptr};
};
GKA_CLI_MODULE(Decoder);

}  // namespace gka::cli
