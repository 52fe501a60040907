// Thread-block clusters (sm_90): a CTA's rank, the cluster barrier, and the two ways one CTA hands another something
// through distributed shared memory: an arrival on the peer's mbarrier, and 4-byte stores into the peer's shared
// memory that complete bytes on the peer's mbarrier (st.async). Addresses in the peer are this CTA's address of the
// same variable mapped to the peer (mapa): every CTA of a kernel has the same shared layout. Nothing here exists
// below sm_90 (GKA_BULK_DEVICE); callers launch cluster kernels only where the device has them.
#pragma once

#include <cstdint>

#include "cuda/bulk_copy.cuh"  // GKA_BULK_DEVICE, smem_addr

namespace gka::cuda {

__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t r = 0;
#if GKA_BULK_DEVICE
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
#endif
  return r;
}

// Every thread of every CTA in the cluster arrives once and waits once. The arrival releases what the thread did
// before (barrier initialisation included); the wait acquires what the others did before arriving.
__device__ __forceinline__ void cluster_arrive() {
#if GKA_BULK_DEVICE
  asm volatile("barrier.cluster.arrive.release;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if GKA_BULK_DEVICE
  asm volatile("barrier.cluster.wait.acquire;\n" ::: "memory");
#endif
}

// The shared::cluster address of this CTA's variable `p` in CTA `rank` of the cluster.
__device__ __forceinline__ uint32_t peer_addr(const void* p, uint32_t rank) {
  uint32_t a = 0;
#if GKA_BULK_DEVICE
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(a) : "r"(smem_addr(p)), "r"(rank));
#endif
  return a;
}

// One arrival on a peer's mbarrier (peer_addr), releasing at cluster scope what this thread observed before it (a
// bulk copy's completion, say): the peer's acquiring wait (mbar_wait_cluster) then orders its later accesses after.
__device__ __forceinline__ void peer_arrive(uint32_t bar) {
#if GKA_BULK_DEVICE
  asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];\n" ::"r"(bar) : "memory");
#endif
}

// v into a peer's shared float (peer_addr), completing 4 bytes on the peer's mbarrier (peer_addr).
__device__ __forceinline__ void peer_store(uint32_t dst, float v, uint32_t bar) {
#if GKA_BULK_DEVICE
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];\n" ::"r"(dst),
               "r"(__float_as_uint(v)), "r"(bar)
               : "memory");
#endif
}

// mbar_wait that acquires at cluster scope: for a phase completed by a peer (its arrival, or its st.async bytes).
__device__ __forceinline__ void mbar_wait_cluster(uint64_t* bar, uint32_t parity) {
#if GKA_BULK_DEVICE
  asm volatile(
      "{\n.reg .pred done;\nwait:\n"
      "mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait;\n}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
#endif
}

}  // namespace gka::cuda
