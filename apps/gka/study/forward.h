// Forward sweeps of the numerics study: synthetic inputs, one runner per (solver, lambda mode, precision,
// num_iter), all advanced token by token in lock-step against fp64 exact solves.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gka::study {

// Synthetic per-head inputs (D = Dv). q unit; k = beta_t normalize(sqrt(rho) z + sqrt(1-rho) z_t) with
// beta_t = sigmoid(randn) + 1e-6 and a shared unit direction z (rho = key_corr, 0 = independent keys);
// v randn; alpha = sigmoid(randn); decays gamma_t = e^{g_t} uniform in [gamma_lo, gamma_hi] (1, 1 = no
// gate), or, with mamba_gates, g_t = -A softplus(dt_bias + 0.5 randn) (A, dt per sequence, Mamba-2 ranges).
struct InputSpec {
  std::string name;
  int64_t D = 64, T = 512;
  double key_corr = 0.0;
  double gamma_lo = 0.8, gamma_hi = 0.999;
  bool mamba_gates = false;
  uint64_t seed = 1;
};

struct Sequence {
  int64_t D = 0, T = 0;
  std::vector<double> q, k, v;   // [T, D]
  std::vector<double> gamma;     // [T] e^{g_t} (g = gk, tied)
  std::vector<double> alpha;     // [T]
};

Sequence sequence_make(const InputSpec& spec);

enum class LambdaKind { adaptive, fixed, fading };

// adaptive: lambda_t = value * ||H_t||_F; fixed: lambda_t = value; fading: lambda_t = value * e^{G_t}
// (the system the Kalman recursion solves).
struct LambdaMode {
  LambdaKind kind = LambdaKind::adaptive;
  double value = 0.02;
  std::string name() const;
  bool operator==(const LambdaMode& o) const { return kind == o.kind && value == o.value; }
};

// bf16: everything stored in bf16, the states H and S included; bf16s: the states accumulate in fp32 (like the
// reference kernels' fp32 state) and are rounded to bf16 only as solver/readout operands.
enum class Precision { fp64, fp32, bf16, bf16s };
const char* precision_name(Precision p);

struct RunnerSpec {
  std::string solver;            // chebyshev | cg | exact | kalman
  Precision precision = Precision::fp64;
  LambdaMode lambda;             // kalman: fixed lambda (its own system is the fading one)
  int num_iter = 30;             // chebyshev / cg
  std::string label() const;     // e.g. "chebyshev N=30 bf16 r=0.02"
};

// Per-token results of one runner against the fp64 exact solve of its own system.
struct RunnerResult {
  RunnerSpec spec;
  std::vector<float> xerr, oerr, res;       // ||x - x*|| / ||x*||, same for o, ||(H*+l*I) x - q|| / ||q||
  std::vector<float> xerr_fixed, oerr_fixed; // kalman only: against the fixed-lambda GKA system H + lambda I
  int64_t nonfinite = 0;                    // tokens whose x or o has a NaN/Inf
  int64_t first_nonfinite = -1;             // 1-based token, -1 = never
};

struct CondSeries {
  LambdaMode lambda;
  std::vector<int64_t> t;       // 1-based tokens
  std::vector<double> cond;     // cond(H*_t + lambda*_t I) in fp64
};

struct ForwardRun {
  InputSpec input;
  std::vector<RunnerResult> runners;
  std::vector<CondSeries> cond;  // one per lambda mode of the truths
  std::vector<int64_t> samples;  // tokens sampled for condition numbers and the CSV
};

// Runs every spec over the sequence; cond numbers are computed at `samples` (1-based tokens).
ForwardRun forward_run(const InputSpec& input, const std::vector<RunnerSpec>& specs, const std::vector<int64_t>& samples,
                       int num_threads);

// About n tokens between 1 and T, log-spaced at the start and linear later (sorted, unique).
std::vector<int64_t> sample_tokens(int64_t T, int n);

}  // namespace gka::study
