#!/usr/bin/env bash
# On the GPU machine (carry .gpu-deps): accuracy and speed of the mixed-precision schedule (common.cuh,
# SolveSchedule) for several counts of one-term leading iterations (GKA_CUDA_ONE_TERM_ITERS): the mixed tests
# with the bf16 layer-like errors, and the 8x2048 times. Logs to $OUT; a table last.
source "$(dirname "$0")/gpu_setup.sh"
gpu_build test_cuda_mixed gka_bench_cuda
run() {  # name, env...
  local name=$1; shift
  env "$@" $B/tests/cpp/test_cuda_mixed --gtest_filter='CudaMixed*:*CudaAccuracy*mixed*' >"$OUT/t_$name.log" 2>&1
  local rc=$? errs ms
  errs=$(grep -A6 "precision mixed" "$OUT/t_$name.log" | grep -oE "(o|x|dq|dk|dv|dalpha|dg|dh0_kk) rel err [0-9.e+-]+" | awk '{printf "%s=%s ", $1, $4}')
  ms=$(env "$@" GKA_BENCH_PARTS=chunk $B/bench/gka_bench_cuda 3 2>&1 | tee "$OUT/b_$name.log" | awk '/8x2048 mixed/ {printf "%s=%s ", $1, $4}')
  printf "%-10s rc=%d %s| %s\n" "$name" $rc "$ms" "$errs"
}
{
  for n in 20 15 10 5 0; do run one$n GKA_CUDA_ONE_TERM_ITERS=$n; done
  run mma20 GKA_CUDA_WGMMA=0 GKA_CUDA_ONE_TERM_ITERS=20
} | tee "$OUT/schedule.txt"
