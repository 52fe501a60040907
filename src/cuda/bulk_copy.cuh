// Tensor-map bulk copies between global and shared memory on the tensor memory accelerator (sm_90): a state of a
// head moves in D/32 boxes of D rows x 128 bytes, laid out in shared memory with the 128-byte swizzle (16-byte
// chunk j of row i at i 128 + ((j ^ (i % 8)) 16) within its box), so rows and columns both read back without bank
// conflicts. A copy is one instruction per box, where per-thread copies of a 64 KB state took ~2000-4000 cycles
// on one SM (decode, clock64 probes) and per-row 1-D bulk copies ~64 cycles each to issue. Loads complete on an
// mbarrier (the issuing thread announces the bytes, every reader waits on the phase); stores form a bulk group
// that the issuing thread waits for before their shared source is rewritten or the CTA exits.
// GKA_BULK_DEVICE is 1 where the instructions exist; callers keep a plain path for other architectures.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>

#include <cstdint>

#include "cuda/common.cuh"  // smem_addr, fence_proxy_async

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define GKA_BULK_DEVICE 1
#else
#define GKA_BULK_DEVICE 0
#endif

namespace gka::cuda {

// Host: the driver's tensor-map encoder (cuTensorMapEncodeTiled), or nullptr where the driver has none.
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    const bool ok = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) ==
                        cudaSuccess && q == cudaDriverEntryPointSuccess;
    return ok ? reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f) : nullptr;
  }();
  return encode;
}

// Byte offset of 16-byte chunk j of row i in a 128-byte-swizzled box (the box 1024-byte aligned).
__device__ __forceinline__ int swizzle128(int i, int j) { return i * 128 + ((j ^ (i & 7)) << 4); }

// One thread initialises the barrier (arrival count 1); a __syncthreads() must follow before any use.
__device__ __forceinline__ void mbar_init(uint64_t* bar) {
#if GKA_BULK_DEVICE
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\nfence.mbarrier_init.release.cluster;\n" ::"r"(smem_addr(bar))
               : "memory");
#endif
}

// The issuing thread's arrival, announcing the bytes the copies on this barrier will deliver.
__device__ __forceinline__ void mbar_expect(uint64_t* bar, uint32_t bytes) {
#if GKA_BULK_DEVICE
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
#endif
}

// Waits until the barrier's phase `parity` has completed (all expected bytes arrived).
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
#if GKA_BULK_DEVICE
  asm volatile(
      "{\n.reg .pred done;\nwait:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait;\n}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
#endif
}

// An L2 policy that evicts the lines it tags first, for data a kernel moves once: decode's states, read once and
// written once a step (bulk copies and streaming stores with it: B = 64 80.0-80.2 us against 82.2-82.5, H200,
// where the loads, the final H or the final S tagged alone gained nothing).
__device__ __forceinline__ uint64_t l2_evict_first() {
  uint64_t policy = 0;
#if GKA_BULK_DEVICE
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
#endif
  return policy;
}

// Box (c0, c1, c2, c3) of a 4-D tensor map (a __grid_constant__ kernel parameter) into shared memory.
__device__ __forceinline__ void tma_load_4d(void* sdst, const void* tmap, int c0, int c1, int c2, int c3,
                                            uint64_t* bar) {
#if GKA_BULK_DEVICE
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
      "[%6];\n" ::"r"(smem_addr(sdst)),
      "l"(tmap), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(bar))
      : "memory");
#endif
}

// The same with an L2 cache policy (l2_evict_first).
__device__ __forceinline__ void tma_load_4d(void* sdst, const void* tmap, int c0, int c1, int c2, int c3, uint64_t* bar,
                                            uint64_t policy) {
#if GKA_BULK_DEVICE
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, {%2, %3, "
      "%4, %5}], [%6], %7;\n" ::"r"(smem_addr(sdst)),
      "l"(tmap), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(bar)), "l"(policy)
      : "memory");
#endif
}

// `bytes` (a multiple of 16) from global memory into shared memory (both 16-byte aligned), completing on `bar`.
__device__ __forceinline__ void bulk_load(void* sdst, const void* gsrc, uint32_t bytes, uint64_t* bar) {
#if GKA_BULK_DEVICE
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                   smem_addr(sdst)),
               "l"(gsrc), "r"(bytes), "r"(smem_addr(bar))
               : "memory");
#endif
}

// Shared memory into box (c0, c1, c2, c3), in this thread's current bulk group (commit with bulk_commit).
__device__ __forceinline__ void tma_store_4d(const void* tmap, int c0, int c1, int c2, int c3, const void* ssrc) {
#if GKA_BULK_DEVICE
  asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%1, %2, %3, %4}], [%5];\n" ::"l"(tmap),
               "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(ssrc))
               : "memory");
#endif
}
// The same with an L2 cache policy (l2_evict_first).
__device__ __forceinline__ void tma_store_4d(const void* tmap, int c0, int c1, int c2, int c3, const void* ssrc,
                                             uint64_t policy) {
#if GKA_BULK_DEVICE
  asm volatile(
      "cp.async.bulk.tensor.4d.global.shared::cta.bulk_group.L2::cache_hint [%0, {%1, %2, %3, %4}], [%5], %6;\n" ::"l"(
          tmap),
      "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(ssrc)), "l"(policy)
      : "memory");
#endif
}
__device__ __forceinline__ void bulk_commit() {
#if GKA_BULK_DEVICE
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#endif
}
// Waits until this thread's committed bulk stores have read their shared sources.
__device__ __forceinline__ void bulk_wait_read() {
#if GKA_BULK_DEVICE
  asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
#endif
}

}  // namespace gka::cuda
