#!/usr/bin/env bash
# On the GPU machine (carry .gpu-deps): the loop for decode work. Builds test_cuda and the CUDA bench, checks the
# decode paths against the oracle (recurrent cases, pool, residual) with memcheck/racecheck on them once, times
# decode with N = 30 and N = 0 (the solve's share), and with GKA_DEC_NCU=1 profiles the first decode launches
# with Nsight Compute. GKA_DEC_SAN=0 skips the sanitizers. Runs under timeout (a hung kernel would hold the GPU for
# the whole call). Logs to $OUT; a table last.
source "$(dirname "$0")/gpu_setup.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
gpu_build test_cuda gka_bench_cuda
F='*Recurrent*:*Pool*:*Residual*:*Deterministic*:CudaErrors*'
timeout 300 $B/tests/cpp/test_cuda --gtest_filter="$F" >"$OUT/test_cuda.log" 2>&1; echo "test_cuda decode rc=$?"
grep -E "PASSED|FAILED" "$OUT/test_cuda.log" | head
if [ "${GKA_DEC_SAN:-1}" = 1 ]; then
  for tool in memcheck racecheck synccheck; do
    timeout 300 compute-sanitizer --tool $tool --error-exitcode 9 $B/tests/cpp/test_cuda --gtest_filter='*Recurrent*:*Pool*' >"$OUT/san_$tool.log" 2>&1
    echo "sanitizer $tool rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/san_$tool.log" | tail -1)"
  done
fi
if [ "${GKA_DEC_NCU:-0}" = 1 ]; then
S="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis"
GKA_BENCH_PARTS=decode ncu $S -k 'regex:decode' -c 2 $B/bench/gka_bench_cuda 1 >"$OUT/ncu_dec.txt" 2>&1
GKA_BENCH_ITERS=0 GKA_BENCH_PARTS=decode ncu --metrics gpu__time_duration.sum -k 'regex:decode' -c 2 $B/bench/gka_bench_cuda 1 >"$OUT/ncu_dec0.txt" 2>&1
grep -E "decode_kernel|Duration|DRAM Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|gpu__time" "$OUT"/ncu_dec*.txt | cut -c1-150 >"$OUT/ncu_summary.txt"
cat "$OUT/ncu_summary.txt"
fi
{
  for r in 1 2; do
    echo "== N = 30"; GKA_BENCH_PARTS=decode timeout 120 $B/bench/gka_bench_cuda 5
    echo "== N = 0"; GKA_BENCH_ITERS=0 GKA_BENCH_PARTS=decode timeout 120 $B/bench/gka_bench_cuda 5
  done
} >"$OUT/bench.log" 2>&1
grep -E "==|decode" "$OUT/bench.log"
