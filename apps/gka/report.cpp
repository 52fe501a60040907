#include "report.h"

#include <omp.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

namespace gka::cli {

void set_threads(int threads) {
  if (threads <= 0) return;
  at::set_num_threads(threads);
  omp_set_num_threads(threads);
}

std::vector<Summary> summarize(const std::vector<RunResult>& runs) {
  std::vector<Summary> rows;
  for (const auto& r : runs) {
    Summary* s = nullptr;
    for (auto& row : rows)
      if (row.mixer == r.config.mixer) s = &row;
    if (!s) {
      rows.push_back(Summary{r.config.mixer, r.params, r.mixer_params, {}, 0, 0, 0});
      s = &rows.back();
    }
    s->per_seed.push_back(r.final.metric);
    s->train_s += r.train_s;
  }
  for (auto& s : rows) {
    double sum = 0, sq = 0;
    for (double v : s.per_seed) sum += v;
    s.mean = sum / s.per_seed.size();
    for (double v : s.per_seed) sq += (v - s.mean) * (v - s.mean);
    s.sd = s.per_seed.size() > 1 ? std::sqrt(sq / (s.per_seed.size() - 1)) : 0.0;
  }
  return rows;
}

std::string format_table(const std::vector<Summary>& rows, const std::string& metric) {
  const size_t n = rows.empty() ? 0 : rows.front().per_seed.size();
  const std::string name = metric == "bpb" ? "val bits/byte" : "MQAR accuracy";
  std::string out = "| mixer     | params  | mixer params | " + name + " (mean ± sd, " + std::to_string(n) +
                    " seed" + (n == 1 ? "" : "s") + ") | per seed | train time |\n";
  out += "|-----------|---------|--------------|------------------------------|----------|------------|\n";
  char buf[512];
  for (const auto& s : rows) {
    std::string seeds;
    for (double v : s.per_seed) {
      std::snprintf(buf, sizeof buf, "%s%.3f", seeds.empty() ? "" : " ", v);
      seeds += buf;
    }
    std::snprintf(buf, sizeof buf, "| %-9s | %7lld | %12lld | %28.3f ± %.3f | %s | %8.0f s |\n", s.mixer.c_str(),
                  static_cast<long long>(s.params), static_cast<long long>(s.mixer_params), s.mean, s.sd,
                  seeds.c_str(), s.train_s);
    out += buf;
  }
  return out;
}

void write_results(const std::string& dir, const std::vector<RunResult>& runs, const std::vector<Summary>& rows) {
  std::ofstream csv(dir + "/results.csv");
  csv << "task,mixer,seed,d_model,num_heads,num_layers,seq_len,num_pairs,steps,params,mixer_params,eval_loss,metric,"
         "train_s\n";
  nlohmann::json j;
  for (const auto& r : runs) {
    const auto& c = r.config;
    csv << c.task << ',' << c.mixer << ',' << c.seed << ',' << c.d_model << ',' << c.num_heads << ',' << c.num_layers
        << ',' << c.seq_len << ',' << c.num_pairs << ',' << c.steps << ',' << r.params << ',' << r.mixer_params << ','
        << r.final.loss << ',' << r.final.metric << ',' << r.train_s << '\n';
    j["runs"].push_back({{"config", c}, {"params", r.params}, {"mixer_params", r.mixer_params},
                         {"eval_loss", r.final.loss}, {"metric", r.final.metric}, {"train_s", r.train_s},
                         {"history", r.history}});
  }
  for (const auto& s : rows)
    j["summary"].push_back({{"mixer", s.mixer}, {"params", s.params}, {"mixer_params", s.mixer_params},
                            {"per_seed", s.per_seed}, {"mean", s.mean}, {"sd", s.sd}, {"train_s", s.train_s}});
  std::ofstream(dir + "/results.json") << j.dump(2) << "\n";
}

}  // namespace gka::cli
