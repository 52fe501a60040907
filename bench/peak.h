// This machine's fp32 FMA peak, measured: the yardstick for "% of peak" in the benchmarks.
#pragma once

namespace gka::bench {

// Name and fp32 lane count of the widest vector FMA this translation unit was compiled for.
const char* fma_isa();
int fma_lanes();

// fp32 GFLOP/s (an FMA counts 2) of `threads` OpenMP threads, each running independent FMA chains in
// registers; runs are calibrated to about `seconds` / 4 and the best of 5 counts (cores may be shared).
double fma_peak_gflops(int threads, double seconds = 0.2);

}  // namespace gka::bench
