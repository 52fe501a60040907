#include "config.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

namespace gka::cli {

DecoderOptions TrainConfig::decoder(int64_t vocab) const {
  DecoderOptions o;
  o.vocab_size = vocab;
  o.num_layers = num_layers;
  o.mixer = MixerOptions{mixer, d_model, num_heads, resolved_head_dim(), conv_size, chunk_size, gka_num_iter};
  return o;
}

MqarOptions TrainConfig::mqar() const {
  return MqarOptions{vocab_size, seq_len, num_pairs, batch_size, eval_examples, seed};
}

LmOptions TrainConfig::lm() const {
  LmOptions o;
  o.corpus = corpus;
  o.seq_len = seq_len;
  o.batch_size = batch_size;
  o.seed = seed;
  return o;
}

void TrainConfig::validate() const {
  auto need = [](bool ok, const std::string& msg) {
    if (!ok) throw std::invalid_argument(msg);
  };
  need(task == "mqar" || task == "lm", "--task must be mqar or lm, got '" + task + "'");
  const auto& kinds = mixer_kinds();
  need(std::find(kinds.begin(), kinds.end(), mixer) != kinds.end(),
       "--mixer: unknown mixer '" + mixer + "' (choose from gka, gdn, gla, attention)");
  need(d_model > 0 && num_heads > 0 && num_layers > 0, "--width, --heads and --layers must be positive");
  need(head_dim > 0 || d_model % num_heads == 0, "--width must be divisible by --heads (or pass --head-dim)");
  need(steps > 0 && batch_size > 0 && seq_len > 1, "--steps, --batch and --seq-len must be positive");
  need(eval_every > 0, "--eval-every must be positive");
  need(lr > 0, "--lr must be positive");
  need(device == "cpu" || device.rfind("cuda", 0) == 0, "--device must be cpu or cuda[:N], got '" + device + "'");
  if (mixer == "gka" && device != "cpu") {  // the limits of the CUDA kernel (docs/cuda_backend.md)
    const int64_t D = resolved_head_dim();
    const std::string fix = d_model % 64 == 0 ? "--heads " + std::to_string(d_model / 64) + " or --head-dim 64"
                                              : "--head-dim 64 (or a width that is a multiple of 64)";
    need(D == 64 || D == 128, "--device " + device + ": the gka mixer's CUDA kernel supports head dim 64 or 128, got " +
                                  std::to_string(D) + " (width " + std::to_string(d_model) + " / " +
                                  std::to_string(num_heads) + " heads); pass " + fix);
    need(chunk_size <= 64, "--device " + device + ": the gka mixer's CUDA kernel needs --chunk-size <= 64");
  }
}

bool needs_cuda_head_dim(const TrainConfig& c, const std::vector<std::string>& mixers) {
  const int64_t D = c.resolved_head_dim();
  return c.device != "cpu" && std::find(mixers.begin(), mixers.end(), "gka") != mixers.end() && D != 64 && D != 128;
}

}  // namespace gka::cli
