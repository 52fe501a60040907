// CUDA runtime queries. The Hopper kernels (sm_90a) arrive with the CUDA backend issue; this file makes
// sure the toolchain, the architecture flags and the runtime link work wherever nvcc exists.
#include <cuda_runtime.h>

#include "gka/gka.h"

namespace gka {

int32_t cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: report none and clear the sticky error
    return 0;
  }
  return n;
}

}  // namespace gka
