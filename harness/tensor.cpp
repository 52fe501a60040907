#include "harness/tensor.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "common/access.h"

namespace gka::harness {

Tensor::Tensor(DType dtype, std::vector<int64_t> sizes) : dtype_(dtype), sizes_(std::move(sizes)) {
  bytes_.assign(static_cast<size_t>(numel() * dtype_size(dtype_)), 0);
}

int64_t Tensor::numel() const {
  if (sizes_.empty()) return 0;
  int64_t n = 1;
  for (int64_t s : sizes_) n *= s;
  return n;
}

TensorView Tensor::view() const {
  TensorView v;
  if (!defined()) return v;
  v.data = const_cast<unsigned char*>(bytes_.data());
  v.dtype = dtype_;
  v.ndim = static_cast<int32_t>(sizes_.size());
  int64_t stride = 1;
  for (int32_t i = v.ndim - 1; i >= 0; --i) {
    v.sizes[i] = sizes_[static_cast<size_t>(i)];
    v.strides[i] = stride;
    stride *= v.sizes[i];
  }
  return v;
}

double Tensor::get_f64(int64_t i) const {
  const unsigned char* p = bytes_.data();
  switch (dtype_) {
    case DType::f32: return reinterpret_cast<const float*>(p)[i];
    case DType::f64: return reinterpret_cast<const double*>(p)[i];
    case DType::bf16: return bf16_to_float(reinterpret_cast<const uint16_t*>(p)[i]);
    case DType::f16: return f16_to_float(reinterpret_cast<const uint16_t*>(p)[i]);
    case DType::i32: return reinterpret_cast<const int32_t*>(p)[i];
    case DType::i64: return static_cast<double>(reinterpret_cast<const int64_t*>(p)[i]);
  }
  return 0;
}

void Tensor::set_f64(int64_t i, double value) {
  unsigned char* p = bytes_.data();
  switch (dtype_) {
    case DType::f32: reinterpret_cast<float*>(p)[i] = static_cast<float>(value); break;
    case DType::f64: reinterpret_cast<double*>(p)[i] = value; break;
    case DType::bf16: reinterpret_cast<uint16_t*>(p)[i] = float_to_bf16(static_cast<float>(value)); break;
    case DType::f16: reinterpret_cast<uint16_t*>(p)[i] = float_to_f16(static_cast<float>(value)); break;
    case DType::i32: reinterpret_cast<int32_t*>(p)[i] = static_cast<int32_t>(value); break;
    case DType::i64: reinterpret_cast<int64_t*>(p)[i] = static_cast<int64_t>(value); break;
  }
}

std::vector<double> Tensor::to_f64() const {
  std::vector<double> out(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) out[static_cast<size_t>(i)] = get_f64(i);
  return out;
}

Tensor Tensor::from_f64(const std::vector<double>& values, DType dtype, std::vector<int64_t> sizes) {
  Tensor t(dtype, std::move(sizes));
  for (int64_t i = 0; i < t.numel(); ++i) t.set_f64(i, values[static_cast<size_t>(i)]);
  return t;
}

Tensor Tensor::randn(DType dtype, std::vector<int64_t> sizes, std::mt19937_64& rng, double stddev) {
  Tensor t(dtype, std::move(sizes));
  std::normal_distribution<double> dist(0.0, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_f64(i, dist(rng));
  return t;
}

Tensor Tensor::cast(DType dtype) const { return from_f64(to_f64(), dtype, sizes_); }

Tensor Tensor::slice(int32_t dim, int64_t begin, int64_t end) const {
  std::vector<int64_t> sizes = sizes_;
  sizes[static_cast<size_t>(dim)] = end - begin;
  Tensor out(dtype_, sizes);
  int64_t outer = 1, inner = 1;
  for (int32_t i = 0; i < dim; ++i) outer *= sizes_[static_cast<size_t>(i)];
  for (size_t i = static_cast<size_t>(dim) + 1; i < sizes_.size(); ++i) inner *= sizes_[i];
  const int64_t n = sizes_[static_cast<size_t>(dim)];
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t r = begin; r < end; ++r)
      for (int64_t i = 0; i < inner; ++i)
        out.set_f64((o * (end - begin) + (r - begin)) * inner + i, get_f64((o * n + r) * inner + i));
  return out;
}

Tensor Tensor::concat(const Tensor& a, const Tensor& b, int32_t dim) {
  std::vector<int64_t> sizes = a.sizes_;
  const int64_t na = a.sizes_[static_cast<size_t>(dim)], nb = b.sizes_[static_cast<size_t>(dim)];
  sizes[static_cast<size_t>(dim)] = na + nb;
  Tensor out(a.dtype_, sizes);
  int64_t outer = 1, inner = 1;
  for (int32_t i = 0; i < dim; ++i) outer *= sizes[static_cast<size_t>(i)];
  for (size_t i = static_cast<size_t>(dim) + 1; i < sizes.size(); ++i) inner *= sizes[i];
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t r = 0; r < na + nb; ++r)
      for (int64_t i = 0; i < inner; ++i)
        out.set_f64((o * (na + nb) + r) * inner + i,
                    r < na ? a.get_f64((o * na + r) * inner + i) : b.get_f64((o * nb + r - na) * inner + i));
  return out;
}

void Tensor::fill_nan() {
  for (int64_t i = 0; i < numel(); ++i) set_f64(i, std::numeric_limits<double>::quiet_NaN());
}

}  // namespace gka::harness
