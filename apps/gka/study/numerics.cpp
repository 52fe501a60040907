#include "study/numerics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace gka::study {

double quantile(std::vector<float> v, double q) {
  if (v.empty()) return NAN;
  for (float& e : v)
    if (std::isnan(e)) e = INFINITY;  // a NaN error is worse than any number
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * double(v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + long(i), v.end());
  return v[i];
}

double median(std::vector<float> v) { return quantile(std::move(v), 0.5); }

double max_finite_or_inf(const std::vector<float>& v) {
  double m = 0;
  for (float e : v) m = std::isfinite(e) ? std::max(m, double(e)) : INFINITY;
  return m;
}

int64_t first_above(const std::vector<float>& v, double threshold) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!(v[i] <= threshold)) return int64_t(i) + 1;
  return -1;
}

std::string e2(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return "inf";
  char b[32];
  std::snprintf(b, sizeof b, "%.1e", v);
  return b;
}

namespace {

const Precision kPrecisions[] = {Precision::fp64, Precision::fp32, Precision::bf16};
const Precision kForwardPrecisions[] = {Precision::fp64, Precision::fp32, Precision::bf16, Precision::bf16s};

std::vector<LambdaMode> lambda_modes() {
  return {{LambdaKind::adaptive, 0.005}, {LambdaKind::adaptive, 0.02}, {LambdaKind::adaptive, 0.1},
          {LambdaKind::fixed, 0.25},     {LambdaKind::fixed, 1.0}};
}

std::vector<RunnerSpec> solve_specs() {
  std::vector<RunnerSpec> s;
  for (const LambdaMode& m : lambda_modes())
    for (Precision p : kForwardPrecisions) {
      for (int n : {5, 10, 20, 30, 50}) {
        s.push_back({"chebyshev", p, m, n});
        s.push_back({"cg", p, m, n});
      }
      s.push_back({"exact", p, m, 0});
    }
  for (double l : {0.25, 1.0})
    for (Precision p : kPrecisions) s.push_back({"kalman", p, {LambdaKind::fixed, l}, 0});
  return s;
}

std::vector<RunnerSpec> horizon_specs() {
  std::vector<RunnerSpec> s;
  const LambdaMode r02{LambdaKind::adaptive, 0.02};
  for (Precision p : kPrecisions) {
    for (double l : {0.25, 1.0}) s.push_back({"kalman", p, {LambdaKind::fixed, l}, 0});
    s.push_back({"chebyshev", p, r02, 30});
    s.push_back({"cg", p, r02, 30});
    s.push_back({"chebyshev", p, {LambdaKind::fixed, 1.0}, 30});
  }
  s.push_back({"chebyshev", Precision::bf16s, r02, 30});
  s.push_back({"cg", Precision::bf16s, r02, 30});
  s.push_back({"exact", Precision::bf16s, r02, 0});
  s.push_back({"exact", Precision::fp32, r02, 0});
  s.push_back({"exact", Precision::bf16, r02, 0});
  s.push_back({"exact", Precision::bf16, {LambdaKind::fixed, 1.0}, 0});
  return s;
}

}  // namespace

NumericsData numerics_collect(Scale scale, int threads) {
  const auto t0 = std::chrono::steady_clock::now();
  NumericsData d;
  d.scale = scale;
  const bool smoke = scale == Scale::smoke, full = scale == Scale::full;
  auto log = [&](const char* what) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "[%7.1fs] %s\n", s, what);
  };

  // A: solver accuracy on three input families.
  const int64_t DA = smoke ? 16 : 64, TA = smoke ? 48 : (full ? 2048 : 320);
  std::vector<InputSpec> inputs = {
      {"layer", DA, TA, 0.0, 0.8, 0.999, false, 11},
      {"correlated", DA, TA, 0.95, 0.8, 0.999, false, 12},
      {"mamba-gates", DA, TA, 0.5, 0, 0, true, 13},
  };
  const std::vector<RunnerSpec> specs = solve_specs();
  for (const InputSpec& in : inputs) {
    log(("A: solvers on input " + in.name).c_str());
    d.solve.push_back(forward_run(in, specs, sample_tokens(in.T, smoke ? 16 : 64), threads));
  }

  // A': fine num_iter grid for the default r = 0.02.
  {
    log("A': Chebyshev num_iter sweep at r = 0.02");
    InputSpec in{"layer", DA, smoke ? 32 : (full ? 1024 : 192), 0.0, 0.8, 0.999, false, 21};
    std::vector<RunnerSpec> s;
    const LambdaMode r02{LambdaKind::adaptive, 0.02};
    for (Precision p : kForwardPrecisions) {
      for (int n : {1, 2, 3, 4, 6, 8, 10, 12, 15, 18, 20, 22, 25, 28, 30, 35, 40, 45, 50, 60, 80})
        s.push_back({"chebyshev", p, r02, n});
      s.push_back({"exact", p, r02, 0});
    }
    d.iters = forward_run(in, s, sample_tokens(in.T, 16), threads);
  }

  // B: long horizons with the classic recursion.
  const int64_t TB = smoke ? 64 : (full ? 65536 : 8192);
  for (const InputSpec& in : {InputSpec{"no-gate", 32, TB, 0.0, 1.0, 1.0, false, 31},
                              InputSpec{"slow-gate-correlated", 32, TB, 0.9, 0.995, 0.9999, false, 32}}) {
    log(("B: long horizon, input " + in.name).c_str());
    d.horizon.push_back(forward_run(in, horizon_specs(), sample_tokens(in.T, smoke ? 16 : 96), threads));
  }

  // C: gradients through a 5-layer stack.
  d.grad_problem = smoke ? GradProblem{8, 16, 2, 7} : (full ? GradProblem{64, 256, 5, 7} : GradProblem{32, 64, 5, 7});
  std::vector<RunnerSpec> gs;
  for (const LambdaMode& m : {LambdaMode{LambdaKind::adaptive, 0.02}, LambdaMode{LambdaKind::fixed, 1.0}})
    for (Precision p : kPrecisions) {
      gs.push_back({"exact", p, m, 0});
      for (int n : {10, 30, 50}) {
        gs.push_back({"chebyshev", p, m, n});
        gs.push_back({"cg", p, m, n});
      }
    }
  log("C: gradients through the layer stack");
  std::vector<GradRun> runs(gs.size());
  std::vector<size_t> truth_of(gs.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (long i = 0; i < long(gs.size()); ++i) runs[size_t(i)] = gradient_run(d.grad_problem, gs[size_t(i)]);
  for (size_t i = 0; i < gs.size(); ++i) {
    const GradRun* truth = nullptr;
    for (size_t j = 0; j < gs.size(); ++j)
      if (gs[j].solver == "exact" && gs[j].precision == Precision::fp64 && gs[j].lambda == gs[i].lambda) truth = &runs[j];
    GradResult r;
    r.spec = gs[i];
    r.finite = runs[i].finite;
    r.loss_err = std::abs(runs[i].loss - truth->loss) / std::abs(truth->loss);
    auto rel = [](const std::vector<double>& a, const std::vector<double>& b) {
      double num = 0, den = 0;
      for (size_t k = 0; k < a.size(); ++k) {
        num += (a[k] - b[k]) * (a[k] - b[k]);
        den += b[k] * b[k];
      }
      return std::sqrt(num / den);
    };
    const int L = d.grad_problem.layers;
    for (int depth = 1; depth <= L; ++depth) {
      r.dx_err.push_back(rel(runs[i].dx[size_t(L - depth)], truth->dx[size_t(L - depth)]));
      r.dw_err.push_back(rel(runs[i].dw[size_t(L - depth)], truth->dw[size_t(L - depth)]));
    }
    d.grad.push_back(std::move(r));
  }
  d.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log("done collecting");
  return d;
}

}  // namespace gka::study
