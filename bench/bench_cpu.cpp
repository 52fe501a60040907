// gka_bench_cpu: forward, forward+backward and decode of the CPU backend (Google Benchmark, wall time).
// Counters: tokens/s, GFLOP/s by the spec §B.4 / §C.4 counts, and % of this machine's measured fp32 FMA peak.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "gka/gka.h"
#include "harness/layer_problem.h"
#include "peak.h"

namespace {

using gka::DType;
using gka::harness::Shape;

constexpr int32_t kNumIter = 30;
constexpr double kRidge = 0.02;
constexpr int32_t kChunk = 64;

double g_peak_one = 0, g_peak_all = 0;  // GFLOP/s, measured in main

// Inputs and outputs of the shape being benchmarked; kept across the calls Google Benchmark makes for one
// benchmark (input generation is slow next to a run), replaced when the shape changes.
struct Problem {
  std::string key;
  gka::harness::LayerInputs in;
  gka::harness::ForwardBuffers fwd;
  gka::harness::GradientSeeds seeds;
  gka::harness::GradientBuffers grads;
};

const Problem& problem_get(const Shape& s) {
  static std::unique_ptr<Problem> cached;
  const std::string key = std::to_string(s.B) + "x" + std::to_string(s.T) + "x" + std::to_string(s.H) + "x" +
                          std::to_string(s.D) + gka::dtype_name(s.dtype) + (s.h0 ? "h0" : "");
  if (!cached || cached->key != key) {
    cached.reset();  // free the old one first: the large shapes hold ~100 MB
    auto p = std::make_unique<Problem>();
    p->key = key;
    p->in = gka::harness::layer_inputs_make(s, 1);
    p->fwd = gka::harness::forward_buffers_make(s);
    p->seeds = gka::harness::gradient_seeds_make(s, 2);
    p->grads = gka::harness::gradient_buffers_make(s, p->in);
    cached = std::move(p);
  }
  return *cached;
}

gka::Options options(int threads) {
  gka::Options o;
  o.backend = gka::Backend::cpu;
  o.num_iter = kNumIter;
  o.ridge_ratio = kRidge;
  o.chunk_size = kChunk;
  o.num_threads = threads;
  return o;
}

void counters_set(benchmark::State& st, double tokens, double flops, int threads) {
  const double peak = threads == 1 ? g_peak_one : g_peak_all;
  st.counters["tok/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["%peak"] = benchmark::Counter(flops * 1e-9 / peak * 100, benchmark::Counter::kIsIterationInvariantRate);
}

void bm_forward(benchmark::State& st, Shape s, int threads) {
  const gka::Options opt = options(threads);
  try {
    const Problem& p = problem_get(s);
    for (auto _ : st) gka::chunk_forward(p.in.view(), p.fwd.view(false), opt);
  } catch (const gka::Error& e) {
    st.SkipWithError(e.what());
    return;
  }
  const double fpt = gka::forward_flops_per_token(s.D, s.dv(), kChunk, kNumIter);
  counters_set(st, static_cast<double>(s.B * s.T), fpt * static_cast<double>(s.B * s.T * s.H), threads);
}

// A training step: the forward saves x and fro, the backward reads them.
void bm_forward_backward(benchmark::State& st, Shape s, int threads) {
  const gka::Options opt = options(threads);
  try {
    const Problem& p = problem_get(s);
    for (auto _ : st) {
      gka::chunk_forward(p.in.view(), p.fwd.view(true), opt);
      gka::chunk_backward(p.in.view(), p.seeds.view(&p.fwd), p.grads.view(), opt);
    }
  } catch (const gka::Error& e) {
    st.SkipWithError(e.what());
    return;
  }
  const double fpt = gka::forward_flops_per_token(s.D, s.dv(), kChunk, kNumIter) +
                     gka::backward_flops_per_token(s.D, s.dv(), kChunk, kNumIter);
  counters_set(st, static_cast<double>(s.B * s.T), fpt * static_cast<double>(s.B * s.T * s.H), threads);
}

// One token per call with the state read and written in place (final_* alias initial_*), as in serving.
void bm_decode(benchmark::State& st, Shape s, int threads) {
  const gka::Options opt = options(threads);
  try {
    const Problem& p = problem_get(s);
    gka::ForwardOutputs out;
    out.o = p.fwd.o.view();
    out.final_kk = p.in.h0_kk.view();
    out.final_kv = p.in.h0_kv.view();
    for (auto _ : st) gka::recurrent_forward(p.in.view(), out, opt);
  } catch (const gka::Error& e) {
    st.SkipWithError(e.what());
    return;
  }
  // The chunked count with C = 1 is the token-by-token cost: N (D^2 + 2D) for the solve, the Gram update,
  // ||H||_F and the readout.
  const double fpt = gka::forward_flops_per_token(s.D, s.dv(), 1, kNumIter);
  counters_set(st, static_cast<double>(s.B), fpt * static_cast<double>(s.B * s.H), threads);
}

const char* dtype_short(DType dt) { return dt == DType::bf16 ? "bf16" : "f32"; }

std::string shape_name(const Shape& s) {
  return std::to_string(s.B) + "x" + std::to_string(s.T) + "x" + std::to_string(s.H) + "x" + std::to_string(s.D);
}

void register_all() {
  const int all = omp_get_max_threads();
  const Shape train[] = {gka::harness::dense_shape(1, 4096, 4, 128), gka::harness::dense_shape(2, 2048, 8, 64)};
  for (const char* op : {"fwd", "fwdbwd"}) {
    for (Shape s : train) {
      for (DType dt : {DType::bf16, DType::f32}) {
        s.dtype = dt;
        const std::string name = std::string(op) + "/" + shape_name(s) + "/" + dtype_short(dt) + "/t" +
                                 std::to_string(all);
        auto fn = std::string(op) == "fwd" ? bm_forward : bm_forward_backward;
        benchmark::RegisterBenchmark(name.c_str(), fn, s, all)->UseRealTime()->Unit(benchmark::kMillisecond);
      }
    }
  }
  for (int threads : {1, all}) {
    for (DType dt : {DType::bf16, DType::f32}) {
      Shape s = gka::harness::dense_shape(1, 1, 16, 128, dt);
      s.h0 = true;
      const std::string name =
          "decode/" + shape_name(s) + "/" + dtype_short(dt) + "/t" + std::to_string(threads);
      benchmark::RegisterBenchmark(name.c_str(), bm_decode, s, threads)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const int all = omp_get_max_threads();
  g_peak_one = gka::bench::fma_peak_gflops(1);
  const double measured_all = gka::bench::fma_peak_gflops(all);
  // Neighbours on shared cores pull the all-thread measurement down; threads x one core is the ceiling.
  g_peak_all = std::max(measured_all, all * g_peak_one);
  char buf[200];
  std::snprintf(buf, sizeof buf, "%.1f GFLOP/s 1 thread; %d threads: %.1f measured, %.1f used for %%peak (%s)",
                g_peak_one, all, measured_all, g_peak_all, gka::bench::fma_isa());
  benchmark::AddCustomContext("fp32_fma_peak", buf);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
