# Sourced by the scripts/gpu_*.sh that run on the GPU machine (carry .gpu-deps): enters the repository, makes
# $OUT (default /tmp/gka-out) for the logs, unpacks the build dependencies, and defines B (the build folder) and
# gpu_build [TARGET...], which configures B and builds the targets (every one without arguments), logs in $OUT,
# and cuda_tests (below).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/gka-out}
mkdir -p "$OUT"
eval "$(bash scripts/gpu_deps.sh unpack)"
B=build-gpu
gpu_build() {
  local targets=()
  [ $# -gt 0 ] && targets=(--target "$@")
  cmake -S . -B $B -G Ninja -DGKA_BUILD_APPS=OFF -DGKA_BUILD_TORCH=OFF -DGKA_BUILD_BENCH=ON >"$OUT/cmake.log" 2>&1 ||
    { tail -30 "$OUT/cmake.log"; exit 1; }
  cmake --build $B -j16 ${targets[@]+"${targets[@]}"} >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
}
# cuda_tests [GTEST_ARGS...]: both CUDA test programs (test_cuda: the case table, decode, pools; test_cuda_mixed: the
# accuracy target and the mixed precision's kernels) with the same arguments, 300 s each; fails if either does.
cuda_tests() {
  local rc=0
  for t in test_cuda test_cuda_mixed; do timeout 300 $B/tests/cpp/$t "$@" || rc=1; done
  return $rc
}
