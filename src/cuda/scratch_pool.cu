// The CUDA backend's scratch memory: a stream-ordered pool per device, private to the library, that keeps the memory it
// has mapped between calls (as a caching allocator does). From the device's default pool, which returns its memory to
// the system at every synchronization (release threshold 0), each call after a synchronization mapped its scratch
// afresh (~1.3 GB for a backward at 8 x 2048): 0.7 of the 2.2 ms of a mixed forward on an H200 (bench/RESULTS.md,
// session 20). Needs CUDA >= 12.8 (cudaStreamGetDevice). The handles stay valid until cudaDeviceReset, which the
// library never calls (a caller that does must not call it afterwards).
#include <cstdint>
#include <mutex>

#include "cuda/common.cuh"

namespace gka {
namespace cuda {
namespace {

constexpr int kMaxDevices = 64;
std::mutex pools_mu;
cudaMemPool_t pools[kMaxDevices] = {};

}  // namespace

cudaMemPool_t scratch_pool(cudaStream_t stream, const char* fn) {
  int dev = 0;
  if (stream == nullptr) {
    check(cudaGetDevice(&dev), fn, "cudaGetDevice");
  } else if (cudaStreamGetDevice(stream, &dev) != cudaSuccess) {
    (void)cudaGetLastError();  // the failed query's own error, not the caller's
    check(cudaGetDevice(&dev), fn, "cudaGetDevice");
  }
  if (dev < 0 || dev >= kMaxDevices) check(cudaErrorInvalidDevice, fn, "scratch pool");
  const std::lock_guard<std::mutex> lock(pools_mu);
  if (!pools[dev]) {
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = dev;
    cudaMemPool_t pool;
    check(cudaMemPoolCreate(&pool, &props), fn, "cudaMemPoolCreate");
    uint64_t keep = UINT64_MAX;
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), fn, "cudaMemPoolSetAttribute");
    pools[dev] = pool;
  }
  return pools[dev];
}

}  // namespace cuda

void cuda_release_scratch() {
  const std::lock_guard<std::mutex> lock(cuda::pools_mu);
  for (cudaMemPool_t pool : cuda::pools)
    if (pool) cuda::check(cudaMemPoolTrimTo(pool, 0), "gka::cuda_release_scratch", "cudaMemPoolTrimTo");
}

}  // namespace gka
