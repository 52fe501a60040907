// An owning tensor (bytes + dtype + sizes) that hands libgka a contiguous TensorView.
#pragma once

#include <cstdint>
#include <vector>

#include "gka/tensor_view.h"

namespace gka::quickstart {

class Buffer {
 public:
  Buffer() = default;
  Buffer(DType dtype, std::vector<int64_t> sizes);  // zero-filled

  bool defined() const { return !sizes_.empty(); }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& sizes() const { return sizes_; }
  int64_t numel() const;
  TensorView view() const;  // absent if !defined()

  double get(int64_t i) const;
  void set(int64_t i, double value);  // rounds to the dtype (bf16: to nearest even)
  void fill(double value);
  std::vector<double> to_f64() const;

 private:
  DType dtype_ = DType::f32;
  std::vector<int64_t> sizes_;
  std::vector<unsigned char> bytes_;
};

// sqrt(sum (a-ref)^2 / sum ref^2); infinity on NaN/Inf or a size mismatch.
double rel_l2(const Buffer& a, const Buffer& ref);

}  // namespace gka::quickstart
