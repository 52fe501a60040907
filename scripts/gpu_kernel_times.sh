#!/usr/bin/env bash
# On the GPU machine (carry .gpu-deps): how long each kernel of one mixed fwd+bwd takes at 8x2048 (Nsight Compute,
# gpu__time_duration at ncu's locked clock: slower than the bench in absolute terms). The bench's first shape is
# 8x2048: its forward (warm-up and one repetition), then its fwd+bwd (the same); this prints the launches in order,
# each with its duration, a sum per call (a call starts with its states kernel). GKA_BENCH_ITERS passes through (e.g. 0: no solve).
# Logs to $OUT.
source "$(dirname "$0")/gpu_setup.sh"
[ -x $B/bench/gka_bench_cuda ] || gpu_build gka_bench_cuda
re='states_|chunk_fwd|fwd_wg|adj_wg|step_'
GKA_BENCH_PARTS=chunk GKA_BENCH_PRECISION=mixed ncu --metrics gpu__time_duration.sum -k "regex:$re" -c 40 \
  $B/bench/gka_bench_cuda 1 >"$OUT/ncu_times.txt" 2>&1
# The launches in order: name and microseconds.
awk '/_kernel</ && !/gpu__/ { match($0, /[a-z_0-9]+_kernel<[^>]*>/); name = substr($0, RSTART, RLENGTH) }
     /gpu__time_duration.sum/ { us = $NF * ($(NF-1) == "ms" ? 1000 : ($(NF-1) == "ns" ? 0.001 : 1)); print name, us }' \
  "$OUT/ncu_times.txt" >"$OUT/launches.txt"
# A new group starts at each states_ kernel that follows another kernel: the forwards, then the fwd+bwd runs.
awk '/^states_/ && prev !~ /^states_/ { print "--" } { print; prev = $0 }' "$OUT/launches.txt" |
  awk '$1 == "--" { if (n) printf "%-32s %9.1f us\n\n", "sum", s; n = 0; s = 0; next }
       { us = $NF; $NF = ""; printf "%-32s %9.1f us\n", $0, us; s += us; n++ }
       END { printf "%-32s %9.1f us\n", "sum", s }'
