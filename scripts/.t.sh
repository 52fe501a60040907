source scripts/gpu_setup.sh
gpu_build test_cuda
$B/tests/cpp/test_cuda --gtest_filter='CudaMixed*:*CudaAccuracy*' >"$OUT/t.log" 2>&1; echo "wgmma rc=$?"
grep -E "precision|rel err|Failure|Expected|Which is|x:|: x|FAILED|PASSED|actual|rel" "$OUT/t.log" | head -60
GKA_CUDA_WGMMA=0 $B/tests/cpp/test_cuda --gtest_filter='CudaMixed.Far*' >"$OUT/t2.log" 2>&1; echo "mma.sync far rc=$?"; grep -E "FAILED|PASSED" "$OUT/t2.log" | head -5
