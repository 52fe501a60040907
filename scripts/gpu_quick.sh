#!/usr/bin/env bash
# On the GPU machine (carry .gpu-deps): the short loop for solver work. Builds the CUDA tests and bench,
# checks the CUDA backend against the oracle (the mixed-precision tests on both solver paths: wgmma and,
# with GKA_CUDA_WGMMA=0, mma.sync), runs compute-sanitizer on one mixed case, then times the chunked
# anchors on both paths. Logs to $OUT; a table last.
source "$(dirname "$0")/gpu_setup.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
gpu_build test_cuda test_cuda_mixed gka_bench_cuda
cuda_tests >"$OUT/test_cuda.log" 2>&1; echo "CUDA tests (wgmma) rc=$?"
grep -E "PASSED|FAILED|precision|rel err" "$OUT/test_cuda.log" | head -24
GKA_CUDA_WGMMA=0 $B/tests/cpp/test_cuda_mixed --gtest_filter='CudaMixed*:*CudaAccuracy*' >"$OUT/test_cuda_mma.log" 2>&1
echo "test_cuda mixed tests (mma.sync) rc=$?"; grep -E "PASSED|FAILED|precision mixed|rel err" "$OUT/test_cuda_mma.log" | head -12
for tool in memcheck racecheck synccheck; do
  compute-sanitizer --tool $tool --error-exitcode 9 $B/tests/cpp/test_cuda_mixed --gtest_filter='CudaMixed*' >"$OUT/san_$tool.log" 2>&1
  echo "sanitizer $tool rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/san_$tool.log" | tail -1)"
done
{
  echo "== wgmma leading iterations"; GKA_BENCH_PARTS=chunk $B/bench/gka_bench_cuda 5
  echo "== mma.sync (GKA_CUDA_WGMMA=0)"; GKA_CUDA_WGMMA=0 GKA_BENCH_PARTS=chunk $B/bench/gka_bench_cuda 5
} >"$OUT/bench.log" 2>&1
cat "$OUT/bench.log"
