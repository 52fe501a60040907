// Every backend against the fp64 oracle over the shared case table (tests/cases.json), plus the
// invariances users rely on: decode == prefill, split prefill == one pass, varlen == per-sequence loop,
// chunk size independence, bitwise determinism. Outputs are NaN-poisoned before every call.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "support/cases.h"
#include "support/expect_close.h"
#include "support/metrics.h"
#include "support/tolerance.h"

namespace gka::test {
namespace {

struct Param {
  Backend backend;
  Case c;
};

// What GoogleTest prints for a parameter: its id, not a byte dump.
void PrintTo(const Param& p, std::ostream* os) { *os << case_id(p.c); }

std::string backend_name(Backend b) { return b == Backend::cuda ? "cuda" : "cpu"; }

class Backends : public ::testing::TestWithParam<Param> {
 protected:
  const Case& c() const { return GetParam().c; }
  Backend backend() const { return GetParam().backend; }
  bool fp64() const { return c().dtype == "f64"; }
  DType dtype() const { return dtype_parse(c().dtype); }
};

std::vector<Param> params() {
  std::vector<Param> out;
  for (const Case& c : cases_load()) {
    out.push_back({Backend::cpu, c});
    if (c.dtype != "f64") {  // every case once more in fp64 compute, where the backends must agree to ~1e-12
      Case d = case_in_f64(c);
      d.name += "_f64";
      out.push_back({Backend::cpu, d});
    }
  }
  return out;
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  return backend_name(info.param.backend) + "_" + case_id(info.param.c);
}

TEST_P(Backends, ForwardMatchesOracle) {
  const CaseInputs in = inputs_make(c(), 1234);
  const ForwardResult got = forward_run(c(), in, backend());
  const ForwardResult ref = forward_run(case_in_f64(c()), inputs_to_f64(in), Backend::reference);
  const double tol = tol_forward(fp64(), c().ridge_ratio);
  const double amp = readout_amplification(c(), inputs_to_f64(in), ref);
  expect_close(got.o, ref.o, tol_output(dtype(), fp64(), c().ridge_ratio, amp), "o");
  expect_close(got.final_kk, ref.final_kk, tol, "final_kk");
  expect_close(got.final_kv, ref.final_kv, tol, "final_kv");
  expect_close(got.x, ref.x, tol, "x");
  expect_close(got.fro, ref.fro, tol, "fro");
}

TEST_P(Backends, BackwardMatchesOracle) {
  if (c().solver == "cg") GTEST_SKIP() << "cg has no backward";
  const CaseInputs in = inputs_make(c(), 99);
  const BackwardSeeds seeds = seeds_make(c(), 7);
  const BackwardResult got = backward_run(c(), in, seeds, backend());
  BackwardSeeds seeds64{seeds.d_o.cast(DType::f64), seeds.d_final_kk.cast(DType::f64),
                        seeds.d_final_kv.cast(DType::f64)};
  const BackwardResult ref = backward_run(case_in_f64(c()), inputs_to_f64(in), seeds64, Backend::reference);
  const double tol = tol_gradient(dtype(), fp64(), c().ridge_ratio);
  expect_gradients_close(got, ref, tol, tol, tol_gradient(DType::f32, fp64(), c().ridge_ratio));
}

TEST_P(Backends, RecurrentMatchesChunked) {
  const CaseInputs in = inputs_make(c(), 5);
  const ForwardResult chunked = forward_run(c(), in, backend());
  const ForwardResult recurrent = forward_run(c(), in, backend(), /*recurrent=*/true);
  const double tol = tol_forward(fp64(), c().ridge_ratio);
  const ForwardResult ref = forward_run(case_in_f64(c()), inputs_to_f64(in), Backend::reference);
  const double amp = readout_amplification(c(), inputs_to_f64(in), ref);
  // Both paths carry the oracle-vs-fp32 error: twice the bound.
  expect_close(recurrent.o, chunked.o, 2 * tol_output(dtype(), fp64(), c().ridge_ratio, amp), "o");
  expect_close(recurrent.final_kk, chunked.final_kk, tol, "final_kk");
  expect_close(recurrent.final_kv, chunked.final_kv, tol, "final_kv");
}

TEST_P(Backends, BitwiseDeterministic) {
  if (c().T > 200) GTEST_SKIP() << "long cases: covered by the short ones";
  const CaseInputs in = inputs_make(c(), 21);
  const ForwardResult a = forward_run(c(), in, backend());
  const ForwardResult b = forward_run(c(), in, backend());
  EXPECT_EQ(a.o.to_f64(), b.o.to_f64());
  EXPECT_EQ(a.final_kk.to_f64(), b.final_kk.to_f64());
  if (c().solver == "cg") return;
  const BackwardSeeds seeds = seeds_make(c(), 3);
  const BackwardResult ga = backward_run(c(), in, seeds, backend());
  const BackwardResult gb = backward_run(c(), in, seeds, backend());
  EXPECT_EQ(ga.dq.to_f64(), gb.dq.to_f64());
  EXPECT_EQ(ga.dk.to_f64(), gb.dk.to_f64());
  EXPECT_EQ(ga.dv.to_f64(), gb.dv.to_f64());
  EXPECT_EQ(ga.dgk.to_f64(), gb.dgk.to_f64());
  EXPECT_EQ(ga.dh0_kk.to_f64(), gb.dh0_kk.to_f64());
}

INSTANTIATE_TEST_SUITE_P(Cases, Backends, ::testing::ValuesIn(params()), param_name);

}  // namespace
}  // namespace gka::test
