// The LibTorch C++ API: thin calls of the registered dispatcher ops (so autograd, devices and tracing
// behave exactly as for torch.ops.gka.* in Python).
#include "gka/torch/ops.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <tuple>

#include "op_types.h"

namespace gka::torch {
namespace {

using torch_binding::FwdSig;
using torch_binding::PoolSig;

GkaResult forward(const char* name, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const GkaArgs& a) {
  const auto op = c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<FwdSig>();
  auto [o, kk, kv, x, fro] = op.call(q, k, v, a.alpha, a.g, a.gk, a.initial_kk, a.initial_kv, a.cu_seqlens, a.scale,
                                     a.ridge_ratio, a.num_iter, a.chunk_size, a.solver, a.lambda_grad, a.backend,
                                     a.precision);
  return {o, kk, kv};
}

}  // namespace

GkaResult chunk_gka(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const GkaArgs& args) {
  return forward("gka::chunk_fwd", q, k, v, args);
}

GkaResult fused_recurrent_gka(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const GkaArgs& args) {
  return forward("gka::recurrent_fwd", q, k, v, args);
}

at::Tensor decode_pool_step_(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& pool_kk,
                             at::Tensor& pool_kv, const at::Tensor& slots, const GkaArgs& a) {
  TORCH_CHECK_VALUE(!a.initial_kk && !a.initial_kv && !a.cu_seqlens,
                    "gka::torch::decode_pool_step_: initial states and cu_seqlens must be absent (the pool holds "
                    "the states, one row per request)");
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("gka::decode_pool_step_", "").typed<PoolSig>();
  return op.call(q, k, v, a.alpha, a.g, a.gk, pool_kk, pool_kv, slots, a.scale, a.ridge_ratio, a.num_iter, a.solver,
                 a.backend);
}

const char* built_torch_version() { return GKA_TORCH_VERSION; }

}  // namespace gka::torch
