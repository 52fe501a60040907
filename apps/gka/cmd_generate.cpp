// `gka generate`: samples bytes from an lm checkpoint through the decode path (prefill the prompt, then one
// token at a time with the mixers' cached state); --measure-memory records the process RSS as it goes.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "commands.h"
#include "plot.h"
#include "report.h"
#include "train.h"

namespace gka::cli {
namespace {

struct GenerateFlags {
  std::string checkpoint, prompt = "The ", device = "cpu", out;
  int64_t tokens = 200, top_k = 0;
  double temperature = 0.8;
  uint64_t seed = 0;
  int threads = 0;
  bool measure_memory = false, quiet = false;
};

double rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0.0;
}

int64_t sample(const at::Tensor& logits, const GenerateFlags& f, at::Generator& gen) {
  at::Tensor l = logits.to(at::kFloat).flatten();
  if (f.temperature <= 0) return l.argmax().item<int64_t>();
  l = l / f.temperature;
  if (f.top_k > 0 && f.top_k < l.size(0)) {
    const at::Tensor kth = std::get<0>(l.topk(f.top_k)).select(0, f.top_k - 1);
    l = l.masked_fill(l.lt(kth), -INFINITY);
  }
  return at::multinomial(at::softmax(l, 0), 1, false, gen).item<int64_t>();
}

void run_generate(const GenerateFlags& f) {
  set_threads(f.threads);
  const at::Device device = parse_device(f.device);
  auto [model, config] = load_model(f.checkpoint, device);
  if (config.task != "lm") throw std::invalid_argument("gka generate: '" + f.checkpoint + "' is a " + config.task + " checkpoint; train one with --task lm");
  if (f.prompt.empty()) throw std::invalid_argument("gka generate: --prompt must not be empty");
  c10::InferenceMode guard;
  at::Generator gen = at::detail::createCPUGenerator(f.seed);
  std::vector<MixerCache> caches;
  at::Tensor prompt = at::empty({1, static_cast<int64_t>(f.prompt.size())}, at::kLong);
  for (size_t i = 0; i < f.prompt.size(); ++i) prompt[0][static_cast<int64_t>(i)] = static_cast<unsigned char>(f.prompt[i]);
  if (!f.quiet) std::fprintf(stderr, "gka generate: %s mixer, %lld tokens\n", config.mixer.c_str(), static_cast<long long>(f.tokens));
  at::Tensor logits = model->forward(prompt.to(device), &caches).select(1, -1).cpu();
  std::printf("%s", f.prompt.c_str());
  nlohmann::json mem = nlohmann::json::array();
  Series rss{config.mixer, {}, {}};
  const double rss0 = rss_mib();
  std::string text;
  for (int64_t i = 1; i <= f.tokens; ++i) {
    const int64_t tok = sample(logits, f, gen);
    const char ch = static_cast<char>(tok);
    if (!f.measure_memory || i <= 2000) std::putchar(ch);
    logits = model->forward(at::full({1, 1}, tok, at::kLong).to(device), &caches).select(1, -1).cpu();
    if (f.measure_memory && (i & (i - 1)) == 0 && i >= 256) {  // powers of two
      int64_t state = 0;
      for (const auto& c : caches) state += c.bytes();
      const double r = rss_mib();
      mem.push_back({{"tokens", i}, {"rss_mib", r}, {"state_bytes", state}});
      rss.x.push_back(static_cast<double>(i));
      rss.y.push_back(r);
      std::fprintf(stderr, "\n[memory] %6lld tokens: RSS %.1f MiB (start %.1f), decode state %lld bytes\n",
                   static_cast<long long>(i), r, rss0, static_cast<long long>(state));
    }
  }
  std::printf("\n");
  if (f.measure_memory && !f.out.empty()) {
    std::filesystem::create_directories(f.out);
    std::ofstream(f.out + "/memory.json") << nlohmann::json{{"mixer", config.mixer}, {"rss_start_mib", rss0}, {"points", mem}}.dump(2) << "\n";
    plot_png(f.out + "/rss_vs_tokens.png", "gka generate: RSS vs generated tokens", "generated tokens", "RSS (MiB)",
             {rss}, /*logx=*/true);
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* sub = app.add_subcommand("generate", "sample text from an lm checkpoint (prefill, then decode with cached state)");
  sub->add_option("checkpoint", f->checkpoint, "checkpoint.safetensors of a `gka train --task lm` run")->required()->check(CLI::ExistingFile);
  sub->add_option("--prompt", f->prompt, "prompt text")->capture_default_str();
  sub->add_option("--tokens", f->tokens, "bytes to generate")->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--temperature", f->temperature, "sampling temperature (0: greedy)")->check(CLI::NonNegativeNumber)->capture_default_str();
  sub->add_option("--top-k", f->top_k, "sample among the k most likely bytes (0: all)")->check(CLI::NonNegativeNumber)->capture_default_str();
  sub->add_option("--seed", f->seed, "sampling seed")->capture_default_str();
  sub->add_option("--device", f->device, "cpu or cuda[:N]")->capture_default_str();
  sub->add_option("--threads", f->threads, "CPU threads (0: torch default)")->check(CLI::NonNegativeNumber);
  sub->add_flag("--measure-memory", f->measure_memory, "print RSS at 256, 512, ... generated tokens (echoes only the first 2000)");
  sub->add_option("--out", f->out, "with --measure-memory: write memory.json and rss_vs_tokens.png here");
  sub->add_flag("--quiet", f->quiet, "no status line");
  sub->callback([f] { run_generate(*f); });
}

}  // namespace gka::cli
