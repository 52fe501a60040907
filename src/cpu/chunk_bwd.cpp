// Chunked backward of the CPU backend (docs/algorithm.md, "Backward", steps (A)-(D)):
//   (A) chunk-start states by the forward scan;
//   (B) per chunk: dq~, dalpha, the adjoint solve u, dq, and the chunk sums Σ e^{G}Ψ, Σ e^{Gg}Φ;
//   (C) per sequence x head: reverse scan turning the chunk sums into the adjoints R_c, Q_c arriving at
//       each chunk's end state, and the initial-state gradients;
//   (D) per chunk: dk, dv, dgk, dg.
// Every task writes only its own rows and tiles, so the result does not depend on the thread count.
#include "backends.h"
#include "cpu/chunk_fwd.h"
#include "cpu/chunk_states.h"

namespace gka::cpu {
namespace {

// Per-call buffers of the backward, indexed by (chunk item, head).
template <class T>
struct BwdBuffers {
  int64_t H, rows, hs, ss;  // heads, Cp*Dp, Dp*Dp, Dp*Dvp
  AlignedVec<T> X, U, Psi, Phi, scal;
  AlignedVec<T> Rin, Qin;  // per (sequence, head): the adjoints at the initial states, R_{-1} and Q_{-1}
  static constexpr int kScal = 5;  // per row: f, w, q~·dq~; plus per chunk: e^{G_last}, e^{Gg_last}
  BwdBuffers(const Dims<T>& d, int64_t items, int64_t heads)
      : H(heads), rows(d.Cp * d.Dp), hs(d.hsize()), ss(d.ssize()),
        X(static_cast<size_t>(items * heads * rows)), U(X.size()), Psi(static_cast<size_t>(items * heads * hs)),
        Phi(static_cast<size_t>(items * heads * ss)), scal(static_cast<size_t>(items * heads * (3 * d.Cp + 2))) {}
  void init_adjoints(int64_t seqs) {
    Rin.assign(static_cast<size_t>(seqs * H * hs), T(0));
    Qin.assign(static_cast<size_t>(seqs * H * ss), T(0));
  }
  int64_t id(int64_t item, int64_t h) const { return item * H + h; }
  T* x(int64_t i) { return X.data() + i * rows; }
  T* u(int64_t i) { return U.data() + i * rows; }
  T* psi(int64_t i) { return Psi.data() + i * hs; }
  T* phi(int64_t i) { return Phi.data() + i * ss; }
  T* sc(int64_t i, int64_t Cp) { return scal.data() + i * (3 * Cp + 2); }  // f | w | qdq | eGl, eGgl
};

// The backward's tiles on top of the forward's.
template <class T>
struct BwdWork : ChunkWork<T> {
  T *dO, *Vt, *dQt, *DKs, *DKr, *DV, *Ka, *Ta, *Tb, *Tc;  // see step_b / step_d
  explicit BwdWork(const Problem& p) : ChunkWork<T>(p) {
    const int64_t Cp = this->d.Cp, Dp = this->d.Dp, Dvp = this->d.Dvp, Wn = std::max(Dp, Dvp);
    dO = this->arena.take(Cp * Dvp);
    Vt = this->arena.take(Dvp * Cp);
    dQt = this->arena.take(Cp * Dp);
    DKs = this->arena.take(Cp * Dp);
    DKr = this->arena.take(Cp * Dp);
    DV = this->arena.take(Cp * Dvp);
    Ka = this->arena.take(Cp * Wn);
    Ta = this->arena.take(Wn * Wn);
    Tb = this->arena.take(Wn * Wn);
    Tc = this->arena.take(std::max(Cp, Wn) * Cp);  // masked C x C tiles and D x C transposes
  }
};

template <class T>
T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Zt[t][s] = sign * S[s][t] * M[s][t] for t <= s < n, 0 for s < t: the reverse-causal (upper) masked
// transpose of a lower-triangular score tile S (ld Cp).
template <class T>
void masked_transpose(const T* S, const T* M, int64_t n, int64_t Cp, T sign, T* Zt) {
  for (int64_t t = 0; t < n; ++t) {
    T* z = Zt + t * Cp;
    std::fill(z, z + t, T(0));
    for (int64_t s = t; s < n; ++s) z[s] = sign * S[s * Cp + t] * M[s * Cp + t];
  }
}

// Step (B) for one chunk of one head.
template <class T>
void step_b(const Problem& p, const ChebyshevPlan& cheb, const BackwardInputs& gin, const Gradients& gout,
            ChunkStates<T>& st, const ChunkPlan& plan, BwdBuffers<T>& bb, BwdWork<T>& w, int64_t item, int64_t h) {
  const ChunkPlan::Item& it = plan.items[item];
  const Sequence& sq = p.seqs[it.seq];
  const Dims<T>& d = w.d;
  const int64_t n = it.n, Dp = d.Dp, Dvp = d.Dvp, Cp = d.Cp, slot = plan.slot(it.seq, it.chunk);
  const T* Hbar = st.h(d, slot, h, p.H);
  const T* Sbar = st.s(d, slot, h, p.H);
  const int64_t id = bb.id(item, h);
  T* sc = bb.sc(id, Cp);
  T *fro = sc, *wl = sc + Cp, *qdq = sc + 2 * Cp;
  const bool solve = p.num_iter > 0;

  w.load(p, sq, it.t0, n, h);
  ChunkOp<T> op = w.op(false);
  op.set_state(Hbar, w.K, true);
  if (gin.fro.defined())
    for (int64_t i = 0; i < n; ++i) fro[i] = load_scalar<T>(gin.fro, sq.batch, it.t0 + i, h, T(0));
  else
    fro_norms(op, w.K, Hbar, w.buf[0], w.P, w.Y, fro);
  if (!solve)
    std::copy(w.Q, w.Q + n * Dp, w.X);
  else if (gin.x.defined())
    tile_load(gin.x, sq.batch, it.t0, n, h, d.D, w.X, Dp, Cp);
  else
    w.solve(p, cheb, op, Hbar, w.Q, fro, w.X);
  std::copy(w.X, w.X + n * Dp, bb.x(id));
  w.mix();

  // dq~ = s [diag(e^Gg) dO S̄ᵀ + ((dO Vᵀ) ⊙ Mg) K]: the chunk operator with operand dO and W = [S̄ᵀ; K].
  tile_load(gin.d_o, sq.batch, it.t0, n, h, d.Dv, w.dO, Dvp, Cp);
  transpose(w.V, Dvp, Cp, Dvp, w.Vt, Cp);
  ChunkOp<T> rop = w.op(true);
  rop.Din = d.Dv;
  rop.Dinp = Dvp;
  rop.Nw = Dp;
  rop.Kt = w.Vt;
  transpose(Sbar, Dvp, Dp, Dvp, w.W, Dp);
  std::copy(w.K, w.K + n * Dp, w.W + Dvp * Dp);
  rop.apply(w.dO, w.dQt);
  const T scale = static_cast<T>(p.scale);
  for (int64_t a = 0; a < n * Dp; ++a) w.dQt[a] *= scale;

  // dalpha, dx = alpha dq~ (into buf[0]), the adjoint solve u, dq = (1 - alpha) dq~ + u.
  T* dx = w.buf[0];
  T* U = bb.u(id);
  for (int64_t i = 0; i < n; ++i) {
    const T a = w.alpha()[i];
    const T* g = w.dQt + i * Dp;
    if (gout.dalpha.defined()) {
      T da = 0;
      for (int64_t c = 0; c < Dp; ++c) da += g[c] * (w.X[i * Dp + c] - w.Q[i * Dp + c]);
      store(gout.dalpha, row_offset(gout.dalpha, sq.batch, it.t0 + i, h), &da, 1);
    }
    for (int64_t c = 0; c < Dp; ++c) dx[i * Dp + c] = a * g[c];
    qdq[i] = dot(w.Qt + i * Dp, g, Dp);
  }
  if (solve) {
    std::copy(dx, dx + n * Dp, w.Ka);  // the solver uses buf[0..2] as scratch
    op.set_state(Hbar, w.K, false);    // Hᵀ u = dx
    w.solve(p, cheb, op, Hbar, w.Ka, fro, U);
  } else {
    std::copy(dx, dx + n * Dp, U);  // x = q exactly: the "solve" is the identity
  }
  for (int64_t i = 0; i < n; ++i) {
    wl[i] = solve && p.lambda_grad && fro[i] > 0
                ? static_cast<T>(p.ridge_ratio) * dot(U + i * Dp, w.X + i * Dp, Dp) / fro[i]
                : T(0);
    const T a = w.alpha()[i];
    for (int64_t c = 0; c < Dp; ++c) w.Ka[i * Dp + c] = (1 - a) * w.dQt[i * Dp + c] + U[i * Dp + c];
  }
  if (gout.dq.defined()) tile_store(gout.dq, sq.batch, it.t0, n, h, d.D, w.Ka, Dp);

  // Σ_s e^{G_s} Ψ_s = -Uᵀ diag(e^G) X - γ H̄ - Kᵀ diag(ρ) K,  c_s = e^{G_s} w_s, γ = Σ c_s e^{G_s},
  // ρ_j = Σ_{s>=j} c_s e^{G_s - G_j}.
  const T* eG = w.vec[1];
  T* Psi = bb.psi(id);
  if (solve) {
    T gamma = 0, rho[256];
    for (int64_t s = n - 1; s >= 0; --s) {
      const T cs = eG[s] * wl[s];
      gamma += cs * eG[s];
      rho[s] = cs + (s + 1 < n ? w.M[(s + 1) * Cp + s] * rho[s + 1] : T(0));
    }
    for (int64_t a = 0; a < Dp * Dp; ++a) Psi[a] = -gamma * Hbar[a];
    transpose(U, Dp, Cp, Dp, w.Tc, Cp);  // Uᵀ, Dp x Cp (U's rows >= n are zero)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < Dp; ++c) {
        w.buf[1][i * Dp + c] = -eG[i] * w.X[i * Dp + c];
        w.buf[2][i * Dp + c] = -rho[i] * w.K[i * Dp + c];
      }
    gemm<T, true>(Dp, Dp, n, w.Tc, Cp, w.buf[1], Dp, Psi, Dp);
    gemm<T, true>(Dp, Dp, n, w.Kt, Cp, w.buf[2], Dp, Psi, Dp);
  } else {
    std::fill(Psi, Psi + Dp * Dp, T(0));
  }
  // Σ_s e^{Gg_s} Φ_s = s Q~ᵀ diag(e^Gg) dO.
  const T* eGg = w.vec[4];
  transpose(w.Qt, Dp, Cp, Dp, w.Tc, Cp);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < Dvp; ++c) w.buf[1][i * Dvp + c] = scale * eGg[i] * w.dO[i * Dvp + c];
  gemm<T>(Dp, Dvp, n, w.Tc, Cp, w.buf[1], Dvp, bb.phi(id), Dvp);
  sc[3 * Cp] = eG[n - 1];
  sc[3 * Cp + 1] = eGg[n - 1];
}

// Step (C): R_{c-1} = e^{G_last} R_c + Σ_c e^{G}Ψ, leaving R_c (Q_c) in the chunk-sum buffers.
template <class T>
void step_c(const Problem& p, const BackwardInputs& gin, const Gradients& gout, const ChunkPlan& plan,
            BwdBuffers<T>& bb, const Dims<T>& d, int64_t s, int64_t h, T* R, T* tmp) {
  const Sequence& sq = p.seqs[s];
  if (sq.state < 0) return;
  for (int pass = 0; pass < 2; ++pass) {
    const int64_t ld = pass == 0 ? d.Dp : d.Dvp, width = pass == 0 ? d.D : d.Dv, size = d.Dp * ld;
    const TensorView& dfin = pass == 0 ? gin.d_final_kk : gin.d_final_kv;
    const TensorView& dinit = pass == 0 ? gout.d_initial_kk : gout.d_initial_kv;
    std::fill(R, R + size, T(0));
    if (dfin.defined())
      for (int64_t a = 0; a < d.D; ++a) load(dfin, row_offset(dfin, sq.state, h, a), R + a * ld, width);
    for (int64_t c = plan.count[s] - 1; c >= 0; --c) {
      const int64_t id = bb.id(plan.first[s] + c, h);
      T* sum = pass == 0 ? bb.psi(id) : bb.phi(id);
      const T decay = bb.sc(id, d.Cp)[3 * d.Cp + pass];
      std::copy(sum, sum + size, tmp);
      std::copy(R, R + size, sum);
      for (int64_t a = 0; a < size; ++a) R[a] = decay * R[a] + tmp[a];
    }
    std::copy(R, R + size, (pass == 0 ? bb.Rin.data() + (s * p.H + h) * size : bb.Qin.data() + (s * p.H + h) * size));
    if (dinit.defined())
      for (int64_t a = 0; a < d.D; ++a) store(dinit, row_offset(dinit, sq.state, h, a), R + a * ld, width);
  }
}

// Step (D) for one chunk of one head: dk, dv, dgk, dg.
template <class T>
void step_d(const Problem& p, const BackwardInputs& gin, const Gradients& gout, ChunkStates<T>& st,
            const ChunkPlan& plan, BwdBuffers<T>& bb, BwdWork<T>& w, int64_t item, int64_t h) {
  const ChunkPlan::Item& it = plan.items[item];
  const Sequence& sq = p.seqs[it.seq];
  const Dims<T>& d = w.d;
  const int64_t n = it.n, Dp = d.Dp, Dvp = d.Dvp, Cp = d.Cp, slot = plan.slot(it.seq, it.chunk);
  const T* Hbar = st.h(d, slot, h, p.H);
  const T* Hnext = st.h(d, slot + 1, h, p.H);
  const T* Snext = st.s(d, slot + 1, h, p.H);
  const int64_t id = bb.id(item, h);
  const T* sc = bb.sc(id, Cp);
  const T *fro = sc, *wl = sc + Cp, *qdq = sc + 2 * Cp;
  const T* U = bb.u(id);
  const T* R = bb.psi(id);
  const T* Qc = bb.phi(id);
  const bool solve = p.num_iter > 0;
  const T scale = static_cast<T>(p.scale);

  w.load(p, sq, it.t0, n, h);
  std::copy(bb.x(id), bb.x(id) + n * Dp, w.X);
  w.mix();
  tile_load(gin.d_o, sq.batch, it.t0, n, h, d.Dv, w.dO, Dvp, Cp);
  transpose(w.V, Dvp, Cp, Dvp, w.Vt, Cp);
  const T *G = w.vec[0], *eG = w.vec[1], *Gg = w.vec[3];
  const T GL = G[n - 1], GgL = Gg[n - 1];
  T* dG = w.vec[8];
  T* dGg = w.vec[9];

  // --- dk of the solve: -((K Xᵀ)⊙M̃) U - ((K Uᵀ)⊙M̃) X - diag(e^G Ŵ) K (H̄+H̄ᵀ) - 2 (N⊙KKᵀ) K
  //     + diag(e^{G_last-G}) K (R_c + R_cᵀ); the N term carries 2 because (H_s + H_sᵀ) holds k_j k_jᵀ twice.
  T* DKs = w.DKs;
  // R part first (also the only part without a solve).
  for (int64_t a = 0; a < Dp; ++a)
    for (int64_t b = 0; b < Dp; ++b) w.Ta[a * Dp + b] = R[a * Dp + b] + R[b * Dp + a];
  for (int64_t i = 0; i < n; ++i) {
    const T e = std::exp(GL - G[i]);
    for (int64_t c = 0; c < Dp; ++c) w.Ka[i * Dp + c] = e * w.K[i * Dp + c];
  }
  gemm<T>(n, Dp, d.D, w.Ka, Dp, w.Ta, Dp, DKs, Dp);
  if (solve) {
    gemm<T>(n, Cp, d.D, w.X, Dp, w.Kt, Cp, w.P, Cp, Tri{-1, true});  // P = X Kᵀ (lower)
    masked_transpose(w.P, w.M, n, Cp, T(-1), w.Tc);
    gemm<T, true>(n, Dp, n, w.Tc, Cp, U, Dp, DKs, Dp, Tri{-1, false, true});
    gemm<T>(n, Cp, d.D, U, Dp, w.Kt, Cp, w.P, Cp, Tri{-1, true});  // U Kᵀ (lower)
    masked_transpose(w.P, w.M, n, Cp, T(-1), w.Tc);
    gemm<T, true>(n, Dp, n, w.Tc, Cp, w.X, Dp, DKs, Dp, Tri{-1, false, true});
    if (p.lambda_grad) {
      // Ŵ_m = Σ_{s>=m} w_s e^{2(G_s - G_m)};  N_tj = M_mt M_mj Ŵ_m with m = max(t, j).
      T What[256];
      for (int64_t m = n - 1; m >= 0; --m) {
        const T e = m + 1 < n ? w.M[(m + 1) * Cp + m] : T(0);
        What[m] = wl[m] + (m + 1 < n ? e * e * What[m + 1] : T(0));
      }
      gemm<T>(n, Cp, d.D, w.K, Dp, w.Kt, Cp, w.P, Cp);  // K Kᵀ
      for (int64_t t = 0; t < n; ++t)
        for (int64_t j = 0; j < n; ++j) {
          const int64_t m = std::max(t, j);
          w.Tc[t * Cp + j] = -2 * w.M[m * Cp + t] * w.M[m * Cp + j] * What[m] * w.P[t * Cp + j];
        }
      gemm<T, true>(n, Dp, n, w.Tc, Cp, w.K, Dp, DKs, Dp);
      for (int64_t a = 0; a < Dp; ++a)
        for (int64_t b = 0; b < Dp; ++b) w.Ta[a * Dp + b] = Hbar[a * Dp + b] + Hbar[b * Dp + a];
      for (int64_t i = 0; i < n; ++i)
        for (int64_t c = 0; c < Dp; ++c) w.Ka[i * Dp + c] = -eG[i] * What[i] * w.K[i * Dp + c];
      gemm<T, true>(n, Dp, d.D, w.Ka, Dp, w.Ta, Dp, DKs, Dp);
    }
  }

  // --- dk of the readout: s ((V dOᵀ)⊙M̃g) Q~ + diag(e^{Gg_last-Gg}) V Q_cᵀ;
  //     dv = s ((K Q~ᵀ)⊙M̃g) dO + diag(e^{Gg_last-Gg}) K Q_c.
  T* DKr = w.DKr;
  T* DV = w.DV;
  gemm<T>(n, Cp, d.Dv, w.dO, Dvp, w.Vt, Cp, w.P, Cp, Tri{-1, true});  // dO Vᵀ (lower)
  masked_transpose(w.P, w.Mg, n, Cp, scale, w.Tc);
  gemm<T>(n, Dp, n, w.Tc, Cp, w.Qt, Dp, DKr, Dp, Tri{-1, false, true});
  transpose(Qc, Dvp, Dp, Dvp, w.Tb, Dp);  // Q_cᵀ, Dvp x Dp
  for (int64_t i = 0; i < n; ++i) {
    const T e = std::exp(GgL - Gg[i]);
    for (int64_t c = 0; c < Dvp; ++c) w.Ka[i * Dvp + c] = e * w.V[i * Dvp + c];
  }
  gemm<T, true>(n, Dp, d.Dv, w.Ka, Dvp, w.Tb, Dp, DKr, Dp);
  gemm<T>(n, Cp, d.D, w.Qt, Dp, w.Kt, Cp, w.P, Cp, Tri{-1, true});  // Q~ Kᵀ (lower)
  masked_transpose(w.P, w.Mg, n, Cp, scale, w.Tc);
  gemm<T>(n, Dvp, n, w.Tc, Cp, w.dO, Dvp, DV, Dvp, Tri{-1, false, true});
  for (int64_t i = 0; i < n; ++i) {
    const T e = std::exp(GgL - Gg[i]);
    for (int64_t c = 0; c < Dp; ++c) w.Ka[i * Dp + c] = e * w.K[i * Dp + c];
  }
  gemm<T, true>(n, Dvp, d.D, w.Ka, Dp, Qc, Dvp, DV, Dvp);

  // --- gates through the chunk-local cumulative sums, then suffix sums.
  T* HX = w.buf[0];
  if (solve) {
    ChunkOp<T> op = w.op(false);
    op.set_state(Hbar, w.K, true);
    op.apply(w.X, HX);
  }
  for (int64_t i = 0; i < n; ++i) {
    const T* k = w.K + i * Dp;
    dG[i] = -T(0.5) * dot(k, DKs + i * Dp, Dp);
    if (solve) dG[i] += -dot(U + i * Dp, HX + i * Dp, Dp) - wl[i] * fro[i] * fro[i];
    dGg[i] = qdq[i] - dot(k, DKr + i * Dp, Dp);
  }
  dG[n - 1] += dot(R, Hnext, Dp * Dp);
  dGg[n - 1] += dot(Qc, Snext, Dp * Dvp);
  for (int64_t i = n - 2; i >= 1; --i) {
    dG[i] += dG[i + 1];
    dGg[i] += dGg[i + 1];
  }
  // Row 0 in closed form: dgk_{t0} = <R_{c-1}, H̄_c> (R_{c-1} = e^{gk_{t0}} Ĥ_{t0}), likewise dg. It equals the
  // suffix sum, but is exactly 0 when the chunk starts from a zero state (the suffix sum would leave rounding).
  const int64_t prev = bb.id(item - 1, h);
  const T* Rp = it.chunk > 0 ? bb.psi(prev) : bb.Rin.data() + (it.seq * p.H + h) * Dp * Dp;
  const T* Qp = it.chunk > 0 ? bb.phi(prev) : bb.Qin.data() + (it.seq * p.H + h) * Dp * Dvp;
  dG[0] = dot(Rp, Hbar, Dp * Dp);
  dGg[0] = dot(Qp, st.s(d, slot, h, p.H), Dp * Dvp);
  for (int64_t i = 0; i < n; ++i) {
    if (gout.dgk.defined()) store(gout.dgk, row_offset(gout.dgk, sq.batch, it.t0 + i, h), &dG[i], 1);
    if (gout.dg.defined()) store(gout.dg, row_offset(gout.dg, sq.batch, it.t0 + i, h), &dGg[i], 1);
  }
  for (int64_t a = 0; a < n * Dp; ++a) DKs[a] += DKr[a];
  if (gout.dk.defined()) tile_store(gout.dk, sq.batch, it.t0, n, h, d.D, DKs, Dp);
  if (gout.dv.defined()) tile_store(gout.dv, sq.batch, it.t0, n, h, d.Dv, DV, Dvp);
}

template <class T>
void backward(const Problem& p, const BackwardInputs& gin, const Gradients& gout) {
  const ChunkPlan plan = chunk_plan(p);
  const Dims<T> d(p);
  ChunkStates<T> st;
  chunk_states_scan(p, plan, st);  // (A)
  const ChebyshevPlan cheb = chebyshev_plan(p.ridge_ratio, p.num_iter);
  const int64_t items = static_cast<int64_t>(plan.items.size());
  BwdBuffers<T> bb(d, items, p.H);
  bb.init_adjoints(p.num_seqs());
  const int nt = thread_count(p);
#pragma omp parallel num_threads(nt)
  {
    BwdWork<T> w(p);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < items * p.H; ++task)  // (B)
      step_b(p, cheb, gin, gout, st, plan, bb, w, task / p.H, task % p.H);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < p.num_seqs() * p.H; ++task)  // (C)
      step_c(p, gin, gout, plan, bb, d, task / p.H, task % p.H, w.Ta, w.Tb);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < items * p.H; ++task)  // (D)
      step_d(p, gin, gout, st, plan, bb, w, task / p.H, task % p.H);
  }
}

}  // namespace

void chunk_backward(const Problem& p, const BackwardInputs& gin, const Gradients& gout) {
  if (p.fp64)
    backward<double>(p, gin, gout);
  else
    backward<float>(p, gin, gout);
}

}  // namespace gka::cpu
