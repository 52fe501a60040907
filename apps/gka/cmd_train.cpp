// `gka train`: trains the decoder with each requested mixer and seed, then prints and saves the table.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include "commands.h"
#include "plot.h"
#include "report.h"
#include "train.h"

namespace gka::cli {

void add_config_flags(CLI::App* app, TrainConfig& c) {
  app->add_option("--task", c.task, "mqar (associative recall) or lm (byte-level language model)")
      ->check(CLI::IsMember({"mqar", "lm"}))
      ->capture_default_str();
  app->add_option("--width", c.d_model, "model width d")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--heads", c.num_heads, "heads per mixer")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--head-dim", c.head_dim, "head dim (0: width / heads)")->check(CLI::NonNegativeNumber)->capture_default_str();
  app->add_option("--layers", c.num_layers, "decoder blocks")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--gka-iters", c.gka_num_iter, "Chebyshev iterations of gka")->check(CLI::NonNegativeNumber)->capture_default_str();
  app->add_option("--chunk-size", c.chunk_size, "chunk length of the chunked mixers (gka, gdn, gla)")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--vocab", c.vocab_size, "mqar vocabulary size")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--seq-len", c.seq_len, "training sequence length")->check(CLI::Range(2, 1 << 20))->capture_default_str();
  app->add_option("--pairs", c.num_pairs, "mqar key-value pairs per sequence")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--eval-examples", c.eval_examples, "mqar evaluation sequences")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--corpus", c.corpus, "lm text file ('default': /usr/share/common-licenses texts)")
      ->check([](const std::string& s) {
        return (s == "default" || std::filesystem::is_regular_file(s)) ? std::string()
                                                                       : "cannot read corpus file '" + s + "'";
      })
      ->capture_default_str();
  app->add_option("--batch", c.batch_size, "sequences per step")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--steps", c.steps, "optimizer steps")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--eval-every", c.eval_every, "evaluate and checkpoint every N steps")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--lr", c.lr, "peak learning rate (AdamW, warm-up then cosine)")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--weight-decay", c.weight_decay, "AdamW weight decay of matrices")->check(CLI::NonNegativeNumber)->capture_default_str();
  app->add_option("--device", c.device, "cpu or cuda[:N]")->capture_default_str();
}

namespace {

struct TrainFlags {
  TrainConfig config;
  std::vector<std::string> mixers{"gka", "gdn", "gla", "attention"};
  int seeds = 1;
  int threads = 0;
  std::string out = "runs/train";
  bool resume = false, quiet = false;
  int64_t stop_after = 0;
};

void run_train(const TrainFlags& f) {
  set_threads(f.threads);
  std::printf("gka train: %s, mixers", f.config.task.c_str());
  for (const auto& m : f.mixers) std::printf(" %s", m.c_str());
  std::printf(", seeds %llu..%llu, %d threads, out %s\nconfig: %s\n", static_cast<unsigned long long>(f.config.seed),
              static_cast<unsigned long long>(f.config.seed + f.seeds - 1), at::get_num_threads(), f.out.c_str(),
              nlohmann::json(f.config).dump().c_str());
  std::filesystem::create_directories(f.out);
  std::vector<RunResult> runs;
  for (const auto& m : f.mixers)
    for (int s = 0; s < f.seeds; ++s) {
      TrainConfig c = f.config;
      c.mixer = m;
      c.seed = f.config.seed + s;
      c.validate();
      const std::string dir = f.out + "/" + c.task + "-" + m + "-s" + std::to_string(c.seed);
      runs.push_back(train_run(c, RunOptions{dir, f.resume, f.quiet, f.stop_after}));
    }
  const auto rows = summarize(runs);
  const std::string name = f.config.task == "lm" ? "bpb" : "accuracy";
  const std::string table = format_table(rows, f.config.task == "lm" ? "bpb" : "accuracy");
  std::printf("\n%s", table.c_str());
  write_results(f.out, runs, rows);
  std::ofstream(f.out + "/table.md") << table;
  // Metric vs step, averaged over seeds, one line per mixer.
  std::vector<Series> series;
  for (const auto& row : rows) {
    Series s{row.mixer, {}, {}};
    std::map<int64_t, std::pair<double, int>> acc;
    for (const auto& r : runs)
      if (r.config.mixer == row.mixer)
        for (const auto& [step, v] : r.history) acc[step].first += v, acc[step].second += 1;
    for (const auto& [step, sv] : acc) s.x.push_back(step), s.y.push_back(sv.first / sv.second);
    series.push_back(s);
  }
  const std::string png = f.out + "/" + name + "_vs_step.png";
  if (plot_png(png, f.config.task + ": " + name + " vs step (mean over seeds)", "step", name, series))
    std::printf("wrote %s/{results.csv,results.json,table.md}, %s\n", f.out.c_str(), png.c_str());
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto flags = std::make_shared<TrainFlags>();
  CLI::App* sub = app.add_subcommand("train", "train the decoder on mqar or lm with each mixer and print the table");
  add_config_flags(sub, flags->config);
  sub->add_option("--mixer", flags->mixers, "comma-separated mixers: gka, gdn, gla, attention")
      ->delimiter(',')
      ->check(CLI::IsMember({"gka", "gdn", "gla", "attention"}))
      ->capture_default_str();
  sub->add_option("--seed", flags->config.seed, "first seed")->capture_default_str();
  sub->add_option("--seeds", flags->seeds, "seeds per mixer (seed, seed+1, ...)")->check(CLI::Range(1, 1000))->capture_default_str();
  sub->add_option("--threads", flags->threads, "CPU threads (0: torch default)")->check(CLI::NonNegativeNumber);
  sub->add_option("--out", flags->out, "output directory")->capture_default_str();
  sub->add_flag("--resume", flags->resume, "continue runs from their checkpoints in --out (finished runs are reloaded)");
  sub->add_flag("--quiet", flags->quiet, "no progress bars");
  sub->add_option("--stop-after", flags->stop_after, "stop each run after N steps, as if interrupted (for testing --resume)")
      ->group("");
  sub->footer("With --device cuda and gka among the mixers, and neither --heads nor --head-dim given, every mixer "
              "gets heads = width / 64 (gka's CUDA kernel has head dim 64 and 128).");
  sub->callback([flags, sub] {
    TrainConfig& c = flags->config;
    if (!sub->count("--heads") && !sub->count("--head-dim") && needs_cuda_head_dim(c, flags->mixers) &&
        c.d_model % 64 == 0) {
      c.num_heads = c.d_model / 64;
      c.head_dim = 0;
      std::printf("note: --device %s with gka: %lld head(s) of dim 64 for every mixer\n", c.device.c_str(),
                  static_cast<long long>(c.num_heads));
    }
    run_train(*flags);
  });
}

}  // namespace gka::cli
