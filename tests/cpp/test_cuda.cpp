// The CUDA backend against the fp64 oracle and the CPU backend over the shared case table. Cases whose head
// dim the CUDA backend does not support (D not in {64, 128}) run once more with D promoted to 64 (the same
// gates, lengths, varlen, states, solver settings), and the original shape must give a clear gka::Error.
// Skipped when no GPU is visible, so CI without a GPU passes. Outputs are NaN-poisoned before every call.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "support/cases.h"
#include "support/expect_close.h"
#include "support/metrics.h"
#include "support/tolerance.h"

namespace gka::test {
namespace {

bool have_gpu() { return cuda_device_count() > 0; }

#define GKA_CUDA_OK(x) ASSERT_EQ((x), cudaSuccess) << #x

// A device copy of a host test tensor; download() copies it back into the host tensor.
class DevTensor {
 public:
  DevTensor() = default;
  explicit DevTensor(Tensor& host) : host_(&host) {
    if (!host.defined()) return;
    const TensorView v = host.view();
    bytes_ = static_cast<size_t>(v.numel() * dtype_size(v.dtype));
    if (cudaMalloc(&ptr_, bytes_) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
    cudaMemcpy(ptr_, v.data, bytes_, cudaMemcpyHostToDevice);
  }
  ~DevTensor() {
    if (ptr_) cudaFree(ptr_);
  }
  DevTensor(const DevTensor&) = delete;
  DevTensor& operator=(const DevTensor&) = delete;
  TensorView view() const {
    if (!host_ || !host_->defined()) return TensorView{};
    TensorView v = host_->view();
    v.data = ptr_;
    v.device = Device::cuda;
    return v;
  }
  void download() {
    if (ptr_) cudaMemcpy(host_->view().data, ptr_, bytes_, cudaMemcpyDeviceToHost);
  }

 private:
  Tensor* host_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// The case's inputs on the device (cu_seqlens stays on the host: the CUDA backend reads it there).
struct DevInputs {
  CaseInputs host;
  DevTensor q, k, v, alpha, g, gk, h0_kk, h0_kv;
  explicit DevInputs(const CaseInputs& in)
      : host(in), q(host.q), k(host.k), v(host.v), alpha(host.alpha), g(host.g), gk(host.gk), h0_kk(host.h0_kk),
        h0_kv(host.h0_kv) {}
  Inputs view() const {
    Inputs i = host.view();
    i.q = q.view();
    i.k = k.view();
    i.v = v.view();
    i.alpha = alpha.view();
    i.g = g.view();
    i.gk = gk.view();
    i.initial_kk = h0_kk.view();
    i.initial_kv = h0_kv.view();
    return i;
  }
};

ForwardResult cuda_forward(const Case& c, const CaseInputs& in, bool recurrent = false,
                           Precision precision = Precision::fp32) {
  ForwardResult r = harness::forward_buffers_make(c.shape());
  r.poison();
  DevInputs din(in);
  DevTensor o(r.o), fkk(r.final_kk), fkv(r.final_kv), x(r.x), fro(r.fro);
  ForwardOutputs out;
  out.o = o.view();
  out.final_kk = fkk.view();
  out.final_kv = fkv.view();
  out.x = x.view();
  out.fro = fro.view();
  Options opt = c.options(Backend::cuda);
  opt.precision = precision;
  if (recurrent)
    recurrent_forward(din.view(), out, opt);
  else
    chunk_forward(din.view(), out, opt);
  if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("cuda error after forward");
  for (DevTensor* t : {&o, &fkk, &fkv, &x, &fro}) t->download();
  return r;
}

BackwardResult cuda_backward(const Case& c, const CaseInputs& in, const BackwardSeeds& seeds,
                             Precision precision = Precision::fp32) {
  BackwardResult r = harness::gradient_buffers_make(c.shape(), in);
  r.poison();
  DevInputs din(in);
  BackwardSeeds s = seeds;
  DevTensor d_o(s.d_o), dfk(s.d_final_kk), dfv(s.d_final_kv);
  DevTensor dq(r.dq), dk(r.dk), dv(r.dv), da(r.dalpha), dg(r.dg), dgk(r.dgk), dhk(r.dh0_kk), dhv(r.dh0_kv);
  BackwardInputs gin;
  gin.d_o = d_o.view();
  gin.d_final_kk = dfk.view();
  gin.d_final_kv = dfv.view();
  Gradients g;
  g.dq = dq.view();
  g.dk = dk.view();
  g.dv = dv.view();
  g.dalpha = da.view();
  g.dg = dg.view();
  g.dgk = dgk.view();
  g.d_initial_kk = dhk.view();
  g.d_initial_kv = dhv.view();
  Options opt = c.options(Backend::cuda);
  opt.precision = precision;
  chunk_backward(din.view(), gin, g, opt);
  if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("cuda error after backward");
  for (DevTensor* t : {&dq, &dk, &dv, &da, &dg, &dgk, &dhk, &dhv}) t->download();
  return r;
}

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

TEST_P(Cuda, BackwardMatchesOracle) {
  const CaseInputs in = inputs_make(c(), 99);
  const BackwardSeeds seeds = seeds_make(c(), 7);
  const BackwardResult got = cuda_backward(c(), in, seeds);
  BackwardSeeds seeds64{seeds.d_o.cast(DType::f64), seeds.d_final_kk.cast(DType::f64),
                        seeds.d_final_kv.cast(DType::f64)};
  const BackwardResult ref = backward_run(case_in_f64(c()), inputs_to_f64(in), seeds64, Backend::reference);
  const double tol = tol_gradient(dtype(), false, c().ridge_ratio);
  expect_close(got.dq, ref.dq, tol, "dq");
  expect_close(got.dk, ref.dk, tol, "dk");
  expect_close(got.dv, ref.dv, tol, "dv");
  if (got.dalpha.defined()) expect_close(got.dalpha, ref.dalpha, tol, "dalpha");
  if (got.dg.defined()) expect_close(got.dg, ref.dg, tol, "dg");
  if (got.dgk.defined()) expect_close(got.dgk, ref.dgk, tol, "dgk");
  const double state_tol = tol_gradient(DType::f32, false, c().ridge_ratio);
  expect_close(got.dh0_kk, ref.dh0_kk, state_tol, "d_initial_kk");
  expect_close(got.dh0_kv, ref.dh0_kv, state_tol, "d_initial_kv");
}

TEST_P(Cuda, RecurrentMatchesOracle) {
  if (c().T > 300) GTEST_SKIP() << "long cases: covered by the chunked test";
  const CaseInputs in = inputs_make(c(), 5);
  const ForwardResult got = cuda_forward(c(), in, /*recurrent=*/true);
  const ForwardResult ref = forward_run(case_in_f64(c()), inputs_to_f64(in), Backend::reference);
  const double tol = tol_forward(false, c().ridge_ratio);
  const double amp = readout_amplification(c(), inputs_to_f64(in), ref);
  expect_close(got.o, ref.o, tol_output(dtype(), false, c().ridge_ratio, amp), "o");
  expect_close(got.final_kk, ref.final_kk, tol, "final_kk");
  expect_close(got.final_kv, ref.final_kv, tol, "final_kv");
  expect_close(got.x, ref.x, tol, "x");
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
  Tensor kk = Tensor::randn(DType::f32, {5, c.H, c.D, c.D}, rng, 0.05), kv = Tensor::randn(DType::f32, {5, c.H, c.D, c.D}, rng, 0.05);
  Tensor slots = Tensor::from_f64({4, -1, 1}, DType::i32, {3});
  Tensor kk_cpu = kk, kv_cpu = kv;
  Tensor o_cpu(DType::f32, {c.B, c.T, c.H, c.D}), o(DType::f32, {c.B, c.T, c.H, c.D});
  o.fill_nan();
  Inputs ic = in.view();
  decode_pool_step(ic, StatePool{kk_cpu.view(), kv_cpu.view(), slots.view()}, o_cpu.view(), c.options(Backend::cpu));
  DevInputs din(in);
  DevTensor dkk(kk), dkv(kv), dout(o);
  decode_pool_step(din.view(), StatePool{dkk.view(), dkv.view(), slots.view()}, dout.view(), c.options(Backend::cuda));
  GKA_CUDA_OK(cudaDeviceSynchronize());
  dkk.download();
  dkv.download();
  dout.download();
  expect_close(o, o_cpu, 1e-4, "o");
  expect_close(kk, kk_cpu, 1e-5, "pool.kk");
  expect_close(kv, kv_cpu, 1e-5, "pool.kv");
}

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
  const BackwardResult g = cuda_backward(c, in, seeds, prec);
  BackwardSeeds s64{seeds.d_o.cast(DType::f64), seeds.d_final_kk.cast(DType::f64), seeds.d_final_kv.cast(DType::f64)};
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
// leading iterations (bf16 on wgmma, sm_90a; tf32 on mma.sync with GKA_CUDA_WGMMA=0) are damped by the accurate
// last ones, so x, o and the gradients land within 3e-3 of the fp64 oracle; a wrong product anywhere on either
// path leaves the solve far from converged (errors of order 1).
TEST(CudaMixed, AwkwardShapesMatchOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t D : {64, 128})
    for (const int64_t T : {1, 65, 130}) {
      Case c;
      c.name = "mixed";
      c.B = 2;
      c.T = T;
      c.H = 2;
      c.D = D;
      c.h0 = true;
      c.gates = "untied";
      const std::string at = "D=" + std::to_string(D) + " T=" + std::to_string(T) + ": ";
      const CaseInputs in = inputs_make(c, 31 + T);
      const ForwardResult got = cuda_forward(c, in, false, Precision::mixed);
      const ForwardResult ref = forward_run(case_in_f64(c), inputs_to_f64(in), Backend::reference);
      expect_close(got.x, ref.x, 3e-3, (at + "x").c_str());
      expect_close(got.o, ref.o, 3e-3, (at + "o").c_str());
      const BackwardSeeds seeds = seeds_make(c, 5);
      const BackwardResult g = cuda_backward(c, in, seeds, Precision::mixed);
      BackwardSeeds s64{seeds.d_o.cast(DType::f64), seeds.d_final_kk.cast(DType::f64),
                        seeds.d_final_kv.cast(DType::f64)};
      const BackwardResult gr = backward_run(case_in_f64(c), inputs_to_f64(in), s64, Backend::reference);
      expect_close(g.dq, gr.dq, 3e-3, (at + "dq").c_str());
      expect_close(g.dk, gr.dk, 3e-3, (at + "dk").c_str());
      expect_close(g.dv, gr.dv, 3e-3, (at + "dv").c_str());
      expect_close(g.dh0_kk, gr.dh0_kk, 3e-3, (at + "d_initial_kk").c_str());
    }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaAccuracy, ::testing::Values(Precision::fp32, Precision::mixed),
                         [](const ::testing::TestParamInfo<Precision>& i) { return std::string(precision_name(i.param)); });

}  // namespace
}  // namespace gka::test
