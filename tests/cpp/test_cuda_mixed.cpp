// The CUDA backend's accuracy on the layer-like target (fp32 and mixed precision) and the mixed precision's
// kernels on awkward shapes, iteration counts, scales far from one, and the residual output, against the fp64
// oracle. Skipped when no GPU is visible (support/cuda_run.h runs the backend).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "support/cases.h"
#include "support/cuda_run.h"
#include "support/expect_close.h"
#include "support/metrics.h"
#include "support/tolerance.h"

namespace gka::test {
namespace {

// The accuracy target: bf16 inputs, layer-like gates, H = 16, D = 128, T = 1024: o within 0.5 % and
// gradients within 1 % of the fp64 oracle — with every product at fp32 accuracy, and with Precision::mixed
// (cheaper leading iterations), which must also differ from fp32 (else the option did nothing).
class CudaAccuracy : public ::testing::TestWithParam<Precision> {};
const char* precision_name(Precision p) { return p == Precision::mixed ? "mixed" : "fp32"; }
}  // namespace
void PrintTo(Precision p, std::ostream* os) { *os << precision_name(p); }  // GoogleTest's parameter printer
namespace {

TEST_P(CudaAccuracy, Bf16LayerLike) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Precision prec = GetParam();
  const char* tag = precision_name(prec);
  Case c;
  c.name = "bf16_layer";
  c.B = 1;
  c.T = 1024;
  c.H = 16;
  c.D = 128;
  c.gate_strength = "strong";
  c.dtype = "bf16";
  const CaseInputs in = inputs_make(c, 77);
  const ForwardResult got = cuda_forward(c, in, false, prec);
  const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
  const double err_o = rel_err(got.o, ref.o), err_x = rel_err(got.x, ref.x);
  std::printf("bf16 layer-like H=16 D=128 T=1024, precision %s: o rel err %.3e, x rel err %.3e\n", tag, err_o, err_x);
  EXPECT_LE(err_o, 5e-3);
  if (prec == Precision::mixed) {
    const ForwardResult full = cuda_forward(c, in, false, Precision::fp32);
    EXPECT_GT(rel_err(got.x, full.x), 0.0) << "precision mixed gave the fp32 result";
    EXPECT_LE(err_x, 1e-3);
  }
  const BackwardSeeds seeds = seeds_make(c, 7);
  const BackwardResult g = cuda_backward(c, in, seeds, prec, &got);  // from the saved x and norms, as the torch op
  const BackwardSeeds s64 = seeds_to_f64(seeds);
  const BackwardResult gr = backward_run(case_in_f64(c), inputs_to_f64(in), s64, Backend::reference);
  const std::pair<const Tensor*, const Tensor*> pairs[] = {{&g.dq, &gr.dq}, {&g.dk, &gr.dk}, {&g.dv, &gr.dv},
                                                           {&g.dalpha, &gr.dalpha}, {&g.dg, &gr.dg}, {&g.dh0_kk, &gr.dh0_kk}};
  const char* names[] = {"dq", "dk", "dv", "dalpha", "dg", "dh0_kk"};
  for (int i = 0; i < 6; ++i) {
    if (!pairs[i].first->defined()) continue;
    const double e = rel_err(*pairs[i].first, *pairs[i].second);
    std::printf("  %s rel err %.3e\n", names[i], e);
    EXPECT_LE(e, 1e-2) << names[i];
  }
}

// Precision::mixed on awkward shapes (one token, chunk tails, initial states, both head dims): its one-term
// iterations (scaled f16 on wgmma, sm_90a; tf32 on mma.sync with GKA_CUDA_WGMMA=0) are damped by accurate ones (on
// wgmma one, whose residual the offset form keeps; on mma.sync the last ten), so x, o and the gradients land within
// 3e-3 of the fp64 oracle; a wrong product anywhere on either path leaves the solve far from converged (errors of
// order 1).
// The awkward shapes of the mixed tests: two sequences of T tokens, two heads of dim D, initial states, untied gates.
Case mixed_awkward_case(int64_t D, int64_t T, const char* dtype) {
  Case c;
  c.name = std::string("mixed_") + dtype;
  c.dtype = dtype;
  c.B = 2;
  c.T = T;
  c.H = 2;
  c.D = D;
  c.h0 = true;
  c.gates = "untied";
  return c;
}

TEST(CudaMixed, AwkwardShapesMatchOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128})
    for (const int64_t T : {1, 65, 130}) {
      const Case c = mixed_awkward_case(D, T, "f32");
      const std::string at = "D=" + std::to_string(D) + " T=" + std::to_string(T) + ": ";
      const CaseInputs in = inputs_make(c, 31 + T);
      const ForwardResult got = cuda_forward(c, in, false, Precision::mixed);
      const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
      expect_close(got.x, ref.x, 3e-3, (at + "x").c_str());
      expect_close(got.o, ref.o, 3e-3, (at + "o").c_str());
      const BackwardSeeds seeds = seeds_make(c, 5);
      const BackwardResult g = cuda_backward(c, in, seeds, Precision::mixed);
      const BackwardSeeds s64 = seeds_to_f64(seeds);
      const BackwardResult gr = backward_run(case_in_f64(c), inputs_to_f64(in), s64, Backend::reference);
      expect_close(g.dq, gr.dq, 3e-3, (at + "dq").c_str());
      expect_close(g.dk, gr.dk, 3e-3, (at + "dk").c_str());
      expect_close(g.dv, gr.dv, 3e-3, (at + "dv").c_str());
      expect_close(g.dh0_kk, gr.dh0_kk, 3e-3, (at + "d_initial_kk").c_str());
      // from the forward's saved x and fro (the torch op's path): step_b skips its solve, the adjoint one remains
      const BackwardResult gs = cuda_backward(c, in, seeds, Precision::mixed, &got);
      expect_close(gs.dq, gr.dq, 3e-3, (at + "saved: dq").c_str());
      expect_close(gs.dk, gr.dk, 3e-3, (at + "saved: dk").c_str());
      expect_close(gs.dv, gr.dv, 3e-3, (at + "saved: dv").c_str());
      expect_close(gs.dh0_kk, gr.dh0_kk, 3e-3, (at + "saved: d_initial_kk").c_str());
    }
}

// Other iteration counts move the wgmma schedule's switch to the offset form (at 2N/5: iterations 4 and 6 of 11
// and 17; none up to 10, all on bf16 pairs): x within 3e-3 of the oracle, o within that plus its bf16 storage. A
// wrong offset (x_lead or rho lost or misplaced) leaves x off by the whole solution or by the lead's residual (>= 1e-2
// at 4 iterations).
TEST(CudaMixed, IterationCountsMatchOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128})
    for (const int32_t iters : {7, 11, 17}) {
      Case c = mixed_awkward_case(D, 130, "bf16");
      c.num_iter = iters;
      const std::string at = "D=" + std::to_string(D) + " num_iter " + std::to_string(iters) + ": ";
      const CaseInputs in = inputs_make(c, 50 + iters);
      const ForwardResult got = cuda_forward(c, in, false, Precision::mixed);
      const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
      expect_close(got.x, ref.x, 3e-3, (at + "x").c_str());
      expect_close(got.o, ref.o, tol_stored(DType::bf16, false, c.ridge_ratio) + 3e-3, (at + "o").c_str());
    }
}

// On Hopper, mixed with 16-bit q, k, v runs in fwd_wg_kernel (a warpgroup per chunk, f16 iterates) and the adjoint
// solve in adj_wg_kernel; GKA_CUDA_WG1=0 keeps both in the older kernels. Both paths within 3e-3 of the oracle on the
// awkward shapes (bf16 and f16), f within 1e-4; on a Hopper device they must differ (else the new path did not run).
TEST(CudaMixed, OneWarpgroupKernelsMatchOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const bool hopper = hopper_paths_on();  // else (GKA_CUDA_WGMMA=0, or no sm_90) both runs take the older kernels
  for (const char* dtype : {"bf16", "f16"})
    for (const int64_t D : {64, 128})
      for (const int64_t T : {1, 65, 130}) {
        const Case c = mixed_awkward_case(D, T, dtype);
        const std::string at = std::string(dtype) + " D=" + std::to_string(D) + " T=" + std::to_string(T) + ": ";
        const CaseInputs in = inputs_make(c, 61 + T);
        const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
        const ForwardResult got = cuda_forward(c, in, false, Precision::mixed);
        const ForwardResult two =
            with_env("GKA_CUDA_WG1", "0", [&] { return cuda_forward(c, in, false, Precision::mixed); });
        const double tol_o = tol_stored(c.dtype == "bf16" ? DType::bf16 : DType::f16, false, c.ridge_ratio) + 3e-3;
        for (const ForwardResult* r : {&got, &two}) {
          const std::string path = at + (r == &got ? "" : "GKA_CUDA_WG1=0: ");
          expect_close(r->x, ref.x, 3e-3, path + "x");
          expect_close(r->o, ref.o, tol_o, path + "o");
          expect_close(r->fro, ref.fro, 1e-4, path + "f");  // fp32 gate sums: e^G to ~1e-5 at strong gates
        }
        EXPECT_TRUE(!hopper || rel_err(got.x, two.x) > 0.0) << at << "GKA_CUDA_WG1=0 changed nothing";
        // Without a saved x the readout (out_wg_kernel) takes it from a scratch: the same o to the bit.
        const ForwardResult nox = cuda_forward(c, in, false, Precision::mixed, nullptr, false);
        EXPECT_EQ(rel_err(nox.o, got.o), 0.0) << at << "o without a saved x";
        // The backward from the saved x and norms (as the torch op runs it): dq~ and the adjoint solve in
        // adj_wg_kernel (same switch). From the same saved forward, the two paths must differ.
        const BackwardSeeds seeds = seeds_make(c, 6);
        const BackwardResult gr =
            backward_run(case_in_f64(c), inputs_to_f64(in), seeds_to_f64(seeds), Backend::reference);
        const BackwardResult g1 = cuda_backward(c, in, seeds, Precision::mixed, &got);
        const BackwardResult g2 =
            with_env("GKA_CUDA_WG1", "0", [&] { return cuda_backward(c, in, seeds, Precision::mixed, &got); });
        expect_gradients_close(g1, gr, tol_o, tol_o, 3e-3, at + "adjoint: ");
        expect_gradients_close(g2, gr, tol_o, tol_o, 3e-3, at + "GKA_CUDA_WG1=0: adjoint: ");
        EXPECT_TRUE(!hopper || rel_err(g1.dq, g2.dq) > 0.0) << at << "GKA_CUDA_WG1=0 changed no gradient";
      }
}

// The same shapes with bf16 inputs, where Precision::mixed takes its 16-bit paths: k exact in one term in the
// accurate products (KX on f16 pairs, SolveSchedule::k_bf16 on bf16 pairs) and step_d on bf16 pair tiles
// (step_d_bf16_kernel). Gradients only, from a recomputed and from a saved forward: the 16-bit gradient bound plus
// mixed's 3e-3, and 3e-3 for the fp32 initial-state gradients (mixed's ∂H_0 sat near 5e-4 on layer-like inputs before
// v16, above tol_gradient's fp32 2e-4); a wrong tile, row or mask in either path is off by O(1).
TEST(CudaMixed, Bf16AwkwardShapesGradientsMatchOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128})
    for (const int64_t T : {1, 65, 130}) {
      const Case c = mixed_awkward_case(D, T, "bf16");
      const std::string at = "D=" + std::to_string(D) + " T=" + std::to_string(T) + ": ";
      const CaseInputs in = inputs_make(c, 41 + T);
      const BackwardSeeds seeds = seeds_make(c, 6);
      const BackwardSeeds s64 = seeds_to_f64(seeds);
      const BackwardResult ref = backward_run(case_in_f64(c), inputs_to_f64(in), s64, Backend::reference);
      const double tol = tol_gradient(DType::bf16, false, c.ridge_ratio) + 3e-3;
      const ForwardResult fwd = cuda_forward(c, in, false, Precision::mixed);
      expect_gradients_close(cuda_backward(c, in, seeds, Precision::mixed), ref, tol, tol, 3e-3, at);
      expect_gradients_close(cuda_backward(c, in, seeds, Precision::mixed, &fwd), ref, tol, tol, 3e-3, at + "saved: ");
    }
}

// On Hopper the mixed bf16 backward at D = 128 runs step_b2 and step_d on warpgroup products (step_b2_wg.cu,
// step_d_wg.cu) wherever the forward's x is saved. Their edges: varlen with empty and one-token sequences (a chunk of
// one row, rows past n zero in every tile), chunks of 16 and 32 rows, no λ path (W2 and the Ŵ scan skipped), no
// alpha, the gk gate alone and strong gates (mask entries near 0). Each within the awkward shapes' bound of the
// oracle; a wrong mask, a row past n read as data or a lost chunk sum gives errors of order 1.
TEST(CudaMixed, WarpgroupBackwardEdgesMatchOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  struct Edge {
    const char* what;
    std::vector<int64_t> varlen;
    int32_t chunk;
    bool lambda_grad, alpha;
    const char* gates;
    const char* strength;
  };
  const Edge edges[] = {{"varlen", {3, 0, 65, 1, 130}, 64, true, true, "untied", "mild"},
                        {"chunk 16", {}, 16, true, true, "untied", "strong"},
                        {"chunk 32, no lambda path, no alpha", {}, 32, false, false, "gk_only", "mild"},
                        {"strong gates, no lambda path", {}, 64, false, true, "tied", "strong"}};
  for (const Edge& e : edges) {
    Case c = mixed_awkward_case(128, 97, "bf16");
    c.varlen = e.varlen;
    if (!e.varlen.empty()) {
      c.B = 1;
      c.T = 0;
      for (const int64_t n : e.varlen) c.T += n;
    }
    c.chunk_size = e.chunk;
    c.lambda_grad = e.lambda_grad;
    c.alpha = e.alpha;
    c.gates = e.gates;
    c.gate_strength = e.strength;
    const std::string at = std::string(e.what) + ": ";
    const CaseInputs in = inputs_make(c, 77);
    const BackwardSeeds seeds = seeds_make(c, 8);
    const BackwardResult ref = backward_run(case_in_f64(c), inputs_to_f64(in), seeds_to_f64(seeds), Backend::reference);
    const double tol = tol_gradient(DType::bf16, false, c.ridge_ratio) + 3e-3;
    const ForwardResult fwd = cuda_forward(c, in, false, Precision::mixed);
    expect_gradients_close(cuda_backward(c, in, seeds, Precision::mixed, &fwd), ref, tol, tol, 3e-3, at);
  }
}

// Precision::mixed on inputs far from unit scale. On Hopper its one-term iterations run in f16 with power-of-two
// scales per chunk (k, H̄) and per row (the iterate), and the accurate one on f16 pairs of the same tiles. A scale
// not undone, or one off by a factor, gives errors of order 1; an f16 overflow, NaN. Cases:
// - q and k scaled together (2^40 / 2^-8, 2^-30 / 2^6), q alone at 2^-80 (squared row norms would underflow) and
//   at 2^90 (|x_0|² would overflow: the chunk falls back to accurate iterations): x within 1e-4 of the oracle, as
//   at unit scale;
// - the initial states alone scaled by 2^-10 against k² (H̄ far below K² takes its own f16 scale): the first
//   chunk's rank-deficient H_t puts its spectrum at the ends of the Chebyshev interval, where mixed precision
//   (either path) ends ~2e-4 from the oracle, so forward only, at the 3e-3 of the awkward shapes;
// - positive log-gates (mask entries up to e^6: the chunk falls back; mma.sync's tf32 lead ends ~2e-4 off): 3e-3;
// - v at 2^-70 and the value state's initial state at 2^70 (the readout's S̄ term 2^140 above its v term: beyond what
//   the one-warpgroup forward brings to one scale: the chunks fall back), forward only.
TEST(CudaMixed, FarFromUnitScaleMatchesOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  struct Scaling {
    int q, k, h0;  // log2 of the factors of q, k and the initial states (beyond k²)
    double gate;   // > 0: every log-gate set to it
    double tol_x;
    bool grads;
    int v = 0;  // log2 of v's factor; the value state's initial state takes the inverse (S̄ far above v k)
  };
  const Scaling scalings[] = {{40, -8, 0, 0, 1e-4, true},  {-30, 6, 0, 0, 1e-4, true},  {-80, 0, 0, 0, 1e-4, true},
                              {90, 0, 0, 0, 1e-4, true},   {0, 0, -10, 0, 3e-3, false}, {0, 0, 0, 0.1, 3e-3, true},
                              {0, 0, 0, 0, 1e-4, true, -70}};
  for (const int64_t D : {64, 128})
    for (const Scaling& sc : scalings) {
      Case c;
      c.name = "mixed_scaled";
      c.B = 1;
      c.T = 130;
      c.H = 2;
      c.D = D;
      c.h0 = true;
      c.gates = "untied";
      c.dtype = "bf16";
      CaseInputs in = inputs_make(c, 11 + D);
      const auto scale = [](Tensor& t, int e) {
        for (int64_t i = 0; i < t.numel(); ++i) t.set_f64(i, std::ldexp(t.get_f64(i), e));
      };
      scale(in.q, sc.q);
      scale(in.k, sc.k);
      scale(in.h0_kk, 2 * sc.k + sc.h0);
      scale(in.v, sc.v);
      scale(in.h0_kv, -sc.v);
      if (sc.gate > 0)
        for (Tensor* g : {&in.g, &in.gk})
          for (int64_t i = 0; i < g->numel(); ++i) g->set_f64(i, sc.gate);
      const std::string at = "D=" + std::to_string(D) + " q*2^" + std::to_string(sc.q) + " k*2^" +
                             std::to_string(sc.k) + " h0*2^" + std::to_string(sc.h0) + " gate " +
                             std::to_string(sc.gate) + " v*2^" + std::to_string(sc.v) + ": ";
      const ForwardResult got = cuda_forward(c, in, false, Precision::mixed);
      const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
      expect_close(got.x, ref.x, sc.tol_x, (at + "x").c_str());
      expect_close(got.o, ref.o, 3e-3, (at + "o").c_str());
      if (!sc.grads) continue;
      const BackwardSeeds seeds = seeds_make(c, 5);
      const BackwardResult g = cuda_backward(c, in, seeds, Precision::mixed, &got);
      const BackwardSeeds s64 = seeds_to_f64(seeds);
      const BackwardResult gr = backward_run(case_in_f64(c), inputs_to_f64(in), s64, Backend::reference);
      expect_close(g.dq, gr.dq, 3e-3, (at + "dq").c_str());
      expect_close(g.dk, gr.dk, 3e-3, (at + "dk").c_str());
    }
}

// Many chunks handed back by the Hopper warpgroup kernels: more than the device has SMs, so the redo kernels' CTAs
// (redo_list.cuh) each take several from the list, with a barrier between two. A positive log-gate on the first token
// of every chunk (g and gk at +1e-3) makes fwd_wg and adj_wg give up all 41 x 4 chunks; v at 2^-70 with the value
// state's initial state at 2^70 makes out_wg give up the first chunks of each head (where the initial state still
// dominates) and adj_wg all of them. Against the fp32 precision on the same inputs: x within 2e-4 (both are within
// 1e-4 of the oracle on such inputs, FarFromUnitScaleMatchesOracle), o and the gradients within 3e-3. A chunk left
// undone keeps the poisoned outputs (NaN); one redone from another chunk's position is off by order 1.
TEST(CudaMixed, ManyGivenUpChunksMatchFp32) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const bool gate_up : {true, false}) {
    Case c;
    c.name = "mixed_given_up";
    c.B = 1;
    c.T = 2600;  // 41 chunks, the last of 40 rows
    c.H = 4;
    c.D = 64;
    c.h0 = true;
    c.gates = "untied";
    c.dtype = "bf16";
    CaseInputs in = inputs_make(c, 23);
    if (gate_up) {
      for (Tensor* g : {&in.g, &in.gk})
        for (int64_t t = 0; t < c.T; t += 64)
          for (int64_t h = 0; h < c.H; ++h) g->set_f64(t * c.H + h, 1e-3);
    } else {
      for (int64_t i = 0; i < in.v.numel(); ++i) in.v.set_f64(i, std::ldexp(in.v.get_f64(i), -70));
      for (int64_t i = 0; i < in.h0_kv.numel(); ++i) in.h0_kv.set_f64(i, std::ldexp(in.h0_kv.get_f64(i), 70));
    }
    const std::string at = gate_up ? "gates > 0: " : "v*2^-70: ";
    const ForwardResult got = cuda_forward(c, in, false, Precision::mixed);
    const ForwardResult ref = cuda_forward(c, in, false, Precision::fp32);
    expect_close(got.x, ref.x, 2e-4, at + "x");
    expect_close(got.o, ref.o, 3e-3, at + "o");
    const BackwardSeeds seeds = seeds_make(c, 7);
    const BackwardResult g = cuda_backward(c, in, seeds, Precision::mixed, &got);
    const BackwardResult gr = cuda_backward(c, in, seeds, Precision::fp32, &ref);
    expect_gradients_close(g, gr, 3e-3, 3e-3, 3e-3, at);
  }
}

// fp64 residuals ||(H_t + r ||H_t||_F I) x_t - q_t|| / ||q_t|| ([B, T, H] order) of a given x [B, T, H, D], with
// H_t = e^{gk_t} H_{t-1} + k_t k_tᵀ run token by token over each sequence from its initial state (or zero).
std::vector<double> residuals_of(const Case& c, const CaseInputs& in, const Tensor& x) {
  const int64_t T = c.T, H = c.H, D = c.D;
  const std::vector<double> q = in.q.to_f64(), k = in.k.to_f64(), xs = x.to_f64();
  const std::vector<double> gk = in.gk.defined() ? in.gk.to_f64() : std::vector<double>();
  const std::vector<double> h0 = in.h0_kk.defined() ? in.h0_kk.to_f64() : std::vector<double>();
  struct Seq {
    int64_t b, t0, len;
  };
  std::vector<Seq> seqs;
  if (c.varlen.empty()) {
    for (int64_t b = 0; b < c.B; ++b) seqs.push_back({b, 0, T});
  } else {
    int64_t t0 = 0;
    for (int64_t n : c.varlen) seqs.push_back({0, t0, n}), t0 += n;
  }
  std::vector<double> res(static_cast<size_t>(c.B * T * H), std::numeric_limits<double>::quiet_NaN());
  std::vector<double> Hm(static_cast<size_t>(D * D));
  for (size_t n = 0; n < seqs.size(); ++n)
    for (int64_t h = 0; h < H; ++h) {
      const size_t slot = (n * static_cast<size_t>(H) + static_cast<size_t>(h)) * static_cast<size_t>(D * D);
      for (size_t i = 0; i < Hm.size(); ++i) Hm[i] = h0.empty() ? 0.0 : h0[slot + i];
      for (int64_t t = seqs[n].t0; t < seqs[n].t0 + seqs[n].len; ++t) {
        const size_t row = static_cast<size_t>((seqs[n].b * T + t) * H + h), v = row * static_cast<size_t>(D);
        const double decay = gk.empty() ? 1.0 : std::exp(gk[row]);
        double ff = 0;
        for (int64_t i = 0; i < D; ++i)
          for (int64_t j = 0; j < D; ++j) {
            double& e = Hm[static_cast<size_t>(i * D + j)];
            e = decay * e + k[v + static_cast<size_t>(i)] * k[v + static_cast<size_t>(j)];
            ff += e * e;
          }
        const double lam = c.ridge_ratio * std::sqrt(ff);
        double num = 0, den = 0;
        for (int64_t i = 0; i < D; ++i) {
          double y = lam * xs[v + static_cast<size_t>(i)] - q[v + static_cast<size_t>(i)];
          for (int64_t j = 0; j < D; ++j) y += Hm[static_cast<size_t>(i * D + j)] * xs[v + static_cast<size_t>(j)];
          num += y * y;
          den += q[v + static_cast<size_t>(i)] * q[v + static_cast<size_t>(i)];
        }
        res[row] = std::sqrt(num / den);
      }
    }
  return res;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// The optional residual output ||(H_t + lambda_t I) x_t - q_t|| / ||q_t||, which reads H̄ after the solve (reloaded
// after a warpgroup solve, Precision::mixed on Hopper, only when the residual is asked for), of the chunked kernels
// and of the token-by-token one (fp32). Awkward shapes, both head dims and precisions, num_iter 0 (no solve: x = q,
// residuals up to ~1), 5 (unconverged: up to ~0.35) and 30 (the default: up to ~3e-4). Per token, absolute, within
// tol_forward (1e-5 at r = 0.02): fp32 states and fp32 evaluation leave ~eps32 ||H|| ||x|| / ||q|| <= kappa eps32,
// the suite's forward bound (measured <= 1.3e-6 on an H200). (a) Against the fp64 residual of the kernel's own x
// (either precision); (b) fp32 only, against the oracle's residual (its x differs by the fp32 solve's rounding: <=
// 9e-7 measured; mixed's x, ~1e-5 off, moves the residual by up to ~2e-4, so (a) is its check). A residual from a
// wrong or missing H̄, or a wrong lambda, is off by about the residual's own size (>= 3e-4), 30x the tolerance or
// more.
TEST(CudaResidual, MatchesOwnXAndOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128})
    for (int shape = 0; shape < 3; ++shape)
      for (const int32_t iters : {0, 5, 30}) {
        Case c;
        c.name = "residual";
        c.D = D;
        c.H = 2;
        c.h0 = true;
        c.gates = "untied";
        c.num_iter = iters;
        if (shape == 0) {  // one token per sequence
          c.B = 3;
          c.T = 1;
        } else if (shape == 1) {  // two chunks and a tail
          c.B = 1;
          c.T = 130;
        } else {  // sequences of 1, 63, 0, 100, 7 tokens packed in one row
          c.B = 1;
          c.varlen = {1, 63, 0, 100, 7};
          c.T = 171;
        }
        const CaseInputs in = inputs_make(c, 40 + static_cast<uint64_t>(shape));
        const CaseInputs in64 = inputs_to_f64(in);
        Tensor oracle_res(DType::f64, {c.B, c.T, c.H});
        oracle_res.fill_nan();
        {
          ForwardResult ref = harness::forward_buffers_make(case_in_f64(c).shape());
          ForwardOutputs out = ref.view(false);
          out.residual = oracle_res.view();
          chunk_forward(in64.view(), out, case_in_f64(c).options(Backend::reference));
        }
        const std::vector<double> want = oracle_res.to_f64();
        // The chunked kernels in both precisions, then the token-by-token one (decode.cu, fp32 only).
        for (const int path : {0, 1, 2}) {
          const Precision prec = path == 1 ? Precision::mixed : Precision::fp32;
          const bool recurrent = path == 2;
          const std::string at = std::string(recurrent ? "recurrent" : prec == Precision::mixed ? "mixed" : "fp32") +
                                 " D=" + std::to_string(D) + " shape " + std::to_string(shape) + " num_iter " +
                                 std::to_string(iters) + ": ";
          Tensor res;
          const ForwardResult got = cuda_forward(c, in, recurrent, prec, &res);
          ASSERT_EQ(nonfinite_count(res), 0) << at << "residual has NaN/Inf (poisoned output left unwritten?)";
          const std::vector<double> mine = res.to_f64(), own = residuals_of(c, in64, got.x);
          const double tol = tol_forward(false, c.ridge_ratio);
          EXPECT_LE(max_abs_diff(mine, own), tol) << at << "residual vs the fp64 residual of the kernel's own x";
          if (prec == Precision::fp32) {
            EXPECT_LE(max_abs_diff(mine, want), tol) << at << "residual vs the oracle's";
          }
        }
      }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaAccuracy, ::testing::Values(Precision::fp32, Precision::mixed),
                         [](const ::testing::TestParamInfo<Precision>& i) { return std::string(precision_name(i.param)); });

}  // namespace
}  // namespace gka::test
