// Small dense fp64 linear algebra for the reference backend: plain loops, chosen to be obviously
// correct rather than fast (the oracle every other backend is tested against).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace gka::reference {

using Vec = std::vector<double>;

// Row-major rows x cols matrix.
struct Mat {
  int64_t rows = 0, cols = 0;
  std::vector<double> a;

  Mat() = default;
  Mat(int64_t r, int64_t c) : rows(r), cols(c), a(static_cast<size_t>(r * c), 0.0) {}
  double& operator()(int64_t i, int64_t j) { return a[static_cast<size_t>(i * cols + j)]; }
  double operator()(int64_t i, int64_t j) const { return a[static_cast<size_t>(i * cols + j)]; }
  double* row(int64_t i) { return a.data() + i * cols; }
  const double* row(int64_t i) const { return a.data() + i * cols; }
};

inline Vec zeros(int64_t n) { return Vec(static_cast<size_t>(n), 0.0); }

inline double dot(const Vec& x, const Vec& y) {
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}

inline double norm2(const Vec& x) { return std::sqrt(dot(x, x)); }

// y = A x
inline Vec matvec(const Mat& A, const Vec& x) {
  Vec y = zeros(A.rows);
  for (int64_t i = 0; i < A.rows; ++i) {
    double s = 0;
    for (int64_t j = 0; j < A.cols; ++j) s += A(i, j) * x[static_cast<size_t>(j)];
    y[static_cast<size_t>(i)] = s;
  }
  return y;
}

// y = A^T x
inline Vec matvec_t(const Mat& A, const Vec& x) {
  Vec y = zeros(A.cols);
  for (int64_t i = 0; i < A.rows; ++i)
    for (int64_t j = 0; j < A.cols; ++j) y[static_cast<size_t>(j)] += A(i, j) * x[static_cast<size_t>(i)];
  return y;
}

// y = (A + lambda I) x, A square
inline Vec shifted_matvec(const Mat& A, double lambda, const Vec& x) {
  Vec y = matvec(A, x);
  for (size_t i = 0; i < y.size(); ++i) y[i] += lambda * x[i];
  return y;
}

// <A, B>_F
inline double inner(const Mat& A, const Mat& B) {
  double s = 0;
  for (size_t i = 0; i < A.a.size(); ++i) s += A.a[i] * B.a[i];
  return s;
}

inline double fro_norm(const Mat& A) { return std::sqrt(inner(A, A)); }

inline void scale_in_place(Mat& A, double c) {
  for (double& x : A.a) x *= c;
}

// Y += c X
inline void add_scaled(Mat& Y, double c, const Mat& X) {
  for (size_t i = 0; i < Y.a.size(); ++i) Y.a[i] += c * X.a[i];
}

// A += c x y^T
inline void add_outer(Mat& A, double c, const Vec& x, const Vec& y) {
  for (int64_t i = 0; i < A.rows; ++i)
    for (int64_t j = 0; j < A.cols; ++j) A(i, j) += c * x[static_cast<size_t>(i)] * y[static_cast<size_t>(j)];
}

// Solves A x = b for symmetric positive definite A (lower triangle read) by Cholesky A = L L^T.
// No pivoting or guard: a non-positive pivot yields NaN/Inf, as a singular system should.
inline Vec cholesky_solve(const Mat& A, const Vec& b) {
  const int64_t n = A.rows;
  Mat L(n, n);
  for (int64_t j = 0; j < n; ++j) {
    double d = A(j, j);
    for (int64_t m = 0; m < j; ++m) d -= L(j, m) * L(j, m);
    L(j, j) = std::sqrt(d);
    for (int64_t i = j + 1; i < n; ++i) {
      double s = A(i, j);
      for (int64_t m = 0; m < j; ++m) s -= L(i, m) * L(j, m);
      L(i, j) = s / L(j, j);
    }
  }
  Vec y = b;  // forward substitution L y = b
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t m = 0; m < i; ++m) y[static_cast<size_t>(i)] -= L(i, m) * y[static_cast<size_t>(m)];
    y[static_cast<size_t>(i)] /= L(i, i);
  }
  Vec x = y;  // back substitution L^T x = y
  for (int64_t i = n - 1; i >= 0; --i) {
    for (int64_t m = i + 1; m < n; ++m) x[static_cast<size_t>(i)] -= L(m, i) * x[static_cast<size_t>(m)];
    x[static_cast<size_t>(i)] /= L(i, i);
  }
  return x;
}

}  // namespace gka::reference
