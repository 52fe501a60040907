// `gka sweep`: MQAR accuracy over a grid of mixers x sequence lengths x widths; prints the table, writes
// sweep.csv / sweep.json and accuracy_vs_seq_len.png.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "commands.h"
#include "plot.h"
#include "report.h"
#include "train.h"

namespace gka::cli {
namespace {

struct SweepFlags {
  TrainConfig config;
  std::vector<std::string> mixers{"gka", "gdn", "gla", "attention"};
  std::vector<int64_t> seq_lens{64, 128, 256};
  std::vector<int64_t> widths{64, 128};
  int seeds = 1;
  int threads = 0;
  std::string out = "runs/sweep";
  bool resume = false, quiet = false;
};

void run_sweep(const SweepFlags& f) {
  set_threads(f.threads);
  std::filesystem::create_directories(f.out);
  std::printf("gka sweep: mixers x seq lens x widths = %zu x %zu x %zu, %d seed(s), out %s\nbase config: %s\n",
              f.mixers.size(), f.seq_lens.size(), f.widths.size(), f.seeds, f.out.c_str(),
              nlohmann::json(f.config).dump().c_str());
  // (mixer, width) -> seq_len -> accuracies over seeds
  std::map<std::pair<std::string, int64_t>, std::map<int64_t, std::vector<double>>> acc;
  std::ofstream csv(f.out + "/sweep.csv");
  csv << "mixer,d_model,seq_len,num_pairs,seed,params,mixer_params,accuracy,train_s\n";
  nlohmann::json runs = nlohmann::json::array();
  for (int64_t w : f.widths)
    for (int64_t T : f.seq_lens)
      for (const auto& m : f.mixers)
        for (int s = 0; s < f.seeds; ++s) {
          TrainConfig c = f.config;
          c.mixer = m;
          c.d_model = w;
          c.seq_len = T;
          c.seed = f.config.seed + s;
          c.validate();
          const std::string dir = f.out + "/w" + std::to_string(w) + "-T" + std::to_string(T) + "/" + m + "-s" +
                                  std::to_string(c.seed);
          const RunResult r = train_run(c, RunOptions{dir, f.resume, f.quiet, 0});
          acc[{m, w}][T].push_back(r.final.metric);
          csv << m << ',' << w << ',' << T << ',' << c.num_pairs << ',' << c.seed << ',' << r.params << ','
              << r.mixer_params << ',' << r.final.metric << ',' << r.train_s << '\n' << std::flush;
          runs.push_back({{"config", c}, {"params", r.params}, {"accuracy", r.final.metric}, {"train_s", r.train_s}});
        }
  std::ofstream(f.out + "/sweep.json") << runs.dump(2) << "\n";
  std::string table = "| mixer | width |";
  for (int64_t T : f.seq_lens) table += " T=" + std::to_string(T) + " |";
  table += "\n|---|---|";
  for (size_t i = 0; i < f.seq_lens.size(); ++i) table += "---|";
  table += "\n";
  std::vector<Series> series;
  char buf[64];
  for (int64_t w : f.widths)
    for (const auto& m : f.mixers) {
      table += "| " + m + " | " + std::to_string(w) + " |";
      Series s{m + " d=" + std::to_string(w), {}, {}};
      for (int64_t T : f.seq_lens) {
        const auto& v = acc[{m, w}][T];
        double mean = 0;
        for (double x : v) mean += x / v.size();
        std::snprintf(buf, sizeof buf, " %.3f |", mean);
        table += buf;
        s.x.push_back(static_cast<double>(T));
        s.y.push_back(mean);
      }
      table += "\n";
      series.push_back(s);
    }
  std::printf("\nMQAR accuracy (%d pairs, mean over %d seed(s)):\n%s", static_cast<int>(f.config.num_pairs), f.seeds,
              table.c_str());
  std::ofstream(f.out + "/table.md") << table;
  plot_png(f.out + "/accuracy_vs_seq_len.png", "MQAR accuracy vs sequence length", "sequence length", "accuracy",
           series, /*logx=*/true);
}

}  // namespace

void add_sweep_command(CLI::App& app) {
  auto f = std::make_shared<SweepFlags>();
  f->config.steps = 300;
  CLI::App* sub = app.add_subcommand("sweep", "MQAR grid: mixers x sequence lengths x widths, prints the accuracy table");
  add_config_flags(sub, f->config);
  sub->add_option("--mixer", f->mixers, "comma-separated mixers")
      ->delimiter(',')
      ->check(CLI::IsMember({"gka", "gdn", "gla", "attention"}))
      ->capture_default_str();
  sub->add_option("--seq-lens", f->seq_lens, "comma-separated sequence lengths")->delimiter(',')->check(CLI::Range(2, 1 << 20))->capture_default_str();
  sub->add_option("--widths", f->widths, "comma-separated model widths")->delimiter(',')->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--seed", f->config.seed, "first seed")->capture_default_str();
  sub->add_option("--seeds", f->seeds, "seeds per cell")->check(CLI::Range(1, 1000))->capture_default_str();
  sub->add_option("--threads", f->threads, "CPU threads (0: torch default)")->check(CLI::NonNegativeNumber);
  sub->add_option("--out", f->out, "output directory")->capture_default_str();
  sub->add_flag("--resume", f->resume, "continue or reload runs found in --out");
  sub->add_flag("--quiet", f->quiet, "no progress bars");
  sub->callback([f] {
    if (f->config.task != "mqar") throw std::invalid_argument("gka sweep: only --task mqar is supported");
    run_sweep(*f);
  });
}

}  // namespace gka::cli
