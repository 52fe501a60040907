// Number types of the numerics study: the solvers are templates over the storage type T.
//   double  fp64 storage and arithmetic
//   float   fp32 storage and arithmetic
//   Bf16    simulated bfloat16: every stored value is rounded to bf16 (round to nearest, ties to even),
//           arithmetic happens in fp32 (like a bf16 kernel with fp32 accumulators).
// Rule used by every solver of the study: each vector or matrix the algorithm materialises is stored in T;
// a dot product or an elementwise expression is evaluated in Acc<T> (double for fp64, float otherwise) and
// rounded once when stored. Scalars (f, lambda, step sizes, CG's alpha/beta) stay in Acc<T>.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

namespace gka::study {

// Rounds an fp32 value to the nearest bf16 value (ties to even), returned as fp32. NaN stays NaN; values
// beyond the bf16 range round to +-inf like a hardware conversion.
inline float bf16_round(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
    u |= 0x00400000u;  // quiet NaN, keep it a NaN after truncation
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
  }
  u &= 0xffff0000u;
  float y;
  std::memcpy(&y, &u, sizeof y);
  return y;
}

struct Bf16 {
  float v = 0.0f;  // always a bf16-representable value
  Bf16() = default;
  Bf16(float x) : v(bf16_round(x)) {}                          // NOLINT: implicit, rounds on assignment
  Bf16(double x) : v(bf16_round(static_cast<float>(x))) {}     // NOLINT
  Bf16(int x) : v(bf16_round(static_cast<float>(x))) {}        // NOLINT
  operator float() const { return v; }                          // NOLINT
};

template <class T> struct AccOf { using type = T; };
template <> struct AccOf<Bf16> { using type = float; };
template <class T> using Acc = typename AccOf<T>::type;

template <class T> inline const char* precision_name();
template <> inline const char* precision_name<double>() { return "fp64"; }
template <> inline const char* precision_name<float>() { return "fp32"; }
template <> inline const char* precision_name<Bf16>() { return "bf16"; }

template <class T> inline double to_double(T x) { return static_cast<double>(static_cast<Acc<T>>(x)); }

}  // namespace gka::study
