// Autograd kernels of the gka ops, in C++ so that LibTorch programs get gradients without Python. The
// forward saves the inputs plus the core's x and fro; the backward hands them, with the gradients arriving
// at o and at the final states, to gka::chunk_bwd (one core call) and returns the initial-state gradients.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "op_types.h"

namespace gka::torch_binding {
namespace {

at::Tensor or_undefined(const OptTensor& t) { return t.has_value() ? *t : at::Tensor(); }
OptTensor or_nullopt(const at::Tensor& t) { return t.defined() ? OptTensor(t) : std::nullopt; }
// Gradient plumbing: incoming gradients may be expanded (stride 0) views; the op needs a unit last stride.
at::Tensor dense(const at::Tensor& t) { return t.defined() ? t.contiguous() : t; }

template <bool recurrent>
class GkaFunction : public ::torch::autograd::Function<GkaFunction<recurrent>> {
 public:
  static ::torch::autograd::variable_list forward(
      ::torch::autograd::AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
      const OptTensor& alpha, const OptTensor& g, const OptTensor& gk, const OptTensor& initial_kk,
      const OptTensor& initial_kv, const OptTensor& cu_seqlens, std::optional<double> scale, double ridge_ratio,
      int64_t num_iter, int64_t chunk_size, const std::string& solver, bool lambda_grad, const std::string& backend,
      const std::string& precision) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow(recurrent ? "gka::recurrent_fwd" : "gka::chunk_fwd", "")
                               .typed<FwdSig>();
    auto [o, final_kk, final_kv, x, fro] = op.call(q, k, v, alpha, g, gk, initial_kk, initial_kv, cu_seqlens, scale,
                                                   ridge_ratio, num_iter, chunk_size, solver, lambda_grad, backend,
                                                   precision);
    ctx->save_for_backward({q, k, v, or_undefined(alpha), or_undefined(g), or_undefined(gk), or_undefined(initial_kk),
                            or_undefined(initial_kv), or_undefined(cu_seqlens), x, fro});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["ridge_ratio"] = ridge_ratio;
    ctx->saved_data["num_iter"] = num_iter;
    ctx->saved_data["chunk_size"] = chunk_size;
    ctx->saved_data["solver"] = solver;
    ctx->saved_data["lambda_grad"] = lambda_grad;
    ctx->saved_data["backend"] = backend;
    ctx->saved_data["precision"] = precision;
    ctx->mark_non_differentiable({x, fro});
    return {o, final_kk, final_kv, x, fro};
  }

  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grads) {
    static const auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("gka::chunk_bwd", "").typed<BwdSig>();
    const auto s = ctx->get_saved_variables();
    const at::Tensor &q = s[0], &k = s[1], &v = s[2];
    // o unused by the loss (only the final states are): its gradient is zero.
    const at::Tensor d_o = grads[0].defined() ? dense(grads[0]) : at::zeros_like(v, at::MemoryFormat::Contiguous);
    const auto& d = ctx->saved_data;
    const std::optional<double> scale =
        d.at("scale").isNone() ? std::nullopt : std::optional<double>(d.at("scale").toDouble());
    auto [dq, dk, dv, dalpha, dg, dgk, d_kk, d_kv] =
        op.call(d_o, or_nullopt(dense(grads[1])), or_nullopt(dense(grads[2])), s[9], s[10], q, k, v, or_nullopt(s[3]),
                or_nullopt(s[4]), or_nullopt(s[5]), or_nullopt(s[6]), or_nullopt(s[7]), or_nullopt(s[8]), scale,
                d.at("ridge_ratio").toDouble(), d.at("num_iter").toInt(), d.at("chunk_size").toInt(),
                d.at("solver").toStringRef(), d.at("lambda_grad").toBool(), d.at("backend").toStringRef(),
                d.at("precision").toStringRef());
    auto opt = [](const at::Tensor& input, at::Tensor grad) { return input.defined() ? grad : at::Tensor(); };
    // One entry per forward argument: q k v alpha g gk initial_kk initial_kv, then none for the rest.
    return {dq,
            dk,
            dv,
            opt(s[3], dalpha),
            opt(s[4], dg),
            opt(s[5], dgk),
            opt(s[6], d_kk),
            opt(s[7], d_kv),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

template <bool recurrent>
FwdOut forward_autograd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptTensor& alpha,
                        const OptTensor& g, const OptTensor& gk, const OptTensor& initial_kk,
                        const OptTensor& initial_kv, const OptTensor& cu_seqlens, std::optional<double> scale,
                        double ridge_ratio, int64_t num_iter, int64_t chunk_size, c10::string_view solver,
                        bool lambda_grad, c10::string_view backend, c10::string_view precision) {
  auto out = GkaFunction<recurrent>::apply(q, k, v, alpha, g, gk, initial_kk, initial_kv, cu_seqlens, scale,
                                           ridge_ratio, num_iter, chunk_size, std::string(solver), lambda_grad,
                                           std::string(backend), std::string(precision));
  return {out[0], out[1], out[2], out[3], out[4]};
}

}  // namespace

TORCH_LIBRARY_IMPL(gka, Autograd, m) {
  m.impl("chunk_fwd", &forward_autograd<false>);
  m.impl("recurrent_fwd", &forward_autograd<true>);
  // No double backward; the serving step is not differentiable. Both say so if asked for gradients.
  m.impl("chunk_bwd", ::torch::autograd::autogradNotImplementedFallback());
  m.impl("decode_pool_step_", ::torch::autograd::autogradNotImplementedFallback());
}

TORCH_LIBRARY_IMPL(gka, ADInplaceOrView, m) {
  m.impl("decode_pool_step_", ::torch::autograd::autogradNotImplementedInplaceOrViewFallback());
}

}  // namespace gka::torch_binding
