// Constants of the Chebyshev iteration (spec §A.3). With lambda = r f, the spectrum of H + lambda I lies
// in [r f, (1+r) f], so rho = 1/(1+2r), c = rho^2/4 and the omega sequence are token-independent; only
// the step eta = 2/((1+2r) f) varies per token.
#pragma once

#include <cstdint>
#include <vector>

namespace gka {

struct ChebyshevPlan {
  double c = 0;                 // rho^2 / 4
  double eta_f = 0;             // eta * f = 2 / (1 + 2r)
  std::vector<double> omega;    // omega_1..omega_N (omega_0 = 2)
};

inline ChebyshevPlan chebyshev_plan(double ridge_ratio, int32_t num_iter) {
  ChebyshevPlan p;
  const double rho = 1.0 / (1.0 + 2.0 * ridge_ratio);
  p.c = 0.25 * rho * rho;
  p.eta_f = 2.0 / (1.0 + 2.0 * ridge_ratio);
  double w = 2.0;
  for (int32_t i = 0; i < num_iter; ++i) {
    w = 1.0 / (1.0 - p.c * w);
    p.omega.push_back(w);
  }
  return p;
}

}  // namespace gka
