// The configuration of one training run: printed, saved as config.json and inside every checkpoint.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "models/decoder.h"
#include "tasks/task.h"

namespace gka::cli {

struct TrainConfig {
  std::string task = "mqar";       // mqar | lm
  std::string mixer = "gka";       // gka | gdn | gla | attention
  int64_t d_model = 64;
  int64_t num_heads = 2;
  int64_t head_dim = 0;            // 0: d_model / num_heads
  int64_t num_layers = 2;
  int64_t conv_size = 4;
  int64_t chunk_size = 64;
  int64_t gka_num_iter = 30;
  int64_t vocab_size = 128;        // mqar
  int64_t seq_len = 64;
  int64_t num_pairs = 16;          // mqar
  int64_t eval_examples = 512;     // mqar
  std::string corpus = "default";  // lm
  int64_t batch_size = 32;
  int64_t steps = 800;
  int64_t eval_every = 100;
  double lr = 3e-3;
  double weight_decay = 0.1;
  double warmup = 0.1;             // fraction of steps with a linear warm-up, then cosine decay to 10 %
  double grad_clip = 1.0;
  uint64_t seed = 0;
  std::string device = "cpu";

  int64_t resolved_head_dim() const { return head_dim > 0 ? head_dim : d_model / num_heads; }
  DecoderOptions decoder(int64_t vocab) const;
  MqarOptions mqar() const;
  LmOptions lm() const;
  void validate() const;  // throws std::invalid_argument naming the flag
};

// True when `c` runs gka (one of `mixers`) on a GPU with a head dim its CUDA kernel lacks (it has 64 and 128):
// train and sweep then pick heads = width / 64 for every mixer, unless --heads or --head-dim was given.
bool needs_cuda_head_dim(const TrainConfig& c, const std::vector<std::string>& mixers);

// to_json / from_json; missing keys keep their defaults.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(TrainConfig, task, mixer, d_model, num_heads, head_dim, num_layers,
                                                conv_size, chunk_size, gka_num_iter, vocab_size, seq_len, num_pairs,
                                                eval_examples, corpus, batch_size, steps, eval_every, lr, weight_decay,
                                                warmup, grad_clip, seed, device)

}  // namespace gka::cli
