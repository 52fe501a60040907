// `gka sweep`: MQAR accuracy over a grid of mixers x sequence lengths x widths; prints the table, writes
// sweep.csv / sweep.json / table.md and accuracy_vs_seq_len.png. With --jobs N the grid points run as N
// parallel child processes of this binary (hidden subcommand `gka sweep-cell`), each in its run directory;
// the results are collected from there, so the output is the same in any order of completion.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "commands.h"
#include "jobs.h"
#include "plot.h"
#include "report.h"
#include "train.h"

namespace gka::cli {
namespace {

namespace fs = std::filesystem;

struct SweepFlags {
  TrainConfig config;
  std::vector<std::string> mixers{"gka", "gdn", "gla", "attention"};
  std::vector<int64_t> seq_lens{64, 128, 256};
  std::vector<int64_t> widths{64, 128};
  int seeds = 1;
  int threads = 0;
  int jobs = 1;
  double time_limit_s = 0;      // > 0: start no run after this, stop running children then
  int64_t tokens_per_pair = 0;  // > 0: pairs = seq_len / tokens_per_pair
  std::string out = "runs/sweep", from_csv;
  bool resume = false, quiet = false;
  int64_t head_dim_per_width = 0;  // > 0: heads = width / this for every width (set from --head-dim or for cuda)
};

// One grid point and, once run, its outcome.
struct Cell {
  TrainConfig config;
  std::string dir;
  bool ok = false;
  std::string status = "not run";
  int64_t params = 0, mixer_params = 0;
  double accuracy = NAN, loss = NAN, train_s = 0;
  std::vector<std::pair<int64_t, double>> history;
};

std::vector<Cell> make_cells(const SweepFlags& f) {
  std::vector<Cell> cells;
  for (int64_t w : f.widths)
    for (int64_t T : f.seq_lens)
      for (const auto& m : f.mixers)
        for (int s = 0; s < f.seeds; ++s) {
          Cell cell;
          TrainConfig& c = cell.config;
          c = f.config;
          c.mixer = m;
          c.d_model = w;
          c.seq_len = T;
          c.seed = f.config.seed + s;
          if (f.tokens_per_pair > 0) c.num_pairs = std::max<int64_t>(1, T / f.tokens_per_pair);
          if (f.head_dim_per_width > 0) {
            if (w % f.head_dim_per_width != 0)
              throw std::invalid_argument("gka sweep: width " + std::to_string(w) + " is not a multiple of the head dim " +
                                          std::to_string(f.head_dim_per_width) + " (heads = width / head dim)");
            c.num_heads = w / f.head_dim_per_width;
            c.head_dim = 0;
          }
          c.validate();
          make_task(c);  // checks the MQAR sizes (pairs, vocabulary) before anything runs
          cell.dir = f.out + "/w" + std::to_string(w) + "-T" + std::to_string(T) + "/" + m + "-s" + std::to_string(c.seed);
          cells.push_back(cell);
        }
  return cells;
}

void write_cell_result(const std::string& dir, const RunResult& r) {
  const nlohmann::json j{{"params", r.params},        {"mixer_params", r.mixer_params}, {"metric", r.final.metric},
                         {"eval_loss", r.final.loss}, {"train_s", r.train_s},           {"history", r.history}};
  std::ofstream(dir + "/result.json") << j.dump(2) << "\n";
}

void read_cell_result(Cell& cell) {
  std::ifstream in(cell.dir + "/result.json");
  if (!in) return;
  try {
    const nlohmann::json j = nlohmann::json::parse(in);
    cell.params = j.at("params").get<int64_t>();
    cell.mixer_params = j.at("mixer_params").get<int64_t>();
    cell.accuracy = j.at("metric").get<double>();
    cell.loss = j.at("eval_loss").get<double>();
    cell.train_s = j.at("train_s").get<double>();
    cell.history = j.at("history").get<std::vector<std::pair<int64_t, double>>>();
    cell.ok = true;
  } catch (const nlohmann::json::exception&) {
    cell.ok = false;
  }
}

std::string cell_name(const TrainConfig& c) {
  return "w" + std::to_string(c.d_model) + " T" + std::to_string(c.seq_len) + " " + c.mixer + " s" + std::to_string(c.seed);
}

void print_done(const Cell& cell, size_t done, size_t total, double wall_s) {
  if (cell.ok)
    std::printf("[%zu/%zu] %-24s accuracy %.3f  train %.0f s  (sweep %.0f s)\n", done, total, cell_name(cell.config).c_str(),
                cell.accuracy, cell.train_s, wall_s);
  else
    std::printf("[%zu/%zu] %-24s %s (sweep %.0f s); log %s/log.txt\n%s", done, total, cell_name(cell.config).c_str(),
                cell.status.c_str(), wall_s, cell.dir.c_str(),
                cell.status.rfind("stopped", 0) == 0 ? "" : tail_lines(cell.dir + "/log.txt", 8).c_str());
  std::fflush(stdout);
}

// The launch order: the most expensive grid points (longest, widest) first, so that parallel jobs finish
// together and a --time-limit cuts the cheap ones.
std::vector<size_t> launch_order(const std::vector<Cell>& cells) {
  std::vector<size_t> order(cells.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return cells[a].config.seq_len * cells[a].config.d_model > cells[b].config.seq_len * cells[b].config.d_model;
  });
  return order;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void run_cells_here(const SweepFlags& f, std::vector<Cell>& cells) {
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < cells.size(); ++i) {
    Cell& cell = cells[i];
    if (f.time_limit_s > 0 && seconds_since(t0) > f.time_limit_s) break;
    const RunResult r = train_run(cell.config, RunOptions{cell.dir, f.resume, f.quiet, 0});
    write_cell_result(cell.dir, r);
    read_cell_result(cell);
    cell.status = "done";
    print_done(cell, i + 1, cells.size(), seconds_since(t0));
  }
}

void run_cells_in_children(const SweepFlags& f, std::vector<Cell>& cells) {
  const std::string exe = self_exe();
  if (exe.empty()) throw std::runtime_error("gka sweep --jobs: cannot find this executable (/proc/self/exe)");
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = f.threads > 0 ? f.threads : std::max(1, hw / f.jobs);
  std::printf("running %zu runs in %d parallel processes, %d thread(s) each; logs in <run dir>/log.txt\n", cells.size(),
              f.jobs, threads);
  std::fflush(stdout);
  std::vector<ChildJob> jobs;
  for (const Cell& cell : cells) {
    fs::create_directories(cell.dir);
    fs::remove(cell.dir + "/result.json");
    std::ofstream(cell.dir + "/cell.json") << nlohmann::json(cell.config).dump(2) << "\n";
    // --device repeats the config's device on the command line, where main() looks for "cuda".
    ChildJob job{{exe, "sweep-cell", "--config", cell.dir + "/cell.json", "--dir", cell.dir, "--device",
                  cell.config.device, "--threads", std::to_string(threads)},
                 cell.dir + "/log.txt"};
    if (f.resume) job.argv.push_back("--resume");
    jobs.push_back(job);
  }
  const auto t0 = std::chrono::steady_clock::now();
  size_t done = 0;
  run_jobs(jobs, launch_order(cells), f.jobs, f.time_limit_s, [&](size_t i, int code) {
    if (code == 0) read_cell_result(cells[i]);
    cells[i].status = code == 0                 ? "done"
                      : code == kJobSpawnFailed   ? "could not start"
                      : code == 128 + SIGTERM     ? "stopped at the time limit"
                                                  : "exit " + std::to_string(code);
    print_done(cells[i], ++done, cells.size(), seconds_since(t0));
  });
}

template <class T>
void add_unique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

// sweep.csv, sweep.json, table.md and the plot from the cells (in grid order); returns the table.
std::string write_outputs(const std::string& out, const std::vector<Cell>& cells, bool write_runs) {
  std::vector<std::string> mixers;
  std::vector<int64_t> widths, seq_lens;
  std::map<int64_t, int64_t> pairs;  // seq_len -> pairs
  for (const auto& c : cells) {
    add_unique(mixers, c.config.mixer);
    add_unique(widths, c.config.d_model);
    add_unique(seq_lens, c.config.seq_len);
    pairs[c.config.seq_len] = c.config.num_pairs;
  }
  if (write_runs) {
    std::ofstream csv(out + "/sweep.csv");
    csv << "mixer,d_model,num_heads,seq_len,num_pairs,seed,params,mixer_params,accuracy,train_s\n";
    nlohmann::json runs = nlohmann::json::array();
    for (const auto& c : cells) {
      const TrainConfig& k = c.config;
      csv << k.mixer << ',' << k.d_model << ',' << k.num_heads << ',' << k.seq_len << ',' << k.num_pairs << ',' << k.seed
          << ',' << c.params << ',' << c.mixer_params << ',' << c.accuracy << ',' << c.train_s << '\n';
      runs.push_back({{"config", k}, {"ok", c.ok}, {"params", c.params}, {"accuracy", c.ok ? c.accuracy : -1.0},
                      {"train_s", c.train_s}, {"history", c.history}});
    }
    std::ofstream(out + "/sweep.json") << runs.dump(2) << "\n";
  }
  // (mixer, width) -> seq_len -> accuracies and train times over seeds
  std::map<std::pair<std::string, int64_t>, std::map<int64_t, std::vector<std::pair<double, double>>>> acc;
  for (const auto& c : cells)
    if (c.ok && std::isfinite(c.accuracy)) acc[{c.config.mixer, c.config.d_model}][c.config.seq_len].push_back({c.accuracy, c.train_s});
  std::string table = "| mixer | width |", times = "| mixer | width |";
  for (int64_t T : seq_lens) {
    table += " T=" + std::to_string(T) + " (" + std::to_string(pairs[T]) + " pairs) |";
    times += " T=" + std::to_string(T) + " |";
  }
  std::string rule = "\n|---|---|";
  for (size_t i = 0; i < seq_lens.size(); ++i) rule += "---|";
  table += rule + "\n";
  times += rule + "\n";
  std::vector<Series> series;
  char buf[64];
  for (int64_t w : widths)
    for (const auto& m : mixers) {
      table += "| " + m + " | " + std::to_string(w) + " |";
      times += "| " + m + " | " + std::to_string(w) + " |";
      Series s{m + " d=" + std::to_string(w), {}, {}};
      for (int64_t T : seq_lens) {
        const auto& v = acc[{m, w}][T];
        if (v.empty()) {
          table += " — |";
          times += " — |";
          continue;
        }
        double mean = 0, secs = 0;
        for (const auto& [a, t] : v) mean += a / v.size(), secs += t / v.size();
        std::snprintf(buf, sizeof buf, " %.3f |", mean);
        table += buf;
        std::snprintf(buf, sizeof buf, " %.0f |", secs);
        times += buf;
        s.x.push_back(static_cast<double>(T));
        s.y.push_back(mean);
      }
      table += "\n";
      times += "\n";
      series.push_back(s);
    }
  const std::string doc = "MQAR accuracy (mean over seeds):\n\n" + table + "\nTraining time per run (s, mean over seeds):\n\n" + times;
  std::ofstream(out + "/table.md") << doc;
  plot_png(out + "/accuracy_vs_seq_len.png", "MQAR accuracy vs sequence length", "sequence length", "accuracy", series,
           /*logx=*/true);
  return doc;
}

// The cells of a sweep.csv written by write_outputs (for --from-csv).
std::vector<Cell> read_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("gka sweep --from-csv: cannot read '" + path + "'");
  std::string line;
  std::getline(in, line);
  if (line.rfind("mixer,d_model,num_heads,seq_len,num_pairs,seed,", 0) != 0)
    throw std::runtime_error("gka sweep --from-csv: '" + path + "' is not a sweep.csv (header: " + line + ")");
  std::vector<Cell> cells;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    if (f.size() < 10) throw std::runtime_error("gka sweep --from-csv: short line '" + line + "'");
    Cell c;
    c.config.mixer = f[0];
    c.config.d_model = std::stoll(f[1]);
    c.config.num_heads = std::stoll(f[2]);
    c.config.seq_len = std::stoll(f[3]);
    c.config.num_pairs = std::stoll(f[4]);
    c.config.seed = std::stoull(f[5]);
    c.params = std::stoll(f[6]);
    c.mixer_params = std::stoll(f[7]);
    c.accuracy = std::strtod(f[8].c_str(), nullptr);
    c.train_s = std::strtod(f[9].c_str(), nullptr);
    c.ok = std::isfinite(c.accuracy);
    cells.push_back(c);
  }
  return cells;
}

void run_sweep(const SweepFlags& f) {
  set_threads(f.threads);
  fs::create_directories(f.out);
  if (!f.from_csv.empty()) {
    std::printf("%s", write_outputs(f.out, read_csv(f.from_csv), /*write_runs=*/false).c_str());
    return;
  }
  std::vector<Cell> cells = make_cells(f);
  std::printf("gka sweep: mixers x seq lens x widths = %zu x %zu x %zu, %d seed(s): %zu runs, out %s\nbase config: %s\n",
              f.mixers.size(), f.seq_lens.size(), f.widths.size(), f.seeds, cells.size(), f.out.c_str(),
              nlohmann::json(f.config).dump().c_str());
  if (f.head_dim_per_width > 0) std::printf("heads = width / %lld for every mixer\n", static_cast<long long>(f.head_dim_per_width));
  if (f.tokens_per_pair > 0) std::printf("pairs = seq_len / %lld\n", static_cast<long long>(f.tokens_per_pair));
  std::fflush(stdout);
  const auto t0 = std::chrono::steady_clock::now();
  if (f.jobs > 1)
    run_cells_in_children(f, cells);
  else
    run_cells_here(f, cells);
  const std::string doc = write_outputs(f.out, cells, /*write_runs=*/true);
  std::printf("\n%s\nwrote %s/{sweep.csv,sweep.json,table.md,accuracy_vs_seq_len.png} in %.0f s\n", doc.c_str(),
              f.out.c_str(), seconds_since(t0));
  size_t failed = 0, not_run = 0;
  for (const auto& c : cells) {
    failed += !c.ok && c.status != "not run";
    not_run += c.status == "not run";
  }
  if (f.time_limit_s > 0 && seconds_since(t0) > f.time_limit_s) {
    std::printf("--time-limit %.0f s reached: %zu run(s) not started, %zu stopped or failed ('—' in the table)\n",
                f.time_limit_s, not_run, failed);
  } else if (failed) {
    throw std::runtime_error(std::to_string(failed) + " of " + std::to_string(cells.size()) +
                             " runs failed (see their log.txt)");
  }
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
  sub->add_option("--tokens-per-pair", f->tokens_per_pair, "mqar pairs = seq len / N, Zoology-style (0: --pairs for every length)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  sub->add_option("--seed", f->config.seed, "first seed")->capture_default_str();
  sub->add_option("--seeds", f->seeds, "seeds per cell")->check(CLI::Range(1, 1000))->capture_default_str();
  sub->add_option("--jobs", f->jobs, "grid points run at once, each in a child process (1: one after another, here)")
      ->check(CLI::Range(1, 256))->capture_default_str();
  sub->add_option("--threads", f->threads, "CPU threads (per child with --jobs; 0: torch default, or cores / jobs)")->check(CLI::NonNegativeNumber);
  sub->add_option("--time-limit", f->time_limit_s, "seconds: start no run after this, stop the running ones (0: none)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--out", f->out, "output directory")->capture_default_str();
  sub->add_option("--from-csv", f->from_csv, "only rebuild table.md and the plot in --out from this sweep.csv");
  sub->add_flag("--resume", f->resume, "continue or reload runs found in --out");
  sub->add_flag("--quiet", f->quiet, "no progress bars");
  sub->footer("Heads: --heads is kept at every width (head dim = width / heads); --head-dim D sets heads = width / D "
              "at every width. With --device cuda and gka among the mixers, and neither flag given, the head dim is "
              "64 (gka's CUDA kernel has 64 and 128) for every mixer.");
  sub->callback([f, sub] {
    if (f->config.task != "mqar") throw std::invalid_argument("gka sweep: only --task mqar is supported");
    if (sub->count("--head-dim")) {
      f->head_dim_per_width = f->config.head_dim;
    } else if (!sub->count("--heads")) {
      bool gka_cuda = false;
      for (int64_t w : f->widths) {
        TrainConfig c = f->config;
        c.d_model = w;
        gka_cuda = gka_cuda || needs_cuda_head_dim(c, f->mixers);
      }
      if (gka_cuda) f->head_dim_per_width = 64;
    }
    run_sweep(*f);
  });

  // One grid point of `gka sweep --jobs` (hidden): the run of cell.json in --dir, result in --dir/result.json.
  auto cell = std::make_shared<std::tuple<std::string, std::string, int, bool, std::string>>();
  CLI::App* one = app.add_subcommand("sweep-cell", "one run of gka sweep --jobs (internal)");
  one->group("");
  one->add_option("--config", std::get<0>(*cell), "the run's TrainConfig as JSON")->required()->check(CLI::ExistingFile);
  one->add_option("--dir", std::get<1>(*cell), "run directory")->required();
  one->add_option("--threads", std::get<2>(*cell), "CPU threads");
  one->add_flag("--resume", std::get<3>(*cell), "continue or reload the run");
  one->add_option("--device", std::get<4>(*cell), "the config's device (must match it)");
  one->callback([cell] {
    const auto& [config, dir, threads, resume, device] = *cell;
    set_threads(threads);
    std::ifstream in(config);
    const TrainConfig c = nlohmann::json::parse(in).get<TrainConfig>();
    if (!device.empty() && device != c.device)
      throw std::invalid_argument("sweep-cell: --device " + device + " differs from the config's " + c.device);
    const RunResult r = train_run(c, RunOptions{dir, resume, false, 0});
    write_cell_result(dir, r);
    std::printf("%s: accuracy %.4f, train %.1f s\n", cell_name(c).c_str(), r.final.metric, r.train_s);
  });
}

}  // namespace gka::cli
