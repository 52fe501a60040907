// Token-by-token forward (decode, spec §D): per (sequence, head) the states are copied into local tiles,
// advanced token by token, and written back once. The state slot comes from Sequence::state, so the
// same code serves state pools; final_* may alias initial_* because a state is read fully before it is
// written. Parallel over sequences x heads.
#include <omp.h>

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 false positive inside Eigen's AVX-512 LLT
#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <cmath>
#include <vector>

#include "backends.h"
#include "common/access.h"
#include "common/chebyshev.h"

namespace gka::cpu {
namespace {

template <class T>
struct DecodeWork {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  Mat H, S, A;
  Vec k, q, v, x, xp, hx, qt, o, r, pdir;
  Eigen::LLT<Mat> llt;
  DecodeWork(int64_t D, int64_t Dv)
      : H(D, D), S(D, Dv), k(D), q(D), v(Dv), x(D), xp(D), hx(D), qt(D), o(Dv), r(D), pdir(D) {}

  void solve(const Problem& p, const ChebyshevPlan& plan, T f) {
    const T lam = static_cast<T>(p.ridge_ratio) * f;
    if (p.num_iter == 0) {
      x = q;
    } else if (f == 0) {  // H = 0: the minimum-norm solution x = 0 (docs/algorithm.md)
      x.setZero();
    } else if (p.solver == Solver::exact) {
      A = H;
      A.diagonal().array() += lam;
      llt.compute(A);
      x = llt.solve(q);
    } else if (p.solver == Solver::cg) {
      x.setZero();
      r = q;
      pdir = q;
      T rr = r.squaredNorm();
      for (int32_t it = 0; it < p.num_iter; ++it) {
        hx.noalias() = H * pdir;
        hx += lam * pdir;
        const T pap = pdir.dot(hx);
        const T step = pap != 0 ? rr / pap : T(0);
        x += step * pdir;
        r -= step * hx;
        const T rn = r.squaredNorm();
        const T beta = rr != 0 ? rn / rr : T(0);
        rr = rn;
        pdir = r + beta * pdir;
      }
    } else {
      const T eta = static_cast<T>(plan.eta_f) / f;
      x = eta * q;
      xp.setZero();
      const T a0 = 1 - eta * lam;
      for (double om : plan.omega) {
        const T w = static_cast<T>(om), w1 = static_cast<T>(1.0 - om);
        hx.noalias() = H * x;
        xp = (w * a0) * x + (w * eta) * (q - hx) + w1 * xp;  // becomes the new iterate
        x.swap(xp);
      }
    }
  }
};

template <class T>
void zero_rows(const TensorView& v, const Sequence& sq, int64_t h, int64_t width) {
  if (!v.defined()) return;
  std::vector<T> z(static_cast<size_t>(width), T(0));
  for (int64_t t = sq.start; t < sq.start + sq.length; ++t) store(v, row_offset(v, sq.batch, t, h), z.data(), width);
}

template <class T>
void forward(const Problem& p, const ForwardOutputs& out) {
  const int64_t D = p.D, Dv = p.Dv, tasks = p.num_seqs() * p.H;
  const ChebyshevPlan plan = chebyshev_plan(p.ridge_ratio, p.num_iter);
  const T scale = static_cast<T>(p.scale);
#pragma omp parallel num_threads(p.num_threads > 0 ? p.num_threads : omp_get_max_threads())
  {
    DecodeWork<T> w(D, Dv);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < tasks; ++task) {
      const Sequence& sq = p.seqs[task / p.H];
      const int64_t h = task % p.H;
      if (sq.state < 0) {  // pool padding: zero outputs, leave every state alone
        zero_rows<T>(out.o, sq, h, Dv);
        zero_rows<T>(out.x, sq, h, D);
        zero_rows<T>(out.fro, sq, h, 1);
        zero_rows<T>(out.residual, sq, h, 1);
        continue;
      }
      const TensorView& ikk = p.in.initial_kk;
      const TensorView& ikv = p.in.initial_kv;
      w.H.setZero();
      w.S.setZero();
      if (ikk.defined())
        for (int64_t a = 0; a < D; ++a) load(ikk, row_offset(ikk, sq.state, h, a), w.H.row(a).data(), D);
      if (ikv.defined())
        for (int64_t a = 0; a < D; ++a) load(ikv, row_offset(ikv, sq.state, h, a), w.S.row(a).data(), Dv);
      for (int64_t t = sq.start; t < sq.start + sq.length; ++t) {
        const int64_t b = sq.batch;
        load(p.in.k, row_offset(p.in.k, b, t, h), w.k.data(), D);
        load(p.in.q, row_offset(p.in.q, b, t, h), w.q.data(), D);
        load(p.in.v, row_offset(p.in.v, b, t, h), w.v.data(), Dv);
        const T ak = std::exp(load_scalar<T>(p.in.gk, b, t, h, T(0)));
        const T av = std::exp(load_scalar<T>(p.in.g, b, t, h, T(0)));
        const T alpha = load_scalar<T>(p.in.alpha, b, t, h, T(1));
        w.H *= ak;
        w.H.noalias() += w.k * w.k.transpose();
        w.S *= av;
        w.S.noalias() += w.k * w.v.transpose();
        const T f = w.H.norm();
        w.solve(p, plan, f);
        w.qt = w.q + alpha * (w.x - w.q);
        w.o.noalias() = scale * (w.S.transpose() * w.qt);
        store(out.o, row_offset(out.o, b, t, h), w.o.data(), Dv);
        if (out.x.defined()) store(out.x, row_offset(out.x, b, t, h), w.x.data(), D);
        if (out.fro.defined()) store(out.fro, row_offset(out.fro, b, t, h), &f, 1);
        if (out.residual.defined()) {
          w.hx.noalias() = w.H * w.x;
          const T res = (w.hx + static_cast<T>(p.ridge_ratio) * f * w.x - w.q).norm() / w.q.norm();
          store(out.residual, row_offset(out.residual, b, t, h), &res, 1);
        }
      }
      if (out.final_kk.defined())
        for (int64_t a = 0; a < D; ++a)
          store(out.final_kk, row_offset(out.final_kk, sq.state, h, a), w.H.row(a).data(), D);
      if (out.final_kv.defined())
        for (int64_t a = 0; a < D; ++a)
          store(out.final_kv, row_offset(out.final_kv, sq.state, h, a), w.S.row(a).data(), Dv);
    }
  }
}

}  // namespace

void recurrent_forward(const Problem& p, const ForwardOutputs& out) {
  if (p.fp64)
    forward<double>(p, out);
  else
    forward<float>(p, out);
}

}  // namespace gka::cpu
