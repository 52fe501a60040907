#include "buffer.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "gka/error.h"

namespace gka::quickstart {
namespace {

float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_bf16(float f) {  // round to nearest even; NaN stays NaN
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

}  // namespace

Buffer::Buffer(DType dtype, std::vector<int64_t> sizes) : dtype_(dtype), sizes_(std::move(sizes)) {
  if (dtype_ == DType::f16) throw Error("quickstart::Buffer: f16 is not used here");
  bytes_.assign(static_cast<size_t>(numel() * dtype_size(dtype_)), 0);
}

int64_t Buffer::numel() const {
  if (sizes_.empty()) return 0;
  int64_t n = 1;
  for (int64_t s : sizes_) n *= s;
  return n;
}

TensorView Buffer::view() const {
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

double Buffer::get(int64_t i) const {
  const unsigned char* p = bytes_.data();
  switch (dtype_) {
    case DType::f32: return reinterpret_cast<const float*>(p)[i];
    case DType::f64: return reinterpret_cast<const double*>(p)[i];
    case DType::bf16: return bf16_to_float(reinterpret_cast<const uint16_t*>(p)[i]);
    case DType::i32: return reinterpret_cast<const int32_t*>(p)[i];
    case DType::i64: return static_cast<double>(reinterpret_cast<const int64_t*>(p)[i]);
    case DType::f16: break;
  }
  return 0;
}

void Buffer::set(int64_t i, double value) {
  unsigned char* p = bytes_.data();
  switch (dtype_) {
    case DType::f32: reinterpret_cast<float*>(p)[i] = static_cast<float>(value); break;
    case DType::f64: reinterpret_cast<double*>(p)[i] = value; break;
    case DType::bf16: reinterpret_cast<uint16_t*>(p)[i] = float_to_bf16(static_cast<float>(value)); break;
    case DType::i32: reinterpret_cast<int32_t*>(p)[i] = static_cast<int32_t>(value); break;
    case DType::i64: reinterpret_cast<int64_t*>(p)[i] = static_cast<int64_t>(value); break;
    case DType::f16: break;
  }
}

void Buffer::fill(double value) {
  for (int64_t i = 0; i < numel(); ++i) set(i, value);
}

std::vector<double> Buffer::to_f64() const {
  std::vector<double> out(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) out[static_cast<size_t>(i)] = get(i);
  return out;
}

double rel_l2(const Buffer& a, const Buffer& ref) {
  const double inf = std::numeric_limits<double>::infinity();
  if (a.numel() != ref.numel()) return inf;
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double r = ref.get(i), d = a.get(i) - r;
    num += d * d;
    den += r * r;
  }
  if (!std::isfinite(num) || !std::isfinite(den)) return inf;
  if (den == 0) return num == 0 ? 0.0 : inf;
  return std::sqrt(num / den);
}

}  // namespace gka::quickstart
