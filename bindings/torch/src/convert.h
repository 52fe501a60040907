// at::Tensor -> gka::TensorView and op arguments -> gka::Options. No math, no heuristics: argument
// conversion only; the core validates shapes, dtypes and devices and names the argument in its errors.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <gka/gka.h>

#include <optional>
#include <string>
#include <string_view>

namespace gka::torch_binding {

inline DType dtype_of(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kHalf: return DType::f16;
    case at::kBFloat16: return DType::bf16;
    case at::kFloat: return DType::f32;
    case at::kDouble: return DType::f64;
    case at::kInt: return DType::i32;
    case at::kLong: return DType::i64;
    default:
      TORCH_CHECK_VALUE(false, "gka: ", name, " has dtype ", t.scalar_type(),
                        "; supported: float16, bfloat16, float32, float64 (int32/int64 for indices)");
  }
}

// A non-owning view of `t`. Never copies: a last dimension with stride != 1 is an error naming the tensor.
inline TensorView view(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.dim() >= 1 && t.dim() <= kMaxDims, "gka: ", name, " must have 1 to ", kMaxDims,
                    " dimensions, got ", t.dim(), " (shape ", t.sizes(), ")");
  TORCH_CHECK_VALUE(t.numel() == 0 || t.size(-1) <= 1 || t.stride(-1) == 1, "gka: ", name,
                    " must have stride 1 in its last dimension, got strides ", t.strides(),
                    " (call .contiguous() on it; the binding never copies silently)");
  TORCH_CHECK_VALUE(t.device().is_cpu() || t.device().is_cuda(), "gka: ", name,
                    " must be on a cpu or cuda device, got ", t.device());
  TensorView v;
  v.data = t.data_ptr();
  v.dtype = dtype_of(t, name);
  v.device = t.device().is_cuda() ? Device::cuda : Device::cpu;
  v.device_index = t.device().is_cuda() ? t.device().index() : 0;
  v.ndim = static_cast<int32_t>(t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) {
    v.sizes[i] = t.size(i);
    v.strides[i] = t.stride(i);
  }
  return v;
}

inline TensorView view(const std::optional<at::Tensor>& t, const char* name) {
  return t.has_value() && t->defined() ? view(*t, name) : TensorView{};
}

inline Solver solver_of(std::string_view s) {
  if (s == "chebyshev") return Solver::chebyshev;
  if (s == "cg") return Solver::cg;
  if (s == "exact") return Solver::exact;
  TORCH_CHECK_VALUE(false, "gka: solver must be \"chebyshev\", \"cg\" or \"exact\", got \"", s, "\"");
}

inline Backend backend_of(std::string_view s) {
  if (s == "auto") return Backend::automatic;
  if (s == "reference") return Backend::reference;
  if (s == "cpu") return Backend::cpu;
  if (s == "cuda") return Backend::cuda;
  TORCH_CHECK_VALUE(false, "gka: backend must be \"auto\", \"reference\", \"cpu\" or \"cuda\", got \"", s, "\"");
}

inline Precision precision_of(std::string_view s) {
  if (s == "fp32") return Precision::fp32;
  if (s == "mixed") return Precision::mixed;
  TORCH_CHECK_VALUE(false, "gka: precision must be \"fp32\" or \"mixed\", got \"", s, "\"");
}

inline Options options_of(std::optional<double> scale, double ridge_ratio, int64_t num_iter, int64_t chunk_size,
                          std::string_view solver, bool lambda_grad, std::string_view backend,
                          std::string_view precision = "fp32") {
  TORCH_CHECK_VALUE(num_iter >= 0 && num_iter <= INT32_MAX, "gka: num_iter must be >= 0, got ", num_iter);
  TORCH_CHECK_VALUE(chunk_size > 0 && chunk_size <= INT32_MAX, "gka: chunk_size must be > 0, got ", chunk_size);
  Options o;
  o.scale = scale;
  o.ridge_ratio = ridge_ratio;
  o.num_iter = static_cast<int32_t>(num_iter);
  o.chunk_size = static_cast<int32_t>(chunk_size);
  o.solver = solver_of(solver);
  o.lambda_grad = lambda_grad;
  o.backend = backend_of(backend);
  o.precision = precision_of(precision);
  return o;
}

// The stream torch issues work on for t's device (cuda tensors only): the core's kernels run on it, so they
// are ordered with the producers and consumers of the tensors (torch.cuda.stream contexts included).
inline void* current_stream(const at::Tensor& t) {
  if (!t.device().is_cuda()) return nullptr;
  return c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(t.device()).native_handle();
}

// The core reads sequence offsets and pool slots on the host (it plans the call there); a device index
// tensor is copied to the host (N+1 integers, one synchronisation; pass a cpu tensor to avoid it).
inline at::Tensor host_index(const at::Tensor& t) { return t.defined() && !t.device().is_cpu() ? t.cpu() : t; }
inline std::optional<at::Tensor> host_index(const std::optional<at::Tensor>& t) {
  return t.has_value() ? std::optional<at::Tensor>(host_index(*t)) : t;
}

// Runs one core call; gka::Error (argument misuse, reported by the core with the argument's name) becomes a
// Python ValueError / c10::ValueError.
template <class F>
void core_call(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    TORCH_CHECK_VALUE(false, e.what());
  }
}

}  // namespace gka::torch_binding
