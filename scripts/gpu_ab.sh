#!/usr/bin/env bash
# On the GPU machine (carry .gpu-deps): A/B timing of the working tree against a baseline tree in ab-old/, made
# beforehand with `mkdir ab-old && git archive REF | tar -x -C ab-old` (untracked, so it travels with the tree;
# delete it afterwards). Builds the CUDA tests and bench in both, runs the tests on the new build first (no
# timing of wrong code), then alternates bench runs old / new (/ new with $GKA_AB_ENV, e.g.
# GKA_AB_ENV="GKA_STATES_RB16=1") on the same instance, where the bench's noise is about ±3 %.
# Usage: bash scripts/gpu_ab.sh [ROUNDS]   (default 2; GKA_BENCH_* variables pass through, e.g.
# GKA_BENCH_PRECISION=mixed GKA_BENCH_PARTS=chunk; GKA_AB_TESTS is a gtest filter for the test run, default all;
# GKA_AB_KERNELS=1 adds each build's per-kernel times, scripts/gpu_kernel_times.sh).
# Logs in $OUT; the bench rows last.
source "$(dirname "$0")/gpu_setup.sh"
rounds=${1:-2}
[ -d ab-old ] || { echo "no ab-old/ baseline tree"; exit 1; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
gpu_build test_cuda test_cuda_mixed gka_bench_cuda
# git archive stamps files with the commit's time, older than a previous baseline's objects: ninja would keep
# those, so a baseline whose sources differ from the last one built gets a clean build folder.
hash=$(cd ab-old && find src include bench -type f | sort | xargs md5sum | md5sum | cut -c1-32)
[ "$(cat build-old/.ab-hash 2>/dev/null)" = "$hash" ] || { rm -rf build-old; mkdir -p build-old; echo "$hash" >build-old/.ab-hash; }
cmake -S ab-old -B build-old -G Ninja -DGKA_BUILD_APPS=OFF -DGKA_BUILD_TORCH=OFF -DGKA_BUILD_BENCH=ON \
  >"$OUT/cmake_old.log" 2>&1 && cmake --build build-old -j16 --target gka_bench_cuda >"$OUT/build_old.log" 2>&1 ||
  { tail -30 "$OUT/build_old.log"; exit 1; }
cuda_tests --gtest_filter="${GKA_AB_TESTS:-*}" >"$OUT/test_cuda.log" 2>&1; echo "CUDA tests (new) rc=$?"
grep -E "tests ran|PASSED|FAILED|precision|rel err" "$OUT/test_cuda.log" | head -30
for r in $(seq "$rounds"); do
  echo "== round $r: old"; timeout 120 build-old/bench/gka_bench_cuda
  echo "== round $r: new"; timeout 120 $B/bench/gka_bench_cuda
  if [ -n "${GKA_AB_ENV:-}" ]; then echo "== round $r: new with $GKA_AB_ENV"; env $GKA_AB_ENV timeout 120 $B/bench/gka_bench_cuda; fi
done >"$OUT/ab.log" 2>&1
grep -E "^==|fwd|bwd|decode" "$OUT/ab.log"
if [ -n "${GKA_AB_KERNELS:-}" ]; then  # per-kernel times of one 8x2048 fwd+bwd in both builds (ncu)
  for v in old new; do
    echo "== kernels: $v"
    BENCH=$([ $v = old ] && echo build-old || echo $B)/bench/gka_bench_cuda TAG=_$v bash "$(dirname "$0")/gpu_kernel_times.sh"
  done
fi
