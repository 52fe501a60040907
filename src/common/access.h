// Reading and writing rows of strided views with dtype conversion, for CPU code.
#pragma once

#include <cstdint>
#include <cstring>

#include "gka/tensor_view.h"

namespace gka {

inline float bf16_to_float(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t float_to_bf16(float f) {  // round to nearest even; NaN stays NaN
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float f16_to_float(uint16_t h);
uint16_t float_to_f16(float f);

// Element offset of row (i0, i1, i2) of a rank-3 or rank-4 view (the last dimension is contiguous).
inline int64_t row_offset(const TensorView& v, int64_t i0, int64_t i1, int64_t i2) {
  return i0 * v.strides[0] + i1 * v.strides[1] + i2 * v.strides[2];
}

template <class R>
void load(const TensorView& v, int64_t offset, R* dst, int64_t n) {
  const char* base = static_cast<const char*>(v.data);
  switch (v.dtype) {
    case DType::f32: {
      const float* s = reinterpret_cast<const float*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<R>(s[i]);
      break;
    }
    case DType::f64: {
      const double* s = reinterpret_cast<const double*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<R>(s[i]);
      break;
    }
    case DType::bf16: {
      const uint16_t* s = reinterpret_cast<const uint16_t*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<R>(bf16_to_float(s[i]));
      break;
    }
    case DType::f16: {
      const uint16_t* s = reinterpret_cast<const uint16_t*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<R>(f16_to_float(s[i]));
      break;
    }
    default: break;  // integer views never reach here: validation rejects them
  }
}

template <class R>
void store(const TensorView& v, int64_t offset, const R* src, int64_t n) {
  char* base = static_cast<char*>(v.data);
  switch (v.dtype) {
    case DType::f32: {
      float* d = reinterpret_cast<float*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(src[i]);
      break;
    }
    case DType::f64: {
      double* d = reinterpret_cast<double*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) d[i] = static_cast<double>(src[i]);
      break;
    }
    case DType::bf16: {
      uint16_t* d = reinterpret_cast<uint16_t*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(static_cast<float>(src[i]));
      break;
    }
    case DType::f16: {
      uint16_t* d = reinterpret_cast<uint16_t*>(base) + offset;
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_f16(static_cast<float>(src[i]));
      break;
    }
    default: break;
  }
}

// One scalar of a [B,T,H] view, or `absent` when the view is not given.
template <class R>
R load_scalar(const TensorView& v, int64_t b, int64_t t, int64_t h, R absent) {
  if (!v.defined()) return absent;
  R x = absent;
  load(v, row_offset(v, b, t, h), &x, 1);
  return x;
}

// Integer element i of a rank-1 int32/int64 view.
inline int64_t load_index(const TensorView& v, int64_t i) {
  const char* base = static_cast<const char*>(v.data);
  if (v.dtype == DType::i32) return reinterpret_cast<const int32_t*>(base)[i * v.strides[0]];
  return reinterpret_cast<const int64_t*>(base)[i * v.strides[0]];
}

}  // namespace gka
