// The fp64 oracle's backward against central finite differences of the scalar loss
// L = <o, W> + <final_kk, A> + <final_kv, B>, the lambda_grad switch, and split-call equivalence of
// values and gradients.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>

#include "support/cases.h"
#include "support/metrics.h"

namespace gka::test {
namespace {

Case grad_case(int64_t B, int64_t T, int64_t H, int64_t D) {
  Case c;
  c.name = "grad";
  c.B = B;
  c.T = T;
  c.H = H;
  c.D = D;
  c.Dv = D + 1;
  c.gates = "untied";  // separate g and gk tensors, so each has its own finite difference
  c.h0 = true;
  c.dtype = "f64";
  return c;
}

Case varlen_case(std::vector<int64_t> lengths) {
  Case c = grad_case(1, 0, 2, 5);
  c.varlen = std::move(lengths);
  for (int64_t n : c.varlen) c.T += n;
  return c;
}

double inner(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_f64(), y = b.to_f64();
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}

// The seeds double as the loss weights W, A, B: then the backward's output is exactly dL/d(input).
double loss(const Case& c, const CaseInputs& in, const BackwardSeeds& w) {
  const ForwardResult r = forward_run(c, in, Backend::reference);
  return inner(r.o, w.d_o) + inner(r.final_kk, w.d_final_kk) + inner(r.final_kv, w.d_final_kv);
}

struct InputGrad {
  const char* name;
  Tensor CaseInputs::*input;
  Tensor BackwardResult::*grad;
};

const InputGrad kInputs[] = {
    {"q", &CaseInputs::q, &BackwardResult::dq},
    {"k", &CaseInputs::k, &BackwardResult::dk},
    {"v", &CaseInputs::v, &BackwardResult::dv},
    {"alpha", &CaseInputs::alpha, &BackwardResult::dalpha},
    {"g", &CaseInputs::g, &BackwardResult::dg},
    {"gk", &CaseInputs::gk, &BackwardResult::dgk},
    {"initial_kk", &CaseInputs::h0_kk, &BackwardResult::dh0_kk},
    {"initial_kv", &CaseInputs::h0_kv, &BackwardResult::dh0_kv},
};

// Central-difference gradient of L w.r.t. every entry of one input. Gram states are symmetric and the
// solvers may read one triangle only, so initial_kk is perturbed symmetrically, entry pair (i, j) and (j, i)
// at once: the result lists, per matrix, the upper triangle row by row.
std::vector<double> fd_gradient(const Case& c, const CaseInputs& in, const BackwardSeeds& seeds,
                                Tensor CaseInputs::*input) {
  const double eps = 1e-6;
  const Tensor& x = in.*input;
  const bool symmetric = input == &CaseInputs::h0_kk;
  const int64_t D = x.sizes().back();
  std::vector<double> fd;
  for (int64_t e = 0; e < x.numel(); ++e) {
    const int64_t i = (e / D) % D, j = e % D;
    if (symmetric && j < i) continue;
    const int64_t mirror = e + (j - i) * (D - 1);  // entry (j, i) of the same matrix
    CaseInputs plus = in, minus = in;
    for (const int64_t at : symmetric && i != j ? std::vector<int64_t>{e, mirror} : std::vector<int64_t>{e}) {
      (plus.*input).set_f64(at, x.get_f64(at) + eps);
      (minus.*input).set_f64(at, x.get_f64(at) - eps);
    }
    fd.push_back((loss(c, plus, seeds) - loss(c, minus, seeds)) / (2 * eps));
  }
  return fd;
}

// The analytic gradient in fd_gradient's layout: G_ij + G_ji for symmetric pairs.
std::vector<double> analytic_gradient(const Tensor& g, bool symmetric) {
  if (!symmetric) return g.to_f64();
  const int64_t D = g.sizes().back();
  std::vector<double> out;
  for (int64_t m = 0; m < g.numel() / (D * D); ++m)
    for (int64_t i = 0; i < D; ++i)
      for (int64_t j = i; j < D; ++j)
        out.push_back(i == j ? g.get_f64((m * D + i) * D + i)
                             : g.get_f64((m * D + i) * D + j) + g.get_f64((m * D + j) * D + i));
  return out;
}

// Every gradient against finite differences (relative L2): `tight` for all, except those named in `loose`.
void expect_fd(const Case& c, uint64_t seed, double tight, double loose = 0,
               const std::set<std::string>& loose_names = {}) {
  const CaseInputs in = inputs_make(c, seed);
  const BackwardSeeds seeds = seeds_make(c, seed + 1);
  const BackwardResult grads = backward_run(c, in, seeds, Backend::reference);
  for (const InputGrad& ig : kInputs) {
    const Tensor& g = grads.*ig.grad;
    ASSERT_EQ(nonfinite_count(g), 0) << ig.name;
    const double tol = loose_names.count(ig.name) ? loose : tight;
    const std::vector<double> analytic = analytic_gradient(g, ig.input == &CaseInputs::h0_kk);
    const double err = rel_err(analytic, fd_gradient(c, in, seeds, ig.input));
    EXPECT_LE(err, tol) << case_id(c) << " d" << ig.name;
  }
}

// (a) The exact solve's implicit gradient is the true gradient (lambda path included).
TEST(ReferenceGradient, ExactSolveMatchesFiniteDifferences) {
  Case c = grad_case(2, 9, 2, 5);
  c.solver = "exact";
  expect_fd(c, 100, 1e-7);
  Case v = varlen_case({4, 0, 9});
  v.solver = "exact";
  expect_fd(v, 110, 1e-7);
  Case longer = grad_case(1, 70, 1, 5);  // crosses the backward's 64-token checkpoint segments
  longer.solver = "exact";
  expect_fd(longer, 120, 1e-7);
}

// (b) r = 0.1, N = 80: the Chebyshev iterate is converged to rounding (bound ~1e-22), so the implicit
// gradient is the true gradient of the iteration.
TEST(ReferenceGradient, ConvergedChebyshevMatchesFiniteDifferences) {
  Case c = grad_case(1, 12, 2, 6);
  c.ridge_ratio = 0.1;
  c.num_iter = 80;
  expect_fd(c, 200, 1e-7);
  Case v = varlen_case({6, 0, 5});
  v.ridge_ratio = 0.1;
  v.num_iter = 80;
  expect_fd(v, 210, 1e-7);
}

// (c) Default r = 0.02, N = 30. x = P(H + lambda I) q for a fixed polynomial P, so u = P dx is the exact
// gradient of the unrolled iteration w.r.t. q: dq, dalpha and everything downstream of S (dv, dg,
// d_initial_kv) are exact. dk, dgk, d_initial_kk use the implicit gradient of the *exact* solve evaluated
// at the truncated iterate (spec §C.3): they differ from the unrolled iteration's true gradient by about
// the truncation error (~1e-3 relative measured in the spec), hence the looser bound.
TEST(ReferenceGradient, DefaultChebyshevImplicitGradient) {
  const std::set<std::string> implicit = {"k", "gk", "initial_kk"};
  expect_fd(grad_case(2, 10, 1, 5), 300, 1e-7, 5e-3, implicit);
  expect_fd(varlen_case({3, 0, 12}), 310, 1e-7, 5e-3, implicit);
}

// num_iter 0: no solve at all; the final-state gradient still reaches k, gk and initial_kk.
TEST(ReferenceGradient, NumIterZeroMatchesFiniteDifferences) {
  Case c = grad_case(2, 8, 2, 5);
  c.num_iter = 0;
  expect_fd(c, 400, 1e-7);
  const CaseInputs in = inputs_make(c, 400);
  const BackwardResult g = backward_run(c, in, seeds_make(c, 401), Backend::reference);
  EXPECT_EQ(max_abs_err(g.dalpha, Tensor(DType::f64, g.dalpha.sizes())), 0.0);  // alpha is unused without a solve
}

// Length-0 sequences pass the final-state gradients through unchanged.
TEST(ReferenceGradient, EmptySequencePassesStateGradientThrough) {
  const Case c = varlen_case({3, 0, 4});
  const CaseInputs in = inputs_make(c, 500);
  const BackwardSeeds seeds = seeds_make(c, 501);
  const BackwardResult g = backward_run(c, in, seeds, Backend::reference);
  EXPECT_EQ(max_abs_err(g.dh0_kk.slice(0, 1, 2), seeds.d_final_kk.slice(0, 1, 2)), 0.0);
  EXPECT_EQ(max_abs_err(g.dh0_kv.slice(0, 1, 2), seeds.d_final_kv.slice(0, 1, 2)), 0.0);
  EXPECT_GT(max_abs_err(g.dh0_kk.slice(0, 0, 1), seeds.d_final_kk.slice(0, 0, 1)), 1e-3);  // non-empty: not
}

// (d) lambda_grad only changes how the backward treats lambda_t = r ||H_t||_F: dk, dgk, d_initial_kk move,
// nothing else does.
TEST(ReferenceGradient, LambdaGradOnlyChangesGramGradients) {
  for (const char* solver : {"chebyshev", "exact"}) {
    Case c = grad_case(2, 12, 2, 6);
    c.solver = solver;
    const CaseInputs in = inputs_make(c, 600);
    const BackwardSeeds seeds = seeds_make(c, 601);
    const BackwardResult with = backward_run(c, in, seeds, Backend::reference);
    c.lambda_grad = false;
    const BackwardResult without = backward_run(c, in, seeds, Backend::reference);
    for (auto [name, grad] : {std::pair{"dq", &BackwardResult::dq}, {"dv", &BackwardResult::dv},
                              {"dalpha", &BackwardResult::dalpha}, {"dg", &BackwardResult::dg},
                              {"d_initial_kv", &BackwardResult::dh0_kv}})
      EXPECT_EQ(max_abs_err(without.*grad, with.*grad), 0.0) << solver << " " << name;
    // The spec measures the lambda path at 0.7-1.5 % of dk and ~24 % of dgk.
    for (auto [name, grad] : {std::pair{"dk", &BackwardResult::dk}, {"dgk", &BackwardResult::dgk},
                              {"d_initial_kk", &BackwardResult::dh0_kk}})
      EXPECT_GT(rel_err(without.*grad, with.*grad), 1e-3) << solver << " " << name;
  }
}

// ---------------------------------------------------------------------------------------------------
// One call over T == two calls over T1, T2 chained through the states (values), and the chained backward
// (d_initial of the second call is the d_final of the first) == one backward.

CaseInputs part(const CaseInputs& in, int64_t t0, int64_t t1, const Tensor& kk, const Tensor& kv) {
  CaseInputs p;
  for (auto [dst, src] : {std::pair{&p.q, &in.q}, {&p.k, &in.k}, {&p.v, &in.v}, {&p.alpha, &in.alpha},
                          {&p.g, &in.g}, {&p.gk, &in.gk}})
    *dst = src->slice(1, t0, t1);
  p.h0_kk = kk;
  p.h0_kv = kv;
  return p;
}

void expect_close(const Tensor& a, const Tensor& b, const char* what, int64_t t1) {
  ASSERT_EQ(nonfinite_count(a), 0) << what;
  EXPECT_LE(rel_err(a, b), 1e-10) << what << " split at " << t1;
}

TEST(ReferenceSplit, ChainedCallsEqualOneCall) {
  const Case c = grad_case(2, 150, 1, 5);
  const CaseInputs in = inputs_make(c, 700);
  const BackwardSeeds seeds = seeds_make(c, 701);
  const ForwardResult full = forward_run(c, in, Backend::reference);
  const BackwardResult gfull = backward_run(c, in, seeds, Backend::reference);
  for (int64_t t1 : {1, 70, 128}) {
    Case c1 = c, c2 = c;
    c1.T = t1;
    c2.T = c.T - t1;
    const CaseInputs in1 = part(in, 0, t1, in.h0_kk, in.h0_kv);
    const ForwardResult r1 = forward_run(c1, in1, Backend::reference);
    const CaseInputs in2 = part(in, t1, c.T, r1.final_kk, r1.final_kv);
    const ForwardResult r2 = forward_run(c2, in2, Backend::reference);
    expect_close(Tensor::concat(r1.o, r2.o, 1), full.o, "o", t1);
    expect_close(r2.final_kk, full.final_kk, "final_kk", t1);
    expect_close(r2.final_kv, full.final_kv, "final_kv", t1);

    const BackwardSeeds s2{seeds.d_o.slice(1, t1, c.T), seeds.d_final_kk, seeds.d_final_kv};
    const BackwardResult g2 = backward_run(c2, in2, s2, Backend::reference);
    const BackwardSeeds s1{seeds.d_o.slice(1, 0, t1), g2.dh0_kk, g2.dh0_kv};
    const BackwardResult g1 = backward_run(c1, in1, s1, Backend::reference);
    for (auto [name, grad] : {std::pair{"dq", &BackwardResult::dq}, {"dk", &BackwardResult::dk},
                              {"dv", &BackwardResult::dv}, {"dalpha", &BackwardResult::dalpha},
                              {"dg", &BackwardResult::dg}, {"dgk", &BackwardResult::dgk}})
      expect_close(Tensor::concat(g1.*grad, g2.*grad, 1), gfull.*grad, name, t1);
    expect_close(g1.dh0_kk, gfull.dh0_kk, "d_initial_kk", t1);
    expect_close(g1.dh0_kv, gfull.dh0_kv, "d_initial_kv", t1);
  }
}

}  // namespace
}  // namespace gka::test
