#!/usr/bin/env bash
# On the GPU machine (carry .gpu-deps): what one Chebyshev iteration of the mixed solve costs. Times the mixed
# 8x2048 forward with N = 0 and with N = 10, 20, 30 iterations, all one-term or all three-term, and fits a line
# per term count (slope: one iteration across the grid; intercept minus the N = 0 time: the solve's fixed work,
# norms, tile build and reload). Then samples the warp stalls of one chunk_fwd launch with Nsight Compute.
# Logs to $OUT; a table last.
source "$(dirname "$0")/gpu_setup.sh"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
gpu_build gka_bench_cuda
fwd() {  # label, env...: the 8x2048 mixed forward in ms
  local label=$1; shift
  printf "%-22s %s\n" "$label" "$(env "$@" GKA_BENCH_PARTS=chunk GKA_BENCH_PRECISION=mixed GKA_BENCH_FWD_ONLY=1 \
    $B/bench/gka_bench_cuda 5 2>&1 | awk '/fwd 8x2048 mixed/ {print $4}')"
}
{
  fwd "N=0" GKA_BENCH_ITERS=0
  for n in 10 20 30; do fwd "N=$n one-term" GKA_BENCH_ITERS=$n GKA_CUDA_ONE_TERM_ITERS=$n; done
  for n in 10 20 30; do fwd "N=$n three-term" GKA_BENCH_ITERS=$n GKA_CUDA_ONE_TERM_ITERS=0; done
  fwd "N=30 default"
} | tee "$OUT/cost.txt"
fit() {  # least squares over the "N=n <kind>" rows: ms = a + b n
  awk -v kind="$1" '$2 == kind { n = substr($1, 3); x += n; y += $3; xx += n * n; xy += n * $3; m++ }
    $1 == "N=0" { z = $2 }
    END { b = (m * xy - x * y) / (m * xx - x * x); a = (y - b * x) / m
          printf "%-10s %.1f us per iteration, fixed work %.2f ms\n", kind, 1000 * b, a - z }' "$OUT/cost.txt"
}
{ fit one-term; fit three-term; } | tee -a "$OUT/cost.txt"
S="--section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section SpeedOfLight"
GKA_BENCH_PARTS=chunk GKA_BENCH_PRECISION=mixed GKA_BENCH_FWD_ONLY=1 ncu $S -k 'regex:chunk_fwd' -c 1 \
  $B/bench/gka_bench_cuda 1 >"$OUT/ncu_fwd.txt" 2>&1
grep -E "Duration|Stall|Issue Slots Busy|Eligible|Warp Cycles Per Issued|Shared|Tensor|Pipe|Throughput" "$OUT/ncu_fwd.txt" \
  | cut -c1-140 | head -60
cat "$OUT/cost.txt"
