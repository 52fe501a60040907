// Forward scan of the chunk-start states (docs/algorithm.md, forward step 1).
#include "cpu/chunk_states.h"

namespace gka::cpu {

template <class T>
void chunk_states_scan(const Problem& p, const ChunkPlan& plan, ChunkStates<T>& st) {
  const Dims<T> d(p);
  st.H.assign(static_cast<size_t>(plan.slots * p.H * d.hsize()), T(0));
  st.S.assign(static_cast<size_t>(plan.slots * p.H * d.ssize()), T(0));
  const int64_t tasks = p.num_seqs() * p.H;
#pragma omp parallel num_threads(thread_count(p))
  {
    Arena<T> ar;
    T* K = ar.take(d.Cp * d.Dp);
    T* Kt = ar.take(d.Dp * d.Cp);
    T* V = ar.take(d.Cp * d.Dvp);
    T* Kd = ar.take(d.Cp * std::max(d.Dp, d.Dvp));
    T* G = ar.take(d.Cp);
    T* e = ar.take(d.Cp);
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t s = task / p.H, h = task % p.H;
      const Sequence& sq = p.seqs[s];
      if (sq.state < 0) continue;
      T* H0 = st.h(d, plan.slot(s, 0), h, p.H);
      T* S0 = st.s(d, plan.slot(s, 0), h, p.H);
      if (p.in.initial_kk.defined())
        for (int64_t a = 0; a < d.D; ++a)
          load(p.in.initial_kk, row_offset(p.in.initial_kk, sq.state, h, a), H0 + a * d.Dp, d.D);
      if (p.in.initial_kv.defined())
        for (int64_t a = 0; a < d.D; ++a)
          load(p.in.initial_kv, row_offset(p.in.initial_kv, sq.state, h, a), S0 + a * d.Dvp, d.Dv);
      for (int64_t c = 0; c < plan.count[s]; ++c) {
        const ChunkPlan::Item& it = plan.items[plan.first[s] + c];
        const int64_t n = it.n;
        tile_load(p.in.k, sq.batch, it.t0, n, h, d.D, K, d.Dp, d.Cp);
        tile_load(p.in.v, sq.batch, it.t0, n, h, d.Dv, V, d.Dvp, d.Cp);
        transpose(K, d.Dp, d.Cp, d.Dp, Kt, d.Cp);  // all Cp rows: pad columns of Kᵀ become 0
        const T* Hc = st.h(d, plan.slot(s, c), h, p.H);
        const T* Sc = st.s(d, plan.slot(s, c), h, p.H);
        T* Hn = st.h(d, plan.slot(s, c + 1), h, p.H);
        T* Sn = st.s(d, plan.slot(s, c + 1), h, p.H);
        // Gram state with gk, value state with g.
        for (int pass = 0; pass < 2; ++pass) {
          const TensorView& gate = pass == 0 ? p.in.gk : p.in.g;
          T acc = 0;
          for (int64_t i = 0; i < n; ++i) G[i] = acc += load_scalar<T>(gate, sq.batch, it.t0 + i, h, T(0));
          const T last = G[n - 1];
          for (int64_t i = 0; i < n; ++i) e[i] = std::exp(last - G[i]);
          const int64_t w = pass == 0 ? d.Dp : d.Dvp;
          const T* src = pass == 0 ? K : V;
          for (int64_t i = 0; i < n; ++i)
            for (int64_t a = 0; a < w; ++a) Kd[i * w + a] = e[i] * src[i * w + a];
          const T decay = std::exp(last);
          const T* prev = pass == 0 ? Hc : Sc;
          T* next = pass == 0 ? Hn : Sn;
          for (int64_t a = 0; a < d.Dp * w; ++a) next[a] = decay * prev[a];
          gemm<T, true>(d.Dp, w, n, Kt, d.Cp, Kd, w, next, w);
        }
      }
    }
  }
}

template <class T>
void chunk_states_store(const Problem& p, const ChunkPlan& plan, ChunkStates<T>& st, const TensorView& final_kk,
                        const TensorView& final_kv) {
  const Dims<T> d(p);
  for (int64_t s = 0; s < p.num_seqs(); ++s) {
    const int64_t state = p.seqs[s].state;
    if (state < 0) continue;
    for (int64_t h = 0; h < p.H; ++h) {
      const T* Hf = st.h(d, plan.slot(s, plan.count[s]), h, p.H);
      const T* Sf = st.s(d, plan.slot(s, plan.count[s]), h, p.H);
      if (final_kk.defined())
        for (int64_t a = 0; a < d.D; ++a) store(final_kk, row_offset(final_kk, state, h, a), Hf + a * d.Dp, d.D);
      if (final_kv.defined())
        for (int64_t a = 0; a < d.D; ++a) store(final_kv, row_offset(final_kv, state, h, a), Sf + a * d.Dvp, d.Dv);
    }
  }
}

template void chunk_states_scan<float>(const Problem&, const ChunkPlan&, ChunkStates<float>&);
template void chunk_states_scan<double>(const Problem&, const ChunkPlan&, ChunkStates<double>&);
template void chunk_states_store<float>(const Problem&, const ChunkPlan&, ChunkStates<float>&, const TensorView&,
                                        const TensorView&);
template void chunk_states_store<double>(const Problem&, const ChunkPlan&, ChunkStates<double>&, const TensorView&,
                                         const TensorView&);

}  // namespace gka::cpu
