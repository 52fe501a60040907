// Pieces of the per-token recurrence (spec §A.2-§A.4) shared by the reference forward and backward:
// reading one token, advancing the states, the three ridge solvers, state I/O.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/access.h"
#include "common/chebyshev.h"
#include "common/problem.h"
#include "reference/dense.h"

namespace gka::reference {

// Everything the recurrence reads at one token of one head, in fp64.
struct Token {
  int64_t b = 0, t = 0;  // batch row and token index into the [B,T,H,...] views
  Vec q, k, v;
  double alpha = 1.0;    // 1 when alpha is absent
  double decay_kk = 1.0; // e^{gk}, 1 when gk is absent
  double decay_kv = 1.0; // e^{g}, 1 when g is absent
};

inline Vec row_load(const TensorView& view, int64_t b, int64_t t, int64_t h, int64_t n) {
  Vec r = zeros(n);
  load(view, row_offset(view, b, t, h), r.data(), n);
  return r;
}

inline void row_store(const TensorView& view, int64_t b, int64_t t, int64_t h, const Vec& r) {
  if (view.defined()) store(view, row_offset(view, b, t, h), r.data(), static_cast<int64_t>(r.size()));
}

inline void scalar_store(const TensorView& view, int64_t b, int64_t t, int64_t h, double x) {
  if (view.defined()) store(view, row_offset(view, b, t, h), &x, 1);
}

// One scalar of a [B,T,H] view, or `absent` when the view is not given. (Like access.h's load_scalar,
// but initialised: gcc cannot see that validation keeps integer dtypes away and warns there.)
inline double scalar_load(const TensorView& view, int64_t b, int64_t t, int64_t h, double absent) {
  if (!view.defined()) return absent;
  double x = 0.0;
  load(view, row_offset(view, b, t, h), &x, 1);
  return x;
}

// Token i (0-based) of sequence s, head h.
inline Token token_load(const Problem& p, const Sequence& s, int64_t h, int64_t i) {
  Token tok;
  tok.b = s.batch;
  tok.t = s.start + i;
  tok.q = row_load(p.in.q, tok.b, tok.t, h, p.D);
  tok.k = row_load(p.in.k, tok.b, tok.t, h, p.D);
  tok.v = row_load(p.in.v, tok.b, tok.t, h, p.Dv);
  tok.alpha = scalar_load(p.in.alpha, tok.b, tok.t, h, 1.0);
  tok.decay_kk = std::exp(scalar_load(p.in.gk, tok.b, tok.t, h, 0.0));
  tok.decay_kv = std::exp(scalar_load(p.in.g, tok.b, tok.t, h, 0.0));
  return tok;
}

// H <- e^{gk} H + k k^T,  S <- e^{g} S + k v^T
inline void states_advance(Mat& H, Mat& S, const Token& tok) {
  scale_in_place(H, tok.decay_kk);
  add_outer(H, 1.0, tok.k, tok.k);
  scale_in_place(S, tok.decay_kv);
  add_outer(S, 1.0, tok.k, tok.v);
}

// Matrix (n, h) of a [N,H,rows,cols] state view, or zeros when the view is absent.
inline Mat state_load(const TensorView& view, int64_t n, int64_t h, int64_t rows, int64_t cols) {
  Mat m(rows, cols);
  if (!view.defined()) return m;
  for (int64_t i = 0; i < rows; ++i) load(view, row_offset(view, n, h, i), m.row(i), cols);
  return m;
}

inline void state_store(const TensorView& view, int64_t n, int64_t h, const Mat& m) {
  if (!view.defined()) return;
  for (int64_t i = 0; i < m.rows; ++i) store(view, row_offset(view, n, h, i), m.row(i), m.cols);
}

// Spec §A.3, literally: x1 = eta q, then N steps x <- w (x - eta ((H + lambda I) x - q)) + (1 - w) x_prev.
inline Vec chebyshev_solve(const Mat& H, double lambda, double f, const Vec& rhs, const ChebyshevPlan& plan) {
  const double eta = plan.eta_f / f;
  Vec x_prev = zeros(static_cast<int64_t>(rhs.size()));
  Vec x = rhs;
  for (double& e : x) e *= eta;
  for (double omega : plan.omega) {
    const Vec Ax = shifted_matvec(H, lambda, x);
    Vec x_new = x;
    for (size_t i = 0; i < x.size(); ++i)
      x_new[i] = omega * (x[i] - eta * (Ax[i] - rhs[i])) + (1.0 - omega) * x_prev[i];
    x_prev = std::move(x);
    x = std::move(x_new);
  }
  return x;
}

// Conjugate gradient from x0 = 0 with exactly `num_iter` mat-vecs; stops early only on an exactly zero
// residual (or a direction that underflowed to zero, where the next step would divide by zero).
inline Vec cg_solve(const Mat& H, double lambda, const Vec& rhs, int32_t num_iter) {
  Vec x = zeros(static_cast<int64_t>(rhs.size()));
  Vec r = rhs, d = rhs;
  double rr = dot(r, r);
  for (int32_t it = 0; it < num_iter && rr != 0.0; ++it) {
    const Vec Ad = shifted_matvec(H, lambda, d);
    const double dAd = dot(d, Ad);
    if (dAd == 0.0) break;
    const double step = rr / dAd;
    for (size_t i = 0; i < x.size(); ++i) {
      x[i] += step * d[i];
      r[i] -= step * Ad[i];
    }
    const double rr_new = dot(r, r);
    for (size_t i = 0; i < d.size(); ++i) d[i] = r[i] + (rr_new / rr) * d[i];
    rr = rr_new;
  }
  return x;
}

inline Vec exact_solve(const Mat& H, double lambda, const Vec& rhs) {
  Mat A = H;
  for (int64_t i = 0; i < A.rows; ++i) A(i, i) += lambda;
  return cholesky_solve(A, rhs);
}

// x ~ (H + r f I)^{-1} rhs with the problem's solver (f = ||H||_F, saved by the caller). H = 0 (only zero
// keys so far, e.g. zero-padded tokens) has no ridge solution; we return its limit on the range of H, the
// minimum-norm x = 0, where the authors' kernels produce NaN (docs/algorithm.md, "Zero Gram matrix").
inline Vec ridge_solve(const Problem& p, const ChebyshevPlan& plan, const Mat& H, double f, const Vec& rhs) {
  if (f == 0.0) return zeros(static_cast<int64_t>(rhs.size()));
  const double lambda = p.ridge_ratio * f;
  switch (p.solver) {
    case Solver::chebyshev: return chebyshev_solve(H, lambda, f, rhs, plan);
    case Solver::cg: return cg_solve(H, lambda, rhs, p.num_iter);
    case Solver::exact: return exact_solve(H, lambda, rhs);
  }
  return rhs;
}

// ||(H + lambda I) x - q|| / ||q||, 0 for q = 0.
inline double relative_residual(const Mat& H, double lambda, const Vec& x, const Vec& q) {
  const double qn = norm2(q);
  if (qn == 0.0) return 0.0;
  Vec r = shifted_matvec(H, lambda, x);
  for (size_t i = 0; i < r.size(); ++i) r[i] -= q[i];
  return norm2(r) / qn;
}

// q~ = q + alpha (x - q)
inline Vec query_mix(const Token& tok, const Vec& x) {
  Vec qt = tok.q;
  for (size_t i = 0; i < qt.size(); ++i) qt[i] += tok.alpha * (x[i] - tok.q[i]);
  return qt;
}

}  // namespace gka::reference
