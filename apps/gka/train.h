// One training run: build the decoder and the task from a TrainConfig, train with AdamW (warm-up + cosine),
// evaluate every eval_every steps, write config.json, metrics.jsonl and checkpoint.safetensors into the run
// directory, and resume from that checkpoint when asked.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "config.h"
#include "models/decoder.h"
#include "tasks/task.h"

namespace gka::cli {

struct EvalResult {
  double loss = 0;    // mean cross-entropy over scored positions (nats)
  double metric = 0;  // mqar: accuracy of the queried values; lm: bits per byte
};

struct RunResult {
  TrainConfig config;
  int64_t params = 0, mixer_params = 0;
  EvalResult final;
  double train_s = 0;                               // wall time of the steps run now (0 if loaded as finished)
  std::vector<std::pair<int64_t, double>> history;  // (step, metric) at every evaluation
};

struct RunOptions {
  std::string dir;      // run directory (created)
  bool resume = false;  // continue from dir/checkpoint.safetensors if present
  bool quiet = false;   // no progress bar
  int64_t stop_after = 0;  // > 0: stop after this many steps, as if interrupted (tests of --resume)
};

std::unique_ptr<Task> make_task(const TrainConfig& c);
EvalResult evaluate(DecoderImpl& model, const Task& task, const at::Device& device);
RunResult train_run(const TrainConfig& c, const RunOptions& o);

// A decoder with the checkpoint's weights and the config stored in it.
std::pair<Decoder, TrainConfig> load_model(const std::string& checkpoint, const at::Device& device);

at::Device parse_device(const std::string& name);  // throws for cuda without a CUDA device

// The gka binary links only torch's CPU library; CUDA comes from loading libtorch_cuda.so (next to
// libtorch_cpu.so) at run time, before anything asks torch about CUDA: main() calls this when the command
// line names a cuda device, parse_device() otherwise. A no-op after the first call or with a CPU-only torch.
void load_torch_cuda();

}  // namespace gka::cli
