// Part (b) of gka-quickstart: a short timing of the CPU backend at one layer-like shape.
#pragma once

#include <cstdint>

namespace gka::quickstart {

// Forward and forward+backward at B=1, T=2048 (512 if quick), H=4, D=128 bf16, then a one-token decode step.
void timing_run(bool quick, int32_t num_threads);

}  // namespace gka::quickstart
