#!/usr/bin/env bash
# On the GPU machine (carry .gpu-deps): how long each kernel of one mixed fwd+bwd takes at 8x2048 (Nsight Compute,
# gpu__time_duration at ncu's locked clock: slower than the bench in absolute terms). The bench's first shape is
# 8x2048: its forward (warm-up and one repetition), then its fwd+bwd (the same). Each call starts with its states
# kernel (on Hopper the gate weights' kernel, then the states), so the launches fall into six groups: forward,
# forward, then forward and backward twice; this prints the last two (the timed fwd+bwd), each kernel with its
# duration, and their sum. All launches in $OUT/launches$TAG.txt.
# BENCH: another build of the bench (e.g. gpu_ab.sh's build-old/bench/gka_bench_cuda); GKA_BENCH_ITERS passes
# through (e.g. 0: no solve).
source "$(dirname "$0")/gpu_setup.sh"
bench=${BENCH:-$B/bench/gka_bench_cuda}
[ -x "$bench" ] || gpu_build gka_bench_cuda
re='chunk_weights|states_|chunk_fwd|fwd_wg|out_wg|adj_wg|step_'
GKA_BENCH_PARTS=chunk GKA_BENCH_PRECISION=mixed ncu --metrics gpu__time_duration.sum -k "regex:$re" -c 40 \
  "$bench" 1 >"$OUT/ncu_times${TAG:-}.txt" 2>&1
# The launches in order: name and microseconds.
awk '/_kernel[<(]/ && !/gpu__/ { match($0, /[a-z_0-9]+_kernel(<[^>]*>)?/); name = substr($0, RSTART, RLENGTH) }
     /gpu__time_duration.sum/ { us = $NF * ($(NF-1) == "ms" ? 1000 : ($(NF-1) == "ns" ? 0.001 : 1)); print name, us }' \
  "$OUT/ncu_times${TAG:-}.txt" >"$OUT/launches${TAG:-}.txt"
awk '/^(chunk_weights|states_)/ && prev !~ /^(chunk_weights|states_)/ { g++ } { prev = $0 } g == 5 || g == 6 {
       us = $NF; $NF = ""; printf "%-32s %9.1f us\n", $0, us; s += us }
     END { printf "%-32s %9.1f us\n", "fwd+bwd", s }' "$OUT/launches${TAG:-}.txt"
