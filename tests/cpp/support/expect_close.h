// The oracle comparison of the backend tests (GoogleTest assertions; header-only, so the support library
// itself stays free of GoogleTest).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "support/cases.h"
#include "support/metrics.h"

namespace gka::test {

// Relative L2 error of `a` against the oracle's `ref`, with a max-abs cross-check scaled by the
// reference's largest entry, so that one bad element cannot hide in a large norm.
inline void expect_close(const Tensor& a, const Tensor& ref, double tol, const std::string& what) {
  ASSERT_EQ(nonfinite_count(a), 0) << what << " has NaN/Inf (poisoned output left unwritten?)";
  const double rel = rel_err(a, ref);
  EXPECT_LE(rel, tol) << what << ": relative L2 error " << rel << " > " << tol;
  double ref_max = 0;
  for (double x : ref.to_f64()) ref_max = std::max(ref_max, std::abs(x));
  const double mae = max_abs_err(a, ref);
  EXPECT_LE(mae, 10 * tol * (ref_max > 0 ? ref_max : 1)) << what << ": max-abs error " << mae;
}

// Every gradient of `got` against `ref`: dq, dk, dv within tol, the per-token alpha and gate gradients (where
// present) within tol_token, the initial-state gradients within tol_state; `what` prefixes the messages.
inline void expect_gradients_close(const BackwardResult& got, const BackwardResult& ref, double tol, double tol_token,
                                   double tol_state, const std::string& what = "") {
  expect_close(got.dq, ref.dq, tol, what + "dq");
  expect_close(got.dk, ref.dk, tol, what + "dk");
  expect_close(got.dv, ref.dv, tol, what + "dv");
  if (got.dalpha.defined()) expect_close(got.dalpha, ref.dalpha, tol_token, what + "dalpha");
  if (got.dg.defined()) expect_close(got.dg, ref.dg, tol_token, what + "dg");
  if (got.dgk.defined()) expect_close(got.dgk, ref.dgk, tol_token, what + "dgk");
  expect_close(got.dh0_kk, ref.dh0_kk, tol_state, what + "d_initial_kk");
  expect_close(got.dh0_kv, ref.dh0_kv, tol_state, what + "d_initial_kv");
}

}  // namespace gka::test
