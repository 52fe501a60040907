// The study's solvers, one template over the storage type T (number.h): Chebyshev (spec §A.3 exactly),
// conjugate gradient, Cholesky, and the classic Kalman / recursive-least-squares covariance recursion.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "study/number.h"

namespace gka::study {

template <class T> using VecT = std::vector<T>;

// Square n x n matrix, row-major, stored in T.
template <class T> struct MatT {
  int64_t n = 0;
  std::vector<T> a;
  MatT() = default;
  explicit MatT(int64_t size) : n(size), a(static_cast<size_t>(size * size), T(0.0)) {}
  T& operator()(int64_t i, int64_t j) { return a[static_cast<size_t>(i * n + j)]; }
  T operator()(int64_t i, int64_t j) const { return a[static_cast<size_t>(i * n + j)]; }
};

template <class T, class U> VecT<T> vec_cast(const std::vector<U>& x) {
  VecT<T> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = T(static_cast<Acc<T>>(static_cast<double>(x[i])));
  return y;
}

template <class T> std::vector<double> to_double_vec(const VecT<T>& x) {
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = to_double(x[i]);
  return y;
}

template <class T> Acc<T> dot(const VecT<T>& x, const VecT<T>& y) {
  Acc<T> s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += static_cast<Acc<T>>(x[i]) * static_cast<Acc<T>>(y[i]);
  return s;
}

// y = (A + lambda I) x, each entry accumulated in Acc<T>, stored in T.
template <class T> VecT<T> shifted_matvec(const MatT<T>& A, Acc<T> lambda, const VecT<T>& x) {
  VecT<T> y(x.size());
  for (int64_t i = 0; i < A.n; ++i) {
    Acc<T> s = lambda * static_cast<Acc<T>>(x[static_cast<size_t>(i)]);
    const T* row = &A.a[static_cast<size_t>(i * A.n)];
    for (int64_t j = 0; j < A.n; ++j) s += static_cast<Acc<T>>(row[j]) * static_cast<Acc<T>>(x[static_cast<size_t>(j)]);
    y[static_cast<size_t>(i)] = T(s);
  }
  return y;
}

template <class T> Acc<T> fro_norm(const MatT<T>& A) {
  Acc<T> s = 0;
  for (const T& e : A.a) s += static_cast<Acc<T>>(e) * static_cast<Acc<T>>(e);
  return std::sqrt(s);
}

// A <- decay A + k k^T
template <class T> void gram_update(MatT<T>& A, Acc<T> decay, const VecT<T>& k) {
  for (int64_t i = 0; i < A.n; ++i)
    for (int64_t j = 0; j < A.n; ++j)
      A(i, j) = T(decay * static_cast<Acc<T>>(A(i, j)) +
                  static_cast<Acc<T>>(k[static_cast<size_t>(i)]) * static_cast<Acc<T>>(k[static_cast<size_t>(j)]));
}

// Spec §A.3 with mu = lambda, L = lambda + f: x1 = eta q, then `num_iter` steps
// x <- w (x - eta ((H + lambda I) x - q)) + (1 - w) x_prev, w_{i} = 1 / (1 - c w_{i-1}), w_0 = 2.
// With lambda = r f this is exactly the paper's iteration; with a fixed lambda, c depends on the token.
template <class T> VecT<T> chebyshev_solve(const MatT<T>& H, Acc<T> lambda, Acc<T> f, const VecT<T>& q, int num_iter) {
  using A = Acc<T>;
  const A eta = A(2) / (A(2) * lambda + f);
  const A rho = f / (A(2) * lambda + f);
  const A c = rho * rho / A(4);
  VecT<T> x_prev(q.size(), T(0.0)), x(q.size());
  for (size_t i = 0; i < q.size(); ++i) x[i] = T(eta * static_cast<A>(q[i]));
  A w = 2;
  for (int it = 0; it < num_iter; ++it) {
    w = A(1) / (A(1) - c * w);
    VecT<T> res = shifted_matvec(H, lambda, x);
    for (size_t i = 0; i < q.size(); ++i) res[i] = T(static_cast<A>(res[i]) - static_cast<A>(q[i]));
    VecT<T> x_new(q.size());
    for (size_t i = 0; i < q.size(); ++i)
      x_new[i] = T(w * (static_cast<A>(x[i]) - eta * static_cast<A>(res[i])) + (A(1) - w) * static_cast<A>(x_prev[i]));
    x_prev = std::move(x);
    x = std::move(x_new);
  }
  return x;
}

// Conjugate gradient from x0 = 0 with exactly `num_iter` mat-vecs (stops only on an exactly zero residual
// or curvature, like the library's reference cg).
template <class T> VecT<T> cg_solve(const MatT<T>& H, Acc<T> lambda, const VecT<T>& q, int num_iter) {
  using A = Acc<T>;
  VecT<T> x(q.size(), T(0.0)), r = q, d = q;
  A rr = dot(r, r);
  for (int it = 0; it < num_iter && rr != A(0); ++it) {
    const VecT<T> Ad = shifted_matvec(H, lambda, d);
    const A dAd = dot(d, Ad);
    if (dAd == A(0)) break;
    const A step = rr / dAd;
    for (size_t i = 0; i < x.size(); ++i) {
      x[i] = T(static_cast<A>(x[i]) + step * static_cast<A>(d[i]));
      r[i] = T(static_cast<A>(r[i]) - step * static_cast<A>(Ad[i]));
    }
    const A rr_new = dot(r, r);
    const A beta = rr_new / rr;
    for (size_t i = 0; i < d.size(); ++i) d[i] = T(static_cast<A>(r[i]) + beta * static_cast<A>(d[i]));
    rr = rr_new;
  }
  return x;
}

// Cholesky solve of (H + lambda I) x = q with the factor stored in T. No pivoting, no guard.
template <class T> VecT<T> exact_solve(const MatT<T>& H, Acc<T> lambda, const VecT<T>& q) {
  using A = Acc<T>;
  const int64_t n = H.n;
  MatT<T> L(n);
  for (int64_t j = 0; j < n; ++j) {
    A d = static_cast<A>(H(j, j)) + lambda;
    for (int64_t m = 0; m < j; ++m) d -= static_cast<A>(L(j, m)) * static_cast<A>(L(j, m));
    L(j, j) = T(std::sqrt(d));
    const A ljj = static_cast<A>(L(j, j));
    for (int64_t i = j + 1; i < n; ++i) {
      A s = static_cast<A>(H(i, j));
      for (int64_t m = 0; m < j; ++m) s -= static_cast<A>(L(i, m)) * static_cast<A>(L(j, m));
      L(i, j) = T(s / ljj);
    }
  }
  VecT<T> y(q.size());
  for (int64_t i = 0; i < n; ++i) {
    A s = static_cast<A>(q[static_cast<size_t>(i)]);
    for (int64_t m = 0; m < i; ++m) s -= static_cast<A>(L(i, m)) * static_cast<A>(y[static_cast<size_t>(m)]);
    y[static_cast<size_t>(i)] = T(s / static_cast<A>(L(i, i)));
  }
  VecT<T> x(q.size());
  for (int64_t i = n - 1; i >= 0; --i) {
    A s = static_cast<A>(y[static_cast<size_t>(i)]);
    for (int64_t m = i + 1; m < n; ++m) s -= static_cast<A>(L(m, i)) * static_cast<A>(x[static_cast<size_t>(m)]);
    x[static_cast<size_t>(i)] = T(s / static_cast<A>(L(i, i)));
  }
  return x;
}

// The classic Kalman-filter / fading-memory recursive-least-squares recursion. It carries the inverse
// P_t = A_t^{-1} of A_t = gamma_t A_{t-1} + k_t k_t^T, A_0 = lambda I, by the Sherman-Morrison formula
//   u = P k,  P <- (P - u u^T / (gamma + k^T u)) / gamma,
// so A_t = H_t + lambda e^{G_t} I with G_t = sum of the log-decays: the regulariser decays with the data.
// (A fixed lambda, H_t + lambda I, would need the full-rank term (1 - gamma) lambda I each token, which no
// rank-1 recursion carries; without gates, gamma = 1, the two systems coincide.)
template <class T> struct KalmanRecursion {
  MatT<T> P;
  KalmanRecursion() = default;
  KalmanRecursion(int64_t n, double lambda) : P(n) {
    for (int64_t i = 0; i < n; ++i) P(i, i) = T(static_cast<Acc<T>>(1.0 / lambda));
  }
  void update(Acc<T> gamma, const VecT<T>& k) {
    using A = Acc<T>;
    const VecT<T> u = shifted_matvec(P, A(0), k);
    const A den = gamma + dot(k, u);
    for (int64_t i = 0; i < P.n; ++i)
      for (int64_t j = 0; j < P.n; ++j)
        P(i, j) = T((static_cast<A>(P(i, j)) -
                     static_cast<A>(u[static_cast<size_t>(i)]) * static_cast<A>(u[static_cast<size_t>(j)]) / den) /
                    gamma);
  }
  VecT<T> solve(const VecT<T>& q) const { return shifted_matvec(P, Acc<T>(0), q); }
};

}  // namespace gka::study
