#!/usr/bin/env bash
# On the GPU machine (see the device tool; carry .gpu-deps): build with CUDA, run every C++ test (test_cuda
# and test_cuda_mixed included, the mixed-precision tests also on the portable mma.sync path), install the torch package and run
# the pytest suite (cuda cases included), then the CUDA bench.
# Logs go to $OUT (default /tmp/gka-out); a short summary is printed last.
source "$(dirname "$0")/gpu_setup.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
gpu_build
(cd $B && ctest -j8 --output-on-failure) >"$OUT/ctest.log" 2>&1
echo "ctest rc=$?"; grep -E "tests passed|tests failed|\(Failed\)" "$OUT/ctest.log" | head -20
GKA_CUDA_WGMMA=0 $B/tests/cpp/test_cuda_mixed --gtest_filter='CudaMixed*:*CudaAccuracy*' >"$OUT/test_cuda_mma.log" 2>&1
echo "mixed-precision tests on the mma.sync path (GKA_CUDA_WGMMA=0) rc=$?"
# The image's default $CXX (/opt/gcc/bin/g++) links libstdc++ statically: a torch extension built with it
# carries a second libstdc++ and crashes in iostreams. Build the package with the system compiler.
rm -rf build/python
CXX=/usr/bin/g++ CC=/usr/bin/gcc CUDAHOSTCXX=/usr/bin/g++ \
  python3 -m pip install --no-build-isolation --no-deps -q . >"$OUT/pip.log" 2>&1 || { tail -30 "$OUT/pip.log"; exit 1; }
python3 -m pytest tests/python -q -rs -p no:cacheprovider >"$OUT/pytest.log" 2>&1
echo "pytest rc=$?"; grep -E "passed|failed|FAILED|Error" "$OUT/pytest.log" | tail -15
grep -E "precision|rel err" "$OUT/ctest.log" $B/Testing/Temporary/LastTest.log 2>/dev/null | cut -d: -f2- | head -16
GKA_BENCH_LONG=1 $B/bench/gka_bench_cuda >"$OUT/bench.log" 2>&1; tail -25 "$OUT/bench.log"
