#!/usr/bin/env bash
# On the GPU machine (carry .gpu-deps): where the mixed solve's cycles go. Nsight Compute on one chunk_fwd launch
# (8x2048, mixed) with N = 30 and with N = 0: instructions, cycles, the stall reasons per issued instruction, and
# the hottest SASS lines (source counters). Logs to $OUT; a summary last.
source "$(dirname "$0")/gpu_setup.sh"
gpu_build gka_bench_cuda
M="smsp__inst_executed.sum,sm__cycles_elapsed.max,smsp__inst_executed_pipe_tensor.sum,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio"
for n in 30 0; do
  GKA_BENCH_ITERS=$n GKA_BENCH_PARTS=chunk GKA_BENCH_PRECISION=mixed GKA_BENCH_FWD_ONLY=1 ncu --metrics "$M" \
    --section SourceCounters -k 'regex:chunk_fwd' -c 1 $B/bench/gka_bench_cuda 1 >"$OUT/ncu_n$n.txt" 2>&1
  echo "== N=$n"
  grep -E "inst_executed|cycles_elapsed|stalled" "$OUT/ncu_n$n.txt" | awk '$NF+0 > 0.05 || /inst|cycles/' | sed -E 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | cut -c1-110
done
grep -A40 "Warp Stall Sampling\|Source Counters" "$OUT/ncu_n30.txt" | cut -c1-150 | head -50
