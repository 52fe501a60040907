// The gka op library: schemas (TORCH_LIBRARY) and the CPU, CUDA and Meta kernels. A device kernel checks
// ranks so that it can allocate, allocates outputs through torch, builds views and makes one core call; the
// core validates everything else and picks the backend. Meta kernels compute shapes and dtypes only.
#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <tuple>

#include "convert.h"
#include "op_types.h"

namespace gka::torch_binding {
namespace {

// States, x and fro are fp32, fp64 when q is fp64 (the core's rule; we only need it to allocate).
at::ScalarType state_dtype(const at::Tensor& q) { return q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

bool present(const OptTensor& t) { return t.has_value() && t->defined(); }

void rank_check(const at::Tensor& q, const at::Tensor& v, const OptTensor& cu_seqlens) {
  TORCH_CHECK_VALUE(q.dim() == 4, "gka: q must have shape [B, T, H, D], got ", q.sizes());
  TORCH_CHECK_VALUE(v.dim() == 4, "gka: v must have shape [B, T, H, Dv], got ", v.sizes());
  if (present(cu_seqlens))
    TORCH_CHECK_VALUE(cu_seqlens->dim() == 1 && cu_seqlens->size(0) >= 2,
                      "gka: cu_seqlens must have shape [N+1] with N >= 1, got ", cu_seqlens->sizes());
}

Inputs inputs_of(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptTensor& alpha,
                 const OptTensor& g, const OptTensor& gk, const OptTensor& initial_kk, const OptTensor& initial_kv,
                 const OptTensor& cu_seqlens) {
  Inputs in;
  in.q = view(q, "q");
  in.k = view(k, "k");
  in.v = view(v, "v");
  in.alpha = view(alpha, "alpha");
  in.g = view(g, "g");
  in.gk = view(gk, "gk");
  in.initial_kk = view(initial_kk, "initial_kk");
  in.initial_kv = view(initial_kv, "initial_kv");
  in.cu_seqlens = view(cu_seqlens, "cu_seqlens");
  return in;
}

enum class Fwd { chunk, recurrent };

template <Fwd kind>
FwdOut forward_impl(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptTensor& alpha,
                    const OptTensor& g, const OptTensor& gk, const OptTensor& initial_kk, const OptTensor& initial_kv,
                    const OptTensor& cu_seqlens, std::optional<double> scale, double ridge_ratio, int64_t num_iter,
                    int64_t chunk_size, c10::string_view solver, bool lambda_grad, c10::string_view backend,
                    c10::string_view precision) {
  rank_check(q, v, cu_seqlens);
  Options opt = options_of(scale, ridge_ratio, num_iter, chunk_size, solver, lambda_grad, backend, precision);
  opt.cuda_stream = current_stream(q);
  c10::OptionalDeviceGuard guard(q.device());
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), D = q.size(3), Dv = v.size(3);
  const int64_t N = present(cu_seqlens) ? cu_seqlens->size(0) - 1 : B;  // one state per sequence
  const auto st = q.options().dtype(state_dtype(q));
  at::Tensor o = at::empty({B, T, H, Dv}, v.options());
  at::Tensor final_kk = at::empty({N, H, D, D}, st), final_kv = at::empty({N, H, D, Dv}, st);
  at::Tensor x = at::empty({B, T, H, D}, st), fro = at::empty({B, T, H}, st);
  const OptTensor cu_host = host_index(cu_seqlens);  // alive for the core call
  const Inputs in = inputs_of(q, k, v, alpha, g, gk, initial_kk, initial_kv, cu_host);
  ForwardOutputs out;
  out.o = view(o, "o");
  out.final_kk = view(final_kk, "final_kk");
  out.final_kv = view(final_kv, "final_kv");
  out.x = view(x, "x");
  out.fro = view(fro, "fro");
  core_call([&] {
    if constexpr (kind == Fwd::chunk)
      chunk_forward(in, out, opt);
    else
      recurrent_forward(in, out, opt);
  });
  return {o, final_kk, final_kv, x, fro};
}

FwdOut forward_meta(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptTensor& alpha,
                    const OptTensor& g, const OptTensor& gk, const OptTensor& initial_kk, const OptTensor& initial_kv,
                    const OptTensor& cu_seqlens, std::optional<double> scale, double ridge_ratio, int64_t num_iter,
                    int64_t chunk_size, c10::string_view solver, bool lambda_grad, c10::string_view backend,
                    c10::string_view precision) {
  (void)k, (void)alpha, (void)g, (void)gk, (void)initial_kk, (void)initial_kv, (void)scale, (void)ridge_ratio;
  (void)num_iter, (void)chunk_size, (void)solver, (void)lambda_grad, (void)backend, (void)precision;
  rank_check(q, v, cu_seqlens);
  const c10::SymInt B = q.sym_size(0), T = q.sym_size(1), H = q.sym_size(2), D = q.sym_size(3), Dv = v.sym_size(3);
  const c10::SymInt N = present(cu_seqlens) ? cu_seqlens->sym_size(0) - 1 : B;
  const auto st = q.options().dtype(state_dtype(q));
  return {at::empty_symint({B, T, H, Dv}, v.options()), at::empty_symint({N, H, D, D}, st),
          at::empty_symint({N, H, D, Dv}, st), at::empty_symint({B, T, H, D}, st), at::empty_symint({B, T, H}, st)};
}

// Gradient of an input: like the input, or an empty [0] tensor where the input is absent.
at::Tensor grad_like(const OptTensor& input, const at::TensorOptions& absent) {
  return present(input) ? at::empty_like(*input, at::MemoryFormat::Contiguous) : at::empty({0}, absent);
}

BwdOut backward_impl(const at::Tensor& d_o, const OptTensor& d_final_kk, const OptTensor& d_final_kv,
                     const at::Tensor& x, const at::Tensor& fro, const at::Tensor& q, const at::Tensor& k,
                     const at::Tensor& v, const OptTensor& alpha, const OptTensor& g, const OptTensor& gk,
                     const OptTensor& initial_kk, const OptTensor& initial_kv, const OptTensor& cu_seqlens,
                     std::optional<double> scale, double ridge_ratio, int64_t num_iter, int64_t chunk_size,
                     c10::string_view solver, bool lambda_grad, c10::string_view backend,
                     c10::string_view precision) {
  rank_check(q, v, cu_seqlens);
  Options opt = options_of(scale, ridge_ratio, num_iter, chunk_size, solver, lambda_grad, backend, precision);
  opt.cuda_stream = current_stream(q);
  c10::OptionalDeviceGuard guard(q.device());
  const auto st = q.options().dtype(state_dtype(q));
  at::Tensor dq = grad_like(q, q.options()), dk = grad_like(k, q.options()), dv = grad_like(v, q.options());
  at::Tensor dalpha = grad_like(alpha, q.options()), dg = grad_like(g, q.options()), dgk = grad_like(gk, q.options());
  at::Tensor d_kk = grad_like(initial_kk, st), d_kv = grad_like(initial_kv, st);
  const OptTensor cu_host = host_index(cu_seqlens);  // alive for the core call
  const Inputs in = inputs_of(q, k, v, alpha, g, gk, initial_kk, initial_kv, cu_host);
  BackwardInputs gin;
  gin.d_o = view(d_o, "d_o");
  gin.d_final_kk = view(d_final_kk, "d_final_kk");
  gin.d_final_kv = view(d_final_kv, "d_final_kv");
  gin.x = view(x, "x");
  gin.fro = view(fro, "fro");
  Gradients gout;
  gout.dq = view(dq, "dq");
  gout.dk = view(dk, "dk");
  gout.dv = view(dv, "dv");
  if (present(alpha)) gout.dalpha = view(dalpha, "dalpha");
  if (present(g)) gout.dg = view(dg, "dg");
  if (present(gk)) gout.dgk = view(dgk, "dgk");
  if (present(initial_kk)) gout.d_initial_kk = view(d_kk, "d_initial_kk");
  if (present(initial_kv)) gout.d_initial_kv = view(d_kv, "d_initial_kv");
  core_call([&] { chunk_backward(in, gin, gout, opt); });
  return {dq, dk, dv, dalpha, dg, dgk, d_kk, d_kv};
}

at::Tensor grad_like_meta(const OptTensor& input, const at::TensorOptions& absent) {
  return present(input) ? at::empty_symint(input->sym_sizes(), input->options()) : at::empty({0}, absent);
}

BwdOut backward_meta(const at::Tensor& d_o, const OptTensor& d_final_kk, const OptTensor& d_final_kv,
                     const at::Tensor& x, const at::Tensor& fro, const at::Tensor& q, const at::Tensor& k,
                     const at::Tensor& v, const OptTensor& alpha, const OptTensor& g, const OptTensor& gk,
                     const OptTensor& initial_kk, const OptTensor& initial_kv, const OptTensor& cu_seqlens,
                     std::optional<double> scale, double ridge_ratio, int64_t num_iter, int64_t chunk_size,
                     c10::string_view solver, bool lambda_grad, c10::string_view backend,
                     c10::string_view precision) {
  (void)d_o, (void)d_final_kk, (void)d_final_kv, (void)x, (void)fro, (void)scale, (void)ridge_ratio;
  (void)num_iter, (void)chunk_size, (void)solver, (void)lambda_grad, (void)backend, (void)precision;
  rank_check(q, v, cu_seqlens);
  const auto st = q.options().dtype(state_dtype(q));
  return {grad_like_meta(q, q.options()),     grad_like_meta(k, q.options()),  grad_like_meta(v, q.options()),
          grad_like_meta(alpha, q.options()), grad_like_meta(g, q.options()),  grad_like_meta(gk, q.options()),
          grad_like_meta(initial_kk, st),     grad_like_meta(initial_kv, st)};
}

at::Tensor pool_step_impl(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptTensor& alpha,
                          const OptTensor& g, const OptTensor& gk, at::Tensor& pool_kk, at::Tensor& pool_kv,
                          const at::Tensor& slots, std::optional<double> scale, double ridge_ratio, int64_t num_iter,
                          c10::string_view solver, c10::string_view backend) {
  rank_check(q, v, std::nullopt);
  Options opt = options_of(scale, ridge_ratio, num_iter, 64, solver, true, backend);
  opt.cuda_stream = current_stream(q);
  c10::OptionalDeviceGuard guard(q.device());
  at::Tensor o = at::empty({q.size(0), q.size(1), q.size(2), v.size(3)}, v.options());
  const Inputs in = inputs_of(q, k, v, alpha, g, gk, std::nullopt, std::nullopt, std::nullopt);
  StatePool pool;
  pool.kk = view(pool_kk, "pool_kk");
  pool.kv = view(pool_kv, "pool_kv");
  const at::Tensor slots_host = host_index(slots);  // alive for the core call
  pool.slots = view(slots_host, "slots");
  const TensorView ov = view(o, "o");
  core_call([&] { decode_pool_step(in, pool, ov, opt); });
  return o;
}

at::Tensor pool_step_meta(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const OptTensor& alpha,
                          const OptTensor& g, const OptTensor& gk, at::Tensor& pool_kk, at::Tensor& pool_kv,
                          const at::Tensor& slots, std::optional<double> scale, double ridge_ratio, int64_t num_iter,
                          c10::string_view solver, c10::string_view backend) {
  (void)k, (void)alpha, (void)g, (void)gk, (void)pool_kk, (void)pool_kv, (void)slots, (void)scale;
  (void)ridge_ratio, (void)num_iter, (void)solver, (void)backend;
  rank_check(q, v, std::nullopt);
  return at::empty_symint({q.sym_size(0), q.sym_size(1), q.sym_size(2), v.sym_size(3)}, v.options());
}

}  // namespace

#define GKA_FWD_ARGS                                                                                          \
  "Tensor q, Tensor k, Tensor v, Tensor? alpha, Tensor? g, Tensor? gk, Tensor? initial_kk, Tensor? initial_kv, " \
  "Tensor? cu_seqlens, float? scale, float ridge_ratio, int num_iter, int chunk_size, str solver, "              \
  "bool lambda_grad, str backend, str precision=\"fp32\""

TORCH_LIBRARY(gka, m) {
  // Forward over whole sequences (chunked) / token by token (decode T >= 1 tokens). Returns the output, the
  // final states and the solved queries x and Frobenius norms fro that the backward consumes.
  m.def("chunk_fwd(" GKA_FWD_ARGS ") -> (Tensor o, Tensor final_kk, Tensor final_kv, Tensor x, Tensor fro)");
  m.def("recurrent_fwd(" GKA_FWD_ARGS ") -> (Tensor o, Tensor final_kk, Tensor final_kv, Tensor x, Tensor fro)");
  // Gradients of either forward; a gradient whose input is absent comes back as an empty [0] tensor.
  m.def(
      "chunk_bwd(Tensor d_o, Tensor? d_final_kk, Tensor? d_final_kv, Tensor x, Tensor fro, " GKA_FWD_ARGS
      ") -> (Tensor dq, Tensor dk, Tensor dv, Tensor dalpha, Tensor dg, Tensor dgk, Tensor d_initial_kk, "
      "Tensor d_initial_kv)");
  // Serving: row b continues the sequence whose states live in slot slots[b] of the pool (updated in place).
  m.def(
      "decode_pool_step_(Tensor q, Tensor k, Tensor v, Tensor? alpha, Tensor? g, Tensor? gk, Tensor(a!) pool_kk, "
      "Tensor(b!) pool_kv, Tensor slots, float? scale, float ridge_ratio, int num_iter, str solver, str backend) "
      "-> Tensor o");
}

TORCH_LIBRARY_IMPL(gka, CPU, m) {
  m.impl("chunk_fwd", &forward_impl<Fwd::chunk>);
  m.impl("recurrent_fwd", &forward_impl<Fwd::recurrent>);
  m.impl("chunk_bwd", &backward_impl);
  m.impl("decode_pool_step_", &pool_step_impl);
}

// Same kernels: the core routes cuda tensors to its CUDA backend (and says so when it is not built).
TORCH_LIBRARY_IMPL(gka, CUDA, m) {
  m.impl("chunk_fwd", &forward_impl<Fwd::chunk>);
  m.impl("recurrent_fwd", &forward_impl<Fwd::recurrent>);
  m.impl("chunk_bwd", &backward_impl);
  m.impl("decode_pool_step_", &pool_step_impl);
}

TORCH_LIBRARY_IMPL(gka, Meta, m) {
  m.impl("chunk_fwd", &forward_meta);
  m.impl("recurrent_fwd", &forward_meta);
  m.impl("chunk_bwd", &backward_meta);
  m.impl("decode_pool_step_", &pool_step_meta);
}

}  // namespace gka::torch_binding
