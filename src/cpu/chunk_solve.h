// The chunk operator and the solvers on all rows of a chunk at once (docs/algorithm.md, spec §B):
//   (HX)_i = H_i x_i = e^{G_i} H̄ x_i + Σ_{j<=i} M_ij (k_j·x_i) k_j,
// evaluated as ONE product Z·W with Z = [diag(e^G) X | (X Kᵀ) ⊙ M] and W = [H̄ᵀ; K], so the N
// iterations reuse W unpacked. Only the lower triangle of X Kᵀ is formed, and row block i of Z·W stops
// at column Dp + i of Z (the mask is zero beyond).
#pragma once

// GCC 12 reports a false "may be used uninitialized" inside Eigen's AVX-512 GEMM kernel (used by LLT).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Cholesky>
#include <Eigen/Core>

#include "common/chebyshev.h"
#include "cpu/chunk_tile.h"

namespace gka::cpu {

template <class T>
struct ChunkOp {
  int64_t n = 0, D = 0, Dp = 0, Cp = 0;  // K is n x D (ld Dp)
  int64_t Din = 0, Dinp = 0;  // width of the operand X (real, padded): D/Dp, or Dv/Dvp (dO in the backward)
  int64_t Nw = 0;             // columns of W and of the result: Dp (solve, dq~) or Dvp (readout [S̄; V])
  const T* Kt = nullptr;  // Dinp x Cp: Kᵀ (or Vᵀ when the operand is dO)
  const T* M = nullptr;   // Cp x Cp decay mask
  const T* eG = nullptr;  // e^{G_i}
  T* W = nullptr;         // (Dinp + Cp) x Nw: [H̄ᵀ (or H̄ for the adjoint); K], [S̄; V], or [S̄ᵀ; K]
  T* Z = nullptr;         // Cp x (Dinp + Cp)

  int64_t ldz() const { return Dinp + Cp; }

  // W = [H̄ᵀ; K] (transposed = true: H x), or [H̄; K] (Hᵀ x, the adjoint).
  void set_state(const T* Hbar, const T* K, bool transposed) {
    if (transposed)
      transpose(Hbar, Dp, Dp, Dp, W, Dp);
    else
      std::copy(Hbar, Hbar + Dp * Dp, W);
    std::copy(K, K + n * Dp, W + Dp * Dp);
  }

  // Z's right part: (X Kᵀ) ⊙ M on and below the diagonal, zero above (up to column n).
  void masked_scores(const T* X) const {
    T* S = Z + Dinp;
    gemm<T>(n, Cp, Din, X, Dinp, Kt, Cp, S, ldz(), Tri{-1, true});
    for (int64_t i = 0; i < n; ++i) {
      T* row = S + i * ldz();
      const T* m = M + i * Cp;
      for (int64_t j = 0; j <= i; ++j) row[j] *= m[j];
      std::fill(row + i + 1, row + n, T(0));
    }
  }

  // Y = H X (n x Nw rows, ld Nw); X has ld Dinp.
  void apply(const T* X, T* Y) const {
    masked_scores(X);
    for (int64_t i = 0; i < n; ++i) {
      const T e = eG[i];
      const T* x = X + i * Dinp;
      T* z = Z + i * ldz();
      for (int64_t d = 0; d < Dinp; ++d) z[d] = e * x[d];
    }
    gemm<T>(n, Nw, Dinp + n, Z, ldz(), W, Nw, Y, Nw, Tri{Dinp, false});
  }
};

// Scratch of the solvers: three n x Dp iterates.
template <class T>
struct SolveBufs {
  T* a;
  T* b;
  T* c;
};

// Chebyshev iteration (spec §A.3) on every row: rows of Q are right-hand sides, f the Frobenius norms.
// Returns the buffer (one of bufs) that holds the solution.
template <class T>
T* solve_chebyshev(const ChunkOp<T>& op, const T* Q, const T* f, const ChebyshevPlan& plan, double r,
                   SolveBufs<T> bufs) {
  const int64_t n = op.n, Dp = op.Dp;
  T* x = bufs.a;
  T* xp = bufs.b;
  T* hx = bufs.c;
  T eta[256], lam[256];
  for (int64_t i = 0; i < n; ++i) {
    eta[i] = f[i] > 0 ? static_cast<T>(plan.eta_f) / f[i] : T(0);  // H = 0: x stays 0 (min-norm solution)
    lam[i] = static_cast<T>(r) * f[i];
    for (int64_t d = 0; d < Dp; ++d) {
      x[i * Dp + d] = eta[i] * Q[i * Dp + d];
      xp[i * Dp + d] = 0;
    }
  }
  for (double om : plan.omega) {
    op.apply(x, hx);
    const T w = static_cast<T>(om), w1 = static_cast<T>(1.0 - om);
    for (int64_t i = 0; i < n; ++i) {
      const T a = w * (1 - eta[i] * lam[i]), bq = w * eta[i];
      T* xn = xp + i * Dp;
      const T* xi = x + i * Dp;
      const T* h = hx + i * Dp;
      const T* q = Q + i * Dp;
#pragma omp simd
      for (int64_t d = 0; d < Dp; ++d) xn[d] = a * xi[d] + bq * (q[d] - h[d]) + w1 * xn[d];
    }
    std::swap(x, xp);
  }
  return x;
}

// Conjugate gradient from x0 = 0 with exactly N operator applications, independently per row.
template <class T>
T* solve_cg(const ChunkOp<T>& op, const T* Q, const T* f, int32_t N, double r, SolveBufs<T> bufs, T* x) {
  const int64_t n = op.n, Dp = op.Dp;
  T* res = bufs.a;
  T* pdir = bufs.b;
  T* ap = bufs.c;
  T rr[256];
  for (int64_t i = 0; i < n; ++i) {
    rr[i] = 0;
    for (int64_t d = 0; d < Dp; ++d) {
      const T q = Q[i * Dp + d];
      x[i * Dp + d] = 0;
      res[i * Dp + d] = q;
      pdir[i * Dp + d] = q;
      rr[i] += q * q;
    }
  }
  for (int32_t it = 0; it < N; ++it) {
    op.apply(pdir, ap);
    for (int64_t i = 0; i < n; ++i) {
      const T lam = static_cast<T>(r) * f[i];
      T* p = pdir + i * Dp;
      T* a = ap + i * Dp;
      T pap = 0;
      for (int64_t d = 0; d < Dp; ++d) {
        a[d] += lam * p[d];
        pap += p[d] * a[d];
      }
      const T step = pap != 0 ? rr[i] / pap : T(0);  // converged rows (r = 0) stay put
      T rn = 0;
      for (int64_t d = 0; d < Dp; ++d) {
        x[i * Dp + d] += step * p[d];
        res[i * Dp + d] -= step * a[d];
        rn += res[i * Dp + d] * res[i * Dp + d];
      }
      const T beta = rr[i] != 0 ? rn / rr[i] : T(0);
      rr[i] = rn;
      for (int64_t d = 0; d < Dp; ++d) p[d] = res[i * Dp + d] + beta * p[d];
    }
  }
  return x;
}

// Exact solve: H_i formed token by token from H̄ (H_i = e^{gk_i} H_{i-1} + k_i k_iᵀ) and factorised by
// Cholesky (of the lower triangle: states are symmetric). D^3/3 per row.
template <class T>
struct ExactSolver {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  Mat Hc, A;
  Vec rhs;
  Eigen::LLT<Mat> llt;
  explicit ExactSolver(int64_t D) : Hc(D, D), A(D, D), rhs(D), llt(D) {}

  // Solves every row of Q into X (ld Dp); G the chunk-local cumulative gates.
  void solve(const T* Hbar, const T* K, const T* G, const T* f, const T* Q, T* X, int64_t n, int64_t D,
             int64_t Dp, double r) {
    for (int64_t a = 0; a < D; ++a)
      for (int64_t b = 0; b < D; ++b) Hc(a, b) = Hbar[a * Dp + b];
    T Gprev = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T decay = std::exp(G[i] - Gprev);
      Gprev = G[i];
      Eigen::Map<const Vec> k(K + i * Dp, D);
      Hc *= decay;
      Hc.noalias() += k * k.transpose();
      if (f[i] == 0) {  // H = 0: the minimum-norm solution, as the iterative solvers give
        Eigen::Map<Vec>(X + i * Dp, D).setZero();
        continue;
      }
      A = Hc;
      A.diagonal().array() += static_cast<T>(r) * f[i];
      llt.compute(A);
      rhs = Eigen::Map<const Vec>(Q + i * Dp, D);
      Eigen::Map<Vec>(X + i * Dp, D) = llt.solve(rhs);
    }
  }
};

// Per-token Frobenius norms by the closed form of spec §B.2:
//   f_i² = e^{2G_i}‖H̄‖² + 2 e^{G_i} Σ_{j<=i} M_ij k_jᵀH̄k_j + Σ_{j,l<=i} M_ij M_il (k_j·k_l)².
// Scratch: A (Cp x Dp), P and Y (Cp x Cp).
template <class T>
void fro_norms(const ChunkOp<T>& op, const T* K, const T* Hbar, T* A, T* P, T* Y, T* f) {
  const int64_t n = op.n, Dp = op.Dp, Cp = op.Cp;
  T hh = 0;
  for (int64_t a = 0; a < Dp * Dp; ++a) hh += Hbar[a] * Hbar[a];
  gemm<T>(n, Dp, op.D, K, Dp, Hbar, Dp, A, Dp);
  T w[256];
  for (int64_t j = 0; j < n; ++j) {
    T s = 0;
    for (int64_t d = 0; d < Dp; ++d) s += A[j * Dp + d] * K[j * Dp + d];
    w[j] = s;
  }
  gemm<T>(n, Cp, op.D, K, Dp, op.Kt, Cp, P, Cp);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t l = 0; l < Cp; ++l) P[j * Cp + l] = l < n ? P[j * Cp + l] * P[j * Cp + l] : T(0);
  gemm<T>(n, Cp, n, op.M, Cp, P, Cp, Y, Cp, Tri{0, false});
  for (int64_t i = 0; i < n; ++i) {
    const T* m = op.M + i * Cp;
    T mw = 0, third = 0;
    for (int64_t j = 0; j <= i; ++j) {
      mw += m[j] * w[j];
      third += Y[i * Cp + j] * m[j];
    }
    const T e = op.eG[i];
    f[i] = std::sqrt(std::max(T(0), e * e * hh + 2 * e * mw + third));
  }
}

}  // namespace gka::cpu
