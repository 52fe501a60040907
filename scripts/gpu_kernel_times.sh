#!/usr/bin/env bash
# On the GPU machine (carry .gpu-deps): how long each kernel of one mixed fwd+bwd takes at 8x2048 and 1x32768
# (Nsight Compute, gpu__time_duration at ncu's locked clock: slower than the bench in absolute terms), with N = 30
# and N = 0. Logs to $OUT; a table per N last.
source "$(dirname "$0")/gpu_setup.sh"
[ -x $B/bench/gka_bench_cuda ] || gpu_build gka_bench_cuda
for n in 30 0; do
  # per shape the bench runs the forward (warm-up + 1 rep: 2 x F kernels), then fwd+bwd (2 x FB kernels)
  F=2 FB=7
  GKA_BENCH_ITERS=$n GKA_BENCH_PARTS=chunk GKA_BENCH_PRECISION=mixed ncu --metrics gpu__time_duration.sum \
    -k 'regex:states_|chunk_fwd|step_' -c $((4 * F + 4 * FB)) $B/bench/gka_bench_cuda 1 >"$OUT/ncu_times_n$n.txt" 2>&1
  echo "== N=$n: one mixed fwd+bwd, 8x2048 then 1x32768"
  awk -v F=$F -v FB=$FB '/^  void/ { match($0, /[a-z_0-9]+_kernel<[^>]*>/); name = substr($0, RSTART, RLENGTH) }
       /gpu__time_duration.sum/ { us = $NF * ($(NF-1) == "ms" ? 1000 : 1); k = (k % (2 * F + 2 * FB)) + 1
                                  if (k > 2 * F + FB) printf "%-24s %9.1f us\n", name, us }' \
    "$OUT/ncu_times_n$n.txt"
done
