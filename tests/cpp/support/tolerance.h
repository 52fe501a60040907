// Tolerances, derived once. fp32 compute: a Chebyshev/Cholesky solve loses about kappa * eps32 (kappa <=
// (1+r)/r = 51 at r = 0.02), and the chunked sums add O(sqrt(C)) rounding; 1e-5 at kappa = 51 covers
// both with margin, so the bound scales with kappa for smaller ridge ratios. Outputs stored in 16-bit
// dtypes add their own rounding: half an ulp relative per element (bf16 2^-9, f16 2^-12), so 1e-2 / 2e-3.
// Gradients in fp32 go through two solves and reverse-time sums over up to ~1000 tokens: 20x the
// forward bound. fp64 compute: the same chain at eps64 ~ 1e-16 sits far below 1e-9.
#pragma once

#include <algorithm>

#include "gka/tensor_view.h"

namespace gka::test {

inline double kappa_factor(double ridge_ratio) { return std::max(1.0, ((1 + ridge_ratio) / ridge_ratio) / 51.0); }

// Outputs kept in the compute precision (x, states) of a forward computed in fp32 / fp64.
inline double tol_forward(bool fp64, double ridge_ratio) { return fp64 ? 1e-9 : 1e-5 * kappa_factor(ridge_ratio); }

// An output stored in `dtype` after fp32/fp64 compute.
inline double tol_stored(DType dtype, bool fp64, double ridge_ratio) {
  const double compute = tol_forward(fp64, ridge_ratio);
  if (dtype == DType::bf16) return compute + 1e-2;
  if (dtype == DType::f16) return compute + 2e-3;
  return compute;
}

// The output o: the readout s S_tᵀ q̃_t cancels large components of x (spec §A.3), amplifying the
// relative rounding of x by `amplification` (cases.h: readout_amplification, 4..110 on our cases). So o
// gets max(forward bound, amplification x (the accuracy of x: 1e-6 in fp32, 1e-13 in fp64)), plus storage.
inline double tol_output(DType dtype, bool fp64, double ridge_ratio, double amplification) {
  const double compute = std::max(tol_forward(fp64, ridge_ratio), amplification * (fp64 ? 1e-13 : 1e-6));
  return tol_stored(dtype, fp64, ridge_ratio) - tol_forward(fp64, ridge_ratio) + compute;
}

inline double tol_gradient(DType dtype, bool fp64, double ridge_ratio) {
  return tol_stored(dtype, fp64, ridge_ratio) + (fp64 ? 1e-9 : 2e-4 * kappa_factor(ridge_ratio));
}

}  // namespace gka::test
