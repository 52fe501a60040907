// The fp64 oracle forward: the token-by-token recurrence of spec §A.4 for every (sequence, head),
// with any of the three solvers. Also serves recurrent_forward and decode_pool_step of the reference.
#include <omp.h>

#include "backends.h"
#include "reference/recurrence.h"

namespace gka::reference {
namespace {

// Pool padding (state < 0): zero outputs, states untouched.
void sequence_skip(const Problem& p, const ForwardOutputs& out, const Sequence& s, int64_t h) {
  const Vec zero_v = zeros(p.Dv), zero_k = zeros(p.D);
  for (int64_t i = 0; i < s.length; ++i) {
    const int64_t t = s.start + i;
    row_store(out.o, s.batch, t, h, zero_v);
    row_store(out.x, s.batch, t, h, zero_k);
    scalar_store(out.fro, s.batch, t, h, 0.0);
    scalar_store(out.residual, s.batch, t, h, 0.0);
  }
}

void sequence_forward(const Problem& p, const ChebyshevPlan& plan, const ForwardOutputs& out, const Sequence& s,
                      int64_t h) {
  // Both initial states are read in full before anything is written: final_* may alias initial_*.
  Mat H = state_load(p.in.initial_kk, s.state, h, p.D, p.D);
  Mat S = state_load(p.in.initial_kv, s.state, h, p.D, p.Dv);
  for (int64_t i = 0; i < s.length; ++i) {
    const Token tok = token_load(p, s, h, i);
    states_advance(H, S, tok);
    const double f = fro_norm(H);
    // num_iter == 0: no solve, q~ = q; x is reported as q so a saved x is never garbage.
    const Vec x = p.num_iter > 0 ? ridge_solve(p, plan, H, f, tok.q) : tok.q;
    const Vec q_mixed = p.num_iter > 0 ? query_mix(tok, x) : tok.q;
    Vec o = matvec_t(S, q_mixed);
    for (double& e : o) e *= p.scale;
    row_store(out.o, tok.b, tok.t, h, o);
    row_store(out.x, tok.b, tok.t, h, x);
    scalar_store(out.fro, tok.b, tok.t, h, f);
    if (out.residual.defined())
      scalar_store(out.residual, tok.b, tok.t, h, relative_residual(H, p.ridge_ratio * f, x, tok.q));
  }
  state_store(out.final_kk, s.state, h, H);
  state_store(out.final_kv, s.state, h, S);
}

}  // namespace

void forward(const Problem& p, const ForwardOutputs& out) {
  const ChebyshevPlan plan = chebyshev_plan(p.ridge_ratio, p.num_iter);
  const int64_t jobs = p.num_seqs() * p.H;
  const int threads = p.num_threads > 0 ? p.num_threads : omp_get_max_threads();
  // Each (sequence, head) is independent and computed start to end by one thread: results do not
  // depend on the thread count.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t job = 0; job < jobs; ++job) {
    const Sequence& s = p.seqs[static_cast<size_t>(job / p.H)];
    const int64_t h = job % p.H;
    if (s.state < 0)
      sequence_skip(p, out, s, h);
    else
      sequence_forward(p, plan, out, s, h);
  }
}

}  // namespace gka::reference
