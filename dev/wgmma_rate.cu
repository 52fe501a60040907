// Throwaway probe (not part of the library): cycles per wgmma m64nNk16 f16 (A from registers, B from shared memory)
// for one CTA of one warpgroup per SM and for two, one or two accumulator chains, and the card's rate from them:
// whether the solves' N = 64 and N = 128 products can reach the tensor pipe's peak (session 20: two CTAs per SM do,
// ~950 TFLOP/s; one CTA with one chain 725). Build: nvcc -O3 -std=c++17 -Isrc
// --generate-code=arch=compute_90a,code=sm_90a dev/wgmma_rate.cu -o /tmp/wgmma_rate
#include <cstdint>
#include <cstdio>

#include "cuda/wgmma.cuh"

using gka::cuda::wgmma_f16_n128;
using gka::cuda::wgmma_f16_n64;

__device__ __forceinline__ uint64_t desc(uint32_t p) {
  return (uint64_t)((p & 0x3FFFFu) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

template <int N, int CH>
__global__ void __launch_bounds__(128, 1) kern(int iters, long long* out, float* sink) {
  extern __shared__ __align__(1024) char sm[];
  for (int i = threadIdx.x; i < 64 * 1024 / 4; i += blockDim.x) reinterpret_cast<uint32_t*>(sm)[i] = 0u;
  __syncthreads();
  uint32_t a[4] = {threadIdx.x, 1u, 2u, 3u};
  float d[CH][N / 2];
  for (int c = 0; c < CH; ++c)
    for (int i = 0; i < N / 2; ++i) d[c][i] = 0.f;
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(sm));
  gka::cuda::wgmma_fence();
  long long t0 = clock64();
  for (int it = 0; it < iters; ++it) {
    gka::cuda::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < 8; ++ks)
#pragma unroll
      for (int c = 0; c < CH; ++c) {
        if constexpr (N == 64) wgmma_f16_n64<0>(reinterpret_cast<float(&)[32]>(d[c][0]), a, desc(base + ks * 32), 1);
        if constexpr (N == 128)
          wgmma_f16_n128<0>(reinterpret_cast<float(&)[32]>(d[c][0]), reinterpret_cast<float(&)[32]>(d[c][32]), a,
                            desc(base + ks * 32), 1);
      }
    gka::cuda::wgmma_commit();
    gka::cuda::wgmma_wait<0>();
  }
  long long t1 = clock64();
  float s = 0.f;
  for (int c = 0; c < CH; ++c)
    for (int i = 0; i < N / 2; ++i) s += d[c][i];
  if (threadIdx.x == 0) out[blockIdx.x] = t1 - t0;
  if (s == 12345.f) sink[0] = s;
}
template <int N, int CH>
void run(int ctas_per_sm) {
  int sms;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const int grid = sms * ctas_per_sm, iters = 2000, smem = 100 * 1024;
  cudaFuncSetAttribute(kern<N, CH>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  long long* out;
  float* sink;
  cudaMalloc(&out, grid * 8);
  cudaMalloc(&sink, 4);
  kern<N, CH><<<grid, 128, smem>>>(10, out, sink);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  cudaEventRecord(e0);
  kern<N, CH><<<grid, 128, smem>>>(iters, out, sink);
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  float ms;
  cudaEventElapsedTime(&ms, e0, e1);
  long long h[1024];
  cudaMemcpy(h, out, grid * 8, cudaMemcpyDeviceToHost);
  const double n_mma = (double)iters * 8 * CH, flop = 2.0 * 64 * N * 16 * n_mma * grid;
  printf("N=%3d chains=%d CTAs/SM=%d: %6.1f cycles per wgmma per CTA (CTA 0), %6.1f TFLOP/s, %s\n", N, CH, ctas_per_sm,
         h[0] / n_mma, flop / ms / 1e9, cudaGetErrorString(cudaGetLastError()));
  cudaFree(out);
  cudaFree(sink);
}
int main() {
  run<64, 1>(1);
  run<64, 2>(1);
  run<64, 1>(2);
  run<64, 2>(2);
  run<128, 1>(1);
  run<128, 1>(2);
}
