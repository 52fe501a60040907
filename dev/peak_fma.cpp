// Throwaway: measures the fp32 FMA peak of one core (AVX-512, 12 independent accumulator chains).
#include <immintrin.h>
#include <chrono>
#include <cstdio>
int main() {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  const long iters = 200000000;
  auto t0 = std::chrono::steady_clock::now();
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  auto t1 = std::chrono::steady_clock::now();
  double s = std::chrono::duration<double>(t1 - t0).count();
  float sum = 0;
  for (int i = 0; i < 12; ++i) sum += _mm512_reduce_add_ps(acc[i]);
  double flops = 2.0 * 16 * 12 * iters;
  std::printf("one core: %.1f GFLOP/s fp32 FMA (%.3f s, check %g)\n", flops / s * 1e-9, s, sum);
}
