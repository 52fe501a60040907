#include "layer_problem.h"

#include <cmath>
#include <random>

namespace gka::quickstart {
namespace {

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Fills row after row of the last dimension with randn, L2-normalised if `unit`, times sigmoid(randn)+1e-6
// if `beta`. Rows are drawn in fp64 and rounded once to the buffer's dtype, as the layer would hand them.
void rows_fill(Buffer& t, std::mt19937_64& rng, bool unit, bool beta) {
  std::normal_distribution<double> nd;
  const int64_t n = t.sizes().back();
  std::vector<double> row(static_cast<size_t>(n));
  for (int64_t r = 0; r < t.numel() / n; ++r) {
    double norm = 0;
    for (double& x : row) {
      x = nd(rng);
      norm += x * x;
    }
    double scale = unit ? 1.0 / (std::sqrt(norm) + 1e-6) : 1.0;
    if (beta) scale *= sigmoid(nd(rng)) + 1e-6;
    for (int64_t i = 0; i < n; ++i) t.set(r * n + i, row[static_cast<size_t>(i)] * scale);
  }
}

Buffer gate_make(const Shape& s, std::mt19937_64& rng, double lo) {
  Buffer g(s.state_dtype(), {s.B, s.T, s.H});
  std::uniform_real_distribution<double> u(lo, 0.999);
  for (int64_t i = 0; i < g.numel(); ++i) g.set(i, std::log(u(rng)));
  return g;
}

// A plausible state: the Gram matrix of 8 random unit keys and a matching value state.
void states_make(const Shape& s, std::mt19937_64& rng, Buffer& kk, Buffer& kv) {
  const int64_t N = s.num_seqs(), D = s.D, Dv = s.dv();
  std::vector<double> kkv(static_cast<size_t>(N * s.H * D * D), 0.0);
  std::vector<double> kvv(static_cast<size_t>(N * s.H * D * Dv), 0.0);
  std::normal_distribution<double> nd;
  std::vector<double> key(static_cast<size_t>(D)), val(static_cast<size_t>(Dv));
  for (int64_t nh = 0; nh < N * s.H; ++nh) {
    for (int m = 0; m < 8; ++m) {
      double norm = 0;
      for (double& x : key) {
        x = nd(rng);
        norm += x * x;
      }
      for (double& x : key) x /= std::sqrt(norm);
      for (double& x : val) x = 0.5 * nd(rng);
      for (int64_t i = 0; i < D; ++i) {
        for (int64_t j = 0; j < D; ++j) kkv[static_cast<size_t>((nh * D + i) * D + j)] += key[i] * key[j];
        for (int64_t j = 0; j < Dv; ++j) kvv[static_cast<size_t>((nh * D + i) * Dv + j)] += key[i] * val[j];
      }
    }
  }
  kk = Buffer(s.state_dtype(), {N, s.H, D, D});
  kv = Buffer(s.state_dtype(), {N, s.H, D, Dv});
  for (int64_t i = 0; i < kk.numel(); ++i) kk.set(i, kkv[static_cast<size_t>(i)]);
  for (int64_t i = 0; i < kv.numel(); ++i) kv.set(i, kvv[static_cast<size_t>(i)]);
}

Buffer randn(DType dtype, std::vector<int64_t> sizes, std::mt19937_64& rng, double stddev) {
  Buffer t(dtype, std::move(sizes));
  std::normal_distribution<double> nd(0.0, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, nd(rng));
  return t;
}

}  // namespace

Shape dense_shape(int64_t B, int64_t T, int64_t H, int64_t D, DType dtype) {
  Shape s;
  s.B = B;
  s.T = T;
  s.H = H;
  s.D = D;
  s.dtype = dtype;
  return s;
}

Shape Shape::resolved() const {
  Shape s = *this;
  if (!varlen.empty()) {
    s.B = 1;
    s.T = 0;
    for (int64_t n : varlen) s.T += n;
  }
  return s;
}

LayerInputs layer_inputs_make(const Shape& shape, uint64_t seed) {
  const Shape s = shape.resolved();
  std::mt19937_64 rng(seed);
  LayerInputs in;
  in.q = Buffer(s.dtype, {s.B, s.T, s.H, s.D});
  in.k = Buffer(s.dtype, {s.B, s.T, s.H, s.D});
  in.v = Buffer(s.dtype, {s.B, s.T, s.H, s.dv()});
  rows_fill(in.q, rng, true, false);
  rows_fill(in.k, rng, true, true);
  rows_fill(in.v, rng, false, true);
  in.alpha = Buffer(s.state_dtype(), {s.B, s.T, s.H});
  std::normal_distribution<double> nd;
  for (int64_t i = 0; i < in.alpha.numel(); ++i) in.alpha.set(i, sigmoid(nd(rng)));
  in.g = gate_make(s, rng, 0.8);
  in.gk = s.untied_gates ? gate_make(s, rng, 0.85) : in.g;
  if (s.h0) states_make(s, rng, in.h0_kk, in.h0_kv);
  if (!s.varlen.empty()) {
    in.cu_seqlens = Buffer(DType::i64, {static_cast<int64_t>(s.varlen.size()) + 1});
    int64_t off = 0;
    for (size_t i = 0; i < s.varlen.size(); ++i) in.cu_seqlens.set(static_cast<int64_t>(i) + 1, off += s.varlen[i]);
  }
  return in;
}

Inputs LayerInputs::view() const {
  Inputs in;
  in.q = q.view();
  in.k = k.view();
  in.v = v.view();
  in.alpha = alpha.view();
  in.g = g.view();
  in.gk = gk.view();
  in.initial_kk = h0_kk.view();
  in.initial_kv = h0_kv.view();
  in.cu_seqlens = cu_seqlens.view();
  return in;
}

ForwardBuffers forward_buffers_make(const Shape& shape) {
  const Shape s = shape.resolved();
  const int64_t N = s.num_seqs();
  ForwardBuffers f;
  f.o = Buffer(s.dtype, {s.B, s.T, s.H, s.dv()});
  f.final_kk = Buffer(s.state_dtype(), {N, s.H, s.D, s.D});
  f.final_kv = Buffer(s.state_dtype(), {N, s.H, s.D, s.dv()});
  f.x = Buffer(s.state_dtype(), {s.B, s.T, s.H, s.D});
  f.fro = Buffer(s.state_dtype(), {s.B, s.T, s.H});
  return f;
}

ForwardOutputs ForwardBuffers::view(bool save_for_backward) const {
  ForwardOutputs out;
  out.o = o.view();
  out.final_kk = final_kk.view();
  out.final_kv = final_kv.view();
  if (save_for_backward) {
    out.x = x.view();
    out.fro = fro.view();
  }
  return out;
}

BackwardBuffers backward_buffers_make(const Shape& shape, uint64_t seed) {
  const Shape s = shape.resolved();
  const int64_t N = s.num_seqs();
  const DType sdt = s.state_dtype();
  std::mt19937_64 rng(seed);
  BackwardBuffers b;
  b.d_o = randn(s.dtype, {s.B, s.T, s.H, s.dv()}, rng, 1.0);
  b.d_final_kk = randn(sdt, {N, s.H, s.D, s.D}, rng, 0.1);
  b.d_final_kv = randn(sdt, {N, s.H, s.D, s.dv()}, rng, 0.1);
  b.dq = Buffer(s.dtype, {s.B, s.T, s.H, s.D});
  b.dk = Buffer(s.dtype, {s.B, s.T, s.H, s.D});
  b.dv = Buffer(s.dtype, {s.B, s.T, s.H, s.dv()});
  b.dalpha = Buffer(sdt, {s.B, s.T, s.H});
  b.dg = Buffer(sdt, {s.B, s.T, s.H});
  b.dgk = Buffer(sdt, {s.B, s.T, s.H});
  b.d_h0_kk = Buffer(sdt, {N, s.H, s.D, s.D});
  b.d_h0_kv = Buffer(sdt, {N, s.H, s.D, s.dv()});
  return b;
}

BackwardInputs BackwardBuffers::seeds(const ForwardBuffers* saved) const {
  BackwardInputs g;
  g.d_o = d_o.view();
  g.d_final_kk = d_final_kk.view();
  g.d_final_kv = d_final_kv.view();
  if (saved) {
    g.x = saved->x.view();
    g.fro = saved->fro.view();
  }
  return g;
}

Gradients BackwardBuffers::grads() const {
  Gradients g;
  g.dq = dq.view();
  g.dk = dk.view();
  g.dv = dv.view();
  g.dalpha = dalpha.view();
  g.dg = dg.view();
  g.dgk = dgk.view();
  g.d_initial_kk = d_h0_kk.view();
  g.d_initial_kv = d_h0_kv.view();
  return g;
}

}  // namespace gka::quickstart
