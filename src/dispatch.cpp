// Public entry points: validate, pick the backend, call it. The only place that chooses a backend.
#include <cmath>

#include "backends.h"
#include "common/access.h"
#include "common/problem.h"
#include "gka/gka.h"

namespace gka {
namespace {

Backend backend_resolve(const Problem& p, Backend requested, const char* fn) {
  const Device dev = p.in.q.device;
  if (requested == Backend::automatic) requested = dev == Device::cuda ? Backend::cuda : Backend::cpu;
  if (requested == Backend::cuda) {
#ifdef GKA_WITH_CUDA
    if (dev != Device::cuda)
      throw Error(std::string(fn) + ": the cuda backend needs tensors on the cuda device, got cpu tensors");
    return requested;
#else
    throw Error(std::string(fn) + ": the cuda backend is not available in this build (tensors on cuda need it)");
#endif
  }
  if (dev != Device::cpu)
    throw Error(std::string(fn) + ": the " + (requested == Backend::reference ? "reference" : "cpu") +
                " backend needs tensors on the cpu, got cuda tensors");
  return requested;
}

}  // namespace

void chunk_forward(const Inputs& in, const ForwardOutputs& out, const Options& opt) {
  Problem p = problem_make(in, opt, Phase::chunk_forward);
  outputs_check(p, out);
  const Backend b = backend_resolve(p, opt.backend, "gka::chunk_forward");
  if (b == Backend::reference)
    reference::forward(p, out);
#ifdef GKA_WITH_CUDA
  else if (b == Backend::cuda)
    cuda::chunk_forward(p, out);
#endif
  else
    cpu::chunk_forward(p, out);
}

void chunk_backward(const Inputs& in, const BackwardInputs& gin, const Gradients& gout, const Options& opt) {
  Problem p = problem_make(in, opt, Phase::chunk_backward);
  backward_check(p, gin, gout);
  const Backend b = backend_resolve(p, opt.backend, "gka::chunk_backward");
  if (b == Backend::reference)
    reference::backward(p, gin, gout);
#ifdef GKA_WITH_CUDA
  else if (b == Backend::cuda)
    cuda::chunk_backward(p, gin, gout);
#endif
  else
    cpu::chunk_backward(p, gin, gout);
}

void recurrent_forward(const Inputs& in, const ForwardOutputs& out, const Options& opt) {
  Problem p = problem_make(in, opt, Phase::recurrent_forward);
  outputs_check(p, out);
  const Backend b = backend_resolve(p, opt.backend, "gka::recurrent_forward");
  if (b == Backend::reference)
    reference::forward(p, out);
#ifdef GKA_WITH_CUDA
  else if (b == Backend::cuda)
    cuda::recurrent_forward(p, out);
#endif
  else
    cpu::recurrent_forward(p, out);
}

void decode_pool_step(const Inputs& in, const StatePool& pool, const TensorView& o, const Options& opt) {
  Problem p = problem_make(in, opt, Phase::pool_step);
  pool_check(p, pool, o);
  for (Sequence& s : p.seqs) s.state = load_index(pool.slots, s.batch);
  p.in.initial_kk = pool.kk;  // read and written in place, slot by slot
  p.in.initial_kv = pool.kv;
  ForwardOutputs out;
  out.o = o;
  out.final_kk = pool.kk;
  out.final_kv = pool.kv;
  const Backend b = backend_resolve(p, opt.backend, "gka::decode_pool_step");
  if (b == Backend::reference)
    reference::forward(p, out);
#ifdef GKA_WITH_CUDA
  else if (b == Backend::cuda)
    cuda::recurrent_forward(p, out);
#endif
  else
    cpu::recurrent_forward(p, out);
}

double chebyshev_error_bound(double ridge_ratio, int32_t num_iter) {
  const double kappa = (1.0 + ridge_ratio) / ridge_ratio;
  const double s = (std::sqrt(kappa) - 1.0) / (std::sqrt(kappa) + 1.0);
  const double p = std::pow(s, num_iter + 1);
  return 2.0 * p / (1.0 + p * p);
}

int32_t num_iter_for_tolerance(double ridge_ratio, double tolerance) {
  if (!(ridge_ratio > 0) || !std::isfinite(ridge_ratio))
    throw Error("gka::num_iter_for_tolerance: ridge_ratio must be a finite number > 0, got " +
                std::to_string(ridge_ratio));
  if (!(tolerance > 0 && tolerance < 1))
    throw Error("gka::num_iter_for_tolerance: tolerance must lie in (0, 1), got " + std::to_string(tolerance));
  for (int32_t n = 0; n <= 10000; ++n)
    if (chebyshev_error_bound(ridge_ratio, n) <= tolerance) return n;
  throw Error("gka::num_iter_for_tolerance: tolerance " + std::to_string(tolerance) +
              " needs more than 10000 iterations at ridge_ratio " + std::to_string(ridge_ratio));
}

// Multiply-accumulates per token and head, counted as in spec §B.4 (solve, norms, Gram scan, readout).
double forward_flops_per_token(int64_t D, int64_t Dv, int64_t C, int32_t num_iter) {
  const double d = static_cast<double>(D), dv = static_cast<double>(Dv), c = static_cast<double>(C);
  const double solve = num_iter * (d * d + 2 * c * d);
  const double norms = d * d + c * d + c * c;
  const double scan = d * d;
  const double readout = 2 * d * dv + c * d + c * dv;
  return 2.0 * (solve + norms + scan + readout);
}

// Spec §C.4: one adjoint solve plus ~5D^2 + 6CD for the solve's backward, plus twice the readout.
double backward_flops_per_token(int64_t D, int64_t Dv, int64_t C, int32_t num_iter) {
  const double d = static_cast<double>(D), dv = static_cast<double>(Dv), c = static_cast<double>(C);
  const double solve = num_iter * (d * d + 2 * c * d) + 5 * d * d + 6 * c * d;
  const double readout = 2 * (2 * d * dv + c * d + c * dv);
  return 2.0 * (solve + readout);
}

}  // namespace gka
