#!/usr/bin/env bash
# On the GPU machine (carry .gpu-deps): kernel durations of the working tree against the baseline tree in ab-old/
# (made as for gpu_ab.sh), by Nsight Compute at its locked clock, which is steadier between instances than the
# bench's whole-op times. Profiles the first COUNT launches (default 4) of the kernels matching REGEX in one chunk
# bench run of each build (GKA_BENCH_PRECISION, default mixed), alternating old / new ROUNDS times (default 2);
# GKA_* variables pass through.
# Usage: bash scripts/gpu_ab_kernels.sh REGEX [ROUNDS] [COUNT]   e.g. bash scripts/gpu_ab_kernels.sh step_d
source "$(dirname "$0")/gpu_setup.sh"
re=${1:?usage: gpu_ab_kernels.sh KERNEL_REGEX [ROUNDS] [COUNT]}
rounds=${2:-2}
count=${3:-4}
[ -d ab-old ] || { echo "no ab-old/ baseline tree"; exit 1; }
gpu_build gka_bench_cuda
cmake -S ab-old -B build-old -G Ninja -DGKA_BUILD_APPS=OFF -DGKA_BUILD_TORCH=OFF -DGKA_BUILD_BENCH=ON \
  >"$OUT/cmake_old.log" 2>&1 && cmake --build build-old -j16 --target gka_bench_cuda >"$OUT/build_old.log" 2>&1 ||
  { tail -30 "$OUT/build_old.log"; exit 1; }
for r in $(seq "$rounds"); do
  for side in old new; do
    bench=$([ $side = old ] && echo build-old/bench/gka_bench_cuda || echo $B/bench/gka_bench_cuda)
    echo "== round $r: $side"
    GKA_BENCH_PARTS=chunk GKA_BENCH_PRECISION=${GKA_BENCH_PRECISION:-mixed} timeout 300 ncu --metrics gpu__time_duration.sum \
      -k "regex:$re" -c "$count" "$bench" 1 2>&1 | tee -a "$OUT/ncu_ab_$side.txt" |
      awk '/\)x\(/ {k=$2} / gpu__time_duration.sum/ {print "  " k, $(NF-1), $NF}'
  done
done
