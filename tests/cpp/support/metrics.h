// The error measures of the shared harness (harness/metrics.h), under the tests' names.
#pragma once

#include "harness/metrics.h"

namespace gka::test {

using harness::max_abs_err;
using harness::nonfinite_count;
using harness::rel_err;

}  // namespace gka::test
