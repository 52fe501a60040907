// An owning host tensor: a byte buffer plus dtype and sizes, handed to libgka as a contiguous TensorView.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "gka/tensor_view.h"

namespace gka::harness {

class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, std::vector<int64_t> sizes);

  static Tensor zeros(DType dtype, std::vector<int64_t> sizes) { return Tensor(dtype, std::move(sizes)); }
  static Tensor from_f64(const std::vector<double>& values, DType dtype, std::vector<int64_t> sizes);
  static Tensor randn(DType dtype, std::vector<int64_t> sizes, std::mt19937_64& rng, double stddev = 1.0);

  bool defined() const { return !sizes_.empty(); }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& sizes() const { return sizes_; }
  int64_t numel() const;
  TensorView view() const;          // absent view if !defined()
  std::vector<double> to_f64() const;
  Tensor cast(DType dtype) const;   // rounds through the target dtype
  void fill_nan();                  // poison before a call under test
  void set_f64(int64_t i, double value);
  double get_f64(int64_t i) const;

  // Rows [begin, end) of dimension `dim` (a copy), and the concatenation of two tensors along `dim`.
  Tensor slice(int32_t dim, int64_t begin, int64_t end) const;
  static Tensor concat(const Tensor& a, const Tensor& b, int32_t dim);

 private:
  DType dtype_ = DType::f32;
  std::vector<int64_t> sizes_;
  std::vector<unsigned char> bytes_;
};

}  // namespace gka::harness
