#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "tasks/task.h"

namespace gka::cli {
namespace {

class ByteLm : public Task {
 public:
  ByteLm(const LmOptions& o, std::string text) : o_(o), text_(std::move(text)) {
    const int64_t n = static_cast<int64_t>(text_.size()), split = n - n / 10;
    if (split < o.seq_len + 2 || n - split < o.seq_len + 2)
      throw std::invalid_argument("lm: the corpus (" + std::to_string(n) + " bytes) is too short for --seq-len " +
                                  std::to_string(o.seq_len));
    split_ = split;
  }
  int64_t vocab_size() const override { return 256; }
  std::string metric() const override { return "bpb"; }
  Batch train_batch(int64_t step) const override {
    std::mt19937_64 rng(o_.seed * 0x2545F4914F6CDD1DULL + 1000003ULL * (step + 1));
    std::vector<int64_t> starts(o_.batch_size);
    for (auto& s : starts) s = static_cast<int64_t>(rng() % (split_ - o_.seq_len - 1));
    return windows(starts);
  }
  int64_t num_eval_batches() const override { return o_.eval_batches; }
  Batch eval_batch(int64_t i) const override {
    // Evenly spaced windows over the validation split.
    const int64_t n = static_cast<int64_t>(text_.size()) - split_ - o_.seq_len - 1;
    const int64_t total = o_.eval_batches * o_.batch_size;
    std::vector<int64_t> starts(o_.batch_size);
    for (int64_t b = 0; b < o_.batch_size; ++b) starts[b] = split_ + (n * (i * o_.batch_size + b)) / total;
    return windows(starts);
  }

 private:
  Batch windows(const std::vector<int64_t>& starts) const {
    const int64_t B = static_cast<int64_t>(starts.size()), T = o_.seq_len;
    at::Tensor x = at::empty({B, T}, at::kLong), y = at::empty({B, T}, at::kLong);
    int64_t* px = x.data_ptr<int64_t>();
    int64_t* py = y.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        px[b * T + t] = static_cast<unsigned char>(text_[starts[b] + t]);
        py[b * T + t] = static_cast<unsigned char>(text_[starts[b] + t + 1]);
      }
    return {x, y};
  }
  LmOptions o_;
  std::string text_;
  int64_t split_ = 0;
};

}  // namespace

std::vector<std::string> default_corpus_files() {
  std::vector<std::string> out;
  for (const char* name : {"GPL-3", "LGPL-3", "GPL-2", "LGPL-2.1", "Apache-2.0", "MPL-2.0", "GFDL-1.3", "Artistic"}) {
    const std::string p = std::string("/usr/share/common-licenses/") + name;
    if (std::filesystem::is_regular_file(p)) out.push_back(p);
  }
  return out;
}

std::string read_corpus(const std::string& path) {
  std::vector<std::string> files = (path.empty() || path == "default") ? default_corpus_files()
                                                                       : std::vector<std::string>{path};
  if (files.empty()) throw std::runtime_error("lm: no default corpus (/usr/share/common-licenses is empty); pass --corpus FILE");
  std::string text;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) throw std::runtime_error("lm: cannot read corpus file '" + f + "'");
    std::ostringstream s;
    s << in.rdbuf();
    text += s.str();
  }
  return text;
}

std::unique_ptr<Task> make_lm(const LmOptions& o) { return std::make_unique<ByteLm>(o, read_corpus(o.corpus)); }

}  // namespace gka::cli
