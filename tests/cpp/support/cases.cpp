#include "support/cases.h"

#include <cctype>
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

harness::Gates gates_parse(const std::string& name) {
  if (name == "tied") return harness::Gates::tied;
  if (name == "untied") return harness::Gates::untied;
  if (name == "none") return harness::Gates::none;
  if (name == "g_only") return harness::Gates::g_only;
  if (name == "gk_only") return harness::Gates::gk_only;
  throw std::runtime_error("unknown gates in a case: " + name);
}

harness::GateStrength gate_strength_parse(const std::string& name) {
  if (name == "mild") return harness::GateStrength::mild;
  if (name == "strong") return harness::GateStrength::strong;
  throw std::runtime_error("unknown gate_strength in a case: " + name);
}

}  // namespace

harness::Shape Case::shape() const {
  harness::Shape s;
  s.B = B;
  s.T = T;
  s.H = H;
  s.D = D;
  s.Dv = Dv;
  s.varlen = varlen;
  s.h0 = h0;
  s.alpha = alpha;
  s.gates = gates_parse(gates);
  s.gate_strength = gate_strength_parse(gate_strength);
  s.dtype = dtype_parse(dtype);
  return s;
}

CaseInputs inputs_make(const Case& c, uint64_t seed) { return harness::layer_inputs_make(c.shape(), seed); }

ForwardResult forward_run(const Case& c, const CaseInputs& in, Backend backend, bool recurrent) {
  return harness::forward_run(c.shape(), in, c.options(backend), recurrent);
}

BackwardSeeds seeds_make(const Case& c, uint64_t seed) { return harness::gradient_seeds_make(c.shape(), seed); }

BackwardResult backward_run(const Case& c, const CaseInputs& in, const BackwardSeeds& seeds, Backend backend) {
  return harness::backward_run(c.shape(), in, seeds, c.options(backend));
}

}  // namespace gka::test

namespace gka::test {

BackwardSeeds seeds_to_f64(const BackwardSeeds& s) {
  return BackwardSeeds{s.d_o.cast(DType::f64), s.d_final_kk.cast(DType::f64), s.d_final_kv.cast(DType::f64)};
}

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
