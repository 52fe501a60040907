#include "peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace gka::bench {
namespace {

// FMA latency (4 cycles on Zen 4) x FMA pipes (2) = 8 chains keep the units busy; 16 leaves slack and
// still fits the register file (16 of 32 zmm).
constexpr int kChains = 16;

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr const char* kIsa = "avx512";
#elif defined(__FMA__)
constexpr int kLanes = 8;
constexpr const char* kIsa = "avx2-fma";
#else
constexpr int kLanes = 1;
constexpr const char* kIsa = "scalar";
#endif

// acc <- acc * m + a converges to a / (1 - m) = 1: no overflow, no denormals, nothing to fold away.
float chains_run(int64_t iters) {
#if defined(__AVX512F__)
  __m512 acc[kChains];
  const __m512 m = _mm512_set1_ps(0.9999f), a = _mm512_set1_ps(1e-4f);
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], m, a);
  }
  alignas(64) float lanes[16];
  __m512 s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm512_add_ps(s, acc[j]);
  _mm512_store_ps(lanes, s);
  float r = 0;
  for (float x : lanes) r += x;
  return r;
#elif defined(__FMA__)
  __m256 acc[kChains];
  const __m256 m = _mm256_set1_ps(0.9999f), a = _mm256_set1_ps(1e-4f);
  for (int j = 0; j < kChains; ++j) acc[j] = _mm256_set1_ps(static_cast<float>(j));
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], m, a);
  }
  alignas(32) float lanes[8];
  __m256 s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm256_add_ps(s, acc[j]);
  _mm256_store_ps(lanes, s);
  float r = 0;
  for (float x : lanes) r += x;
  return r;
#else
  float acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = static_cast<float>(j);
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < kChains; ++j) acc[j] = std::fma(acc[j], 0.9999f, 1e-4f);
  float r = 0;
  for (float x : acc) r += x;
  return r;
#endif
}

// Wall seconds for every thread to run `iters` iterations, timed between two barriers.
double timed_run(int threads, int64_t iters) {
  double t0 = 0, t1 = 0;
  volatile float sink = 0;
#pragma omp parallel num_threads(threads)
  {
#pragma omp barrier
#pragma omp master
    t0 = omp_get_wtime();
    const float r = chains_run(iters);
#pragma omp barrier
#pragma omp master
    {
      t1 = omp_get_wtime();
      sink = r;
    }
  }
  (void)sink;
  return t1 - t0;
}

}  // namespace

const char* fma_isa() { return kIsa; }
int fma_lanes() { return kLanes; }

double fma_peak_gflops(int threads, double seconds) {
  int64_t iters = 1 << 14;
  while (timed_run(threads, iters) < seconds / 4 && iters < (int64_t{1} << 40)) iters *= 2;
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) best = std::min(best, timed_run(threads, iters));
  const double flops = 2.0 * kChains * kLanes * static_cast<double>(iters) * threads;
  return flops / best * 1e-9;
}

}  // namespace gka::bench
