// The CUDA backend against the fp64 oracle and the CPU backend over the shared case table. Cases whose head
// dim the CUDA backend does not support (D not in {64, 128}) run once more with D promoted to 64 (the same
// gates, lengths, varlen, states, solver settings), and the original shape must give a clear gka::Error.
// Skipped when no GPU is visible, so CI without a GPU passes. Outputs are NaN-poisoned before every call
// (support/cuda_run.h). The accuracy target and the mixed precision's kernels: test_cuda_mixed.cpp.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "support/cases.h"
#include "support/cuda_run.h"
#include "support/expect_close.h"
#include "support/metrics.h"
#include "support/tolerance.h"

namespace gka::cuda {
cudaMemPool_t scratch_pool(cudaStream_t stream, const char* fn);  // src/cuda/scratch_pool.cu
template <int D>
bool decode_split_ready();  // src/cuda/decode_split.cu
}  // namespace gka::cuda

namespace gka::test {
namespace {

#define GKA_CUDA_OK(x) ASSERT_EQ((x), cudaSuccess) << #x

bool cuda_supported(const Case& c) {
  return (c.D == 64 || c.D == 128) && c.dv() == c.D && c.dtype != "f64" && c.solver == "chebyshev" &&
         c.chunk_size <= 64;
}

// The case with the head dim promoted to what the CUDA backend supports.
Case promoted(Case c) {
  if (!(c.D == 64 || c.D == 128)) c.D = c.D <= 64 ? 64 : 128;
  c.Dv = -1;
  return c;
}

// A token-by-token forward's outputs and final states against the oracle's (ref), with the suite's tolerances.
void expect_recurrent_matches(const Case& c, const CaseInputs& in, const ForwardResult& ref, const ForwardResult& got,
                              const std::string& at) {
  const double tol = tol_forward(false, c.ridge_ratio);
  const double amp = readout_amplification(c, inputs_to_f64(in), ref);
  expect_close(got.o, ref.o, tol_output(dtype_parse(c.dtype), false, c.ridge_ratio, amp), at + "o");
  expect_close(got.final_kk, ref.final_kk, tol, at + "final_kk");
  expect_close(got.final_kv, ref.final_kv, tol, at + "final_kv");
  expect_close(got.x, ref.x, tol, at + "x");
  expect_close(got.fro, ref.fro, tol, at + "fro");
}

// One token for each of B sequences of H = 2 heads of dimension D (the decode tests' grids).
Case one_token_case(int64_t B, int64_t D) {
  Case c;
  c.B = B;
  c.T = 1;
  c.H = 2;
  c.D = D;
  return c;
}

// Elements of two tensors that differ to the bit (a count, not the vectors: they run to 76 800 elements).
int64_t bitwise_differences(const Tensor& a, const Tensor& b) {
  const std::vector<double> va = a.to_f64(), vb = b.to_f64();
  int64_t n = 0;
  for (size_t i = 0; i < va.size(); ++i) n += !(va[i] == vb[i]);
  return n;
}

class Cuda : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  }
  const Case& c() const { return GetParam(); }
  DType dtype() const { return dtype_parse(c().dtype); }
};

// Every chebyshev case, and a bf16 twin of each fp32 one: 16-bit inputs take other kernel instantiations
// (exact operands skip product terms: KX, the states' W = 1), which must match the oracle on every shape too.
std::vector<Case> params() {
  std::vector<Case> out;
  for (const Case& c : cases_load()) {
    if (c.solver != "chebyshev" || c.dtype == "f64") continue;
    Case p = promoted(c);
    if (!cuda_supported(c)) p.name += "_D" + std::to_string(p.D);
    out.push_back(p);
    if (p.dtype == "f32") {
      p.dtype = "bf16";
      p.name += "_bf16";
      out.push_back(p);
    }
  }
  return out;
}

std::string param_name(const ::testing::TestParamInfo<Case>& info) { return "cuda_" + case_id(info.param); }

TEST_P(Cuda, ForwardMatchesOracleAndCpu) {
  const CaseInputs in = inputs_make(c(), 1234);
  const ForwardResult got = cuda_forward(c(), in);
  const ForwardResult ref = forward_run(case_in_f64(c()), inputs_to_f64(in), Backend::reference);
  const ForwardResult cpu = forward_run(c(), in, Backend::cpu);
  const double tol = tol_forward(false, c().ridge_ratio);
  const double amp = readout_amplification(c(), inputs_to_f64(in), ref);
  const double tol_o = tol_output(dtype(), false, c().ridge_ratio, amp);
  expect_close(got.o, ref.o, tol_o, "o");
  expect_close(got.final_kk, ref.final_kk, tol, "final_kk");
  expect_close(got.final_kv, ref.final_kv, tol, "final_kv");
  expect_close(got.x, ref.x, tol, "x");
  expect_close(got.fro, ref.fro, tol, "fro");
  expect_close(got.o, cpu.o, 2 * tol_o, "o vs cpu");
  expect_close(got.x, cpu.x, 2 * tol, "x vs cpu");
}

// The gradients `got` of case c against the fp64 oracle's (`what` prefixes the failure messages).
void expect_gradients_match_oracle(const Case& c, const CaseInputs& in, const BackwardSeeds& seeds,
                                   const BackwardResult& got, const std::string& what = "") {
  const BackwardSeeds seeds64 = seeds_to_f64(seeds);
  const BackwardResult ref = backward_run(case_in_f64(c), inputs_to_f64(in), seeds64, Backend::reference);
  const double tol = tol_gradient(dtype_parse(c.dtype), false, c.ridge_ratio);
  expect_gradients_close(got, ref, tol, tol, tol_gradient(DType::f32, false, c.ridge_ratio), what);
}

TEST_P(Cuda, BackwardMatchesOracle) {
  const CaseInputs in = inputs_make(c(), 99);
  const BackwardSeeds seeds = seeds_make(c(), 7);
  expect_gradients_match_oracle(c(), in, seeds, cuda_backward(c(), in, seeds));
}

// The backward from the forward's saved x and fro (what the torch op passes; step_b then skips the solve, the norms
// and the H̄ load) against the backward that recomputes them, and against the oracle. Both solve the same
// chunk-start states with the same code, so the gradients agree to fp32 rounding (bitwise on an H200): tol_forward
// for fp32 gradients, and tol_stored for 16-bit ones (above one ulp, 2^-7 bf16 / 2^-10 f16, which a last-bit
// difference can flip). A saved-x path that read wrong rows, or solved without H̄, is off by O(1). Then a saved x
// and fro scaled by 3/2 must move the gradients by more than that agreement (by 6e-2 to 1.6 on an H200): else
// the backward never read them and the first check proved nothing.
TEST_P(Cuda, BackwardFromSavedMatchesRecomputed) {
  const CaseInputs in = inputs_make(c(), 99);
  const BackwardSeeds seeds = seeds_make(c(), 7);
  const ForwardResult fwd = cuda_forward(c(), in);
  const BackwardResult recomputed = cuda_backward(c(), in, seeds);
  const BackwardResult saved = cuda_backward(c(), in, seeds, Precision::fp32, &fwd);
  const double t32 = tol_forward(false, c().ridge_ratio), t16 = tol_stored(dtype(), false, c().ridge_ratio);
  expect_gradients_close(saved, recomputed, t16, t32, t32, "saved vs recomputed: ");
  expect_gradients_match_oracle(c(), in, seeds, saved, "saved x, fro: ");
  if (c().num_iter == 0) return;  // no solve: x = q and no lambda path, so x and fro do not enter the gradients
  ForwardResult off = fwd;
  for (Tensor* t : {&off.x, &off.fro})
    for (int64_t i = 0; i < t->numel(); ++i) t->set_f64(i, 1.5 * t->get_f64(i));
  const BackwardResult moved = cuda_backward(c(), in, seeds, Precision::fp32, &off);
  const double change = std::max({rel_err(moved.dq, recomputed.dq), rel_err(moved.dk, recomputed.dk),
                                  rel_err(moved.dv, recomputed.dv)});
  EXPECT_GT(change, 2 * t16) << "gradients from a saved x and fro scaled by 3/2 match the recomputed ones";
}

TEST_P(Cuda, RecurrentMatchesOracle) {
  if (c().T > 300) GTEST_SKIP() << "long cases: covered by the chunked test";
  const CaseInputs in = inputs_make(c(), 5);
  const ForwardResult got = cuda_forward(c(), in, /*recurrent=*/true);
  const ForwardResult ref = forward_run(case_in_f64(c()), inputs_to_f64(in), Backend::reference);
  expect_recurrent_matches(c(), in, ref, got, "");
}

TEST_P(Cuda, BitwiseDeterministic) {
  if (c().T > 200) GTEST_SKIP() << "long cases: covered by the short ones";
  const CaseInputs in = inputs_make(c(), 21);
  const ForwardResult a = cuda_forward(c(), in);
  const ForwardResult b = cuda_forward(c(), in);
  EXPECT_EQ(a.o.to_f64(), b.o.to_f64());
  EXPECT_EQ(a.x.to_f64(), b.x.to_f64());
  EXPECT_EQ(a.final_kk.to_f64(), b.final_kk.to_f64());
  const BackwardSeeds seeds = seeds_make(c(), 3);
  const BackwardResult ga = cuda_backward(c(), in, seeds);
  const BackwardResult gb = cuda_backward(c(), in, seeds);
  EXPECT_EQ(ga.dq.to_f64(), gb.dq.to_f64());
  EXPECT_EQ(ga.dk.to_f64(), gb.dk.to_f64());
  EXPECT_EQ(ga.dv.to_f64(), gb.dv.to_f64());
  if (ga.dgk.defined()) {
    EXPECT_EQ(ga.dgk.to_f64(), gb.dgk.to_f64());
  }
  EXPECT_EQ(ga.dh0_kk.to_f64(), gb.dh0_kk.to_f64());
}

INSTANTIATE_TEST_SUITE_P(Cases, Cuda, ::testing::ValuesIn(params()), param_name);

// Shapes and settings outside the CUDA backend give a clear gka::Error (never a wrong answer).
TEST(CudaErrors, UnsupportedShapesAndSolvers) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const Case& c : cases_load()) {
    if (cuda_supported(c)) continue;
    const CaseInputs in = inputs_make(c.dtype == "f64" ? c : c, 1);
    EXPECT_THROW(cuda_forward(c, in), Error) << c.name;
  }
  Case c;
  c.D = 64;
  c.chunk_size = 128;
  EXPECT_THROW(cuda_forward(c, inputs_make(c, 1)), Error);
}

TEST(CudaErrors, CpuTensorsWithCudaBackend) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  Case c;
  c.D = 64;
  EXPECT_THROW(forward_run(c, inputs_make(c, 1), Backend::cuda), Error);
}

// Scratch comes from a pool per device that the library keeps between calls (scratch_pool.cu): releasing it returns
// memory to the device and changes no result.
TEST(CudaScratch, ReleasedBetweenCallsSameResults) {
  cuda_release_scratch();  // a no-op without a device
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  Case c;
  c.B = 2;
  c.T = 100;
  c.H = 2;
  c.D = 64;
  const CaseInputs in = inputs_make(c, 4);
  const BackwardSeeds seeds = seeds_make(c, 3);
  const ForwardResult a = cuda_forward(c, in);
  const BackwardResult ga = cuda_backward(c, in, seeds);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto held = [] {  // the pool's mapped bytes (its own count: other processes on the device do not move it)
    uint64_t bytes = 0;
    EXPECT_EQ(cudaMemPoolGetAttribute(cuda::scratch_pool(nullptr, "test"), cudaMemPoolAttrReservedMemCurrent, &bytes),
              cudaSuccess);
    return bytes;
  };
  EXPECT_GT(held(), 0u) << "the backward's scratch stays in the pool after the call";
  cuda_release_scratch();
  EXPECT_EQ(held(), 0u) << "released";
  const ForwardResult b = cuda_forward(c, in);
  const BackwardResult gb = cuda_backward(c, in, seeds);
  EXPECT_EQ(a.o.to_f64(), b.o.to_f64());
  EXPECT_EQ(ga.dq.to_f64(), gb.dq.to_f64());
  EXPECT_EQ(ga.dk.to_f64(), gb.dk.to_f64());
}

// A pool of random kk states [S, H, D, cols] (cols >= D: padded rows), each D x D block symmetric as every H is: the
// CUDA decode reads only the upper triangle (spec §14), so an asymmetric one would not be a state. Padding columns
// stay random.
Tensor symmetric_pool(int64_t S, int64_t H, int64_t D, int64_t cols, std::mt19937_64& rng) {
  std::vector<double> v = Tensor::randn(DType::f64, {S, H, D, cols}, rng, 0.05).to_f64();
  for (int64_t m = 0; m < S * H; ++m)
    for (int64_t i = 0; i < D; ++i)
      for (int64_t j = 0; j < i; ++j) {
        double& lo = v[static_cast<size_t>((m * D + i) * cols + j)];
        double& up = v[static_cast<size_t>((m * D + j) * cols + i)];
        lo = up = 0.5 * (lo + up);
      }
  return Tensor::from_f64(v, DType::f32, {S, H, D, cols});
}

// One decode_pool_step on the CPU backend and one on CUDA, each from its own copy of the pool (kk, kv seen through
// `rows`): the outputs and the whole pool buffers after the step match.
template <class Rows>
void expect_pool_step_matches_cpu(const Case& c, const CaseInputs& in, const Tensor& kk, const Tensor& kv,
                                  const Tensor& slots, Rows rows, const std::string& at) {
  Tensor kk_cpu = kk, kv_cpu = kv, kk_gpu = kk, kv_gpu = kv;
  Tensor o_cpu(DType::f32, {c.B, c.T, c.H, c.D}), o(DType::f32, {c.B, c.T, c.H, c.D});
  o.fill_nan();
  decode_pool_step(in.view(), StatePool{rows(kk_cpu.view()), rows(kv_cpu.view()), slots.view()}, o_cpu.view(),
                   c.options(Backend::cpu));
  DevInputs din(in);
  DevTensor dkk(kk_gpu), dkv(kv_gpu), dout(o);
  decode_pool_step(din.view(), StatePool{rows(dkk.view()), rows(dkv.view()), slots.view()}, dout.view(),
                   c.options(Backend::cuda));
  GKA_CUDA_OK(cudaDeviceSynchronize());
  dkk.download();
  dkv.download();
  dout.download();
  expect_close(o, o_cpu, 1e-4, at + "o");
  expect_close(kk_gpu, kk_cpu, 1e-5, at + "pool.kk");
  expect_close(kv_gpu, kv_cpu, 1e-5, at + "pool.kv");
}

// A state pool updated in place by slot (decode serving): matches the CPU backend's pool step.
TEST(CudaPool, MatchesCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  Case c;
  c.B = 3;
  c.T = 2;
  c.H = 2;
  c.D = 64;
  const CaseInputs in = inputs_make(c, 8);
  std::mt19937_64 rng(3);
  const Tensor kk = symmetric_pool(5, c.H, c.D, c.D, rng);
  const Tensor kv = Tensor::randn(DType::f32, {5, c.H, c.D, c.D}, rng, 0.05);
  const Tensor slots = Tensor::from_f64({4, -1, 1}, DType::i32, {3});
  expect_pool_step_matches_cpu(c, in, kk, kv, slots, [](TensorView v) { return v; }, "");
}

// A pool whose state rows are padded to D + 1 floats (no 16-byte alignment): the CUDA decode moves such states by
// per-thread copies instead of 16-byte or bulk ones. Matches the CPU backend on the states and the output, and both
// leave the padding alone (the whole buffers are compared). Two sequences, and 300: more heads than one wave of CTAs
// (where decode.cu copies only the upper triangle of H).
TEST(CudaPool, PaddedStateRowsMatchCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128})
    for (const int64_t B : {2, 300}) {
      const Case c = one_token_case(B, D);
      const CaseInputs in = inputs_make(c, 9);
      std::mt19937_64 rng(4);
      const Tensor kk = symmetric_pool(B + 1, c.H, D, D + 1, rng);
      const Tensor kv = Tensor::randn(DType::f32, {B + 1, c.H, D, D + 1}, rng, 0.05);
      std::vector<double> sl(static_cast<size_t>(B));
      for (int64_t i = 0; i < B; ++i) sl[static_cast<size_t>(i)] = static_cast<double>(B - i);  // slot 0 untouched
      const Tensor slots = Tensor::from_f64(sl, DType::i32, {B});
      const auto rows = [D](TensorView v) {  // [B + 1, H, D, D] in the padded buffer
        v.sizes[3] = D;
        return v;
      };
      expect_pool_step_matches_cpu(c, in, kk, kv, slots, rows,
                                   "D=" + std::to_string(D) + " B=" + std::to_string(B) + " ");
    }
}

// One-token steps on a pool updated in place, with padding rows (slot -1), match the CPU backend: a few heads (the
// cluster form, decode_split.cu, three CTAs a head) and more heads than CTAs fit at once (waves of decode.cu's).
TEST(CudaPool, BatchedStepMatchesCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128})
    for (const bool few : {true, false}) {
      // 1200 / 600 heads: more than the CTAs that fit on a 132-SM card
      const Case c = one_token_case(few ? 5 : D == 64 ? 600 : 300, D);
      const CaseInputs in = inputs_make(c, 21);
      std::mt19937_64 rng(5);
      const int64_t S = c.B + 3;  // 603 = 9 x 67, 303 = 3 x 101: i -> 7 i + 3 (mod S) is one to one
      const Tensor kk = symmetric_pool(S, c.H, D, D, rng);
      const Tensor kv = Tensor::randn(DType::f32, {S, c.H, D, D}, rng, 0.05);
      std::vector<double> sl(c.B);
      for (int64_t i = 0; i < c.B; ++i) sl[i] = i % 9 == 4 ? -1.0 : static_cast<double>((7 * i + 3) % S);
      const Tensor slots = Tensor::from_f64(sl, DType::i32, {c.B});
      expect_pool_step_matches_cpu(
          c, in, kk, kv, slots, [](TensorView v) { return v; },
          "D=" + std::to_string(D) + " B=" + std::to_string(c.B) + " ");
    }
}

// The same batched steps through recurrent_forward, with and without initial states, match the oracle; with no
// final states asked for (the final H then never goes through the shared buffer) o is the same to the bit.
TEST(CudaDecode, BatchedStepsMatchOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128})
    for (const bool few : {true, false})
      for (const bool h0 : {true, false}) {
        Case c = one_token_case(few ? 3 : D == 64 ? 600 : 300, D);
        c.h0 = h0;
        const std::string at = "D=" + std::to_string(D) + " B=" + std::to_string(c.B) + (h0 ? " h0 " : " ");
        const CaseInputs in = inputs_make(c, 23);
        const ForwardResult got = cuda_forward(c, in, /*recurrent=*/true);
        const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
        expect_recurrent_matches(c, in, ref, got, at);
        ForwardResult r = harness::forward_buffers_make(c.shape());  // o only: no final H leaves the buffer
        r.poison();
        DevInputs din(in);
        DevTensor o(r.o);
        ForwardOutputs out;
        out.o = o.view();
        recurrent_forward(din.view(), out, c.options(Backend::cuda));
        GKA_CUDA_OK(cudaDeviceSynchronize());
        o.download();
        EXPECT_EQ(bitwise_differences(r.o, got.o), 0) << at << "elements of o that change without final states";
      }
}

// One-token steps on a grid of a few heads take the cluster form (decode_split.cu) where this build has it for the
// device; GKA_CUDA_DECODE_SPLIT=0 sends the same call to decode.cu. Both match the oracle, store the same final H
// (both form it as fmaf(e^gk, H, k_i k_j)), and where the cluster form runs their x differ somewhere in the last
// bits (other summation orders): equal x would mean the switch or the dispatch is dead, and the tests above never
// ran the cluster kernel.
TEST(CudaDecode, ClusterFormAndOneCtaFormMatchOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128}) {
    Case c = one_token_case(2, D);
    c.h0 = true;
    c.gates = "untied";
    const std::string at = "D=" + std::to_string(D) + " ";
    const CaseInputs in = inputs_make(c, 31);
    const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
    const ForwardResult split = cuda_forward(c, in, /*recurrent=*/true);
    const ForwardResult plain =
        with_env("GKA_CUDA_DECODE_SPLIT", "0", [&] { return cuda_forward(c, in, /*recurrent=*/true); });
    expect_recurrent_matches(c, in, ref, split, at + "cluster form: ");
    expect_recurrent_matches(c, in, ref, plain, at + "decode.cu: ");
    EXPECT_EQ(split.final_kk.to_f64(), plain.final_kk.to_f64()) << at << "final H";
    int sms = 0;
    GKA_CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    if (3 * c.B * c.H <= sms && (D == 64 ? cuda::decode_split_ready<64>() : cuda::decode_split_ready<128>())) {
      EXPECT_GT(bitwise_differences(split.x, plain.x), 0) << at << "x is the same to the bit with and without the "
                                                                 "cluster form";
    }
  }
}

// Varlen decode with empty sequences, initial states given and no final states asked for: an empty sequence's
// state loads must land before its CTA exits (bulk copies still in flight would write into shared memory that
// another CTA may own by then). The outputs match the oracle.
TEST(CudaDecode, EmptySequencesWithoutFinalStates) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  Case c;
  c.name = "empty";
  c.D = 128;
  c.H = 2;
  c.h0 = true;
  c.B = 1;
  c.varlen = {3, 0, 5, 0, 2};
  c.T = 10;
  const CaseInputs in = inputs_make(c, 17);
  const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
  ForwardResult r = harness::forward_buffers_make(c.shape());
  r.poison();
  DevInputs din(in);
  DevTensor o(r.o), x(r.x);
  ForwardOutputs out;
  out.o = o.view();
  out.x = x.view();
  recurrent_forward(din.view(), out, c.options(Backend::cuda));
  GKA_CUDA_OK(cudaDeviceSynchronize());
  o.download();
  x.download();
  const double tol = tol_forward(false, c.ridge_ratio);
  const double amp = readout_amplification(c, inputs_to_f64(in), ref);
  expect_close(r.o, ref.o, tol_output(dtype_parse(c.dtype), false, c.ridge_ratio, amp), "o");
  expect_close(r.x, ref.x, tol, "x");
}

// bf16 k and v whose rows are not 16-byte aligned (rows of D + 1 elements) take the 3xTF32 states kernel and the
// scalar loads of the chunk kernels, the aligned ones the bf16 states kernel (cp.async): both match the oracle,
// and each other within the fp32 tolerance (a wrong row or block in either is off by O(1)).
TEST(CudaStates, UnalignedBf16RowsMatchAligned) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128}) {
    Case c;
    c.T = 100;
    c.D = D;
    c.dtype = "bf16";
    c.gates = "untied";
    c.h0 = true;
    const CaseInputs in = inputs_make(c, 31);
    const ForwardResult aligned = cuda_forward(c, in);
    const auto padded = [&](const Tensor& t) {  // [B, T, H, D + 1] with t in the first D of each row
      Tensor p(t.dtype(), {c.B, c.T, c.H, D + 1});
      for (int64_t i = 0; i < t.numel(); ++i) p.set_f64(i / D * (D + 1) + i % D, t.get_f64(i));
      return p;
    };
    Tensor kp = padded(in.k), vp = padded(in.v);
    const auto rows = [D](TensorView v) {
      v.sizes[3] = D;
      return v;
    };
    ForwardResult r = harness::forward_buffers_make(c.shape());
    r.poison();
    DevInputs din(in);
    DevTensor dk(kp), dv(vp), o(r.o), fkk(r.final_kk), fkv(r.final_kv), x(r.x);
    Inputs i = din.view();
    i.k = rows(dk.view());
    i.v = rows(dv.view());
    ForwardOutputs out;
    out.o = o.view();
    out.final_kk = fkk.view();
    out.final_kv = fkv.view();
    out.x = x.view();
    chunk_forward(i, out, c.options(Backend::cuda));
    GKA_CUDA_OK(cudaDeviceSynchronize());
    for (DevTensor* t : {&o, &fkk, &fkv, &x}) t->download();
    const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
    const double tol = tol_forward(false, c.ridge_ratio);
    const std::string at = "D=" + std::to_string(D) + " ";
    expect_close(r.final_kk, ref.final_kk, tol, at + "final_kk (unaligned)");
    expect_close(r.final_kv, ref.final_kv, tol, at + "final_kv (unaligned)");
    expect_close(r.x, ref.x, tol, at + "x (unaligned)");
    expect_close(r.final_kk, aligned.final_kk, tol, at + "final_kk unaligned vs aligned");
    expect_close(r.final_kv, aligned.final_kv, tol, at + "final_kv unaligned vs aligned");
    expect_close(r.o, aligned.o, tol_stored(DType::bf16, false, c.ridge_ratio), at + "o unaligned vs aligned");
  }
}

// Long sequences on one head: on Hopper the states kernel cuts each sequence into segments run in parallel where
// its grid is small (states_wg.cu: as many as one round of its CTAs fits, segments of 16 chunks or more): 4 per
// sequence at D = 64 and 2 at D = 128, sequences ending mid-chunk next to the following one's rows, and a sequence
// shorter than its segments.
TEST(CudaStates, LongSequencesInSegmentsMatchOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128}) {
    Case c;
    c.B = 1;
    c.H = 1;
    c.D = D;
    c.dtype = "bf16";
    c.gates = "untied";
    c.h0 = true;
    c.varlen = D == 64 ? std::vector<int64_t>{64 * 40 + 17, 64 * 70 + 5, 33}
                       : std::vector<int64_t>{64 * 33 + 9, 33, 64 * 40};
    c.T = 0;
    for (const int64_t n : c.varlen) c.T += n;
    const CaseInputs in = inputs_make(c, 37);
    const ForwardResult r = cuda_forward(c, in);
    const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
    const double tol = tol_forward(false, c.ridge_ratio);
    const std::string at = "D=" + std::to_string(D) + " ";
    expect_close(r.final_kk, ref.final_kk, tol, at + "final_kk");
    expect_close(r.final_kv, ref.final_kv, tol, at + "final_kv");
    expect_close(r.x, ref.x, tol, at + "x");
    expect_close(r.o, ref.o, tol_stored(DType::bf16, false, c.ridge_ratio), at + "o");
  }
}

}  // namespace
}  // namespace gka::test
