// Invariances of the CPU backend that users rely on (fla/mamba issue trackers): split prefill with
// carried state == one pass (values and gradients), packed varlen == per-sequence loop, decode
// continuation == prefill, state-pool decode == per-request decode, chunk size and thread count
// independence.
#include <gtest/gtest.h>

#include "support/cases.h"
#include "support/metrics.h"
#include "support/tolerance.h"

namespace gka::test {
namespace {

Case base_case() {
  Case c;
  c.name = "inv";
  c.B = 2;
  c.T = 150;
  c.H = 2;
  c.D = 24;
  c.Dv = 20;
  c.gates = "untied";
  c.h0 = true;
  return c;
}

// The inputs of tokens [t0, t1), starting from the given states.
CaseInputs part(const CaseInputs& in, int64_t t0, int64_t t1, const Tensor& kk, const Tensor& kv) {
  CaseInputs p;
  for (auto [dst, src] : {std::pair{&p.q, &in.q}, {&p.k, &in.k}, {&p.v, &in.v}, {&p.alpha, &in.alpha},
                          {&p.g, &in.g}, {&p.gk, &in.gk}})
    if (src->defined()) *dst = src->slice(1, t0, t1);
  p.h0_kk = kk;
  p.h0_kv = kv;
  return p;
}

void expect_close(const Tensor& a, const Tensor& b, double tol, const char* what) {
  ASSERT_EQ(nonfinite_count(a), 0) << what;
  EXPECT_LE(rel_err(a, b), tol) << what;
}

TEST(Invariance, SplitPrefillEqualsOnePass) {
  const Case c = base_case();
  const CaseInputs in = inputs_make(c, 11);
  const BackwardSeeds seeds = seeds_make(c, 12);
  const ForwardResult full = forward_run(c, in, Backend::cpu);
  const BackwardResult gfull = backward_run(c, in, seeds, Backend::cpu);

  for (int64_t t1 : {1, 64, 97}) {
    Case c1 = c, c2 = c;
    c1.T = t1;
    c2.T = c.T - t1;
    const CaseInputs in1 = part(in, 0, t1, in.h0_kk, in.h0_kv);
    const ForwardResult r1 = forward_run(c1, in1, Backend::cpu);
    const CaseInputs in2 = part(in, t1, c.T, r1.final_kk, r1.final_kv);
    const ForwardResult r2 = forward_run(c2, in2, Backend::cpu);
    const double tol = tol_forward(false, c.ridge_ratio);
    expect_close(Tensor::concat(r1.o, r2.o, 1), full.o, tol, "o");
    expect_close(r2.final_kk, full.final_kk, tol, "final_kk");
    expect_close(r2.final_kv, full.final_kv, tol, "final_kv");

    // Backward chained through the states: the second part's d_initial is the first part's d_final.
    const BackwardSeeds s2{seeds.d_o.slice(1, t1, c.T), seeds.d_final_kk, seeds.d_final_kv};
    const BackwardResult g2 = backward_run(c2, in2, s2, Backend::cpu);
    const BackwardSeeds s1{seeds.d_o.slice(1, 0, t1), g2.dh0_kk, g2.dh0_kv};
    const BackwardResult g1 = backward_run(c1, in1, s1, Backend::cpu);
    const double gtol = tol_gradient(DType::f32, false, c.ridge_ratio);
    expect_close(Tensor::concat(g1.dq, g2.dq, 1), gfull.dq, gtol, "dq");
    expect_close(Tensor::concat(g1.dk, g2.dk, 1), gfull.dk, gtol, "dk");
    expect_close(Tensor::concat(g1.dv, g2.dv, 1), gfull.dv, gtol, "dv");
    expect_close(Tensor::concat(g1.dg, g2.dg, 1), gfull.dg, gtol, "dg");
    expect_close(Tensor::concat(g1.dgk, g2.dgk, 1), gfull.dgk, gtol, "dgk");
    expect_close(Tensor::concat(g1.dalpha, g2.dalpha, 1), gfull.dalpha, gtol, "dalpha");
    expect_close(g1.dh0_kk, gfull.dh0_kk, gtol, "d_initial_kk");
    expect_close(g1.dh0_kv, gfull.dh0_kv, gtol, "d_initial_kv");
  }
}

TEST(Invariance, VarlenEqualsPerSequenceLoop) {
  Case c = base_case();
  c.varlen = {5, 0, 64, 81, 1};
  c.B = 1;
  c.T = 151;
  const CaseInputs in = inputs_make(c, 13);
  const BackwardSeeds seeds = seeds_make(c, 14);
  const ForwardResult packed = forward_run(c, in, Backend::cpu);
  const BackwardResult gpacked = backward_run(c, in, seeds, Backend::cpu);
  const double tol = tol_forward(false, c.ridge_ratio);
  const double gtol = tol_gradient(DType::f32, false, c.ridge_ratio);
  int64_t t0 = 0;
  for (size_t i = 0; i < c.varlen.size(); ++i) {
    const int64_t n = c.varlen[i], t1 = t0 + n;
    const int64_t s = static_cast<int64_t>(i);
    if (n == 0) {  // an empty sequence passes its state (and its state gradient) through unchanged
      EXPECT_EQ(packed.final_kk.slice(0, s, s + 1).to_f64(), in.h0_kk.slice(0, s, s + 1).to_f64());
      EXPECT_EQ(gpacked.dh0_kv.slice(0, s, s + 1).to_f64(), seeds.d_final_kv.slice(0, s, s + 1).to_f64());
      continue;
    }
    Case ci = c;
    ci.varlen.clear();
    ci.T = n;
    const CaseInputs one = part(in, t0, t1, in.h0_kk.slice(0, s, s + 1), in.h0_kv.slice(0, s, s + 1));
    const ForwardResult r = forward_run(ci, one, Backend::cpu);
    expect_close(packed.o.slice(1, t0, t1), r.o, tol, "o");
    expect_close(packed.final_kk.slice(0, s, s + 1), r.final_kk, tol, "final_kk");
    expect_close(packed.final_kv.slice(0, s, s + 1), r.final_kv, tol, "final_kv");
    const BackwardSeeds si{seeds.d_o.slice(1, t0, t1), seeds.d_final_kk.slice(0, s, s + 1),
                           seeds.d_final_kv.slice(0, s, s + 1)};
    const BackwardResult g = backward_run(ci, one, si, Backend::cpu);
    expect_close(gpacked.dq.slice(1, t0, t1), g.dq, gtol, "dq");
    expect_close(gpacked.dk.slice(1, t0, t1), g.dk, gtol, "dk");
    expect_close(gpacked.dgk.slice(1, t0, t1), g.dgk, gtol, "dgk");
    expect_close(gpacked.dh0_kk.slice(0, s, s + 1), g.dh0_kk, gtol, "d_initial_kk");
    t0 = t1;
  }
}

TEST(Invariance, DecodeContinuesPrefill) {
  Case c = base_case();
  c.T = 75;
  const CaseInputs in = inputs_make(c, 15);
  const ForwardResult full = forward_run(c, in, Backend::cpu);
  const int64_t t_prefill = 67;
  Case cp = c;
  cp.T = t_prefill;
  const ForwardResult pre = forward_run(cp, part(in, 0, t_prefill, in.h0_kk, in.h0_kv), Backend::cpu);
  Tensor kk = pre.final_kk, kv = pre.final_kv, o = pre.o;
  for (int64_t t = t_prefill; t < c.T; t += 3) {  // decode in steps of up to 3 tokens, states updated in place
    const int64_t t1 = std::min(c.T, t + 3);
    const CaseInputs step = part(in, t, t1, kk, kv);
    Tensor o_step(DType::f32, {c.B, t1 - t, c.H, c.dv()});
    o_step.fill_nan();
    ForwardOutputs out;
    out.o = o_step.view();
    out.final_kk = step.h0_kk.view();  // aliases the initial state: in-place decode
    out.final_kv = step.h0_kv.view();
    recurrent_forward(step.view(), out, c.options(Backend::cpu));
    kk = step.h0_kk;
    kv = step.h0_kv;
    o = Tensor::concat(o, o_step, 1);
  }
  const double tol = tol_forward(false, c.ridge_ratio);
  expect_close(o, full.o, tol, "o");
  expect_close(kk, full.final_kk, tol, "final_kk");
  expect_close(kv, full.final_kv, tol, "final_kv");
}

TEST(Invariance, PoolDecodeEqualsPerRequestDecode) {
  Case c = base_case();
  c.B = 3;
  c.T = 2;
  c.h0 = false;
  const CaseInputs in = inputs_make(c, 16);
  std::mt19937_64 rng(17);
  const int64_t P = 5;
  const Tensor pool_kk0 = Tensor::randn(DType::f32, {P, c.H, c.D, c.D}, rng, 0.1);
  const Tensor pool_kv0 = Tensor::randn(DType::f32, {P, c.H, c.D, c.dv()}, rng, 0.1);
  const std::vector<double> slot_ids = {4, -1, 0};
  Tensor pool_kk = pool_kk0, pool_kv = pool_kv0;
  Tensor slots = Tensor::from_f64(slot_ids, DType::i32, {3});
  Tensor o(DType::f32, {c.B, c.T, c.H, c.dv()});
  o.fill_nan();
  decode_pool_step(in.view(), {pool_kk.view(), pool_kv.view(), slots.view()}, o.view(), c.options(Backend::cpu));

  const double tol = tol_forward(false, c.ridge_ratio);
  for (int64_t b = 0; b < c.B; ++b) {
    const int64_t s = static_cast<int64_t>(slot_ids[static_cast<size_t>(b)]);
    if (s < 0) {  // a padded row: zero output
      for (double x : o.slice(0, b, b + 1).to_f64()) EXPECT_EQ(x, 0.0);
      continue;
    }
    Case cb = c;
    cb.B = 1;
    CaseInputs one = part(in, 0, c.T, pool_kk0.slice(0, s, s + 1), pool_kv0.slice(0, s, s + 1));
    for (Tensor* t : {&one.q, &one.k, &one.v, &one.alpha, &one.g, &one.gk})
      if (t->defined()) *t = t->slice(0, b, b + 1);
    const ForwardResult r = forward_run(cb, one, Backend::cpu, /*recurrent=*/true);
    expect_close(o.slice(0, b, b + 1), r.o, tol, "o");
    expect_close(pool_kk.slice(0, s, s + 1), r.final_kk, tol, "pool kk");
    expect_close(pool_kv.slice(0, s, s + 1), r.final_kv, tol, "pool kv");
  }
  for (int64_t s : {1, 2, 3})  // untouched slots stay bitwise equal
    EXPECT_EQ(pool_kk.slice(0, s, s + 1).to_f64(), pool_kk0.slice(0, s, s + 1).to_f64());
}

TEST(Invariance, ChunkSizeIndependent) {
  Case c = base_case();
  const CaseInputs in = inputs_make(c, 18);
  const BackwardSeeds seeds = seeds_make(c, 19);
  Case c32 = c;
  c32.chunk_size = 32;
  const ForwardResult a = forward_run(c, in, Backend::cpu), b = forward_run(c32, in, Backend::cpu);
  const double tol = tol_forward(false, c.ridge_ratio);
  expect_close(b.o, a.o, tol, "o");
  expect_close(b.final_kk, a.final_kk, tol, "final_kk");
  const BackwardResult ga = backward_run(c, in, seeds, Backend::cpu), gb = backward_run(c32, in, seeds, Backend::cpu);
  const double gtol = tol_gradient(DType::f32, false, c.ridge_ratio);
  expect_close(gb.dk, ga.dk, gtol, "dk");
  expect_close(gb.dgk, ga.dgk, gtol, "dgk");
  expect_close(gb.dh0_kk, ga.dh0_kk, gtol, "d_initial_kk");
}

TEST(Invariance, ThreadCountIndependentBitwise) {
  const Case c = base_case();
  const CaseInputs in = inputs_make(c, 20);
  const BackwardSeeds seeds = seeds_make(c, 21);
  ForwardResult r[2];
  BackwardResult g[2];
  for (int i = 0; i < 2; ++i) {
    Options o = c.options(Backend::cpu);
    o.num_threads = i + 1;
    r[i].o = Tensor(DType::f32, {c.B, c.T, c.H, c.dv()});
    ForwardOutputs out;
    out.o = r[i].o.view();
    chunk_forward(in.view(), out, o);
    g[i].dk = Tensor(DType::f32, in.k.sizes());
    Gradients grads;
    grads.dk = g[i].dk.view();
    BackwardInputs gin;
    gin.d_o = seeds.d_o.view();
    chunk_backward(in.view(), gin, grads, o);
  }
  EXPECT_EQ(r[0].o.to_f64(), r[1].o.to_f64());
  EXPECT_EQ(g[0].dk.to_f64(), g[1].dk.to_f64());
}

}  // namespace
}  // namespace gka::test

namespace gka::test {
namespace {

// Views with row strides of a larger buffer (e.g. q, k, v sliced out of one fused projection) give the
// same result as contiguous tensors.
TEST(Invariance, StridedViewsEqualContiguous) {
  Case c;
  c.name = "strided";
  c.B = 2;
  c.T = 70;
  c.H = 2;
  c.D = 16;
  const CaseInputs in = inputs_make(c, 22);
  const ForwardResult dense = forward_run(c, in, Backend::cpu);
  // Pack q | k | v into one [B, T, H, 3D] buffer and view each third.
  const Tensor qkv = Tensor::concat(Tensor::concat(in.q, in.k, 3), in.v, 3);
  Inputs strided = in.view();
  for (int i = 0; i < 3; ++i) {
    TensorView v = qkv.view();
    v.sizes[3] = c.D;
    v.data = static_cast<float*>(v.data) + i * c.D;
    (i == 0 ? strided.q : i == 1 ? strided.k : strided.v) = v;
  }
  Tensor o(DType::f32, {c.B, c.T, c.H, c.D});
  o.fill_nan();
  ForwardOutputs out;
  out.o = o.view();
  chunk_forward(strided, out, c.options(Backend::cpu));
  EXPECT_EQ(o.to_f64(), dense.o.to_f64());
}

}  // namespace
}  // namespace gka::test
