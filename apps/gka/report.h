// Tables and result files shared by `gka train` and `gka sweep`.
#pragma once

#include <string>
#include <vector>

#include "train.h"

namespace gka::cli {

struct Summary {
  std::string mixer;
  int64_t params = 0, mixer_params = 0;
  std::vector<double> per_seed;  // headline metric per seed
  double mean = 0, sd = 0, train_s = 0;
};

// Groups runs by mixer (in first-seen order) and averages over seeds.
std::vector<Summary> summarize(const std::vector<RunResult>& runs);
// Markdown table: mixer | params | mixer params | metric (mean ± sd) | per seed | train time.
std::string format_table(const std::vector<Summary>& rows, const std::string& metric);
// results.csv (one row per run) and results.json (runs + summary) in dir.
void write_results(const std::string& dir, const std::vector<RunResult>& runs, const std::vector<Summary>& rows);

void set_threads(int threads);  // torch intra-op and OpenMP threads; 0 keeps the defaults

}  // namespace gka::cli
