// Argument checks for every entry point. Messages follow one pattern: "<fn>: <argument> <what was
// expected>, got <what came>", so a user can fix the call without reading our code.
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "common/access.h"
#include "common/problem.h"
#include "gka/error.h"
#include "gka/gka.h"

namespace gka {
namespace {

std::string shape_str(const TensorView& v) {
  std::ostringstream s;
  s << "[";
  for (int32_t i = 0; i < v.ndim; ++i) s << (i ? ", " : "") << v.sizes[i];
  s << "]";
  return s.str();
}

std::string shape_str(const std::vector<int64_t>& sizes) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < sizes.size(); ++i) s << (i ? ", " : "") << sizes[i];
  s << "]";
  return s.str();
}

[[noreturn]] void fail(const char* fn, const std::string& msg) { throw Error(std::string(fn) + ": " + msg); }

bool is_float(DType d) { return d == DType::f16 || d == DType::bf16 || d == DType::f32 || d == DType::f64; }

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::chunk_forward: return "gka::chunk_forward";
    case Phase::chunk_backward: return "gka::chunk_backward";
    case Phase::recurrent_forward: return "gka::recurrent_forward";
    case Phase::pool_step: return "gka::decode_pool_step";
  }
  return "gka";
}

// Shape, layout and device of one view; dtype is checked by the caller.
void view_check(const char* fn, const char* name, const TensorView& v, const std::vector<int64_t>& shape,
                Device device) {
  if (v.ndim != static_cast<int32_t>(shape.size()) || v.ndim > kMaxDims)
    fail(fn, std::string(name) + " must have shape " + shape_str(shape) + ", got " + shape_str(v));
  for (int32_t i = 0; i < v.ndim; ++i)
    if (v.sizes[i] != shape[i])
      fail(fn, std::string(name) + " must have shape " + shape_str(shape) + ", got " + shape_str(v));
  if (v.device != device)
    fail(fn, std::string(name) + " must be on the same device as q (" +
                 (device == Device::cpu ? "cpu" : "cuda") + "), got " + (v.device == Device::cpu ? "cpu" : "cuda"));
  for (int32_t i = 0; i < v.ndim; ++i)
    if (v.strides[i] < 0)
      fail(fn, std::string(name) + " must have non-negative strides, got stride " + std::to_string(v.strides[i]) +
                   " in dimension " + std::to_string(i));
  if (v.numel() > 0 && v.sizes[v.ndim - 1] > 1 && v.strides[v.ndim - 1] != 1)
    fail(fn, std::string(name) + " must have stride 1 in its last dimension, got " +
                 std::to_string(v.strides[v.ndim - 1]) + " (make it contiguous)");
  if (v.numel() > 0 && v.data == nullptr) fail(fn, std::string(name) + " has a null data pointer");
}

void dtype_check(const char* fn, const char* name, const TensorView& v, DType expected) {
  if (v.dtype != expected)
    fail(fn, std::string(name) + " must have dtype " + dtype_name(expected) + ", got " + dtype_name(v.dtype));
}

void float_check(const char* fn, const char* name, const TensorView& v) {
  if (!is_float(v.dtype))
    fail(fn, std::string(name) + " must have a floating dtype (float16, bfloat16, float32, float64), got " +
                 dtype_name(v.dtype));
}

void finite_check(const char* fn, const char* name, const TensorView& v) {
  if (!v.defined()) return;
  const int64_t n = v.sizes[v.ndim - 1];
  std::vector<double> row(static_cast<size_t>(n));
  int64_t idx[kMaxDims] = {};
  const int64_t rows = n > 0 ? v.numel() / n : 0;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t off = 0, rem = r;
    for (int32_t d = v.ndim - 2; d >= 0; --d) {
      idx[d] = rem % v.sizes[d];
      rem /= v.sizes[d];
      off += idx[d] * v.strides[d];
    }
    load(v, off, row.data(), n);
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(row[static_cast<size_t>(i)])) {
        idx[v.ndim - 1] = i;
        std::string at = "[";
        for (int32_t d = 0; d < v.ndim; ++d) at += (d ? ", " : "") + std::to_string(idx[d]);
        fail(fn, std::string(name) + " must be finite (check_finite is on), got " +
                     std::to_string(row[static_cast<size_t>(i)]) + " at " + at + "]");
      }
  }
}

}  // namespace

Problem problem_make(const Inputs& in, const Options& opt, Phase phase) {
  const char* fn = phase_name(phase);
  Problem p;
  p.in = in;
  const TensorView& q = in.q;
  if (!q.defined()) fail(fn, "q is required");
  if (q.ndim != 4) fail(fn, "q must have shape [B, T, H, D], got " + shape_str(q));
  float_check(fn, "q", q);
  const Device dev = q.device;
  p.B = q.sizes[0];
  p.T = q.sizes[1];
  p.H = q.sizes[2];
  p.D = q.sizes[3];
  if (p.B < 1 || p.H < 1 || p.D < 1) fail(fn, "q must have B, H, D >= 1, got " + shape_str(q));
  if (p.T < 1) fail(fn, "q must hold T >= 1 tokens, got T = " + std::to_string(p.T) + " (shape " + shape_str(q) + ")");
  view_check(fn, "q", q, {p.B, p.T, p.H, p.D}, dev);
  p.fp64 = q.dtype == DType::f64;

  if (!in.k.defined()) fail(fn, "k is required");
  view_check(fn, "k", in.k, {p.B, p.T, p.H, p.D}, dev);
  dtype_check(fn, "k (same dtype as q)", in.k, q.dtype);
  if (!in.v.defined()) fail(fn, "v is required");
  if (in.v.ndim != 4) fail(fn, "v must have shape [B, T, H, Dv], got " + shape_str(in.v));
  p.Dv = in.v.sizes[3];
  if (p.Dv < 1) fail(fn, "v must have Dv >= 1, got " + shape_str(in.v));
  view_check(fn, "v", in.v, {p.B, p.T, p.H, p.Dv}, dev);
  dtype_check(fn, "v (same dtype as q)", in.v, q.dtype);

  const char* gate_names[3] = {"alpha", "g", "gk"};
  const TensorView* gates[3] = {&in.alpha, &in.g, &in.gk};
  for (int i = 0; i < 3; ++i) {
    if (!gates[i]->defined()) continue;
    view_check(fn, gate_names[i], *gates[i], {p.B, p.T, p.H}, dev);
    float_check(fn, gate_names[i], *gates[i]);
  }

  // Sequences: one per batch row, or the cu_seqlens segments of a single packed row.
  if (in.cu_seqlens.defined()) {
    const TensorView& cu = in.cu_seqlens;
    if (phase == Phase::pool_step) fail(fn, "cu_seqlens is not supported with a state pool; give one row per request");
    if (cu.ndim != 1 || cu.sizes[0] < 2)
      fail(fn, "cu_seqlens must have shape [N+1] with N >= 1, got " + shape_str(cu));
    if (cu.dtype != DType::i32 && cu.dtype != DType::i64)
      fail(fn, std::string("cu_seqlens must have dtype int32 or int64, got ") + dtype_name(cu.dtype));
    // Validation and the sequence plan read the offsets on the host, also for cuda tensors (no device sync).
    if (cu.device != Device::cpu) fail(fn, "cu_seqlens must be a cpu tensor (its offsets are read on the host)");
    if (p.B != 1) fail(fn, "cu_seqlens requires B == 1 (packed sequences), got B = " + std::to_string(p.B));
    const int64_t n = cu.sizes[0] - 1;
    if (load_index(cu, 0) != 0) fail(fn, "cu_seqlens[0] must be 0, got " + std::to_string(load_index(cu, 0)));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t a = load_index(cu, i), b = load_index(cu, i + 1);
      if (b < a)
        fail(fn, "cu_seqlens must be non-decreasing, got cu_seqlens[" + std::to_string(i) + "] = " +
                     std::to_string(a) + " > cu_seqlens[" + std::to_string(i + 1) + "] = " + std::to_string(b));
      p.seqs.push_back({0, a, b - a, i});
    }
    if (load_index(cu, n) != p.T)
      fail(fn, "cu_seqlens[-1] must equal T = " + std::to_string(p.T) + ", got " + std::to_string(load_index(cu, n)));
  } else {
    for (int64_t b = 0; b < p.B; ++b) p.seqs.push_back({b, 0, p.T, b});
  }

  const DType state_dtype = p.fp64 ? DType::f64 : DType::f32;
  const int64_t N = p.num_seqs();
  if (phase == Phase::pool_step && (in.initial_kk.defined() || in.initial_kv.defined()))
    fail(fn, "initial_kk/initial_kv must be absent with a state pool (the pool holds the states)");
  if (in.initial_kk.defined()) {
    view_check(fn, "initial_kk", in.initial_kk, {N, p.H, p.D, p.D}, dev);
    dtype_check(fn, "initial_kk", in.initial_kk, state_dtype);
  }
  if (in.initial_kv.defined()) {
    view_check(fn, "initial_kv", in.initial_kv, {N, p.H, p.D, p.Dv}, dev);
    dtype_check(fn, "initial_kv", in.initial_kv, state_dtype);
  }

  // Options.
  if (!(opt.ridge_ratio > 0) || !std::isfinite(opt.ridge_ratio))
    fail(fn, "ridge_ratio must be a finite number > 0, got " + std::to_string(opt.ridge_ratio));
  p.ridge_ratio = opt.ridge_ratio;
  if (opt.tolerance) {
    if (!(*opt.tolerance > 0 && *opt.tolerance < 1))
      fail(fn, "tolerance must lie in (0, 1), got " + std::to_string(*opt.tolerance));
    p.num_iter = num_iter_for_tolerance(opt.ridge_ratio, *opt.tolerance);
  } else {
    if (opt.num_iter < 0 || opt.num_iter > 10000)
      fail(fn, "num_iter must lie in [0, 10000], got " + std::to_string(opt.num_iter));
    p.num_iter = opt.num_iter;
  }
  if (opt.chunk_size < 8 || opt.chunk_size > 256)
    fail(fn, "chunk_size must lie in [8, 256], got " + std::to_string(opt.chunk_size));
  p.chunk_size = opt.chunk_size;
  if (opt.scale && !std::isfinite(*opt.scale)) fail(fn, "scale must be finite, got " + std::to_string(*opt.scale));
  p.scale = opt.scale ? *opt.scale : 1.0 / std::sqrt(static_cast<double>(p.D));
  if (opt.solver != Solver::chebyshev && opt.solver != Solver::cg && opt.solver != Solver::exact)
    fail(fn, "solver must be chebyshev, cg or exact, got " + std::to_string(static_cast<int>(opt.solver)));
  if (phase == Phase::chunk_backward && opt.solver == Solver::cg)
    fail(fn, "the backward is implemented for the chebyshev and exact solvers, got solver = cg");
  p.solver = opt.solver;
  if (opt.precision != Precision::fp32 && opt.precision != Precision::mixed)
    fail(fn, "precision must be fp32 or mixed, got " + std::to_string(static_cast<int>(opt.precision)));
  p.precision = opt.precision;
  p.lambda_grad = opt.lambda_grad;
  if (opt.num_threads < 0) fail(fn, "num_threads must be >= 0, got " + std::to_string(opt.num_threads));
  p.num_threads = opt.num_threads;
  p.cuda_stream = opt.cuda_stream;

  if (opt.check_finite) {
    finite_check(fn, "q", in.q);
    finite_check(fn, "k", in.k);
    finite_check(fn, "v", in.v);
    for (int i = 0; i < 3; ++i) finite_check(fn, gate_names[i], *gates[i]);
    finite_check(fn, "initial_kk", in.initial_kk);
    finite_check(fn, "initial_kv", in.initial_kv);
  }
  return p;
}

void outputs_check(const Problem& p, const ForwardOutputs& out) {
  const char* fn = "gka forward";
  const Device dev = p.in.q.device;
  const DType state_dtype = p.fp64 ? DType::f64 : DType::f32;
  const int64_t N = p.num_seqs();
  if (!out.o.defined()) fail(fn, "output o is required");
  view_check(fn, "o", out.o, {p.B, p.T, p.H, p.Dv}, dev);
  dtype_check(fn, "o (dtype of v)", out.o, p.in.v.dtype);
  if (out.final_kk.defined()) {
    view_check(fn, "final_kk", out.final_kk, {N, p.H, p.D, p.D}, dev);
    dtype_check(fn, "final_kk", out.final_kk, state_dtype);
  }
  if (out.final_kv.defined()) {
    view_check(fn, "final_kv", out.final_kv, {N, p.H, p.D, p.Dv}, dev);
    dtype_check(fn, "final_kv", out.final_kv, state_dtype);
  }
  if (out.x.defined()) {
    view_check(fn, "x", out.x, {p.B, p.T, p.H, p.D}, dev);
    dtype_check(fn, "x", out.x, state_dtype);
  }
  if (out.fro.defined()) {
    view_check(fn, "fro", out.fro, {p.B, p.T, p.H}, dev);
    dtype_check(fn, "fro", out.fro, state_dtype);
  }
  if (out.residual.defined()) {
    view_check(fn, "residual", out.residual, {p.B, p.T, p.H}, dev);
    dtype_check(fn, "residual", out.residual, state_dtype);
  }
}

void backward_check(const Problem& p, const BackwardInputs& gin, const Gradients& gout) {
  const char* fn = "gka::chunk_backward";
  const Device dev = p.in.q.device;
  const DType state_dtype = p.fp64 ? DType::f64 : DType::f32;
  const int64_t N = p.num_seqs();
  if (!gin.d_o.defined()) fail(fn, "d_o (gradient of o) is required");
  view_check(fn, "d_o", gin.d_o, {p.B, p.T, p.H, p.Dv}, dev);
  float_check(fn, "d_o", gin.d_o);
  if (gin.d_final_kk.defined()) {
    view_check(fn, "d_final_kk", gin.d_final_kk, {N, p.H, p.D, p.D}, dev);
    dtype_check(fn, "d_final_kk", gin.d_final_kk, state_dtype);
  }
  if (gin.d_final_kv.defined()) {
    view_check(fn, "d_final_kv", gin.d_final_kv, {N, p.H, p.D, p.Dv}, dev);
    dtype_check(fn, "d_final_kv", gin.d_final_kv, state_dtype);
  }
  if (gin.x.defined() != gin.fro.defined()) fail(fn, "saved x and fro must be given together (or both omitted)");
  if (gin.x.defined()) {
    view_check(fn, "saved x", gin.x, {p.B, p.T, p.H, p.D}, dev);
    dtype_check(fn, "saved x", gin.x, state_dtype);
    view_check(fn, "saved fro", gin.fro, {p.B, p.T, p.H}, dev);
    dtype_check(fn, "saved fro", gin.fro, state_dtype);
  }
  struct G {
    const char* name;
    const TensorView& grad;
    const TensorView& input;
    std::vector<int64_t> shape;
  };
  const G grads[] = {
      {"dq", gout.dq, p.in.q, {p.B, p.T, p.H, p.D}},         {"dk", gout.dk, p.in.k, {p.B, p.T, p.H, p.D}},
      {"dv", gout.dv, p.in.v, {p.B, p.T, p.H, p.Dv}},        {"dalpha", gout.dalpha, p.in.alpha, {p.B, p.T, p.H}},
      {"dg", gout.dg, p.in.g, {p.B, p.T, p.H}},              {"dgk", gout.dgk, p.in.gk, {p.B, p.T, p.H}},
  };
  for (const G& g : grads) {
    if (!g.grad.defined()) continue;
    if (!g.input.defined())
      fail(fn, std::string(g.name) + " was requested but its input is absent (nothing to differentiate)");
    view_check(fn, g.name, g.grad, g.shape, dev);
    dtype_check(fn, (std::string(g.name) + " (dtype of its input)").c_str(), g.grad, g.input.dtype);
  }
  if (gout.d_initial_kk.defined()) {
    view_check(fn, "d_initial_kk", gout.d_initial_kk, {N, p.H, p.D, p.D}, dev);
    dtype_check(fn, "d_initial_kk", gout.d_initial_kk, state_dtype);
  }
  if (gout.d_initial_kv.defined()) {
    view_check(fn, "d_initial_kv", gout.d_initial_kv, {N, p.H, p.D, p.Dv}, dev);
    dtype_check(fn, "d_initial_kv", gout.d_initial_kv, state_dtype);
  }
}

void pool_check(const Problem& p, const StatePool& pool, const TensorView& o) {
  const char* fn = "gka::decode_pool_step";
  const Device dev = p.in.q.device;
  const DType state_dtype = p.fp64 ? DType::f64 : DType::f32;
  if (!pool.kk.defined() || !pool.kv.defined() || !pool.slots.defined())
    fail(fn, "the state pool needs kk, kv and slots");
  if (pool.kk.ndim != 4) fail(fn, "pool.kk must have shape [P, H, D, D], got " + shape_str(pool.kk));
  const int64_t P = pool.kk.sizes[0];
  view_check(fn, "pool.kk", pool.kk, {P, p.H, p.D, p.D}, dev);
  dtype_check(fn, "pool.kk", pool.kk, state_dtype);
  view_check(fn, "pool.kv", pool.kv, {P, p.H, p.D, p.Dv}, dev);
  dtype_check(fn, "pool.kv", pool.kv, state_dtype);
  if (pool.slots.ndim != 1 || pool.slots.sizes[0] != p.B)
    fail(fn, "pool.slots must have shape [B] = [" + std::to_string(p.B) + "], got " + shape_str(pool.slots));
  if (pool.slots.dtype != DType::i32 && pool.slots.dtype != DType::i64)
    fail(fn, std::string("pool.slots must have dtype int32 or int64, got ") + dtype_name(pool.slots.dtype));
  if (pool.slots.device != Device::cpu) fail(fn, "pool.slots must be a cpu tensor (slot indices are read on the host)");
  std::vector<char> used(static_cast<size_t>(P), 0);
  for (int64_t b = 0; b < p.B; ++b) {
    const int64_t s = load_index(pool.slots, b);
    if (s >= P)
      fail(fn, "pool.slots[" + std::to_string(b) + "] = " + std::to_string(s) + " is out of range for a pool of " +
                   std::to_string(P) + " slots");
    if (s < 0) continue;
    if (used[static_cast<size_t>(s)])
      fail(fn, "pool.slots must not repeat a slot, got slot " + std::to_string(s) + " twice");
    used[static_cast<size_t>(s)] = 1;
  }
  view_check(fn, "o", o, {p.B, p.T, p.H, p.Dv}, dev);
  dtype_check(fn, "o (dtype of v)", o, p.in.v.dtype);
}

}  // namespace gka
