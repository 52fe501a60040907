// Part (a) of gka-quickstart: the CPU backend against the fp64 reference oracle on small layer-like problems.
#pragma once

#include <cstdint>

namespace gka::quickstart {

// Runs the cases, prints one table row per case and dtype; true when every row passes.
bool accuracy_check(bool quick, int32_t num_threads);

}  // namespace gka::quickstart
