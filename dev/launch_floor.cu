// Throwaway probe (not part of the library): the floor under a decode step measured the way gka_bench_cuda does
// (a CUDA graph of one launch replayed 100 times, CUDA events around the replays; here the best of 5 such rounds).
// Kernels that do nothing (with a large __grid_constant__ parameter like decode's), or only pieces a decode step
// cannot avoid: read one token (an L2 round trip: the inputs stay in L2 across replays, as in the bench), read one
// 64 KB state per CTA (H's load alone; a step moves four). Grids as decode's at B = 1 (16 CTAs of 256 threads) and
// B = 64 (1024 CTAs; 100 KB of dynamic shared memory holds them to 2 per SM, as decode's registers do). Last, the SM
// clock while a kernel runs.
#include <cuda_runtime.h>

#include <cstdio>
#include <type_traits>

__global__ void empty_kernel(const float*, float*) {}

// Kernels that only read a parameter of N bytes, one float per thread at distinct addresses (up to 32 per warp, as
// decode's omega copy does; decode's launch argument, DecArgs, is ~5.5 KB).
template <int N>
struct BigArg {
  float v[N / 4];
};
template <int N>
__global__ void big_param_kernel(const __grid_constant__ BigArg<N> a, float* out) {
  if (a.v[threadIdx.x % (N / 4)] == 1.f) out[threadIdx.x] = 0.f;
}
// The SM clock while one CTA spins: clock64 cycles over globaltimer nanoseconds.
__global__ void clock_kernel(double* mhz) {
  unsigned long long g0, g1;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(g0));
  const long long c0 = clock64();
  while (clock64() - c0 < 2000000) {
  }
  const long long c1 = clock64();
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(g1));
  if (threadIdx.x == 0) *mhz = 1e3 * static_cast<double>(c1 - c0) / static_cast<double>(g1 - g0);
}

// One token's worth of loads, a CTA-wide barrier, one store per thread: launch + a DRAM round trip + a write.
__global__ void token_kernel(const float* in, float* out) {
  __shared__ float s[256];
  s[threadIdx.x] = in[blockIdx.x * 256 + threadIdx.x];
  __syncthreads();
  out[blockIdx.x * 256 + threadIdx.x] = s[255 - threadIdx.x];
}

// Also reads a 64 KB state per CTA (float4 per thread, 16 rounds) before the store: what moving H in costs alone.
__global__ void state_kernel(const float* in, float* out) {
  const float4* st = reinterpret_cast<const float4*>(in) + static_cast<size_t>(blockIdx.x) * 4096;
  float4 acc{};
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const float4 v = st[i * 256 + threadIdx.x];
    acc.x += v.x;
    acc.y += v.y;
    acc.z += v.z;
    acc.w += v.w;
  }
  out[blockIdx.x * 256 + threadIdx.x] = acc.x + acc.y + acc.z + acc.w;
}

// Microseconds per replay of a graph holding what `launch` puts on the stream (best of 5 rounds of 100 replays).
template <typename Launch>
float replay_us(Launch launch, cudaStream_t st) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal);
  launch();
  if (cudaStreamEndCapture(st, &g) != cudaSuccess || cudaGraphInstantiate(&ge, g, 0) != cudaSuccess ||
      cudaGraphLaunch(ge, st) != cudaSuccess || cudaStreamSynchronize(st) != cudaSuccess) {
    std::printf("capture or launch failed: %s\n", cudaGetErrorString(cudaGetLastError()));
    return -1.f;
  }
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  float best = 1e9f;
  for (int round = 0; round < 5; ++round) {
    cudaEventRecord(a, st);
    for (int r = 0; r < 100; ++r) cudaGraphLaunch(ge, st);
    cudaEventRecord(b, st);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    best = ms < best ? ms : best;
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  return best * 1e3f / 100;
}

int main() {
  cudaDeviceProp p;
  cudaGetDeviceProperties(&p, 0);
  std::printf("%s, %d SMs\n", p.name, p.multiProcessorCount);
  float *in, *out;
  cudaMalloc(&in, 1024ull * 65536);
  cudaMalloc(&out, 1024ull * 1024);
  cudaMemset(in, 0, 1024ull * 65536);
  cudaStream_t st;
  cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
  const size_t smem = 100 * 1024;
  for (auto* k : {empty_kernel, token_kernel, state_kernel})
    cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  auto row = [&](const char* name, auto launch) {
    std::printf("%-34s %8.2f %8.2f\n", name, replay_us([&] { launch(16); }, st), replay_us([&] { launch(1024); }, st));
  };
  auto plain = [&](auto* kernel, size_t bytes) { return [=](int ctas) { kernel<<<ctas, 256, bytes, st>>>(in, out); }; };
  auto big = [&](auto tag) {
    return [=](int ctas) { big_param_kernel<decltype(tag)::value><<<ctas, 256, 0, st>>>({}, out); };
  };
  int per_sm = 0;
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, state_kernel, 256, smem);
  std::printf("%-34s %8s %8s   (%d CTAs per SM with the dynamic shared memory)\n", "kernel (graph replay, us)",
              "16 CTAs", "1024", per_sm);
  row("empty", plain(empty_kernel, 0));
  row("empty, 100 KB dynamic smem", plain(empty_kernel, smem));
  row("empty, 512 B parameter", big(std::integral_constant<int, 512>{}));
  row("empty, 2048 B parameter", big(std::integral_constant<int, 2048>{}));
  row("empty, 5632 B parameter", big(std::integral_constant<int, 5632>{}));
  // Clusters (decode_split.cu: one of 3 CTAs per head): n clusters of `size` CTAs, 128 threads, 65 KB each.
  auto clustered = [&](int size, bool spread) {
    return [=](int n) {
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = dim3(size * n);
      cfg.blockDim = dim3(128);
      cfg.dynamicSmemBytes = 65 * 1024;
      cfg.stream = st;
      cudaLaunchAttribute attr[2]{};
      attr[0].id = cudaLaunchAttributeClusterDimension;
      attr[0].val.clusterDim.x = size;
      attr[0].val.clusterDim.y = attr[0].val.clusterDim.z = 1;
      attr[1].id = cudaLaunchAttributeClusterSchedulingPolicyPreference;
      attr[1].val.clusterSchedulingPolicyPreference = spread ? cudaClusterSchedulingPolicySpread
                                                             : cudaClusterSchedulingPolicyDefault;
      cfg.attrs = attr;
      cfg.numAttrs = 2;
      cudaLaunchKernelEx(&cfg, empty_kernel, static_cast<const float*>(in), out);
    };
  };
  row("empty, 16 / 1024 x 3 CTAs, no cluster", [&](int n) { empty_kernel<<<3 * n, 128, 65 * 1024, st>>>(in, out); });
  row("empty, clusters of 2 (n x 2 CTAs)", clustered(2, false));
  row("empty, clusters of 3 (n x 3 CTAs)", clustered(3, false));
  row("empty, clusters of 3, spread", clustered(3, true));
  row("token load + barrier + store", plain(token_kernel, smem));
  row("64 KB state read per CTA + store", plain(state_kernel, smem));
  double* mhz;
  cudaMallocManaged(&mhz, sizeof(double));
  for (int i = 0; i < 3; ++i) {
    clock_kernel<<<1, 32>>>(mhz);
    cudaDeviceSynchronize();
    std::printf("SM clock while spinning: %.0f MHz\n", *mhz);
  }
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) std::printf("error: %s\n", cudaGetErrorString(e));
  return 0;
}
