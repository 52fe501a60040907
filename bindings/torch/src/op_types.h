// C++ types of the gka op schemas (ops_kernels.cpp registers them): the results and the full signatures the
// autograd kernel and the LibTorch API call through the dispatcher. One place, so that a schema change
// (an argument added) is one edit here plus the schema string.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace gka::torch_binding {

using OptTensor = std::optional<at::Tensor>;
// o, final_kk, final_kv, x, fro
using FwdOut = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
// dq, dk, dv, dalpha, dg, dgk, d_initial_kk, d_initial_kv
using BwdOut = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                          at::Tensor>;
// chunk_fwd / recurrent_fwd: q k v alpha g gk initial_kk initial_kv cu_seqlens scale ridge_ratio num_iter
// chunk_size solver lambda_grad backend precision
using FwdSig = FwdOut(const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&, const OptTensor&,
                      const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, std::optional<double>,
                      double, int64_t, int64_t, c10::string_view, bool, c10::string_view, c10::string_view);
// chunk_bwd: d_o d_final_kk d_final_kv x fro, then the forward's arguments
using BwdSig = BwdOut(const at::Tensor&, const OptTensor&, const OptTensor&, const at::Tensor&, const at::Tensor&,
                      const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&, const OptTensor&,
                      const OptTensor&, const OptTensor&, const OptTensor&, const OptTensor&, std::optional<double>,
                      double, int64_t, int64_t, c10::string_view, bool, c10::string_view, c10::string_view);
// decode_pool_step_: q k v alpha g gk pool_kk pool_kv slots scale ridge_ratio num_iter solver backend
using PoolSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&,
                           const OptTensor&, const OptTensor&, at::Tensor&, at::Tensor&, const at::Tensor&,
                           std::optional<double>, double, int64_t, c10::string_view, c10::string_view);

}  // namespace gka::torch_binding
