#include "harness/layer_problem.h"

#include <cmath>
#include <random>

namespace gka::harness {
namespace {

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double softplus(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }

// Scales each row of the last dimension of an fp64 tensor by (sigmoid(randn) + 1e-6 if `beta`, else 1),
// divided by (its L2 norm + 1e-6) if `unit`.
void rows_scale(Tensor& t, std::mt19937_64& rng, bool unit, bool beta) {
  std::normal_distribution<double> nd;
  const int64_t n = t.sizes().back();
  std::vector<double> v = t.to_f64();
  for (int64_t r = 0; r < t.numel() / n; ++r) {
    double* row = v.data() + r * n;
    double norm = 0;
    for (int64_t i = 0; i < n; ++i) norm += row[i] * row[i];
    const double scale = (beta ? sigmoid(nd(rng)) + 1e-6 : 1.0) / (unit ? std::sqrt(norm) + 1e-6 : 1.0);
    for (int64_t i = 0; i < n; ++i) row[i] *= scale;
  }
  t = Tensor::from_f64(v, t.dtype(), t.sizes());
}

// Log-decays [B,T,H]: mild = log U(lo, 0.999); strong = -A softplus(randn + dt_bias) per head (layer init).
// A and dt_bias are drawn for either strength, so both see the same random stream afterwards.
Tensor gate_make(const Shape& s, std::mt19937_64& rng, double lo) {
  Tensor g(s.state_dtype(), {s.B, s.T, s.H});
  std::uniform_real_distribution<double> u(lo, 0.999);
  std::normal_distribution<double> nd;
  std::vector<double> A(static_cast<size_t>(s.H)), dt_bias(static_cast<size_t>(s.H));
  for (size_t h = 0; h < A.size(); ++h) {
    A[h] = std::uniform_real_distribution<double>(0.0, 16.0)(rng);
    const double d = std::exp(std::uniform_real_distribution<double>(std::log(1e-3), std::log(1e-1))(rng));
    dt_bias[h] = d + std::log(-std::expm1(-d));
  }
  for (int64_t i = 0; i < g.numel(); ++i) {
    const size_t h = static_cast<size_t>(i % s.H);
    g.set_f64(i, s.gate_strength == GateStrength::strong ? -A[h] * softplus(nd(rng) + dt_bias[h]) : std::log(u(rng)));
  }
  return g;
}

// A plausible state: the Gram matrix of 8 random unit keys, and a matching value state.
void states_make(const Shape& s, std::mt19937_64& rng, Tensor& kk, Tensor& kv) {
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
      for (double& x : val) x = nd(rng) * 0.5;
      for (size_t i = 0; i < key.size(); ++i) {
        double* kk_row = kkv.data() + (static_cast<size_t>(nh * D) + i) * key.size();
        double* kv_row = kvv.data() + (static_cast<size_t>(nh * D) + i) * val.size();
        for (size_t j = 0; j < key.size(); ++j) kk_row[j] += key[i] * key[j];
        for (size_t j = 0; j < val.size(); ++j) kv_row[j] += key[i] * val[j];
      }
    }
  }
  kk = Tensor::from_f64(kkv, s.state_dtype(), {N, s.H, D, D});
  kv = Tensor::from_f64(kvv, s.state_dtype(), {N, s.H, D, Dv});
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

Shape packed_shape(std::vector<int64_t> lengths, int64_t H, int64_t D, DType dtype) {
  int64_t T = 0;
  for (int64_t n : lengths) T += n;
  Shape s = dense_shape(1, T, H, D, dtype);
  s.varlen = std::move(lengths);
  return s;
}

LayerInputs layer_inputs_make(const Shape& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const DType sdt = s.state_dtype();
  LayerInputs in;
  // Normalise in fp64, then round to the input dtype (the layer feeds the op already-normalised tensors).
  in.q = Tensor::randn(DType::f64, {s.B, s.T, s.H, s.D}, rng);
  in.k = Tensor::randn(DType::f64, {s.B, s.T, s.H, s.D}, rng);
  in.v = Tensor::randn(DType::f64, {s.B, s.T, s.H, s.dv()}, rng);
  rows_scale(in.q, rng, true, false);
  rows_scale(in.k, rng, true, true);
  rows_scale(in.v, rng, false, true);
  in.q = in.q.cast(s.dtype);
  in.k = in.k.cast(s.dtype);
  in.v = in.v.cast(s.dtype);
  if (s.alpha) {
    std::vector<double> a = Tensor::randn(DType::f64, {s.B, s.T, s.H}, rng).to_f64();
    for (double& x : a) x = sigmoid(x);
    in.alpha = Tensor::from_f64(a, sdt, {s.B, s.T, s.H});
  }
  if (s.gates == Gates::tied || s.gates == Gates::untied || s.gates == Gates::g_only) in.g = gate_make(s, rng, 0.8);
  if (s.gates == Gates::tied) in.gk = in.g;
  if (s.gates == Gates::untied || s.gates == Gates::gk_only) in.gk = gate_make(s, rng, 0.85);
  if (s.h0) states_make(s, rng, in.h0_kk, in.h0_kv);
  if (!s.varlen.empty()) {
    std::vector<double> cu{0};
    for (int64_t n : s.varlen) cu.push_back(cu.back() + static_cast<double>(n));
    in.cu_seqlens = Tensor::from_f64(cu, DType::i64, {static_cast<int64_t>(cu.size())});
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

ForwardBuffers forward_buffers_make(const Shape& s) {
  const DType sdt = s.state_dtype();
  const int64_t N = s.num_seqs();
  ForwardBuffers f;
  f.o = Tensor(s.dtype, {s.B, s.T, s.H, s.dv()});
  f.final_kk = Tensor(sdt, {N, s.H, s.D, s.D});
  f.final_kv = Tensor(sdt, {N, s.H, s.D, s.dv()});
  f.x = Tensor(sdt, {s.B, s.T, s.H, s.D});
  f.fro = Tensor(sdt, {s.B, s.T, s.H});
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

GradientSeeds gradient_seeds_make(const Shape& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const DType sdt = s.state_dtype();
  const int64_t N = s.num_seqs();
  GradientSeeds g;
  g.d_o = Tensor::randn(s.dtype, {s.B, s.T, s.H, s.dv()}, rng);
  g.d_final_kk = Tensor::randn(sdt, {N, s.H, s.D, s.D}, rng, 0.1);
  g.d_final_kv = Tensor::randn(sdt, {N, s.H, s.D, s.dv()}, rng, 0.1);
  return g;
}

BackwardInputs GradientSeeds::view(const ForwardBuffers* saved) const {
  BackwardInputs b;
  b.d_o = d_o.view();
  b.d_final_kk = d_final_kk.view();
  b.d_final_kv = d_final_kv.view();
  if (saved) {
    b.x = saved->x.view();
    b.fro = saved->fro.view();
  }
  return b;
}

GradientBuffers gradient_buffers_make(const Shape& s, const LayerInputs& in) {
  const auto like = [](const Tensor& t) { return t.defined() ? Tensor(t.dtype(), t.sizes()) : Tensor(); };
  const DType sdt = in.q.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const int64_t N = s.num_seqs();
  GradientBuffers g;
  g.dq = like(in.q);
  g.dk = like(in.k);
  g.dv = like(in.v);
  g.dalpha = like(in.alpha);
  g.dg = like(in.g);
  g.dgk = like(in.gk);
  g.dh0_kk = Tensor(sdt, {N, s.H, s.D, s.D});
  g.dh0_kv = Tensor(sdt, {N, s.H, s.D, s.dv()});
  return g;
}

Gradients GradientBuffers::view() const {
  Gradients g;
  g.dq = dq.view();
  g.dk = dk.view();
  g.dv = dv.view();
  g.dalpha = dalpha.view();
  g.dg = dg.view();
  g.dgk = dgk.view();
  g.d_initial_kk = dh0_kk.view();
  g.d_initial_kv = dh0_kv.view();
  return g;
}

void ForwardBuffers::poison() {
  for (Tensor* t : {&o, &final_kk, &final_kv, &x, &fro}) t->fill_nan();
}

void GradientBuffers::poison() {
  for (Tensor* t : {&dq, &dk, &dv, &dalpha, &dg, &dgk, &dh0_kk, &dh0_kv}) t->fill_nan();
}

ForwardBuffers forward_run(const Shape& s, const LayerInputs& in, const Options& opt, bool recurrent) {
  ForwardBuffers r = forward_buffers_make(s);
  r.poison();
  if (recurrent)
    recurrent_forward(in.view(), r.view(true), opt);
  else
    chunk_forward(in.view(), r.view(true), opt);
  return r;
}

GradientBuffers backward_run(const Shape& s, const LayerInputs& in, const GradientSeeds& seeds, const Options& opt,
                             const ForwardBuffers* saved) {
  GradientBuffers r = gradient_buffers_make(s, in);
  r.poison();
  chunk_backward(in.view(), seeds.view(saved), r.view(), opt);
  return r;
}

}  // namespace gka::harness
