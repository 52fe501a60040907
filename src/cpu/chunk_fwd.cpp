// Chunked forward of the CPU backend (docs/algorithm.md, "Forward"): state scan, then every
// (sequence, head, chunk) independently: norms, solve, alpha-mix, readout.
#include "backends.h"
#include "cpu/chunk_fwd.h"
#include "cpu/chunk_states.h"

namespace gka::cpu {

template <class T>
ChunkWork<T>::ChunkWork(const Problem& p) : d(p) {
  const int64_t Dp = d.Dp, Dvp = d.Dvp, Cp = d.Cp, Wn = std::max(Dp, Dvp);
  K = arena.take(Cp * Dp);
  Kt = arena.take(Dp * Cp);
  Q = arena.take(Cp * Dp);
  V = arena.take(Cp * Dvp);
  Qt = arena.take(Cp * Dp);
  O = arena.take(Cp * Dvp);
  buf[0] = arena.take(Cp * Wn);
  buf[1] = arena.take(Cp * Wn);
  buf[2] = arena.take(Cp * Wn);
  X = arena.take(Cp * Dp);
  W = arena.take((Wn + Cp) * Wn);
  Z = arena.take(Cp * (Wn + Cp));
  M = arena.take(Cp * Cp);
  Mg = arena.take(Cp * Cp);
  P = arena.take(Cp * Cp);
  Y = arena.take(Cp * Cp);
  for (T*& v : vec) v = arena.take(Cp);
  if (p.solver == Solver::exact) exact.emplace(p.D);
}

template <class T>
void ChunkWork<T>::load(const Problem& p, const Sequence& sq, int64_t t0, int64_t n_, int64_t h) {
  n = n_;
  tile_load(p.in.k, sq.batch, t0, n, h, d.D, K, d.Dp, d.Cp);
  tile_load(p.in.q, sq.batch, t0, n, h, d.D, Q, d.Dp, d.Cp);
  tile_load(p.in.v, sq.batch, t0, n, h, d.Dv, V, d.Dvp, d.Cp);
  transpose(K, d.Dp, d.Cp, d.Dp, Kt, d.Cp);
  for (int64_t i = 0; i < n; ++i) alpha()[i] = load_scalar<T>(p.in.alpha, sq.batch, t0 + i, h, T(1));
  gk().build(p.in.gk, sq.batch, t0, n, h, d.Cp);
  g().build(p.in.g, sq.batch, t0, n, h, d.Cp);
}

template <class T>
ChunkOp<T> ChunkWork<T>::op(bool readout) {
  ChunkOp<T> o;
  o.n = n;
  o.D = d.D;
  o.Dp = d.Dp;
  o.Cp = d.Cp;
  o.Din = d.D;
  o.Dinp = d.Dp;
  o.Nw = readout ? d.Dvp : d.Dp;
  o.Kt = Kt;
  o.M = readout ? Mg : M;
  o.eG = readout ? vec[4] : vec[1];
  o.W = W;
  o.Z = Z;
  return o;
}

template <class T>
void ChunkWork<T>::solve(const Problem& p, const ChebyshevPlan& plan, const ChunkOp<T>& op, const T* Hbar,
                         const T* rhs, const T* f, T* out) {
  const int64_t sz = n * d.Dp;
  const SolveBufs<T> bufs{buf[0], buf[1], buf[2]};
  if (p.num_iter == 0) {
    std::copy(rhs, rhs + sz, out);
  } else if (p.solver == Solver::exact) {
    exact->solve(Hbar, K, vec[0], f, rhs, out, n, d.D, d.Dp, p.ridge_ratio);
  } else if (p.solver == Solver::cg) {
    solve_cg(op, rhs, f, p.num_iter, p.ridge_ratio, bufs, out);
  } else {
    const T* x = solve_chebyshev(op, rhs, f, plan, p.ridge_ratio, bufs);
    std::copy(x, x + sz, out);
  }
}

template <class T>
void ChunkWork<T>::solve_forward(const Problem& p, const ChebyshevPlan& plan, const T* Hbar) {
  ChunkOp<T> o = op(false);
  o.set_state(Hbar, K, true);
  fro_norms(o, K, Hbar, buf[0], P, Y, fro());
  solve(p, plan, o, Hbar, Q, fro(), X);
}

template <class T>
void ChunkWork<T>::mix() {
  for (int64_t i = 0; i < n; ++i) {
    const T a = alpha()[i];
    for (int64_t c = 0; c < d.Dp; ++c) Qt[i * d.Dp + c] = Q[i * d.Dp + c] + a * (X[i * d.Dp + c] - Q[i * d.Dp + c]);
  }
}

template <class T>
void ChunkWork<T>::readout(const T* Sbar, T scale) {
  ChunkOp<T> o = op(true);
  std::copy(Sbar, Sbar + d.Dp * d.Dvp, W);
  std::copy(V, V + n * d.Dvp, W + d.Dp * d.Dvp);
  o.apply(Qt, O);
  for (int64_t a = 0; a < n * d.Dvp; ++a) O[a] *= scale;
}

template struct ChunkWork<float>;
template struct ChunkWork<double>;

namespace {

// ||(H_i + lambda_i I) x_i - q_i|| / ||q_i|| with one more operator application.
template <class T>
void residuals(ChunkWork<T>& w, const Problem& p, const T* Hbar, T* res) {
  ChunkOp<T> o = w.op(false);
  o.set_state(Hbar, w.K, true);
  T* hx = w.buf[0];
  o.apply(w.X, hx);
  const int64_t Dp = w.d.Dp;
  for (int64_t i = 0; i < w.n; ++i) {
    const T lam = static_cast<T>(p.ridge_ratio) * w.fro()[i];
    T num = 0, den = 0;
    for (int64_t c = 0; c < Dp; ++c) {
      const T r = hx[i * Dp + c] + lam * w.X[i * Dp + c] - w.Q[i * Dp + c];
      num += r * r;
      den += w.Q[i * Dp + c] * w.Q[i * Dp + c];
    }
    res[i] = std::sqrt(num) / std::sqrt(den);
  }
}

template <class T>
void zero_rows(const TensorView& v, const Sequence& sq, int64_t H, int64_t width) {
  if (!v.defined()) return;
  std::vector<T> z(static_cast<size_t>(std::max<int64_t>(width, 1)), T(0));
  for (int64_t t = 0; t < sq.length; ++t)
    for (int64_t h = 0; h < H; ++h) store(v, row_offset(v, sq.batch, sq.start + t, h), z.data(), width);
}

template <class T>
void forward(const Problem& p, const ForwardOutputs& out) {
  const ChunkPlan plan = chunk_plan(p);
  ChunkStates<T> st;
  chunk_states_scan(p, plan, st);
  const Dims<T> d(p);
  const ChebyshevPlan cheb = chebyshev_plan(p.ridge_ratio, p.num_iter);
  const T scale = static_cast<T>(p.scale);
  const int64_t tasks = static_cast<int64_t>(plan.items.size()) * p.H;
#pragma omp parallel num_threads(thread_count(p))
  {
    ChunkWork<T> w(p);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < tasks; ++task) {
      const ChunkPlan::Item& it = plan.items[task / p.H];
      const int64_t h = task % p.H;
      const Sequence& sq = p.seqs[it.seq];
      const int64_t slot = plan.slot(it.seq, it.chunk);
      const T* Hbar = st.h(d, slot, h, p.H);
      w.load(p, sq, it.t0, it.n, h);
      w.solve_forward(p, cheb, Hbar);
      w.mix();
      w.readout(st.s(d, slot, h, p.H), scale);
      tile_store(out.o, sq.batch, it.t0, it.n, h, d.Dv, w.O, d.Dvp);
      if (out.x.defined()) tile_store(out.x, sq.batch, it.t0, it.n, h, d.D, w.X, d.Dp);
      if (out.fro.defined())
        for (int64_t i = 0; i < it.n; ++i) store(out.fro, row_offset(out.fro, sq.batch, it.t0 + i, h), &w.fro()[i], 1);
      if (out.residual.defined()) {
        T res[256];
        residuals(w, p, Hbar, res);
        for (int64_t i = 0; i < it.n; ++i)
          store(out.residual, row_offset(out.residual, sq.batch, it.t0 + i, h), &res[i], 1);
      }
    }
  }
  chunk_states_store(p, plan, st, out.final_kk, out.final_kv);
  for (const Sequence& sq : p.seqs)  // sequences without a state slot produce zeros
    if (sq.state < 0) zero_rows<T>(out.o, sq, p.H, p.Dv);
}

}  // namespace

void chunk_forward(const Problem& p, const ForwardOutputs& out) {
  if (p.fp64)
    forward<double>(p, out);
  else
    forward<float>(p, out);
}

}  // namespace gka::cpu
