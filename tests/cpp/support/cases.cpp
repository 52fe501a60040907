#include "support/cases.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace gka::test {

DType dtype_parse(const std::string& name) {
  if (name == "f32") return DType::f32;
  if (name == "f64") return DType::f64;
  if (name == "bf16") return DType::bf16;
  if (name == "f16") return DType::f16;
  throw std::runtime_error("unknown dtype in cases.json: " + name);
}

Options Case::options(Backend backend) const {
  Options o;
  o.num_iter = num_iter;
  o.ridge_ratio = ridge_ratio;
  o.chunk_size = chunk_size;
  o.lambda_grad = lambda_grad;
  o.backend = backend;
  if (solver == "cg") o.solver = Solver::cg;
  else if (solver == "exact") o.solver = Solver::exact;
  else o.solver = Solver::chebyshev;
  return o;
}

std::vector<Case> cases_load() {
  std::ifstream f(GKA_CASES_FILE);
  if (!f) throw std::runtime_error(std::string("cannot open ") + GKA_CASES_FILE);
  const nlohmann::json j = nlohmann::json::parse(f);
  std::vector<Case> out;
  for (const auto& e : j.at("cases")) {
    Case c;
    c.name = e.at("name").get<std::string>();
    c.B = e.value("B", c.B);
    c.T = e.value("T", c.T);
    c.H = e.value("H", c.H);
    c.D = e.value("D", c.D);
    c.Dv = e.value("Dv", c.Dv);
    c.gates = e.value("gates", c.gates);
    c.gate_strength = e.value("gate_strength", c.gate_strength);
    c.alpha = e.value("alpha", c.alpha);
    c.h0 = e.value("h0", c.h0);
    c.varlen = e.value("varlen", c.varlen);
    c.num_iter = e.value("num_iter", c.num_iter);
    c.ridge_ratio = e.value("ridge_ratio", c.ridge_ratio);
    c.chunk_size = e.value("chunk_size", c.chunk_size);
    c.solver = e.value("solver", c.solver);
    c.lambda_grad = e.value("lambda_grad", c.lambda_grad);
    c.dtype = e.value("dtype", c.dtype);
    if (!c.varlen.empty()) {
      c.B = 1;
      c.T = 0;
      for (int64_t n : c.varlen) c.T += n;
    }
    out.push_back(c);
  }
  return out;
}

std::string case_id(const Case& c) {
  std::string s = c.name + "_B" + std::to_string(c.B) + "_T" + std::to_string(c.T) + "_H" + std::to_string(c.H) +
                  "_K" + std::to_string(c.D) + "_V" + std::to_string(c.dv());
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

void PrintTo(const Case& c, std::ostream* os) { *os << case_id(c); }

namespace {

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double softplus(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }

// L2-normalise each row of the last dimension, then scale by (sigmoid(randn) + 1e-6) if `beta`.
void rows_normalise(Tensor& t, std::mt19937_64& rng, bool beta) {
  std::normal_distribution<double> nd;
  const int64_t n = t.sizes().back();
  std::vector<double> v = t.to_f64();
  for (int64_t r = 0; r < t.numel() / n; ++r) {
    double norm = 0;
    for (int64_t i = 0; i < n; ++i) norm += v[r * n + i] * v[r * n + i];
    const double scale = (beta ? sigmoid(nd(rng)) + 1e-6 : 1.0) / (std::sqrt(norm) + 1e-6);
    for (int64_t i = 0; i < n; ++i) v[r * n + i] *= scale;
  }
  t = Tensor::from_f64(v, t.dtype(), t.sizes());
}

// Log-decays [B,T,H]: mild = log U(lo, 0.999); strong = -A softplus(randn + dt_bias) per head (layer init).
Tensor gate_make(const Case& c, DType dt, std::mt19937_64& rng, double lo) {
  Tensor g(dt, {c.B, c.T, c.H});
  std::uniform_real_distribution<double> u(lo, 0.999);
  std::normal_distribution<double> nd;
  std::vector<double> A(c.H), dt_bias(c.H);
  for (int64_t h = 0; h < c.H; ++h) {
    A[h] = std::uniform_real_distribution<double>(0.0, 16.0)(rng);
    const double d = std::exp(std::uniform_real_distribution<double>(std::log(1e-3), std::log(1e-1))(rng));
    dt_bias[h] = d + std::log(-std::expm1(-d));
  }
  for (int64_t i = 0; i < g.numel(); ++i) {
    const int64_t h = i % c.H;
    g.set_f64(i, c.gate_strength == "strong" ? -A[h] * softplus(nd(rng) + dt_bias[h]) : std::log(u(rng)));
  }
  return g;
}

}  // namespace

CaseInputs inputs_make(const Case& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const DType dt = dtype_parse(c.dtype);
  const DType sdt = dt == DType::f64 ? DType::f64 : DType::f32;
  CaseInputs in;
  // Normalise in fp64, then round to the input dtype (the layer feeds the op already-normalised tensors).
  in.q = Tensor::randn(DType::f64, {c.B, c.T, c.H, c.D}, rng);
  in.k = Tensor::randn(DType::f64, {c.B, c.T, c.H, c.D}, rng);
  in.v = Tensor::randn(DType::f64, {c.B, c.T, c.H, c.dv()}, rng);
  rows_normalise(in.q, rng, false);
  rows_normalise(in.k, rng, true);
  {
    std::normal_distribution<double> nd;
    std::vector<double> v = in.v.to_f64();
    for (int64_t r = 0; r < c.B * c.T * c.H; ++r) {
      const double b = sigmoid(nd(rng)) + 1e-6;
      for (int64_t i = 0; i < c.dv(); ++i) v[r * c.dv() + i] *= b;
    }
    in.v = Tensor::from_f64(v, DType::f64, in.v.sizes());
  }
  in.q = in.q.cast(dt);
  in.k = in.k.cast(dt);
  in.v = in.v.cast(dt);
  if (c.alpha) {
    in.alpha = Tensor::randn(DType::f64, {c.B, c.T, c.H}, rng);
    std::vector<double> a = in.alpha.to_f64();
    for (double& x : a) x = sigmoid(x);
    in.alpha = Tensor::from_f64(a, sdt, in.alpha.sizes());
  }
  if (c.gates == "tied" || c.gates == "untied" || c.gates == "g_only") in.g = gate_make(c, sdt, rng, 0.8);
  if (c.gates == "tied") in.gk = in.g;
  if (c.gates == "untied" || c.gates == "gk_only") in.gk = gate_make(c, sdt, rng, 0.85);
  const int64_t N = c.num_seqs();
  if (c.h0) {
    // A plausible state: the Gram matrix of a few random unit keys, and a matching value state.
    const int64_t m = 8;
    std::vector<double> kk(static_cast<size_t>(N * c.H * c.D * c.D), 0.0);
    std::vector<double> kv(static_cast<size_t>(N * c.H * c.D * c.dv()), 0.0);
    std::normal_distribution<double> nd;
    for (int64_t nh = 0; nh < N * c.H; ++nh) {
      for (int64_t s = 0; s < m; ++s) {
        std::vector<double> key(c.D), val(c.dv());
        double norm = 0;
        for (auto& x : key) {
          x = nd(rng);
          norm += x * x;
        }
        for (auto& x : key) x /= std::sqrt(norm);
        for (auto& x : val) x = nd(rng) * 0.5;
        for (int64_t i = 0; i < c.D; ++i) {
          for (int64_t j = 0; j < c.D; ++j) kk[(nh * c.D + i) * c.D + j] += key[i] * key[j];
          for (int64_t j = 0; j < c.dv(); ++j) kv[(nh * c.D + i) * c.dv() + j] += key[i] * val[j];
        }
      }
    }
    in.h0_kk = Tensor::from_f64(kk, sdt, {N, c.H, c.D, c.D});
    in.h0_kv = Tensor::from_f64(kv, sdt, {N, c.H, c.D, c.dv()});
  }
  if (!c.varlen.empty()) {
    std::vector<double> cu{0};
    for (int64_t n : c.varlen) cu.push_back(cu.back() + static_cast<double>(n));
    in.cu_seqlens = Tensor::from_f64(cu, DType::i64, {static_cast<int64_t>(cu.size())});
  }
  return in;
}

Inputs CaseInputs::view() const {
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

ForwardResult forward_run(const Case& c, const CaseInputs& in, Backend backend, bool recurrent) {
  const DType dt = dtype_parse(c.dtype);
  const DType sdt = dt == DType::f64 ? DType::f64 : DType::f32;
  const int64_t N = c.num_seqs();
  ForwardResult r;
  r.o = Tensor(dt, {c.B, c.T, c.H, c.dv()});
  r.final_kk = Tensor(sdt, {N, c.H, c.D, c.D});
  r.final_kv = Tensor(sdt, {N, c.H, c.D, c.dv()});
  r.x = Tensor(sdt, {c.B, c.T, c.H, c.D});
  r.fro = Tensor(sdt, {c.B, c.T, c.H});
  for (Tensor* t : {&r.o, &r.final_kk, &r.final_kv, &r.x, &r.fro}) t->fill_nan();
  ForwardOutputs out;
  out.o = r.o.view();
  out.final_kk = r.final_kk.view();
  out.final_kv = r.final_kv.view();
  out.x = r.x.view();
  out.fro = r.fro.view();
  if (recurrent)
    recurrent_forward(in.view(), out, c.options(backend));
  else
    chunk_forward(in.view(), out, c.options(backend));
  return r;
}

BackwardSeeds seeds_make(const Case& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const DType dt = dtype_parse(c.dtype);
  const DType sdt = dt == DType::f64 ? DType::f64 : DType::f32;
  const int64_t N = c.num_seqs();
  BackwardSeeds s;
  s.d_o = Tensor::randn(dt, {c.B, c.T, c.H, c.dv()}, rng);
  s.d_final_kk = Tensor::randn(sdt, {N, c.H, c.D, c.D}, rng, 0.1);
  s.d_final_kv = Tensor::randn(sdt, {N, c.H, c.D, c.dv()}, rng, 0.1);
  return s;
}

BackwardResult backward_run(const Case& c, const CaseInputs& in, const BackwardSeeds& seeds, Backend backend) {
  const int64_t N = c.num_seqs();
  BackwardResult r;
  r.dq = Tensor(in.q.dtype(), in.q.sizes());
  r.dk = Tensor(in.k.dtype(), in.k.sizes());
  r.dv = Tensor(in.v.dtype(), in.v.sizes());
  if (in.alpha.defined()) r.dalpha = Tensor(in.alpha.dtype(), in.alpha.sizes());
  if (in.g.defined()) r.dg = Tensor(in.g.dtype(), in.g.sizes());
  if (in.gk.defined()) r.dgk = Tensor(in.gk.dtype(), in.gk.sizes());
  const DType sdt = in.q.dtype() == DType::f64 ? DType::f64 : DType::f32;
  r.dh0_kk = Tensor(sdt, {N, c.H, c.D, c.D});
  r.dh0_kv = Tensor(sdt, {N, c.H, c.D, c.dv()});
  for (Tensor* t : {&r.dq, &r.dk, &r.dv, &r.dalpha, &r.dg, &r.dgk, &r.dh0_kk, &r.dh0_kv})
    if (t->defined()) t->fill_nan();
  BackwardInputs gin;
  gin.d_o = seeds.d_o.view();
  gin.d_final_kk = seeds.d_final_kk.view();
  gin.d_final_kv = seeds.d_final_kv.view();
  Gradients g;
  g.dq = r.dq.view();
  g.dk = r.dk.view();
  g.dv = r.dv.view();
  g.dalpha = r.dalpha.view();
  g.dg = r.dg.view();
  g.dgk = r.dgk.view();
  g.d_initial_kk = r.dh0_kk.view();
  g.d_initial_kv = r.dh0_kv.view();
  chunk_backward(in.view(), gin, g, c.options(backend));
  return r;
}

}  // namespace gka::test

namespace gka::test {

CaseInputs inputs_to_f64(const CaseInputs& in) {
  CaseInputs out = in;
  for (Tensor* t : {&out.q, &out.k, &out.v, &out.alpha, &out.g, &out.gk, &out.h0_kk, &out.h0_kv})
    if (t->defined()) *t = t->cast(DType::f64);
  return out;
}

Case case_in_f64(Case c) {
  c.dtype = "f64";
  return c;
}

}  // namespace gka::test

namespace gka::test {

double readout_amplification(const Case& c, const CaseInputs& in64, const ForwardResult& ref64) {
  const int64_t D = c.D, Dv = c.dv(), H = c.H, T = c.T;
  const double s = 1.0 / std::sqrt(static_cast<double>(D));
  const std::vector<double> q = in64.q.to_f64(), k = in64.k.to_f64(), v = in64.v.to_f64(), x = ref64.x.to_f64();
  const std::vector<double> alpha = in64.alpha.to_f64(), g = in64.g.to_f64(), h0 = in64.h0_kv.to_f64();
  std::vector<int64_t> starts, lengths, rows;  // per sequence: first token, length, batch row
  if (c.varlen.empty()) {
    for (int64_t b = 0; b < c.B; ++b) starts.push_back(0), lengths.push_back(T), rows.push_back(b);
  } else {
    int64_t t0 = 0;
    for (int64_t n : c.varlen) starts.push_back(t0), lengths.push_back(n), rows.push_back(0), t0 += n;
  }
  double sum_c2 = 0;
  for (size_t n = 0; n < starts.size(); ++n)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> S(static_cast<size_t>(D * Dv), 0.0);
      if (!h0.empty())
        for (int64_t i = 0; i < D * Dv; ++i) S[i] = h0[(static_cast<int64_t>(n) * H + h) * D * Dv + i];
      for (int64_t t = starts[n]; t < starts[n] + lengths[n]; ++t) {
        const int64_t r = (rows[n] * T + t) * H + h;  // index of (b, t, h)
        const double decay = g.empty() ? 1.0 : std::exp(g[r]);
        double s2 = 0, qt2 = 0;
        for (int64_t i = 0; i < D; ++i)
          for (int64_t j = 0; j < Dv; ++j) {
            double& e = S[i * Dv + j];
            e = decay * e + k[r * D + i] * v[r * Dv + j];
            s2 += e * e;
          }
        const double a = alpha.empty() ? 1.0 : alpha[r];
        for (int64_t i = 0; i < D; ++i) {
          const double qi = q[r * D + i];
          const double qt = c.num_iter > 0 ? qi + a * (x[r * D + i] - qi) : qi;
          qt2 += qt * qt;
        }
        sum_c2 += s * s * s2 * qt2;
      }
    }
  double o2 = 0;
  for (double e : ref64.o.to_f64()) o2 += e * e;
  return o2 > 0 ? std::sqrt(sum_c2 / o2) : 1.0;
}

}  // namespace gka::test
