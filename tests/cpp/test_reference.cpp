// The fp64 oracle's forward: the golden values of spec §A.6, the solvers against each other and against
// the a-priori Chebyshev bound, num_iter 0, and the API paths that reach the oracle (chunk, recurrent,
// state pool, in-place states, thread count). Gradients: test_reference_grad.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "support/cases.h"
#include "support/metrics.h"

namespace gka::test {
namespace {

// ---------------------------------------------------------------------------------------------------
// Golden example of spec §A.6: D = T = 4, r = 0.02, s = 0.5, tied gates.

struct Golden {
  Tensor q, k, v, alpha, g;
  Golden() {
    q = Tensor::from_f64({1, 0, 0, 0, 0, 0.6, 0.8, 0, 0.5, 0.5, -0.5, 0.5, 0, 0, 0.6, 0.8}, DType::f64, {1, 4, 1, 4});
    k = Tensor::from_f64({0.5, 0.5, 0.5, 0.5, 0.54, 0, 0.72, 0, 0, 0.3, 0, -0.4, 0.4, -0.4, 0.4, -0.4}, DType::f64,
                         {1, 4, 1, 4});
    v = Tensor::from_f64({0.1, -0.2, 0.3, 0.4, 0.5, 0, -0.5, 0.25, -0.3, 0.2, 0.1, 0, 0.2, 0.2, -0.1, 0.3},
                         DType::f64, {1, 4, 1, 4});
    alpha = Tensor::from_f64({0.5, 0.8, 0.3, 1.0}, DType::f64, {1, 4, 1});
    g = Tensor::from_f64({-0.1, -0.05, -0.2, -0.01}, DType::f64, {1, 4, 1});
  }
};

struct GoldenResult {
  Tensor o, x, fro, final_kk, final_kv;
  std::vector<double> row(const Tensor& t, int64_t i) const {  // token i of a [1,4,1,4] tensor
    const std::vector<double> all = t.to_f64();
    return {all.begin() + 4 * i, all.begin() + 4 * i + 4};
  }
};

GoldenResult golden_run(Solver solver, int32_t num_iter, bool gates) {
  const Golden gd;
  Inputs in;
  in.q = gd.q.view();
  in.k = gd.k.view();
  in.v = gd.v.view();
  in.alpha = gd.alpha.view();
  if (gates) in.g = in.gk = gd.g.view();  // tied: the same tensor
  GoldenResult r;
  r.o = Tensor(DType::f64, {1, 4, 1, 4});
  r.x = Tensor(DType::f64, {1, 4, 1, 4});
  r.fro = Tensor(DType::f64, {1, 4, 1});
  r.final_kk = Tensor(DType::f64, {1, 1, 4, 4});
  r.final_kv = Tensor(DType::f64, {1, 1, 4, 4});
  ForwardOutputs out{r.o.view(), r.final_kk.view(), r.final_kv.view(), r.x.view(), r.fro.view(), {}};
  Options opt;
  opt.backend = Backend::reference;
  opt.solver = solver;
  opt.num_iter = num_iter;
  opt.ridge_ratio = 0.02;
  chunk_forward(in, out, opt);
  return r;
}

double l2(const std::vector<double>& a) {
  double s = 0;
  for (double x : a) s += x * x;
  return std::sqrt(s);
}

// The table gives 10 decimals: 1e-8 relative per vector, and 1e-9 absolute per element.
void expect_golden(const std::vector<double>& got, const std::vector<double>& want, const char* what) {
  EXPECT_LE(rel_err(got, want), 1e-8) << what;
  EXPECT_LE(max_abs_err(got, want), 1e-9) << what;
}

TEST(ReferenceGolden, ChebyshevN30TiedGates) {
  const GoldenResult r = golden_run(Solver::chebyshev, 30, true);
  const std::vector<double> f = {1.0000000000, 1.5218486571, 1.2723485657, 1.5528637985};
  const std::vector<std::vector<double>> x = {
      {37.7331623977, -12.2508187150, -12.2508187150, -12.2508187150},
      {-13.6538194923, 11.8372796503, 10.6933996652, -7.8692716728},
      {18.1147748041, -0.2619364197, -15.0531507642, -0.2011866108},
      {-7.7151757694, -0.8973671587, 7.1144625464, 1.8987417025}};
  const std::vector<std::vector<double>> o = {
      {0.0247588282, -0.0495176563, 0.0742764845, 0.0990353126},
      {0.1198646025, -0.0516551118, -0.0165543789, 0.1503287469},
      {-0.0437846459, -0.0610569352, 0.1624553278, 0.0763493425},
      {0.2901842422, -0.1813771405, -0.1894858404, 0.0316547064}};
  expect_golden(r.fro.to_f64(), f, "f_t");
  for (int64_t t = 0; t < 4; ++t) {
    expect_golden(r.row(r.x, t), x[static_cast<size_t>(t)], "x_t");
    expect_golden(r.row(r.o, t), o[static_cast<size_t>(t)], "o_t");
  }
  EXPECT_NEAR(l2(r.final_kk.to_f64()), 1.5528637985, 1e-9);
  EXPECT_NEAR(l2(r.final_kv.to_f64()), 0.9009705770, 1e-9);
}

TEST(ReferenceGolden, ExactSolve) {
  const GoldenResult r = golden_run(Solver::exact, 30, true);
  expect_golden(r.row(r.x, 0), {37.7450980392, -12.2549019608, -12.2549019608, -12.2549019608}, "x_1");
  expect_golden(r.row(r.o, 3), {0.2902501668, -0.1813915390, -0.1894979624, 0.0316996013}, "o_4");
}

TEST(ReferenceGolden, NoGates) {
  const GoldenResult r = golden_run(Solver::chebyshev, 30, false);
  EXPECT_NEAR(r.fro.get_f64(3), 1.8542470170, 1e-9);
  expect_golden(r.row(r.o, 3), {0.2842028929, -0.1787362173, -0.1809784548, 0.0353627699}, "o_4");
  EXPECT_NEAR(l2(r.final_kv.to_f64()), 1.065, 1e-3);  // the spec gives 4 digits only
}

TEST(ReferenceGolden, ChebyshevN5) {
  const GoldenResult r = golden_run(Solver::chebyshev, 5, true);
  expect_golden(r.row(r.o, 0), {0.0203871951, -0.0407743902, 0.0611615853, 0.0815487803}, "o_1");
  expect_golden(r.row(r.o, 3), {0.2683113920, -0.2037603513, -0.1229586011, 0.0625806330}, "o_4");
}

// ---------------------------------------------------------------------------------------------------
// Solvers.

Case layer_case(int64_t B, int64_t T, int64_t H, int64_t D) {
  Case c;
  c.name = "ref";
  c.B = B;
  c.T = T;
  c.H = H;
  c.D = D;
  c.Dv = D + 1;
  c.gates = "untied";
  c.h0 = true;
  c.dtype = "f64";
  return c;
}

// Per-token relative L2 error of x against x_ref ([B,T,H,D], D innermost).
std::vector<double> per_token_rel_err(const Tensor& x, const Tensor& x_ref, int64_t D) {
  const std::vector<double> a = x.to_f64(), b = x_ref.to_f64();
  std::vector<double> errs;
  for (size_t r = 0; r < a.size() / static_cast<size_t>(D); ++r) {
    const std::vector<double> ar(a.begin() + static_cast<long>(r) * D, a.begin() + static_cast<long>(r + 1) * D);
    const std::vector<double> br(b.begin() + static_cast<long>(r) * D, b.begin() + static_cast<long>(r + 1) * D);
    errs.push_back(rel_err(ar, br));
  }
  return errs;
}

// x = R(H + lambda I) x*, with a residual polynomial R bounded by the Chebyshev bound on [lambda, lambda + f]
// (which holds the spectrum because ||H||_2 <= ||H||_F): the error of every token is within the bound.
TEST(ReferenceSolvers, ChebyshevErrorWithinBound) {
  for (double r : {0.02, 0.05}) {
    for (int32_t n : {1, 5, 10, 20}) {
      Case c = layer_case(1, 40, 2, 8);
      c.ridge_ratio = r;
      c.num_iter = n;
      const CaseInputs in = inputs_make(c, 7);
      const ForwardResult cheb = forward_run(c, in, Backend::reference);
      c.solver = "exact";
      const ForwardResult exact = forward_run(c, in, Backend::reference);
      const double bound = chebyshev_error_bound(r, n);
      double worst = 0;
      for (double e : per_token_rel_err(cheb.x, exact.x, c.D)) worst = std::max(worst, e);
      EXPECT_LE(worst, bound * (1 + 1e-9) + 1e-12) << "r " << r << " N " << n;
      // Low-rank-ish H puts many eigenvalues at lambda, where |R| peaks: the worst token sits near the
      // bound (spec §A.3). Far below it would mean a different (wrong) iteration.
      EXPECT_GT(worst, 0.5 * bound) << "r " << r << " N " << n;
    }
  }
}

TEST(ReferenceSolvers, ConjugateGradientConvergesToExact) {
  Case c = layer_case(2, 20, 2, 6);
  c.solver = "exact";
  const CaseInputs in = inputs_make(c, 8);
  const ForwardResult exact = forward_run(c, in, Backend::reference);
  c.solver = "cg";
  c.num_iter = 4 * static_cast<int32_t>(c.D);  // D steps in exact arithmetic; margin for rounding
  const ForwardResult cg = forward_run(c, in, Backend::reference);
  EXPECT_LE(rel_err(cg.x, exact.x), 1e-10);
  EXPECT_LE(rel_err(cg.o, exact.o), 1e-10);
  c.num_iter = 2;  // too few steps: must differ, or "cg" is not an iteration at all
  const ForwardResult cg2 = forward_run(c, in, Backend::reference);
  EXPECT_GT(rel_err(cg2.x, exact.x), 1e-4);
}

std::vector<double> residual_run(const Case& c, const CaseInputs& in) {
  Tensor o(DType::f64, {c.B, c.T, c.H, c.dv()}), res(DType::f64, {c.B, c.T, c.H});
  ForwardOutputs out;
  out.o = o.view();
  out.residual = res.view();
  chunk_forward(in.view(), out, c.options(Backend::reference));
  return res.to_f64();
}

TEST(ReferenceSolvers, ResidualOutput) {
  Case c = layer_case(1, 30, 2, 8);
  c.solver = "exact";
  const CaseInputs in = inputs_make(c, 9);
  double worst = 0;
  for (double r : residual_run(c, in)) worst = std::max(worst, r);
  EXPECT_LE(worst, 1e-13);  // kappa <= 51: a backward-stable solve leaves ~kappa * eps
  c.solver = "chebyshev";
  c.num_iter = 5;  // an unconverged solve must report a visible residual
  double cheb_worst = 0;
  for (double r : residual_run(c, in)) cheb_worst = std::max(cheb_worst, r);
  EXPECT_GT(cheb_worst, 1e-3);
  EXPECT_LE(cheb_worst, 1.0);
}

// One token with an initial state: H_1 = final_kk is known, so CG's first two iterates have closed forms
// (steepest descent; the A-norm minimiser over span{q, Aq}), and the residual output can be recomputed.
struct SingleToken {
  std::vector<double> A, q;  // A = H_1 + r ||H_1||_F I (D x D), q (D)
  int64_t D = 0;
  std::vector<double> apply(const std::vector<double>& x) const {
    std::vector<double> y(static_cast<size_t>(D), 0.0);
    for (int64_t i = 0; i < D; ++i)
      for (int64_t j = 0; j < D; ++j)
        y[static_cast<size_t>(i)] += A[static_cast<size_t>(i * D + j)] * x[static_cast<size_t>(j)];
    return y;
  }
};

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

TEST(ReferenceSolvers, ConjugateGradientFirstIteratesAndResidual) {
  Case c = layer_case(1, 1, 1, 5);
  c.solver = "cg";
  const CaseInputs in = inputs_make(c, 16);
  SingleToken st;
  st.D = c.D;
  st.q = in.q.to_f64();
  const ForwardResult state = forward_run(c, in, Backend::reference);
  st.A = state.final_kk.to_f64();
  const double f = l2(st.A);
  EXPECT_NEAR(state.fro.get_f64(0), f, 1e-14 * f);
  for (int64_t i = 0; i < c.D; ++i) st.A[static_cast<size_t>(i * c.D + i)] += c.ridge_ratio * f;
  const std::vector<double> Aq = st.apply(st.q), AAq = st.apply(Aq);

  c.num_iter = 1;  // x = (q.q / q.Aq) q
  std::vector<double> want1 = st.q;
  for (double& e : want1) e *= dot(st.q, st.q) / dot(st.q, Aq);
  EXPECT_LE(rel_err(forward_run(c, in, Backend::reference).x.to_f64(), want1), 1e-13);

  c.num_iter = 2;  // x = a q + b Aq minimising x.Ax/2 - q.x: a 2 x 2 system
  const double m11 = dot(st.q, Aq), m12 = dot(Aq, Aq), m22 = dot(Aq, AAq), r1 = dot(st.q, st.q), r2 = m11;
  const double det = m11 * m22 - m12 * m12, a = (r1 * m22 - m12 * r2) / det, b = (m11 * r2 - m12 * r1) / det;
  std::vector<double> want2(static_cast<size_t>(c.D));
  for (size_t i = 0; i < want2.size(); ++i) want2[i] = a * st.q[i] + b * Aq[i];
  const std::vector<double> x2 = forward_run(c, in, Backend::reference).x.to_f64();
  EXPECT_LE(rel_err(x2, want2), 1e-10);

  std::vector<double> res = st.apply(x2);  // the residual output of that same x
  for (size_t i = 0; i < res.size(); ++i) res[i] -= st.q[i];
  const double want_res = std::sqrt(dot(res, res) / dot(st.q, st.q));
  EXPECT_NEAR(residual_run(c, in)[0], want_res, 1e-10 * want_res);
}

// num_iter 0: plain gated linear attention o_t = s S_t^T q_t, recomputed here from the inputs.
TEST(ReferenceSolvers, NumIterZeroIsGatedLinearAttention) {
  Case c = layer_case(2, 11, 2, 5);
  c.num_iter = 0;
  const CaseInputs in = inputs_make(c, 10);
  const ForwardResult r = forward_run(c, in, Backend::reference);
  {  // x, if asked for, is q itself (never left unwritten)
    Tensor o(DType::f64, {c.B, c.T, c.H, c.dv()}), x(DType::f64, {c.B, c.T, c.H, c.D});
    x.fill_nan();
    ForwardOutputs out;
    out.o = o.view();
    out.x = x.view();
    chunk_forward(in.view(), out, c.options(Backend::reference));
    EXPECT_EQ(max_abs_err(x, in.q), 0.0);
  }
  const double s = 1.0 / std::sqrt(static_cast<double>(c.D));
  const int64_t D = c.D, Dv = c.dv();
  std::vector<double> want(static_cast<size_t>(c.B * c.T * c.H * Dv));
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h) {
      std::vector<double> S(static_cast<size_t>(D * Dv));
      for (int64_t i = 0; i < D * Dv; ++i) S[static_cast<size_t>(i)] = in.h0_kv.get_f64((b * c.H + h) * D * Dv + i);
      for (int64_t t = 0; t < c.T; ++t) {
        const int64_t row = (b * c.T + t) * c.H + h;
        const double decay = std::exp(in.g.get_f64(row));
        for (int64_t i = 0; i < D; ++i)
          for (int64_t j = 0; j < Dv; ++j)
            S[static_cast<size_t>(i * Dv + j)] = decay * S[static_cast<size_t>(i * Dv + j)] +
                                                 in.k.get_f64(row * D + i) * in.v.get_f64(row * Dv + j);
        for (int64_t j = 0; j < Dv; ++j) {
          double acc = 0;
          for (int64_t i = 0; i < D; ++i) acc += S[static_cast<size_t>(i * Dv + j)] * in.q.get_f64(row * D + i);
          want[static_cast<size_t>(row * Dv + j)] = s * acc;
        }
      }
    }
  EXPECT_LE(rel_err(r.o.to_f64(), want), 1e-13);
}

// ---------------------------------------------------------------------------------------------------
// API paths into the oracle.

void expect_same(const Tensor& a, const Tensor& b, const char* what) {
  ASSERT_EQ(nonfinite_count(a), 0) << what;
  EXPECT_EQ(max_abs_err(a, b), 0.0) << what;
}

TEST(ReferenceApi, RecurrentForwardEqualsChunkForward) {
  Case c = layer_case(2, 13, 2, 6);
  const CaseInputs in = inputs_make(c, 11);
  const ForwardResult chunk = forward_run(c, in, Backend::reference, false);
  const ForwardResult rec = forward_run(c, in, Backend::reference, true);
  expect_same(rec.o, chunk.o, "o");
  expect_same(rec.x, chunk.x, "x");
  expect_same(rec.final_kk, chunk.final_kk, "final_kk");
  expect_same(rec.final_kv, chunk.final_kv, "final_kv");
}

TEST(ReferenceApi, ThreadCountDoesNotChangeResults) {
  Case c = layer_case(2, 9, 3, 5);
  const CaseInputs in = inputs_make(c, 12);
  Options one = c.options(Backend::reference), two = one;
  one.num_threads = 1;
  two.num_threads = 3;
  Tensor o1(DType::f64, {c.B, c.T, c.H, c.dv()}), o2 = o1;
  ForwardOutputs out1, out2;
  out1.o = o1.view();
  out2.o = o2.view();
  chunk_forward(in.view(), out1, one);
  chunk_forward(in.view(), out2, two);
  expect_same(o1, o2, "o");
}

// final_* aliasing initial_* (in-place state update) gives the same as separate buffers.
TEST(ReferenceApi, InPlaceStates) {
  Case c = layer_case(2, 7, 2, 5);
  const CaseInputs in = inputs_make(c, 13);
  const ForwardResult separate = forward_run(c, in, Backend::reference, true);
  CaseInputs state = in;  // its h0 tensors are overwritten in place
  Tensor o(DType::f64, {c.B, c.T, c.H, c.dv()});
  ForwardOutputs out;
  out.o = o.view();
  out.final_kk = state.h0_kk.view();
  out.final_kv = state.h0_kv.view();
  recurrent_forward(state.view(), out, c.options(Backend::reference));
  expect_same(o, separate.o, "o");
  expect_same(state.h0_kk, separate.final_kk, "kk");
  expect_same(state.h0_kv, separate.final_kv, "kv");
}

// Rows continue the sequences in permuted pool slots; a negative slot skips its row (zero output, no state
// touched). Each row must equal a separate recurrent_forward from its slot's state.
TEST(ReferenceApi, PoolStepEqualsSeparateSequences) {
  Case c = layer_case(3, 2, 2, 5);
  c.h0 = false;
  const CaseInputs in = inputs_make(c, 14);
  const int64_t P = 4, Dv = c.dv();
  Case pool_case = c;
  pool_case.B = P;
  pool_case.h0 = true;
  const CaseInputs pool_src = inputs_make(pool_case, 15);  // h0 of 4 sequences = the pool's states
  Tensor kk = pool_src.h0_kk, kv = pool_src.h0_kv;
  const Tensor slots = Tensor::from_f64({2, -1, 0}, DType::i64, {3});
  Tensor o(DType::f64, {c.B, c.T, c.H, Dv});
  o.fill_nan();
  decode_pool_step(in.view(), StatePool{kk.view(), kv.view(), slots.view()}, o.view(), c.options(Backend::reference));

  for (int64_t b = 0; b < c.B; ++b) {
    const Tensor o_row = o.slice(0, b, b + 1);
    const int64_t slot = static_cast<int64_t>(slots.get_f64(b));
    if (slot < 0) {
      EXPECT_EQ(max_abs_err(o_row, Tensor(DType::f64, o_row.sizes())), 0.0) << "skipped row must be zero";
      continue;
    }
    Case one = c;
    one.B = 1;
    CaseInputs row_in;
    for (auto [dst, src] : {std::pair{&row_in.q, &in.q}, {&row_in.k, &in.k}, {&row_in.v, &in.v},
                            {&row_in.alpha, &in.alpha}, {&row_in.g, &in.g}, {&row_in.gk, &in.gk}})
      *dst = src->slice(0, b, b + 1);
    row_in.h0_kk = pool_src.h0_kk.slice(0, slot, slot + 1);
    row_in.h0_kv = pool_src.h0_kv.slice(0, slot, slot + 1);
    const ForwardResult want = forward_run(one, row_in, Backend::reference, true);
    expect_same(o_row, want.o, "o");
    expect_same(kk.slice(0, slot, slot + 1), want.final_kk, "pool kk");
    expect_same(kv.slice(0, slot, slot + 1), want.final_kv, "pool kv");
  }
  for (int64_t untouched : {1, 3}) {  // slots 1 (only the skipped row) and 3 (no row)
    expect_same(kk.slice(0, untouched, untouched + 1), pool_src.h0_kk.slice(0, untouched, untouched + 1), "kk");
    expect_same(kv.slice(0, untouched, untouched + 1), pool_src.h0_kv.slice(0, untouched, untouched + 1), "kv");
  }
}

}  // namespace
}  // namespace gka::test
