// gka_fma_peak: prints this machine's fp32 FMA peak, single core and all cores.
#include <omp.h>

#include <cstdio>

#include "peak.h"

int main() {
  const int all = omp_get_max_threads();
  const double one = gka::bench::fma_peak_gflops(1);
  const double many = gka::bench::fma_peak_gflops(all);
  std::printf("fp32 FMA peak (%s, %d lanes)\n", gka::bench::fma_isa(), gka::bench::fma_lanes());
  std::printf("  1 thread : %8.1f GFLOP/s\n", one);
  std::printf("  %d threads: %8.1f GFLOP/s\n", all, many);
  return 0;
}
