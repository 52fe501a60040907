// Error measures for comparing a result with a reference: relative L2, sqrt(sum (a-ref)^2 / sum ref^2), and
// max-abs (ggml's advice: NMSE alone hides outliers), plus a NaN/Inf count. Both errors are infinite where
// either side holds a NaN/Inf or the sizes differ, so a check "error <= tolerance" fails on those.
#pragma once

#include <vector>

#include "harness/tensor.h"

namespace gka::harness {

double rel_err(const std::vector<double>& a, const std::vector<double>& ref);
double max_abs_err(const std::vector<double>& a, const std::vector<double>& ref);
int64_t nonfinite_count(const std::vector<double>& a);

inline double rel_err(const Tensor& a, const Tensor& ref) { return rel_err(a.to_f64(), ref.to_f64()); }
inline double max_abs_err(const Tensor& a, const Tensor& ref) { return max_abs_err(a.to_f64(), ref.to_f64()); }
inline int64_t nonfinite_count(const Tensor& a) { return nonfinite_count(a.to_f64()); }

}  // namespace gka::harness
