// Every kind of misuse gets a gka::Error whose message names the argument, what was expected and what
// came; never a crash or silent garbage.
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <string>

#include "support/cases.h"

namespace gka::test {
namespace {

// Runs `call` and checks that it throws gka::Error mentioning every one of `parts`.
void expect_error(const std::function<void()>& call, std::initializer_list<std::string> parts) {
  try {
    call();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
    return;
  }
  ADD_FAILURE() << "no gka::Error thrown";
}

struct Fixture {
  Case c;
  CaseInputs in;
  Tensor o;
  Fixture() {
    c.name = "err";
    c.B = 2;
    c.T = 10;
    c.H = 2;
    c.D = 8;
    c.h0 = true;
    in = inputs_make(c, 1);
    o = Tensor(DType::f32, {c.B, c.T, c.H, c.D});
  }
  ForwardOutputs out() const {
    ForwardOutputs r;
    r.o = o.view();
    return r;
  }
  void forward(const Inputs& i, const Options& opt = {}) const { chunk_forward(i, out(), opt); }
};

TEST(Errors, MissingAndMisshapenTensors) {
  Fixture f;
  Inputs in = f.in.view();
  in.q = {};
  expect_error([&] { f.forward(in); }, {"q is required"});
  in = f.in.view();
  in.k.sizes[3] = 7;
  expect_error([&] { f.forward(in); }, {"k must have shape [2, 10, 2, 8]", "got [2, 10, 2, 7]"});
  in = f.in.view();
  in.v.ndim = 3;
  expect_error([&] { f.forward(in); }, {"v must have shape [B, T, H, Dv]"});
  in = f.in.view();
  in.g.sizes[2] = 3;
  expect_error([&] { f.forward(in); }, {"g must have shape [2, 10, 2]", "got [2, 10, 3]"});
  in = f.in.view();
  in.initial_kk.sizes[0] = 1;
  expect_error([&] { f.forward(in); }, {"initial_kk must have shape [2, 2, 8, 8]"});
  in = f.in.view();
  ForwardOutputs out = f.out();
  Tensor bad_o(DType::f32, {2, 10, 2, 9});
  out.o = bad_o.view();
  expect_error([&] { chunk_forward(in, out); }, {"o must have shape [2, 10, 2, 8]", "got [2, 10, 2, 9]"});
}

TEST(Errors, EmptySequence) {
  Fixture f;
  Inputs in = f.in.view();
  in.q.sizes[1] = in.k.sizes[1] = in.v.sizes[1] = 0;
  expect_error([&] { f.forward(in); }, {"T >= 1", "got T = 0"});
}

TEST(Errors, Dtypes) {
  Fixture f;
  Inputs in = f.in.view();
  const Tensor kb = f.in.k.cast(DType::bf16);
  in.k = kb.view();
  expect_error([&] { f.forward(in); }, {"k (same dtype as q) must have dtype float32", "got bfloat16"});
  in = f.in.view();
  in.q.dtype = DType::i32;
  expect_error([&] { f.forward(in); }, {"q must have a floating dtype", "got int32"});
  in = f.in.view();
  const Tensor h64 = f.in.h0_kk.cast(DType::f64);
  in.initial_kk = h64.view();
  expect_error([&] { f.forward(in); }, {"initial_kk must have dtype float32", "got float64"});
  in = f.in.view();
  ForwardOutputs out = f.out();
  const Tensor o16 = f.o.cast(DType::bf16);
  out.o = o16.view();
  expect_error([&] { chunk_forward(in, out); }, {"o (dtype of v) must have dtype float32", "got bfloat16"});
}

TEST(Errors, DevicesAndBackends) {
  Fixture f;
  Inputs in = f.in.view();
  in.v.device = Device::cuda;
  expect_error([&] { f.forward(in); }, {"v must be on the same device as q (cpu)", "got cuda"});
  in = f.in.view();
  Options opt;
  opt.backend = Backend::cuda;
  // Without CUDA in the build: "not available"; with it: cpu tensors are refused by the cuda backend.
  expect_error([&] { f.forward(in, opt); }, {"the cuda backend"});
}

TEST(Errors, Strides) {
  Fixture f;
  Inputs in = f.in.view();
  in.q.strides[3] = 2;
  expect_error([&] { f.forward(in); }, {"q must have stride 1 in its last dimension", "got 2"});
  in = f.in.view();
  in.k.strides[1] = -8;
  expect_error([&] { f.forward(in); }, {"k must have non-negative strides"});
}

TEST(Errors, Options) {
  Fixture f;
  const Inputs in = f.in.view();
  Options opt;
  opt.ridge_ratio = 0;
  expect_error([&] { f.forward(in, opt); }, {"ridge_ratio must be a finite number > 0", "got 0"});
  opt = {};
  opt.ridge_ratio = std::numeric_limits<double>::infinity();
  expect_error([&] { f.forward(in, opt); }, {"ridge_ratio"});
  opt = {};
  opt.num_iter = -1;
  expect_error([&] { f.forward(in, opt); }, {"num_iter must lie in [0, 10000]", "got -1"});
  opt = {};
  opt.chunk_size = 4;
  expect_error([&] { f.forward(in, opt); }, {"chunk_size must lie in [8, 256]", "got 4"});
  opt = {};
  opt.tolerance = 2.0;
  expect_error([&] { f.forward(in, opt); }, {"tolerance must lie in (0, 1)"});
  opt = {};
  opt.scale = std::numeric_limits<double>::quiet_NaN();
  expect_error([&] { f.forward(in, opt); }, {"scale must be finite"});
  opt = {};
  opt.precision = static_cast<Precision>(7);
  expect_error([&] { f.forward(in, opt); }, {"precision must be fp32 or mixed", "got 7"});
  opt = {};
  opt.num_threads = -2;
  expect_error([&] { f.forward(in, opt); }, {"num_threads must be >= 0", "got -2"});
  expect_error([&] { num_iter_for_tolerance(0.02, 0.0); }, {"tolerance must lie in (0, 1)"});
}

TEST(Errors, CuSeqlens) {
  Fixture f;
  Case c = f.c;
  c.varlen = {4, 6};
  c.B = 1;
  const CaseInputs in = inputs_make(c, 2);
  Tensor o(DType::f32, {1, 10, 2, 8});
  ForwardOutputs out;
  out.o = o.view();
  auto run = [&](const std::vector<double>& cu, DType dt = DType::i64) {
    const Tensor t = Tensor::from_f64(cu, dt, {static_cast<int64_t>(cu.size())});
    Inputs i = in.view();
    i.cu_seqlens = t.view();
    chunk_forward(i, out);
  };
  expect_error([&] { run({0, 6, 4, 10}); }, {"cu_seqlens must be non-decreasing", "cu_seqlens[1] = 6 > cu_seqlens[2] = 4"});
  expect_error([&] { run({0, 4, 9}); }, {"cu_seqlens[-1] must equal T = 10", "got 9"});
  expect_error([&] { run({1, 4, 10}); }, {"cu_seqlens[0] must be 0", "got 1"});
  expect_error([&] { run({0, 4, 10}, DType::f32); }, {"cu_seqlens must have dtype int32 or int64", "got float32"});
  expect_error([&] { run({0}); }, {"cu_seqlens must have shape [N+1] with N >= 1"});
  // With B = 2, packed sequences make no sense.
  const Tensor cu = Tensor::from_f64({0, 4, 10}, DType::i32, {3});
  Inputs i = f.in.view();
  i.cu_seqlens = cu.view();
  i.initial_kk = i.initial_kv = {};
  expect_error([&] { f.forward(i); }, {"cu_seqlens requires B == 1", "got B = 2"});
}

TEST(Errors, NonFiniteInputsWhenChecking) {
  Fixture f;
  Tensor k = f.in.k;
  k.set_f64(37, std::numeric_limits<double>::quiet_NaN());
  Inputs in = f.in.view();
  in.k = k.view();
  Options opt;
  opt.check_finite = true;
  expect_error([&] { f.forward(in, opt); }, {"k must be finite", "at [0, 2, 0, 5]"});
  Tensor g = f.in.g;
  g.set_f64(3, -std::numeric_limits<double>::infinity());
  in = f.in.view();
  in.g = g.view();
  expect_error([&] { f.forward(in, opt); }, {"g must be finite", "-inf"});
}

TEST(Errors, Backward) {
  Fixture f;
  Inputs in = f.in.view();
  in.alpha = {};
  const Tensor d_o = f.o;
  Tensor dalpha(DType::f32, {2, 10, 2});
  BackwardInputs gin;
  gin.d_o = d_o.view();
  Gradients g;
  g.dalpha = dalpha.view();
  expect_error([&] { chunk_backward(in, gin, g); }, {"dalpha was requested but its input is absent"});
  in = f.in.view();
  g = {};
  gin.d_o = {};
  expect_error([&] { chunk_backward(in, gin, g); }, {"d_o (gradient of o) is required"});
  gin.d_o = d_o.view();
  Options opt;
  opt.solver = Solver::cg;
  expect_error([&] { chunk_backward(in, gin, g, opt); }, {"backward is implemented for the chebyshev and exact", "cg"});
  const Tensor x(DType::f32, {2, 10, 2, 8});
  gin.x = x.view();
  expect_error([&] { chunk_backward(in, gin, g); }, {"saved x and fro must be given together"});
}

TEST(Errors, StatePool) {
  Fixture f;
  Inputs in = f.in.view();
  in.initial_kk = in.initial_kv = {};
  Tensor kk(DType::f32, {3, 2, 8, 8}), kv(DType::f32, {3, 2, 8, 8});
  Tensor o(DType::f32, {2, 10, 2, 8});
  const Tensor out_of_range = Tensor::from_f64({0, 3}, DType::i32, {2});
  expect_error([&] { decode_pool_step(in, {kk.view(), kv.view(), out_of_range.view()}, o.view()); },
               {"pool.slots[1] = 3 is out of range for a pool of 3 slots"});
  const Tensor repeated = Tensor::from_f64({1, 1}, DType::i64, {2});
  expect_error([&] { decode_pool_step(in, {kk.view(), kv.view(), repeated.view()}, o.view()); },
               {"must not repeat a slot", "slot 1 twice"});
  const Tensor short_slots = Tensor::from_f64({1}, DType::i64, {1});
  expect_error([&] { decode_pool_step(in, {kk.view(), kv.view(), short_slots.view()}, o.view()); },
               {"pool.slots must have shape [B] = [2]", "got [1]"});
  in.initial_kk = f.in.h0_kk.view();
  const Tensor ok = Tensor::from_f64({0, 1}, DType::i64, {2});
  expect_error([&] { decode_pool_step(in, {kk.view(), kv.view(), ok.view()}, o.view()); },
               {"initial_kk/initial_kv must be absent with a state pool"});
}

}  // namespace
}  // namespace gka::test
