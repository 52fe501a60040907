// Solver options on the CPU backend: the tolerance mode delivers the accuracy it promises, the residual
// report matches the oracle's, CG and Chebyshev converge to the exact solve, and N = 0 skips the solve.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

#include "support/cases.h"
#include "support/metrics.h"
#include "support/tolerance.h"

namespace gka::test {
namespace {

Case solver_case() {
  Case c;
  c.name = "solvers";
  c.B = 1;
  c.T = 100;
  c.H = 2;
  c.D = 32;
  c.gates = "untied";
  c.dtype = "f64";  // isolates the solver's algorithmic error from fp32 rounding
  return c;
}

// Worst per-token relative error of x against the exact solve.
double worst_token_error(const Tensor& x, const Tensor& exact, int64_t D) {
  const std::vector<double> a = x.to_f64(), b = exact.to_f64();
  double worst = 0;
  for (size_t r = 0; r < a.size() / static_cast<size_t>(D); ++r) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < D; ++i) {
      num += std::pow(a[r * D + i] - b[r * D + i], 2);
      den += b[r * D + i] * b[r * D + i];
    }
    worst = std::max(worst, std::sqrt(num / den));
  }
  return worst;
}

TEST(Solvers, ToleranceModeMeetsItsBound) {
  Case c = solver_case();
  const CaseInputs in = inputs_make(c, 31);
  Case exact = c;
  exact.solver = "exact";
  const ForwardResult ref = forward_run(exact, in, Backend::cpu);
  for (double tol : {1e-2, 1e-4, 1e-6}) {
    Options opt = c.options(Backend::cpu);
    opt.tolerance = tol;
    Tensor o(DType::f64, {c.B, c.T, c.H, c.D}), x(DType::f64, {c.B, c.T, c.H, c.D});
    ForwardOutputs out;
    out.o = o.view();
    out.x = x.view();
    chunk_forward(in.view(), out, opt);
    const double err = worst_token_error(x, ref.x, c.D);
    EXPECT_LE(err, tol) << "tolerance " << tol << " chose num_iter " << num_iter_for_tolerance(c.ridge_ratio, tol);
    EXPECT_GT(err, tol * 1e-3) << "the bound should be nearly tight (spec §A.3), else N is wasted";
  }
  EXPECT_EQ(num_iter_for_tolerance(0.02, chebyshev_error_bound(0.02, 30)), 30);
}

TEST(Solvers, ResidualReportMatchesOracle) {
  for (const char* solver : {"chebyshev", "cg", "exact"}) {
    Case c = solver_case();
    c.solver = solver;
    c.num_iter = 10;
    const CaseInputs in = inputs_make(c, 32);
    Tensor res[2];
    for (int i = 0; i < 2; ++i) {
      Tensor o(DType::f64, {c.B, c.T, c.H, c.D});
      res[i] = Tensor(DType::f64, {c.B, c.T, c.H});
      res[i].fill_nan();
      ForwardOutputs out;
      out.o = o.view();
      out.residual = res[i].view();
      chunk_forward(in.view(), out, c.options(i == 0 ? Backend::cpu : Backend::reference));
    }
    ASSERT_EQ(nonfinite_count(res[0]), 0) << solver;
    const std::vector<double> r = res[1].to_f64();
    const double largest = *std::max_element(r.begin(), r.end());
    if (std::string(solver) == "exact") {
      const std::vector<double> mine = res[0].to_f64();
      EXPECT_LE(*std::max_element(mine.begin(), mine.end()), 1e-12);
    } else {
      EXPECT_GT(largest, 1e-6) << solver << ": 10 iterations should leave a visible residual";
      EXPECT_LE(rel_err(res[0], res[1]), 1e-8) << solver;
    }
  }
}

TEST(Solvers, IterativeSolversConvergeToExact) {
  Case c = solver_case();
  c.ridge_ratio = 0.1;
  const CaseInputs in = inputs_make(c, 33);
  Case exact = c;
  exact.solver = "exact";
  const ForwardResult ref = forward_run(exact, in, Backend::cpu);
  for (const char* solver : {"chebyshev", "cg"}) {
    Case s = c;
    s.solver = solver;
    s.num_iter = 200;
    const ForwardResult r = forward_run(s, in, Backend::cpu);
    EXPECT_LE(rel_err(r.x, ref.x), 1e-10) << solver;
    EXPECT_LE(rel_err(r.o, ref.o), 1e-10) << solver;
  }
}

TEST(Solvers, ZeroIterationsIsGatedLinearAttention) {
  Case c = solver_case();
  c.num_iter = 0;
  const CaseInputs in = inputs_make(c, 34);
  const ForwardResult r = forward_run(c, in, Backend::cpu);
  // With alpha forced to 0 the solve is irrelevant: the same readout of q.
  Case c30 = c;
  c30.num_iter = 30;
  CaseInputs zero_alpha = in;
  std::vector<double> a(static_cast<size_t>(in.alpha.numel()), 0.0);
  zero_alpha.alpha = Tensor::from_f64(a, in.alpha.dtype(), in.alpha.sizes());
  const ForwardResult r30 = forward_run(c30, zero_alpha, Backend::cpu);
  EXPECT_LE(rel_err(r.o, r30.o), 1e-12);
  EXPECT_EQ(r.x.to_f64(), in.q.to_f64());  // x is reported as q when nothing is solved
}

}  // namespace
}  // namespace gka::test

namespace gka::test {
namespace {

// Zero-padded tokens at a sequence start have zero keys, so H_t = 0: every solver returns x = 0 there
// (docs/algorithm.md), nothing is NaN, and the CPU backend agrees with the oracle in values and gradients.
TEST(Solvers, ZeroGramMatrixGivesMinimumNormSolution) {
  for (const char* solver : {"chebyshev", "cg", "exact"}) {
    Case c;
    c.name = "zero_keys";
    c.B = 1;
    c.T = 80;
    c.H = 2;
    c.D = 16;
    c.solver = solver;
    CaseInputs in = inputs_make(c, 40);
    std::vector<double> k = in.k.to_f64();
    std::fill(k.begin(), k.begin() + 5 * c.H * c.D, 0.0);  // tokens 0..4 padded
    in.k = Tensor::from_f64(k, in.k.dtype(), in.k.sizes());
    const ForwardResult got = forward_run(c, in, Backend::cpu);
    const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
    ASSERT_EQ(nonfinite_count(got.o), 0) << solver;
    ASSERT_EQ(nonfinite_count(ref.o), 0) << solver;
    for (double x : got.x.slice(1, 0, 5).to_f64()) EXPECT_EQ(x, 0.0) << solver;
    const double amp = readout_amplification(c, inputs_to_f64(in), ref);
    EXPECT_LE(rel_err(got.o, ref.o), tol_output(DType::f32, false, c.ridge_ratio, amp)) << solver;
    if (std::string(solver) == "cg") continue;
    const BackwardSeeds seeds = seeds_make(c, 41);
    const BackwardResult g = backward_run(c, in, seeds, Backend::cpu);
    BackwardSeeds s64{seeds.d_o.cast(DType::f64), seeds.d_final_kk.cast(DType::f64), seeds.d_final_kv.cast(DType::f64)};
    const BackwardResult gr = backward_run(case_in_f64(c), inputs_to_f64(in), s64, Backend::reference);
    for (auto [a, b, name] : {std::tuple{&g.dq, &gr.dq, "dq"}, {&g.dk, &gr.dk, "dk"}, {&g.dgk, &gr.dgk, "dgk"},
                              {&g.dalpha, &gr.dalpha, "dalpha"}, {&g.dh0_kk, &gr.dh0_kk, "dh0_kk"}}) {
      ASSERT_EQ(nonfinite_count(*a), 0) << solver << " " << name;
      EXPECT_LE(rel_err(*a, *b), tol_gradient(DType::f32, false, c.ridge_ratio)) << solver << " " << name;
    }
  }
}

}  // namespace
}  // namespace gka::test
