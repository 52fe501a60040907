#include <random>
#include <stdexcept>
#include <string>

#include "tasks/task.h"

namespace gka::cli {
namespace {

class Mqar : public Task {
 public:
  explicit Mqar(const MqarOptions& o) : o_(o) {
    if (o.num_pairs < 1 || o.seq_len < 4 * o.num_pairs)
      throw std::invalid_argument("mqar: --seq-len (" + std::to_string(o.seq_len) + ") must be at least 4 x --pairs (" +
                                  std::to_string(o.num_pairs) + ")");
    if (o.vocab_size < 2 * o.num_pairs + 2)
      throw std::invalid_argument("mqar: --vocab (" + std::to_string(o.vocab_size) + ") must be at least 2 x --pairs + 2");
  }
  int64_t vocab_size() const override { return o_.vocab_size; }
  std::string metric() const override { return "accuracy"; }
  Batch train_batch(int64_t step) const override { return make(o_.batch_size, 1000003ULL * (step + 1)); }
  int64_t num_eval_batches() const override { return (o_.eval_examples + o_.batch_size - 1) / o_.batch_size; }
  Batch eval_batch(int64_t i) const override {
    const int64_t n = std::min(o_.batch_size, o_.eval_examples - i * o_.batch_size);
    return make(n, 0x9E3779B97F4A7C15ULL + 7919ULL * i);  // disjoint stream from training
  }

 private:
  Batch make(int64_t B, uint64_t salt) const {
    const int64_t T = o_.seq_len, P = o_.num_pairs, V = o_.vocab_size, half = V / 2;
    std::mt19937_64 rng(o_.seed * 0x2545F4914F6CDD1DULL + salt);
    at::Tensor inputs = at::empty({B, T}, at::kLong), targets = at::full({B, T}, -100, at::kLong);
    auto* in = inputs.data_ptr<int64_t>();
    auto* tg = targets.data_ptr<int64_t>();
    std::vector<int64_t> keys(half - 1), slots((T - 2 * P) / 2);
    for (int64_t b = 0; b < B; ++b) {
      int64_t* x = in + b * T;
      int64_t* y = tg + b * T;
      for (int64_t t = 0; t < T; ++t) x[t] = static_cast<int64_t>(rng() % V);  // random filler
      for (size_t i = 0; i < keys.size(); ++i) keys[i] = 1 + static_cast<int64_t>(i);
      for (int64_t i = 0; i < P; ++i) std::swap(keys[i], keys[i + rng() % (keys.size() - i)]);
      for (size_t i = 0; i < slots.size(); ++i) slots[i] = static_cast<int64_t>(i);
      for (int64_t i = 0; i < P; ++i) std::swap(slots[i], slots[i + rng() % (slots.size() - i)]);
      for (int64_t i = 0; i < P; ++i) {
        const int64_t value = half + static_cast<int64_t>(rng() % (V - half));
        x[2 * i] = keys[i];
        x[2 * i + 1] = value;
        const int64_t at_ = 2 * P + 2 * slots[i];  // the query, then its value
        x[at_] = keys[i];
        x[at_ + 1] = value;
        y[at_] = value;
      }
    }
    return {inputs, targets};
  }
  MqarOptions o_;
};

}  // namespace

std::unique_ptr<Task> make_mqar(const MqarOptions& o) { return std::make_unique<Mqar>(o); }

}  // namespace gka::cli
