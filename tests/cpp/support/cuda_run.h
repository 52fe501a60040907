// Runs the CUDA backend on a case's host inputs: copies them to the device, poisons the outputs with NaN, runs one
// call and copies the results back. Shared by the CUDA test programs; only they link it (with the CUDA runtime).
#pragma once

#include <cstddef>
#include <cstdlib>

#include "support/cases.h"

namespace gka::test {

bool have_gpu();
int cuda_major();  // the current device's compute capability major (0 without a device)
bool hopper_paths_on();  // an sm_90 device, and GKA_CUDA_WGMMA is not "0": the Hopper kernels run

// A device copy of a host test tensor (none for an undefined one); download() copies it back into the host tensor.
class DevTensor {
 public:
  DevTensor() = default;
  explicit DevTensor(Tensor& host);
  ~DevTensor();
  DevTensor(const DevTensor&) = delete;
  DevTensor& operator=(const DevTensor&) = delete;
  TensorView view() const;
  void download();

 private:
  Tensor* host_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// The case's inputs on the device (cu_seqlens stays on the host: the CUDA backend reads it there).
struct DevInputs {
  CaseInputs host;
  DevTensor q, k, v, alpha, g, gk, h0_kk, h0_kv;
  explicit DevInputs(const CaseInputs& in)
      : host(in), q(host.q), k(host.k), v(host.v), alpha(host.alpha), g(host.g), gk(host.gk), h0_kk(host.h0_kk),
        h0_kv(host.h0_kv) {}
  Inputs view() const;
};

// With `residual`, the optional residual output too: sized [B, T, H] in the state dtype and poisoned here. Without
// `save_x`, x is not asked for (ForwardOutputs::x undefined: the result's x stays poisoned).
ForwardResult cuda_forward(const Case& c, const CaseInputs& in, bool recurrent = false,
                           Precision precision = Precision::fp32, Tensor* residual = nullptr, bool save_x = true);
// With `saved`, from a forward's x and fro (BackwardInputs::x, fro) instead of recomputing them.
BackwardResult cuda_backward(const Case& c, const CaseInputs& in, const BackwardSeeds& seeds,
                             Precision precision = Precision::fp32, const ForwardResult* saved = nullptr);

// run() with the environment variable `name` set to `value` (the backend reads its switches at each call).
template <class Run>
auto with_env(const char* name, const char* value, Run run) {
  setenv(name, value, 1);
  auto result = run();
  unsetenv(name);
  return result;
}

}  // namespace gka::test
