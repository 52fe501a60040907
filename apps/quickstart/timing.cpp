#include "timing.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

#include "gka/gka.h"
#include "harness/layer_problem.h"

namespace gka::quickstart {
namespace {

using harness::Shape;

// Best wall seconds of `fn` after one warm-up call (thread start-up, first touch of the outputs);
// repeats until `budget` seconds are spent or `max_reps` runs, whichever comes first.
double best_seconds(const std::function<void()>& fn, double budget, int max_reps) {
  using clock = std::chrono::steady_clock;
  fn();
  double best = 1e30, spent = 0;
  for (int rep = 0; rep < max_reps && (rep == 0 || spent < budget); ++rep) {
    const auto t0 = clock::now();
    fn();
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    best = std::min(best, s);
    spent += s;
  }
  return best;
}

void row(const char* op, double seconds, double tokens, double flops) {
  std::printf("%-18s %10.2f %12.0f %10.1f\n", op, seconds * 1e3, tokens / seconds, flops / seconds * 1e-9);
}

}  // namespace

void timing_run(bool quick, int32_t num_threads) {
  Options opt;
  opt.backend = Backend::cpu;
  opt.num_threads = num_threads;
  const Shape s = harness::dense_shape(1, quick ? 512 : 2048, 4, 128, DType::bf16);
  std::printf("\n(b) timing: cpu backend, B=%lld T=%lld H=%lld D=%lld bf16, N=%d r=%.2f chunk %d\n",
              static_cast<long long>(s.B), static_cast<long long>(s.T), static_cast<long long>(s.H),
              static_cast<long long>(s.D), opt.num_iter, opt.ridge_ratio, opt.chunk_size);
  std::printf("%-18s %10s %12s %10s\n", "op", "ms", "tokens/s", "GFLOP/s");

  const harness::LayerInputs in = harness::layer_inputs_make(s, 11);
  const harness::ForwardBuffers fwd = harness::forward_buffers_make(s);
  const harness::GradientSeeds seeds = harness::gradient_seeds_make(s, 12);
  const harness::GradientBuffers grads = harness::gradient_buffers_make(s, in);
  const double tokens = static_cast<double>(s.B * s.T);
  const double fwd_flops = forward_flops_per_token(s.D, s.dv(), opt.chunk_size, opt.num_iter) * tokens * s.H;
  const double bwd_flops = backward_flops_per_token(s.D, s.dv(), opt.chunk_size, opt.num_iter) * tokens * s.H;
  const double budget = quick ? 0.5 : 2.0;

  row("forward", best_seconds([&] { chunk_forward(in.view(), fwd.view(false), opt); }, budget, 5), tokens,
      fwd_flops);
  row("forward+backward",
      best_seconds(
          [&] {
            chunk_forward(in.view(), fwd.view(true), opt);
            chunk_backward(in.view(), seeds.view(&fwd), grads.view(), opt);
          },
          budget, 5),
      tokens, fwd_flops + bwd_flops);

  // Decode: one token of one sequence, all heads, state updated in place (final aliases initial).
  Shape d = harness::dense_shape(1, 1, s.H, s.D, s.dtype);
  d.h0 = true;
  const harness::LayerInputs din = harness::layer_inputs_make(d, 13);
  const harness::ForwardBuffers dout = harness::forward_buffers_make(d);
  ForwardOutputs o;
  o.o = dout.o.view();
  o.final_kk = din.h0_kk.view();
  o.final_kv = din.h0_kv.view();
  const int steps = quick ? 50 : 200;
  const double sec = best_seconds(
      [&] {
        for (int i = 0; i < steps; ++i) recurrent_forward(din.view(), o, opt);
      },
      budget, 3);
  std::printf("decode step        %10.1f us/token (B=1, H=%lld, D=%lld, state in/out)\n", sec / steps * 1e6,
              static_cast<long long>(d.H), static_cast<long long>(d.D));
}

}  // namespace gka::quickstart
