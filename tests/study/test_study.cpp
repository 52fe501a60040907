// Tests of the numerics study (issue 4): only what must hold mathematically, on sizes that run in seconds.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "gka/gka.h"
#include "study/forward.h"
#include "study/gradient.h"
#include "study/number.h"
#include "study/solvers.h"

namespace gka::study {
namespace {

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(bf16_round(1.0f), 1.0f);
  EXPECT_EQ(bf16_round(1.0f + std::ldexp(1.0f, -8)), 1.0f);                             // tie -> even (down)
  EXPECT_EQ(bf16_round(1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6));  // tie -> even (up)
  EXPECT_EQ(bf16_round(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 1.0f + std::ldexp(1.0f, -7));
  EXPECT_EQ(bf16_round(-1.0f - std::ldexp(1.0f, -8)), -1.0f);
  EXPECT_EQ(bf16_round(3.140625f), 3.140625f);  // representable: 1.1001001b x 2
  EXPECT_EQ(bf16_round(0.1f), 0.10009765625f);
  EXPECT_TRUE(std::isinf(bf16_round(3.4e38f)));
  EXPECT_TRUE(std::isnan(bf16_round(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(bf16_round(0.0f), 0.0f);
  const Bf16 a = 1.0f / 3.0f;  // storage rounds, arithmetic in fp32
  EXPECT_EQ(float(a), 0.333984375f);
}

// A random SPD system H = sum of decayed rank-1 updates, lambda = r ||H||_F.
struct System {
  MatT<double> H;
  VecT<double> q;
  double f = 0;
};

System system_make(int64_t D, int T, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n(0, 1);
  System s{MatT<double>(D), VecT<double>(size_t(D)), 0};
  for (int t = 0; t < T; ++t) {
    VecT<double> k(static_cast<size_t>(D));
    for (double& e : k) e = n(rng) / std::sqrt(double(D));
    gram_update(s.H, 0.95, k);
  }
  for (double& e : s.q) e = n(rng);
  s.f = fro_norm(s.H);
  return s;
}

double rel_err(const VecT<double>& a, const VecT<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

TEST(Solvers, ExactFp64HasTinyResidual) {
  const System s = system_make(24, 40, 1);
  const double lambda = 0.02 * s.f;
  const VecT<double> x = exact_solve(s.H, lambda, s.q);
  const VecT<double> Ax = shifted_matvec(s.H, lambda, x);
  EXPECT_LT(rel_err(Ax, s.q), 1e-13);
}

TEST(Solvers, ChebyshevWithinItsAPrioriBound) {
  for (double r : {0.005, 0.02, 0.1})
    for (int N : {1, 5, 10, 20, 30}) {
      const System s = system_make(24, 12, 2);  // low rank: many eigenvalues at lambda, the worst case
      const double lambda = r * s.f;
      const VecT<double> xs = exact_solve(s.H, lambda, s.q);
      const double err = rel_err(chebyshev_solve(s.H, lambda, s.f, s.q, N), xs);
      EXPECT_LE(err, chebyshev_error_bound(r, N) * (1 + 1e-9) + 1e-12) << "r=" << r << " N=" << N;
    }
}

TEST(Solvers, CgWithManyIterationsIsExact) {
  const System s = system_make(24, 40, 3);
  const double lambda = 0.02 * s.f;
  EXPECT_LT(rel_err(cg_solve(s.H, lambda, s.q, 200), exact_solve(s.H, lambda, s.q)), 1e-10);
}

TEST(Solvers, KalmanRecursionSolvesItsOwnSystemInFp64) {
  InputSpec in{"t", 8, 300, 0.5, 0.99, 1.0, false, 5};
  const std::vector<RunnerSpec> specs = {{"kalman", Precision::fp64, {LambdaKind::fixed, 1.0}, 0},
                                         {"exact", Precision::fp64, {LambdaKind::adaptive, 0.02}, 0},
                                         {"chebyshev", Precision::fp64, {LambdaKind::adaptive, 0.02}, 200}};
  const ForwardRun run = forward_run(in, specs, {1, 300}, 1);
  for (const RunnerResult& r : run.runners) {
    EXPECT_EQ(r.nonfinite, 0);
    for (float e : r.xerr) EXPECT_LT(e, 1e-10) << r.spec.label();
    for (float e : r.oerr) EXPECT_LT(e, 1e-10) << r.spec.label();
  }
}

TEST(Solvers, NoGateKalmanEqualsFixedLambdaSystem) {
  InputSpec in{"t", 8, 100, 0.0, 1.0, 1.0, false, 6};
  const ForwardRun run = forward_run(in, {{"kalman", Precision::fp64, {LambdaKind::fixed, 0.25}, 0}}, {}, 1);
  for (float e : run.runners[0].xerr_fixed) EXPECT_LT(e, 1e-10);
}

TEST(Gradient, ExactFp64MatchesFiniteDifferences) {
  for (const LambdaMode m : {LambdaMode{LambdaKind::adaptive, 0.02}, LambdaMode{LambdaKind::fixed, 0.25}}) {
    const RunnerSpec spec{"exact", Precision::fp64, m, 0};
    GradProblem p{6, 10, 2, 3};
    const GradRun base = gradient_run(p, spec);
    ASSERT_TRUE(base.finite);
    for (int64_t idx : {0L, 7L, 31L, 59L}) {
      const double h = 1e-5;
      p.perturb_index = idx;
      p.perturb = h;
      const double lp = gradient_run(p, spec).loss;
      p.perturb = -h;
      const double lm = gradient_run(p, spec).loss;
      const double fd = (lp - lm) / (2 * h), an = base.dx[0][size_t(idx)];
      EXPECT_NEAR(an, fd, 1e-6 * (1 + std::abs(fd))) << m.name() << " index " << idx;
    }
  }
}

TEST(Gradient, ChebyshevGradientConvergesToExact) {
  const GradProblem p{6, 10, 2, 4};
  const LambdaMode m{LambdaKind::adaptive, 0.1};
  const GradRun ex = gradient_run(p, {"exact", Precision::fp64, m, 0});
  const GradRun ch = gradient_run(p, {"chebyshev", Precision::fp64, m, 120});
  const GradRun cg = gradient_run(p, {"cg", Precision::fp64, m, 60});
  EXPECT_LT(rel_err(ch.dx[0], ex.dx[0]), 1e-9);
  EXPECT_LT(rel_err(cg.dx[0], ex.dx[0]), 1e-9);
}

}  // namespace
}  // namespace gka::study
