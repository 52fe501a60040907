#include "study/gradient.h"

#include <cmath>
#include <random>
#include <stdexcept>

#include "study/solvers.h"

namespace gka::study {
namespace {

struct LayerParams {
  std::vector<double> wq, wk, wv, wo;    // [D, D] row-major, y = W x
  std::vector<double> beta, alpha, gamma;  // [T]
};

struct Params {
  std::vector<LayerParams> layers;
  std::vector<double> x0, c;  // [T, D]
};

Params params_make(const GradProblem& p) {
  std::mt19937_64 rng(p.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const size_t DD = size_t(p.D * p.D), TD = size_t(p.T * p.D);
  Params ps;
  for (int l = 0; l < p.layers; ++l) {
    LayerParams lp;
    for (auto* w : {&lp.wq, &lp.wk, &lp.wv, &lp.wo}) {
      w->resize(DD);
      for (double& e : *w) e = normal(rng) / std::sqrt(double(p.D));
    }
    for (double& e : lp.wo) e *= 0.5;
    for (auto* s : {&lp.beta, &lp.alpha, &lp.gamma}) s->resize(size_t(p.T));
    for (int64_t t = 0; t < p.T; ++t) {
      lp.beta[size_t(t)] = 1.0 / (1.0 + std::exp(-normal(rng))) + 1e-6;
      lp.alpha[size_t(t)] = 1.0 / (1.0 + std::exp(-normal(rng)));
      lp.gamma[size_t(t)] = p.gamma_lo + (p.gamma_hi - p.gamma_lo) * uniform(rng);
    }
    ps.layers.push_back(std::move(lp));
  }
  ps.x0.resize(TD);
  ps.c.resize(TD);
  for (double& e : ps.x0) e = normal(rng);
  for (double& e : ps.c) e = normal(rng);
  if (p.perturb_index >= 0) ps.x0[size_t(p.perturb_index)] += p.perturb;
  return ps;
}

template <class T> struct Solve {
  const RunnerSpec& spec;
  VecT<T> operator()(const MatT<T>& H, Acc<T> lambda, Acc<T> f, const VecT<T>& rhs) const {
    if (spec.solver == "chebyshev") return chebyshev_solve(H, lambda, f, rhs, spec.num_iter);
    if (spec.solver == "cg") return cg_solve(H, lambda, rhs, spec.num_iter);
    if (spec.solver == "exact") return exact_solve(H, lambda, rhs);
    throw std::invalid_argument("gradient study: solver " + spec.solver + " has no backward");
  }
};

// W x (transpose = false) or W^T x, W double [D, D], x in T; accumulated in Acc<T>, stored in T.
template <class T> VecT<T> apply(const std::vector<double>& W, const VecT<T>& x, bool transpose) {
  using A = Acc<T>;
  const size_t D = x.size();
  VecT<T> y(D);
  for (size_t i = 0; i < D; ++i) {
    A s = 0;
    for (size_t j = 0; j < D; ++j) s += A(transpose ? W[j * D + i] : W[i * D + j]) * static_cast<A>(x[j]);
    y[i] = T(s);
  }
  return y;
}

// Everything one layer's backward needs from its forward.
template <class T> struct LayerTape {
  std::vector<VecT<T>> x, pq, pk, q, k, v, xs, qm, o, z;  // per token
  std::vector<MatT<T>> H, S;                             // per token (after the update)
  std::vector<double> lambda, f;
};

template <class T> class Stack {
 public:
  using A = Acc<T>;
  Stack(const GradProblem& p, const Params& ps, const RunnerSpec& spec)
      : p_(p), ps_(ps), spec_(spec), solve_{spec}, s_(1.0 / std::sqrt(double(p.D))) {}

  // y = layer(x), recording the tape.
  std::vector<VecT<T>> forward(int l, const std::vector<VecT<T>>& x, LayerTape<T>& tp) {
    const LayerParams& lp = ps_.layers[size_t(l)];
    const int64_t D = p_.D;
    MatT<T> H(D), S(D);
    std::vector<VecT<T>> y;
    tp.x = x;
    for (int64_t t = 0; t < p_.T; ++t) {
      const size_t ti = size_t(t);
      const VecT<T> pq = apply(lp.wq, x[ti], false), pk = apply(lp.wk, x[ti], false);
      VecT<T> v = apply(lp.wv, x[ti], false), q(static_cast<size_t>(D)), k(static_cast<size_t>(D));
      const A nq = std::sqrt(dot(pq, pq)) + A(1e-6), nk = std::sqrt(dot(pk, pk)) + A(1e-6);
      for (int64_t i = 0; i < D; ++i) {
        q[size_t(i)] = T(static_cast<A>(pq[size_t(i)]) / nq);
        k[size_t(i)] = T(A(lp.beta[ti]) * static_cast<A>(pk[size_t(i)]) / nk);
      }
      const A g = A(lp.gamma[ti]);
      gram_update(H, g, k);
      for (int64_t i = 0; i < D; ++i)
        for (int64_t j = 0; j < D; ++j)
          S(i, j) = T(g * static_cast<A>(S(i, j)) + static_cast<A>(k[size_t(i)]) * static_cast<A>(v[size_t(j)]));
      const A f = fro_norm(H);
      const A lambda = spec_.lambda.kind == LambdaKind::adaptive ? A(spec_.lambda.value) * f : A(spec_.lambda.value);
      const VecT<T> xs = solve_(H, lambda, f, q);
      VecT<T> qm(static_cast<size_t>(D)), o(static_cast<size_t>(D)), yt(static_cast<size_t>(D));
      for (int64_t i = 0; i < D; ++i)
        qm[size_t(i)] = T(static_cast<A>(q[size_t(i)]) + A(lp.alpha[ti]) * (static_cast<A>(xs[size_t(i)]) - static_cast<A>(q[size_t(i)])));
      for (int64_t j = 0; j < D; ++j) {
        A acc = 0;
        for (int64_t i = 0; i < D; ++i) acc += static_cast<A>(S(i, j)) * static_cast<A>(qm[size_t(i)]);
        o[size_t(j)] = T(A(s_) * acc);
      }
      const VecT<T> z = apply(lp.wo, o, false);
      for (int64_t i = 0; i < D; ++i) yt[size_t(i)] = T(static_cast<A>(x[ti][size_t(i)]) + std::tanh(static_cast<A>(z[size_t(i)])));
      tp.pq.push_back(pq);
      tp.pk.push_back(pk);
      tp.q.push_back(q);
      tp.k.push_back(k);
      tp.v.push_back(v);
      tp.xs.push_back(xs);
      tp.qm.push_back(qm);
      tp.o.push_back(o);
      tp.z.push_back(z);
      tp.H.push_back(H);
      tp.S.push_back(S);
      tp.lambda.push_back(double(lambda));
      tp.f.push_back(double(f));
      y.push_back(std::move(yt));
    }
    return y;
  }

  // dL/dx of the layer from dL/dy; accumulates the weight gradients (fp64 sums of T-stored terms) in dw.
  std::vector<VecT<T>> backward(int l, const LayerTape<T>& tp, const std::vector<VecT<T>>& dy, std::vector<double>& dw) {
    const LayerParams& lp = ps_.layers[size_t(l)];
    const int64_t D = p_.D;
    const size_t DD = size_t(D * D);
    dw.assign(4 * DD, 0.0);
    std::vector<VecT<T>> dx(static_cast<size_t>(p_.T));
    MatT<T> adjH(D), adjS(D);  // gamma_{t+1} H^_{t+1}, gamma_{t+1} S^_{t+1}
    auto outer_add = [&](size_t block, const VecT<T>& a, const VecT<T>& b) {
      for (int64_t i = 0; i < D; ++i)
        for (int64_t j = 0; j < D; ++j) dw[block * DD + size_t(i * D + j)] += to_double(a[size_t(i)]) * to_double(b[size_t(j)]);
    };
    for (int64_t t = p_.T - 1; t >= 0; --t) {
      const size_t ti = size_t(t);
      VecT<T> dz(static_cast<size_t>(D));
      for (int64_t i = 0; i < D; ++i) {
        const A th = std::tanh(static_cast<A>(tp.z[ti][size_t(i)]));
        dz[size_t(i)] = T(static_cast<A>(dy[ti][size_t(i)]) * (A(1) - th * th));
      }
      outer_add(3, dz, tp.o[ti]);
      const VecT<T> dout = apply(lp.wo, dz, true);
      // readout: o = s S^T q~ ; S^_t = s q~ do^T + gamma_{t+1} S^_{t+1}
      MatT<T> Sh(D), Hh(D);
      for (int64_t i = 0; i < D; ++i)
        for (int64_t j = 0; j < D; ++j)
          Sh(i, j) = T(A(s_) * static_cast<A>(tp.qm[ti][size_t(i)]) * static_cast<A>(dout[size_t(j)]) + static_cast<A>(adjS(i, j)));
      VecT<T> dqm(static_cast<size_t>(D)), dxs(static_cast<size_t>(D));
      for (int64_t i = 0; i < D; ++i) {
        A acc = 0;
        for (int64_t j = 0; j < D; ++j) acc += static_cast<A>(tp.S[ti](i, j)) * static_cast<A>(dout[size_t(j)]);
        dqm[size_t(i)] = T(A(s_) * acc);
        dxs[size_t(i)] = T(A(lp.alpha[ti]) * static_cast<A>(dqm[size_t(i)]));
      }
      // solve backward: u = (H + lambda I)^{-1} dx with the run's solver
      const VecT<T> u = solve_(tp.H[ti], A(tp.lambda[ti]), A(tp.f[ti]), dxs);
      const A w = spec_.lambda.kind == LambdaKind::adaptive ? A(spec_.lambda.value) * dot(u, tp.xs[ti]) / A(tp.f[ti]) : A(0);
      for (int64_t i = 0; i < D; ++i)
        for (int64_t j = 0; j < D; ++j)
          Hh(i, j) = T(-static_cast<A>(u[size_t(i)]) * static_cast<A>(tp.xs[ti][size_t(j)]) - w * static_cast<A>(tp.H[ti](i, j)) +
                       static_cast<A>(adjH(i, j)));
      VecT<T> dq(static_cast<size_t>(D)), dk(static_cast<size_t>(D)), dv(static_cast<size_t>(D));
      const VecT<T>& k = tp.k[ti];
      const VecT<T>& v = tp.v[ti];
      for (int64_t i = 0; i < D; ++i) {
        dq[size_t(i)] = T((A(1) - A(lp.alpha[ti])) * static_cast<A>(dqm[size_t(i)]) + static_cast<A>(u[size_t(i)]));
        A a = 0, b = 0;
        for (int64_t j = 0; j < D; ++j) {
          a += (static_cast<A>(Hh(i, j)) + static_cast<A>(Hh(j, i))) * static_cast<A>(k[size_t(j)]) +
               static_cast<A>(Sh(i, j)) * static_cast<A>(v[size_t(j)]);
          b += static_cast<A>(Sh(j, i)) * static_cast<A>(k[size_t(j)]);
        }
        dk[size_t(i)] = T(a);
        dv[size_t(i)] = T(b);
      }
      const A g = A(lp.gamma[ti]);
      for (int64_t i = 0; i < D; ++i)
        for (int64_t j = 0; j < D; ++j) {
          adjH(i, j) = T(g * static_cast<A>(Hh(i, j)));
          adjS(i, j) = T(g * static_cast<A>(Sh(i, j)));
        }
      // normalisations: q = pq / (|pq| + eps), k = beta pk / (|pk| + eps)
      const VecT<T> dpq = norm_backward(tp.pq[ti], dq, A(1));
      const VecT<T> dpk = norm_backward(tp.pk[ti], dk, A(lp.beta[ti]));
      outer_add(0, dpq, tp.x[ti]);
      outer_add(1, dpk, tp.x[ti]);
      outer_add(2, dv, tp.x[ti]);
      const VecT<T> a1 = apply(lp.wq, dpq, true), a2 = apply(lp.wk, dpk, true), a3 = apply(lp.wv, dv, true);
      VecT<T> dxt(static_cast<size_t>(D));
      for (int64_t i = 0; i < D; ++i)
        dxt[size_t(i)] = T(static_cast<A>(dy[ti][size_t(i)]) + static_cast<A>(a1[size_t(i)]) + static_cast<A>(a2[size_t(i)]) +
                           static_cast<A>(a3[size_t(i)]));
      dx[ti] = std::move(dxt);
    }
    return dx;
  }

 private:
  static VecT<T> norm_backward(const VecT<T>& p, const VecT<T>& d, A scale) {
    const A n = std::sqrt(dot(p, p)), ne = n + A(1e-6);
    const A pd = dot(p, d);
    VecT<T> r(p.size());
    for (size_t i = 0; i < p.size(); ++i)
      r[i] = T(scale * (static_cast<A>(d[i]) / ne - static_cast<A>(p[i]) * pd / (n * ne * ne)));
    return r;
  }

  const GradProblem& p_;
  const Params& ps_;
  const RunnerSpec& spec_;
  Solve<T> solve_;
  double s_;
};

template <class T> GradRun run_typed(const GradProblem& p, const RunnerSpec& spec) {
  const Params ps = params_make(p);
  Stack<T> st(p, ps, spec);
  std::vector<VecT<T>> x;
  for (int64_t t = 0; t < p.T; ++t)
    x.push_back(vec_cast<T>(std::vector<double>(&ps.x0[size_t(t * p.D)], &ps.x0[size_t((t + 1) * p.D)])));
  std::vector<LayerTape<T>> tapes(size_t(p.layers));
  for (int l = 0; l < p.layers; ++l) x = st.forward(l, x, tapes[size_t(l)]);
  GradRun r;
  std::vector<VecT<T>> dy;
  for (int64_t t = 0; t < p.T; ++t) {
    for (int64_t i = 0; i < p.D; ++i) r.loss += ps.c[size_t(t * p.D + i)] * to_double(x[size_t(t)][size_t(i)]);
    dy.push_back(vec_cast<T>(std::vector<double>(&ps.c[size_t(t * p.D)], &ps.c[size_t((t + 1) * p.D)])));
  }
  r.dx.resize(size_t(p.layers + 1));
  r.dw.resize(size_t(p.layers));
  auto flatten = [&](const std::vector<VecT<T>>& a) {
    std::vector<double> f;
    for (const VecT<T>& v : a)
      for (const T& e : v) f.push_back(to_double(e));
    return f;
  };
  r.dx[size_t(p.layers)] = flatten(dy);
  for (int l = p.layers - 1; l >= 0; --l) {
    dy = st.backward(l, tapes[size_t(l)], dy, r.dw[size_t(l)]);
    r.dx[size_t(l)] = flatten(dy);
  }
  for (const auto& v : r.dx)
    for (double e : v) r.finite = r.finite && std::isfinite(e);
  r.finite = r.finite && std::isfinite(r.loss);
  return r;
}

}  // namespace

GradRun gradient_run(const GradProblem& prob, const RunnerSpec& spec) {
  switch (spec.precision) {
    case Precision::fp64: return run_typed<double>(prob, spec);
    case Precision::fp32: return run_typed<float>(prob, spec);
    case Precision::bf16: return run_typed<Bf16>(prob, spec);
    case Precision::bf16s: break;
  }
  throw std::invalid_argument("unknown precision");
}

}  // namespace gka::study
