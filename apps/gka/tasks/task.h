// Training tasks: batches are pure functions of (seed, step), so a resumed run sees the same data.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

namespace gka::cli {

struct Batch {
  at::Tensor inputs;   // [B, T] int64
  at::Tensor targets;  // [B, T] int64, -100 where not scored
};

class Task {
 public:
  virtual ~Task() = default;
  virtual int64_t vocab_size() const = 0;
  virtual Batch train_batch(int64_t step) const = 0;
  virtual int64_t num_eval_batches() const = 0;
  virtual Batch eval_batch(int64_t i) const = 0;
  // Name of the headline metric: "accuracy" (mqar, higher is better) or "bpb" (lm, bits per byte).
  virtual std::string metric() const = 0;
};

struct MqarOptions {
  int64_t vocab_size = 128;
  int64_t seq_len = 128;
  int64_t num_pairs = 16;
  int64_t batch_size = 32;
  int64_t eval_examples = 512;
  uint64_t seed = 0;
};

// Multi-query associative recall (Zoology, Arora et al. 2023): num_pairs key-value pairs, keys from the lower
// half of the vocabulary and values from the upper half, then each key queried once at a random later
// position, followed by its value; everything else is random tokens. Only the query positions are scored
// (target = the value). Needs seq_len >= 4 num_pairs and vocab_size >= 2 num_pairs + 2.
std::unique_ptr<Task> make_mqar(const MqarOptions& o);

struct LmOptions {
  std::string corpus;  // path of a text file (bytes)
  int64_t seq_len = 256;
  int64_t batch_size = 16;
  int64_t eval_batches = 8;
  uint64_t seed = 0;
};

// Byte-level language modelling on a text file: the last 10 % is the validation split.
std::unique_ptr<Task> make_lm(const LmOptions& o);

// The default corpus: the license texts every Debian/Ubuntu system carries in /usr/share/common-licenses.
std::vector<std::string> default_corpus_files();
std::string read_corpus(const std::string& path);  // "" or "default" = default_corpus_files(); throws if unreadable

}  // namespace gka::cli
