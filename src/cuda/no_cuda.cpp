// Built when the CUDA backend is disabled.
#include "gka/gka.h"

namespace gka {

int32_t cuda_device_count() { return 0; }
void cuda_release_scratch() {}

}  // namespace gka
