// The fp64 oracle backward: the implicit gradient of spec §C.3 walked token by token in reverse, with the
// two additions of docs/algorithm.md: the full dL/dH_0 = a_1 H^_1 (lambda path and incoming dL/dH_T
// included) and the incoming final-state gradients seeding the adjoints (H^_T = Psi_T + dH_T,
// S^_T = Phi_T + dS_T).
//
// States: a forward re-run keeps H, S only every kSegment tokens; each segment's per-token states are
// recomputed when the reverse walk reaches it (memory O(kSegment D^2) plus the checkpoints).
// Solves: x_t and f_t are always recomputed from the recomputed H_t (gin.x / gin.fro are ignored), so the
// oracle's gradient is a function of the inputs alone, whatever another backend saved.
#include <omp.h>

#include <algorithm>

#include "backends.h"
#include "reference/recurrence.h"

namespace gka::reference {
namespace {

constexpr int64_t kSegment = 64;

// Adjoints flowing backwards: before token t is processed they hold a_{t+1} H^_{t+1} and b_{t+1} S^_{t+1}
// (at t = T: the incoming dL/dH_T, dL/dS_T); after token 1 they are dL/dH_0, dL/dS_0.
struct Adjoints {
  Mat kk, kv;
};

// States of one head of one sequence: entry j is the state after j tokens of the range it was built for.
struct StateRun {
  std::vector<Mat> kk, kv;
};

// States at tokens 0, kSegment, 2 kSegment, ... (before the token of that index).
StateRun checkpoints_make(const Problem& p, const Sequence& s, int64_t h) {
  StateRun ck;
  Mat H = state_load(p.in.initial_kk, s.state, h, p.D, p.D);
  Mat S = state_load(p.in.initial_kv, s.state, h, p.D, p.Dv);
  for (int64_t i = 0; i < s.length; ++i) {
    if (i % kSegment == 0) {
      ck.kk.push_back(H);
      ck.kv.push_back(S);
    }
    states_advance(H, S, token_load(p, s, h, i));
  }
  return ck;
}

// States before and after every token of [begin, end), starting from the checkpoint at `begin`.
StateRun segment_states(const Problem& p, const Sequence& s, int64_t h, const StateRun& ck, int64_t begin,
                        int64_t end) {
  StateRun run;
  Mat H = ck.kk[static_cast<size_t>(begin / kSegment)];
  Mat S = ck.kv[static_cast<size_t>(begin / kSegment)];
  run.kk.push_back(H);
  run.kv.push_back(S);
  for (int64_t i = begin; i < end; ++i) {
    states_advance(H, S, token_load(p, s, h, i));
    run.kk.push_back(H);
    run.kv.push_back(S);
  }
  return run;
}

Vec scaled(Vec x, double c) {
  for (double& e : x) e *= c;
  return x;
}

// One reverse step at token `tok` with H_{t-1}, H_t, S_{t-1}, S_t; writes the token's gradients and moves
// the adjoints from a_{t+1} H^_{t+1} to a_t H^_t (same for S).
void token_backward(const Problem& p, const ChebyshevPlan& plan, const BackwardInputs& gin, const Gradients& gout,
                    const Token& tok, int64_t h, const Mat& H_prev, const Mat& H, const Mat& S_prev, const Mat& S,
                    Adjoints& adj) {
  const Vec d_o = row_load(gin.d_o, tok.b, tok.t, h, p.Dv);
  const Vec dq_mixed = scaled(matvec(S, d_o), p.scale);  // dL/dq~ = s S_t do_t
  Mat H_hat = adj.kk;                                   // H^_t = Psi_t + a_{t+1} H^_{t+1}
  Vec q_mixed = tok.q, dq = dq_mixed;
  double dalpha = 0.0;
  if (p.num_iter > 0) {
    const double f = fro_norm(H);
    const Vec x = ridge_solve(p, plan, H, f, tok.q);
    q_mixed = query_mix(tok, x);
    Vec x_minus_q = x;
    for (size_t i = 0; i < x.size(); ++i) x_minus_q[i] -= tok.q[i];
    dalpha = dot(dq_mixed, x_minus_q);
    const Vec u = ridge_solve(p, plan, H, f, scaled(dq_mixed, tok.alpha));  // adjoint solve of dx = alpha dq~
    // Psi_t = -u x^T - w H_t: the lambda path w = r <u, x> / f comes from lambda_t = r ||H_t||_F.
    const double w = p.lambda_grad && f > 0 ? p.ridge_ratio * dot(u, x) / f : 0.0;
    add_outer(H_hat, -1.0, u, x);
    add_scaled(H_hat, -w, H);
    for (size_t i = 0; i < dq.size(); ++i) dq[i] = (1.0 - tok.alpha) * dq_mixed[i] + u[i];
  }
  Mat S_hat = adj.kv;  // S^_t = Phi_t + b_{t+1} S^_{t+1}, Phi_t = s q~_t do_t^T
  add_outer(S_hat, p.scale, q_mixed, d_o);

  Vec dk = matvec(H_hat, tok.k);
  const Vec dk_t = matvec_t(H_hat, tok.k), dk_read = matvec(S_hat, tok.v);
  for (size_t i = 0; i < dk.size(); ++i) dk[i] += dk_t[i] + dk_read[i];
  row_store(gout.dq, tok.b, tok.t, h, dq);
  row_store(gout.dk, tok.b, tok.t, h, dk);
  row_store(gout.dv, tok.b, tok.t, h, matvec_t(S_hat, tok.k));
  scalar_store(gout.dalpha, tok.b, tok.t, h, dalpha);
  // d/dgk_t of e^{gk_t} H_{t-1} is e^{gk_t} H_{t-1}; same for g and S.
  scalar_store(gout.dgk, tok.b, tok.t, h, tok.decay_kk * inner(H_hat, H_prev));
  scalar_store(gout.dg, tok.b, tok.t, h, tok.decay_kv * inner(S_hat, S_prev));

  scale_in_place(H_hat, tok.decay_kk);
  scale_in_place(S_hat, tok.decay_kv);
  adj.kk = std::move(H_hat);
  adj.kv = std::move(S_hat);
}

void sequence_backward(const Problem& p, const ChebyshevPlan& plan, const BackwardInputs& gin,
                       const Gradients& gout, const Sequence& s, int64_t h) {
  const StateRun ck = checkpoints_make(p, s, h);
  Adjoints adj{state_load(gin.d_final_kk, s.state, h, p.D, p.D), state_load(gin.d_final_kv, s.state, h, p.D, p.Dv)};
  const int64_t segments = (s.length + kSegment - 1) / kSegment;
  for (int64_t seg = segments - 1; seg >= 0; --seg) {
    const int64_t begin = seg * kSegment, end = std::min(s.length, begin + kSegment);
    const StateRun run = segment_states(p, s, h, ck, begin, end);
    for (int64_t i = end - 1; i >= begin; --i) {
      const size_t j = static_cast<size_t>(i - begin);
      token_backward(p, plan, gin, gout, token_load(p, s, h, i), h, run.kk[j], run.kk[j + 1], run.kv[j],
                     run.kv[j + 1], adj);
    }
  }
  state_store(gout.d_initial_kk, s.state, h, adj.kk);  // length 0: the final-state gradient passes through
  state_store(gout.d_initial_kv, s.state, h, adj.kv);
}

// A skipped sequence (state < 0) takes no part in the loss: zero gradients.
void sequence_zero_gradients(const Problem& p, const Gradients& gout, const Sequence& s, int64_t h) {
  const Vec zero_k = zeros(p.D), zero_v = zeros(p.Dv);
  for (int64_t i = 0; i < s.length; ++i) {
    const int64_t t = s.start + i;
    row_store(gout.dq, s.batch, t, h, zero_k);
    row_store(gout.dk, s.batch, t, h, zero_k);
    row_store(gout.dv, s.batch, t, h, zero_v);
    for (const TensorView* g : {&gout.dalpha, &gout.dg, &gout.dgk}) scalar_store(*g, s.batch, t, h, 0.0);
  }
}

}  // namespace

void backward(const Problem& p, const BackwardInputs& gin, const Gradients& gout) {
  const ChebyshevPlan plan = chebyshev_plan(p.ridge_ratio, p.num_iter);
  const int64_t jobs = p.num_seqs() * p.H;
  const int threads = p.num_threads > 0 ? p.num_threads : omp_get_max_threads();
  // One thread per (sequence, head) from start to end: results do not depend on the thread count.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t job = 0; job < jobs; ++job) {
    const Sequence& s = p.seqs[static_cast<size_t>(job / p.H)];
    const int64_t h = job % p.H;
    if (s.state < 0)
      sequence_zero_gradients(p, gout, s, h);
    else
      sequence_backward(p, plan, gin, gout, s, h);
  }
}

}  // namespace gka::reference
