#!/usr/bin/env bash
# On the GPU machine (carry .gpu-deps): build the CUDA tests and bench, check against the oracle, run
# compute-sanitizer on the decode tests, time the bench (plus diagnostics: N = 0, plain-tf32 leading
# iterations), and profile one launch of each kernel with Nsight Compute. Logs to $OUT; a table last.
source "$(dirname "$0")/gpu_setup.sh"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
gpu_build test_cuda test_cuda_mixed gka_bench_cuda
cuda_tests >"$OUT/test_cuda.log" 2>&1; echo "CUDA tests rc=$?"; grep -E "PASSED|FAILED|Bf16LayerLike|acc " "$OUT/test_cuda.log" | head -20
for tool in memcheck racecheck; do
  compute-sanitizer --tool $tool --error-exitcode 9 $B/tests/cpp/test_cuda --gtest_filter='*Decode*:*Recurrent*:*Pool*' >"$OUT/san_$tool.log" 2>&1
  echo "sanitizer $tool rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/san_$tool.log" | tail -1)"
done
{
  echo "== v5 default"; GKA_BENCH_LONG=1 $B/bench/gka_bench_cuda 5
  echo "== N = 0"; GKA_BENCH_ITERS=0 $B/bench/gka_bench_cuda 3
  echo "== mma.sync only (GKA_CUDA_WGMMA=0)"; GKA_BENCH_PARTS=chunk GKA_CUDA_WGMMA=0 $B/bench/gka_bench_cuda 3
} >"$OUT/bench.log" 2>&1
S="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis"
GKA_BENCH_PARTS=chunk ncu $S -k 'regex:states_kernel|chunk_fwd' -c 2 $B/bench/gka_bench_cuda 1 >"$OUT/ncu_fwd.txt" 2>&1
GKA_BENCH_PARTS=chunk ncu $S -k 'regex:step_' -c 4 $B/bench/gka_bench_cuda 1 >"$OUT/ncu_bwd.txt" 2>&1
GKA_BENCH_PARTS=decode ncu $S -k 'regex:decode' -c 1 $B/bench/gka_bench_cuda 1 >"$OUT/ncu_dec.txt" 2>&1
echo "ncu: $(grep -c 'Duration' "$OUT"/ncu_*.txt | tr '\n' ' ')"
grep -E "^  [a-z_]+.*\(|Duration|Registers Per|Achieved Occupancy|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Stall" "$OUT"/ncu_*.txt | grep -v "^$" | cut -c1-150 | head -80 >"$OUT/ncu_summary.txt"
cat "$OUT/bench.log"
