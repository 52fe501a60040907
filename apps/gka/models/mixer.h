// The sequence mixers of the `gka` decoder: one interface, four implementations (gka, gdn, gla, attention).
//
//   auto mixer = make_mixer(MixerOptions{.kind = "gdn", .d_model = 64, .num_heads = 2, .head_dim = 32});
//   at::Tensor y = mixer->forward(x, nullptr);     // training: x [B, T, d] -> y [B, T, d]
//   MixerCache cache;                              // generation: prefill, then one token at a time
//   y = mixer->forward(prompt, &cache);  y = mixer->forward(next, &cache);
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace gka::cli {

struct MixerOptions {
  std::string kind = "gka";  // gka | gdn | gla | attention
  int64_t d_model = 64;
  int64_t num_heads = 2;
  int64_t head_dim = 32;
  int64_t conv_size = 4;
  int64_t chunk_size = 64;   // chunk length of gka's op and of the chunked gdn and gla
  int64_t gka_num_iter = 30; // Chebyshev iterations of gka
};

// Per-layer decode state; what the tensors mean is up to the mixer (empty = nothing seen yet).
struct MixerCache {
  std::vector<at::Tensor> t;
  bool empty() const { return t.empty(); }
  int64_t bytes() const;
};

class MixerImpl : public ::torch::nn::Module {
 public:
  // x [B, T, d]. cache == nullptr: training / scoring. Otherwise the cache is read (if not empty) and
  // replaced by the state after x.
  virtual at::Tensor forward(const at::Tensor& x, MixerCache* cache) = 0;
};

std::shared_ptr<MixerImpl> make_mixer(const MixerOptions& o);

// The names make_mixer accepts.
const std::vector<std::string>& mixer_kinds();

}  // namespace gka::cli
