#include "study/forward.h"

#include <omp.h>

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <stdexcept>

#include "study/solvers.h"

namespace gka::study {

std::string LambdaMode::name() const {
  char buf[48];
  switch (kind) {
    case LambdaKind::adaptive: std::snprintf(buf, sizeof buf, "r=%g", value); break;
    case LambdaKind::fixed: std::snprintf(buf, sizeof buf, "lambda=%g", value); break;
    case LambdaKind::fading: std::snprintf(buf, sizeof buf, "lambda=%g*e^G", value); break;
  }
  return buf;
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::fp64: return "fp64";
    case Precision::fp32: return "fp32";
    case Precision::bf16: return "bf16";
    case Precision::bf16s: return "bf16s";
  }
  return "?";
}

std::string RunnerSpec::label() const {
  std::string s = solver;
  if (solver == "chebyshev" || solver == "cg") s += " N=" + std::to_string(num_iter);
  return s + " " + precision_name(precision) + " " + lambda.name();
}

Sequence sequence_make(const InputSpec& spec) {
  Sequence s;
  s.D = spec.D;
  s.T = spec.T;
  const size_t n = static_cast<size_t>(spec.T * spec.D);
  s.q.resize(n);
  s.k.resize(n);
  s.v.resize(n);
  s.gamma.resize(static_cast<size_t>(spec.T));
  s.alpha.resize(static_cast<size_t>(spec.T));
  std::mt19937_64 rng(spec.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  auto sigmoid = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  auto normalize = [](double* x, int64_t D) {
    double nn = 0;
    for (int64_t i = 0; i < D; ++i) nn += x[i] * x[i];
    nn = std::sqrt(nn) + 1e-6;
    for (int64_t i = 0; i < D; ++i) x[i] /= nn;
  };
  std::vector<double> shared(static_cast<size_t>(spec.D));
  for (double& e : shared) e = normal(rng);
  normalize(shared.data(), spec.D);
  // Mamba-2-style gate parameters of this head: A in [1, 16], dt in [1e-3, 1e-1] log-uniform.
  const double A = 1.0 + 15.0 * uniform(rng);
  const double dt = std::exp(std::log(1e-3) + uniform(rng) * (std::log(1e-1) - std::log(1e-3)));
  const double dt_bias = dt + std::log(-std::expm1(-dt));  // softplus^{-1}(dt)
  const double rho = spec.key_corr;
  for (int64_t t = 0; t < spec.T; ++t) {
    double* q = &s.q[static_cast<size_t>(t * spec.D)];
    double* k = &s.k[static_cast<size_t>(t * spec.D)];
    double* v = &s.v[static_cast<size_t>(t * spec.D)];
    for (int64_t i = 0; i < spec.D; ++i) q[i] = normal(rng);
    normalize(q, spec.D);
    for (int64_t i = 0; i < spec.D; ++i)
      k[i] = std::sqrt(rho) * shared[static_cast<size_t>(i)] + std::sqrt(1.0 - rho) * normal(rng) / std::sqrt(double(spec.D));
    normalize(k, spec.D);
    const double beta = sigmoid(normal(rng)) + 1e-6;
    for (int64_t i = 0; i < spec.D; ++i) k[i] *= beta;
    for (int64_t i = 0; i < spec.D; ++i) v[i] = normal(rng);
    s.alpha[static_cast<size_t>(t)] = sigmoid(normal(rng));
    if (spec.mamba_gates) {
      const double z = dt_bias + 0.5 * normal(rng);
      const double softplus = z > 20 ? z : std::log1p(std::exp(z));
      s.gamma[static_cast<size_t>(t)] = std::exp(-A * softplus);
    } else {
      s.gamma[static_cast<size_t>(t)] = spec.gamma_lo + (spec.gamma_hi - spec.gamma_lo) * uniform(rng);
    }
  }
  return s;
}

std::vector<int64_t> sample_tokens(int64_t T, int n) {
  std::set<int64_t> ts;
  for (int i = 0; i < n / 2; ++i) ts.insert(std::clamp<int64_t>(std::llround(std::pow(double(T), double(i) / (n / 2 - 1))), 1, T));
  for (int i = 1; i <= n / 2; ++i) ts.insert(std::max<int64_t>(1, T * i / (n / 2)));
  return {ts.begin(), ts.end()};
}

namespace {

class Runner {
 public:
  virtual ~Runner() = default;
  virtual void step(const Sequence& s, int64_t t) = 0;
  std::vector<double> x, o;  // results of the last token, in fp64
};

template <class T> class GkaRunner final : public Runner {
 public:
  GkaRunner(const RunnerSpec& spec, int64_t D)
      : spec_(spec), H(D), S(D), scale_(1.0 / std::sqrt(double(D))), state32_(spec.precision == Precision::bf16s) {
    if (state32_) {
      H32 = MatT<float>(D);
      S32 = MatT<float>(D);
    }
  }
  void step(const Sequence& s, int64_t t) override {
    using A = Acc<T>;
    const int64_t D = s.D;
    const VecT<T> q = vec_cast<T>(std::vector<double>(&s.q[size_t(t * D)], &s.q[size_t((t + 1) * D)]));
    const VecT<T> k = vec_cast<T>(std::vector<double>(&s.k[size_t(t * D)], &s.k[size_t((t + 1) * D)]));
    const VecT<T> v = vec_cast<T>(std::vector<double>(&s.v[size_t(t * D)], &s.v[size_t((t + 1) * D)]));
    const double gamma = s.gamma[size_t(t)], alpha = s.alpha[size_t(t)];
    A f;
    if (state32_) {  // fp32 states, bf16 operands
      const VecT<float> k32 = vec_cast<float>(to_double_vec(k)), v32 = vec_cast<float>(to_double_vec(v));
      gram_update(H32, float(gamma), k32);
      for (int64_t i = 0; i < D; ++i)
        for (int64_t j = 0; j < D; ++j) S32(i, j) = float(gamma) * S32(i, j) + k32[size_t(i)] * v32[size_t(j)];
      for (size_t i = 0; i < H.a.size(); ++i) {
        H.a[i] = T(static_cast<A>(H32.a[i]));
        S.a[i] = T(static_cast<A>(S32.a[i]));
      }
      f = A(fro_norm(H32));
    } else {
      gram_update(H, A(gamma), k);
      for (int64_t i = 0; i < D; ++i)
        for (int64_t j = 0; j < D; ++j)
          S(i, j) = T(A(gamma) * static_cast<A>(S(i, j)) + static_cast<A>(k[size_t(i)]) * static_cast<A>(v[size_t(j)]));
      f = fro_norm(H);
    }
    log_decay_ += std::log(gamma);
    switch (spec_.lambda.kind) {
      case LambdaKind::adaptive: lambda = double(A(spec_.lambda.value) * f); break;
      case LambdaKind::fixed: lambda = spec_.lambda.value; break;
      case LambdaKind::fading: lambda = spec_.lambda.value * std::exp(log_decay_); break;
    }
    VecT<T> xs;
    if (spec_.solver == "chebyshev") xs = chebyshev_solve(H, A(lambda), f, q, spec_.num_iter);
    else if (spec_.solver == "cg") xs = cg_solve(H, A(lambda), q, spec_.num_iter);
    else xs = exact_solve(H, A(lambda), q);
    readout(xs, q, alpha);
  }
  void readout(const VecT<T>& xs, const VecT<T>& q, double alpha) {
    using A = Acc<T>;
    VecT<T> qm(q.size());
    for (size_t i = 0; i < q.size(); ++i)
      qm[i] = T(static_cast<A>(q[i]) + A(alpha) * (static_cast<A>(xs[i]) - static_cast<A>(q[i])));
    VecT<T> os(q.size());
    for (int64_t j = 0; j < S.n; ++j) {
      A acc = 0;
      for (int64_t i = 0; i < S.n; ++i) acc += static_cast<A>(S(i, j)) * static_cast<A>(qm[size_t(i)]);
      os[size_t(j)] = T(A(scale_) * acc);
    }
    x = to_double_vec(xs);
    o = to_double_vec(os);
  }
  RunnerSpec spec_;
  MatT<T> H, S;
  double scale_, lambda = 0, log_decay_ = 0;
  bool state32_;
  MatT<float> H32, S32;
};

template <class T> class KalmanRunner final : public Runner {
 public:
  KalmanRunner(const RunnerSpec& spec, int64_t D) : gka_(spec, D), rec_(D, spec.lambda.value) {}
  void step(const Sequence& s, int64_t t) override {
    using A = Acc<T>;
    const int64_t D = s.D;
    const VecT<T> q = vec_cast<T>(std::vector<double>(&s.q[size_t(t * D)], &s.q[size_t((t + 1) * D)]));
    const VecT<T> k = vec_cast<T>(std::vector<double>(&s.k[size_t(t * D)], &s.k[size_t((t + 1) * D)]));
    const VecT<T> v = vec_cast<T>(std::vector<double>(&s.v[size_t(t * D)], &s.v[size_t((t + 1) * D)]));
    const double gamma = s.gamma[size_t(t)];
    rec_.update(A(gamma), k);
    for (int64_t i = 0; i < D; ++i)
      for (int64_t j = 0; j < D; ++j)
        gka_.S(i, j) = T(A(gamma) * static_cast<A>(gka_.S(i, j)) + static_cast<A>(k[size_t(i)]) * static_cast<A>(v[size_t(j)]));
    gka_.readout(rec_.solve(q), q, s.alpha[size_t(t)]);
    x = gka_.x;
    o = gka_.o;
  }

 private:
  GkaRunner<T> gka_;  // only its S state and readout are used
  KalmanRecursion<T> rec_;
};

std::unique_ptr<Runner> runner_make(const RunnerSpec& spec, int64_t D) {
  const bool kalman = spec.solver == "kalman";
  switch (spec.precision) {
    case Precision::fp64:
      if (kalman) return std::make_unique<KalmanRunner<double>>(spec, D);
      return std::make_unique<GkaRunner<double>>(spec, D);
    case Precision::fp32:
      if (kalman) return std::make_unique<KalmanRunner<float>>(spec, D);
      return std::make_unique<GkaRunner<float>>(spec, D);
    case Precision::bf16:
    case Precision::bf16s:  // the Kalman recursion's only state is P: bf16s = bf16 for it
      if (kalman) return std::make_unique<KalmanRunner<Bf16>>(spec, D);
      return std::make_unique<GkaRunner<Bf16>>(spec, D);
  }
  throw std::invalid_argument("unknown precision");
}

double rel_diff(const std::vector<double>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

bool all_finite(const std::vector<double>& a) {
  for (double e : a)
    if (!std::isfinite(e)) return false;
  return true;
}

}  // namespace

ForwardRun forward_run(const InputSpec& input, const std::vector<RunnerSpec>& specs, const std::vector<int64_t>& samples,
                       int num_threads) {
  const Sequence seq = sequence_make(input);
  const int64_t D = seq.D, T = seq.T;
  // fp64 exact truths, one per lambda mode (kalman runners: the fading system and the fixed one).
  std::vector<LambdaMode> modes;
  auto mode_index = [&](const LambdaMode& m) {
    for (size_t i = 0; i < modes.size(); ++i)
      if (modes[i] == m) return i;
    modes.push_back(m);
    return modes.size() - 1;
  };
  std::vector<size_t> own(specs.size()), fixed(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].solver == "kalman") {
      own[i] = mode_index({LambdaKind::fading, specs[i].lambda.value});
      fixed[i] = mode_index({LambdaKind::fixed, specs[i].lambda.value});
    } else {
      own[i] = fixed[i] = mode_index(specs[i].lambda);
    }
  }
  std::vector<std::unique_ptr<GkaRunner<double>>> truths;
  for (const LambdaMode& m : modes) truths.push_back(std::make_unique<GkaRunner<double>>(RunnerSpec{"exact", Precision::fp64, m, 0}, D));
  std::vector<std::unique_ptr<Runner>> runners;
  for (const RunnerSpec& s : specs) runners.push_back(runner_make(s, D));

  ForwardRun run;
  run.input = input;
  run.samples = samples;
  for (size_t i = 0; i < specs.size(); ++i) {
    RunnerResult r;
    r.spec = specs[i];
    r.xerr.resize(size_t(T));
    r.oerr.resize(size_t(T));
    r.res.resize(size_t(T));
    if (specs[i].solver == "kalman") {
      r.xerr_fixed.resize(size_t(T));
      r.oerr_fixed.resize(size_t(T));
    }
    run.runners.push_back(std::move(r));
  }
  for (const LambdaMode& m : modes) run.cond.push_back({m, {}, {}});
  size_t next_sample = 0;
  const int64_t n_runners = int64_t(runners.size()), n_truths = int64_t(truths.size());
  for (int64_t t = 0; t < T; ++t) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads)
    for (int64_t i = 0; i < n_runners + n_truths; ++i) {
      if (i < n_truths) truths[size_t(i)]->step(seq, t);
      else runners[size_t(i - n_truths)]->step(seq, t);
    }
#pragma omp parallel for schedule(dynamic, 4) num_threads(num_threads)
    for (int64_t i = 0; i < n_runners; ++i) {
      const Runner& rn = *runners[size_t(i)];
      RunnerResult& r = run.runners[size_t(i)];
      const GkaRunner<double>& tr = *truths[own[size_t(i)]];
      r.xerr[size_t(t)] = float(rel_diff(rn.x, tr.x));
      r.oerr[size_t(t)] = float(rel_diff(rn.o, tr.o));
      // residual of the true fp64 system at the runner's x
      double rn2 = 0, qn2 = 0;
      for (int64_t a = 0; a < D; ++a) {
        const double qa = seq.q[size_t(t * D + a)];
        double s = tr.lambda * rn.x[size_t(a)] - qa;
        for (int64_t b = 0; b < D; ++b) s += tr.H(a, b) * rn.x[size_t(b)];
        rn2 += s * s;
        qn2 += qa * qa;
      }
      r.res[size_t(t)] = float(std::sqrt(rn2 / qn2));
      if (!r.xerr_fixed.empty()) {
        const GkaRunner<double>& tf = *truths[fixed[size_t(i)]];
        r.xerr_fixed[size_t(t)] = float(rel_diff(rn.x, tf.x));
        r.oerr_fixed[size_t(t)] = float(rel_diff(rn.o, tf.o));
      }
      if (!all_finite(rn.x) || !all_finite(rn.o)) {
        ++r.nonfinite;
        if (r.first_nonfinite < 0) r.first_nonfinite = t + 1;
      }
    }
    if (next_sample < samples.size() && samples[next_sample] == t + 1) {
      ++next_sample;
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads)
      for (int64_t m = 0; m < n_truths; ++m) {
        const GkaRunner<double>& tr = *truths[size_t(m)];
        Eigen::MatrixXd A(D, D);
        for (int64_t a = 0; a < D; ++a)
          for (int64_t b = 0; b < D; ++b) A(a, b) = tr.H(a, b) + (a == b ? tr.lambda : 0.0);
        Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(A, Eigen::EigenvaluesOnly);
        const auto& ev = es.eigenvalues();
        run.cond[size_t(m)].t.push_back(t + 1);
        run.cond[size_t(m)].cond.push_back(ev(D - 1) / ev(0));
      }
    }
  }
  return run;
}

}  // namespace gka::study
