// `gka study numerics`: the sweeps of issue 4 and the report they produce.
#pragma once

#include <string>
#include <vector>

#include "study/forward.h"
#include "study/gradient.h"

namespace gka::study {

enum class Scale { smoke, quick, full };

struct GradResult {
  RunnerSpec spec;
  std::vector<double> dx_err;  // [depth 1..layers]: rel. error of dL/dX after backprop through `depth` layers
  std::vector<double> dw_err;  // [depth 1..layers]: rel. error of that layer's weight gradients
  double loss_err = 0;
  bool finite = true;
};

struct NumericsData {
  Scale scale = Scale::quick;
  std::vector<ForwardRun> solve;     // experiment A: solvers x lambda modes x precisions x num_iter
  ForwardRun iters;                  // experiment A': fine num_iter sweep of Chebyshev at r = 0.02
  std::vector<ForwardRun> horizon;   // experiment B: long sequences, the Kalman recursion
  GradProblem grad_problem;
  std::vector<GradResult> grad;      // experiment C: gradients through the layer stack
  double seconds = 0;
};

NumericsData numerics_collect(Scale scale, int threads);

// Writes <out>/numerics.md, <out>/numerics/*.png and *.csv.
void numerics_report(const NumericsData& data, const std::string& out_dir);

// Helpers shared by the report.
double median(std::vector<float> v);
double quantile(std::vector<float> v, double q);
double max_finite_or_inf(const std::vector<float>& v);
int64_t first_above(const std::vector<float>& v, double threshold);  // 1-based, -1 = never (NaN counts)
std::string e2(double v);  // "%.1e", with NaN and inf spelled out

}  // namespace gka::study

namespace gka::study {
// The closing section of the report: which of the paper's claims reproduced, decided from the data.
std::string numerics_verdict(const NumericsData& data);
}  // namespace gka::study
