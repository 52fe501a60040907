#include "train.h"

#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "checkpoint.h"
#include "progress.h"

namespace gka::cli {

namespace fs = std::filesystem;

std::unique_ptr<Task> make_task(const TrainConfig& c) {
  if (c.task == "mqar") return make_mqar(c.mqar());
  return make_lm(c.lm());
}

namespace {
std::string torch_cuda_status = "not loaded";  // what load_torch_cuda() found
}  // namespace

void load_torch_cuda() {
  static bool done = false;
  if (done) return;
  done = true;
  // The directory of libtorch_cpu.so, which holds libtorch_cuda.so in a CUDA build of torch.
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&at::get_num_threads), &info) == 0 || !info.dli_fname) {
    torch_cuda_status = "cannot locate libtorch_cpu.so";
    return;
  }
  const fs::path lib = fs::path(info.dli_fname).parent_path() / "libtorch_cuda.so";
  if (!fs::exists(lib)) {
    torch_cuda_status = "this torch is a CPU build (no " + lib.string() + ")";
    return;
  }
  if (!dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
    const char* err = dlerror();
    torch_cuda_status = "loading " + lib.string() + " failed: " + (err ? err : "unknown error");
    return;
  }
  torch_cuda_status = "loaded " + lib.string();
}

at::Device parse_device(const std::string& name) {
  at::Device d(name);
  if (d.is_cuda()) {
    load_torch_cuda();
    if (!::torch::cuda::is_available())
      throw std::runtime_error("--device " + name + ": no CUDA device is available (libtorch_cuda: " +
                               torch_cuda_status + ")");
    if (d.has_index() && d.index() >= static_cast<int>(::torch::cuda::device_count()))
      throw std::runtime_error("--device " + name + ": only " + std::to_string(::torch::cuda::device_count()) +
                               " CUDA device(s)");
  }
  return d;
}

EvalResult evaluate(DecoderImpl& model, const Task& task, const at::Device& device) {
  ::torch::NoGradGuard no_grad;
  model.eval();
  double loss = 0, correct = 0, count = 0;
  for (int64_t i = 0; i < task.num_eval_batches(); ++i) {
    const Batch b = task.eval_batch(i);
    const at::Tensor y = b.targets.to(device);
    const at::Tensor logits = model.forward(b.inputs.to(device)).to(at::kFloat);
    const at::Tensor mask = y.ne(-100);
    const double n = mask.sum().item<double>();
    loss += at::cross_entropy_loss(logits.flatten(0, 1), y.flatten(), {}, at::Reduction::Sum, -100).item<double>();
    correct += (logits.argmax(-1).eq(y) & mask).sum().item<double>();
    count += n;
  }
  model.train();
  EvalResult r;
  r.loss = loss / std::max(count, 1.0);
  r.metric = task.metric() == "bpb" ? r.loss / std::log(2.0) : correct / std::max(count, 1.0);
  return r;
}

namespace {

double lr_at(const TrainConfig& c, int64_t step) {
  const double warm = std::max(1.0, c.warmup * c.steps);
  if (step < warm) return c.lr * (step + 1) / warm;
  const double p = (step - warm) / std::max(1.0, c.steps - warm);
  return c.lr * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * std::min(1.0, p))));
}

// Matrices and embeddings get weight decay; gains, biases, A_log, dt_bias and conv filters do not.
::torch::optim::AdamW make_optimizer(DecoderImpl& model, const TrainConfig& c) {
  std::vector<at::Tensor> decay, no_decay;
  for (const auto& p : model.named_parameters()) {
    const bool matrix = p.value().dim() == 2 && p.key().find("A_log") == std::string::npos;
    (matrix ? decay : no_decay).push_back(p.value());
  }
  std::vector<::torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<::torch::optim::AdamWOptions>(
                                 ::torch::optim::AdamWOptions(c.lr).betas({0.9, 0.95}).weight_decay(c.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<::torch::optim::AdamWOptions>(
                                    ::torch::optim::AdamWOptions(c.lr).betas({0.9, 0.95}).weight_decay(0.0)));
  return ::torch::optim::AdamW(groups);
}

void save_checkpoint(const std::string& path, DecoderImpl& model, ::torch::optim::AdamW& opt, const TrainConfig& c,
                     int64_t step, const std::vector<std::pair<int64_t, double>>& history) {
  TensorFile f;
  for (const auto& p : model.named_parameters()) f.tensors["model." + p.key()] = p.value();
  int64_t i = 0;
  for (auto& group : opt.param_groups())
    for (auto& p : group.params()) {
      auto it = opt.state().find(p.unsafeGetTensorImpl());
      if (it != opt.state().end()) {
        auto& s = static_cast<::torch::optim::AdamWParamState&>(*it->second);
        f.tensors["optim." + std::to_string(i) + ".exp_avg"] = s.exp_avg();
        f.tensors["optim." + std::to_string(i) + ".exp_avg_sq"] = s.exp_avg_sq();
        f.tensors["optim." + std::to_string(i) + ".step"] = at::full({1}, s.step(), at::kLong);
      }
      ++i;
    }
  f.metadata["format"] = "gka-cli/1";
  f.metadata["step"] = std::to_string(step);
  f.metadata["config"] = nlohmann::json(c).dump();
  f.metadata["history"] = nlohmann::json(history).dump();
  save_safetensors(path, f);
}

void load_weights(DecoderImpl& model, const TensorFile& f, const std::string& path) {
  ::torch::NoGradGuard no_grad;
  for (auto& p : model.named_parameters()) {
    auto it = f.tensors.find("model." + p.key());
    if (it == f.tensors.end()) throw std::runtime_error("checkpoint '" + path + "' lacks tensor model." + p.key());
    if (it->second.sizes() != p.value().sizes())
      throw std::runtime_error("checkpoint '" + path + "': tensor model." + p.key() + " has the wrong shape");
    p.value().copy_(it->second);
  }
}

TrainConfig config_of(const TensorFile& f, const std::string& path) {
  auto it = f.metadata.find("config");
  if (it == f.metadata.end() || f.metadata.count("format") == 0 || f.metadata.at("format") != "gka-cli/1")
    throw std::runtime_error("'" + path + "' is not a gka checkpoint (no gka-cli/1 metadata)");
  try {
    return nlohmann::json::parse(it->second).get<TrainConfig>();
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("corrupt checkpoint '" + path + "': config metadata: " + e.what());
  }
}

}  // namespace

std::pair<Decoder, TrainConfig> load_model(const std::string& checkpoint, const at::Device& device) {
  const TensorFile f = load_safetensors(checkpoint);
  TrainConfig c = config_of(f, checkpoint);
  const int64_t vocab = c.task == "lm" ? 256 : c.vocab_size;
  Decoder model(c.decoder(vocab));
  load_weights(*model, f, checkpoint);
  model->to(device);
  model->eval();
  return {model, c};
}

RunResult train_run(const TrainConfig& c, const RunOptions& o) {
  c.validate();
  fs::create_directories(o.dir);
  const at::Device device = parse_device(c.device);
  const auto task = make_task(c);
  ::torch::manual_seed(c.seed);
  Decoder model(c.decoder(task->vocab_size()));
  model->to(device);
  auto opt = make_optimizer(*model, c);
  RunResult r;
  r.config = c;
  r.params = model->num_parameters();
  r.mixer_params = model->num_mixer_parameters();
  const std::string ckpt = o.dir + "/checkpoint.safetensors", metrics = o.dir + "/metrics.jsonl";
  int64_t start = 0;
  if (o.resume && fs::exists(ckpt)) {
    const TensorFile f = load_safetensors(ckpt);
    const TrainConfig saved = config_of(f, ckpt);
    if (nlohmann::json(saved) != nlohmann::json(c))
      throw std::runtime_error("--resume: the configuration differs from the one in '" + ckpt + "'");
    load_weights(*model, f, ckpt);
    // First optimizer step builds the state objects; then overwrite them from the file.
    int64_t i = 0;
    for (auto& group : opt.param_groups())
      for (auto& p : group.params()) {
        const std::string k = "optim." + std::to_string(i++);
        if (!f.tensors.count(k + ".exp_avg")) continue;
        auto s = std::make_unique<::torch::optim::AdamWParamState>();
        s->step(f.tensors.at(k + ".step").item<int64_t>());
        s->exp_avg(f.tensors.at(k + ".exp_avg").to(device));
        s->exp_avg_sq(f.tensors.at(k + ".exp_avg_sq").to(device));
        opt.state()[p.unsafeGetTensorImpl()] = std::move(s);
      }
    start = std::stoll(f.metadata.at("step"));
    r.history = nlohmann::json::parse(f.metadata.at("history")).get<std::vector<std::pair<int64_t, double>>>();
  } else {
    std::ofstream(metrics, std::ios::trunc);
  }
  std::ofstream(o.dir + "/config.json") << nlohmann::json(c).dump(2) << "\n";
  std::ofstream log(metrics, std::ios::app);
  Progress bar(c.mixer + " s" + std::to_string(c.seed), c.steps, start);
  double smooth = 0;
  EvalResult final_eval;
  const std::string name = task->metric() == "bpb" ? "bpb" : "acc";
  std::string last_eval = r.history.empty() ? "" : " " + name + " " + std::to_string(r.history.back().second).substr(0, 5);
  for (int64_t step = start; step < c.steps; ++step) {
    const double lr = lr_at(c, step);
    for (auto& g : opt.param_groups()) static_cast<::torch::optim::AdamWOptions&>(g.options()).lr(lr);
    const Batch b = task->train_batch(step);
    const at::Tensor logits = model->forward(b.inputs.to(device)).to(at::kFloat);
    const at::Tensor loss = at::cross_entropy_loss(logits.flatten(0, 1), b.targets.to(device).flatten(), {},
                                                   at::Reduction::Mean, -100);
    opt.zero_grad();
    loss.backward();
    ::torch::nn::utils::clip_grad_norm_(model->parameters(), c.grad_clip);
    opt.step();
    const double l = loss.item<double>();
    if (!std::isfinite(l)) throw std::runtime_error("training diverged at step " + std::to_string(step) + " (loss " + std::to_string(l) + ")");
    smooth = step == start ? l : 0.95 * smooth + 0.05 * l;
    nlohmann::json line{{"step", step + 1}, {"loss", l}, {"lr", lr}, {"time_s", bar.elapsed_s()}};
    if ((step + 1) % c.eval_every == 0 || step + 1 == c.steps) {
      const EvalResult e = final_eval = evaluate(*model, *task, device);
      r.history.emplace_back(step + 1, e.metric);
      line["eval_loss"] = e.loss;
      line[task->metric()] = e.metric;
      last_eval = " " + name + " " + std::to_string(e.metric).substr(0, 5);
      save_checkpoint(ckpt, *model, opt, c, step + 1, r.history);
    }
    log << line.dump() << "\n" << std::flush;
    if (!o.quiet) bar.update(step + 1, "loss " + std::to_string(smooth).substr(0, 5) + last_eval);
    if (o.stop_after > 0 && step + 1 >= o.stop_after) break;
  }
  r.train_s = start < c.steps ? bar.elapsed_s() : 0.0;
  r.final = start < c.steps ? final_eval : evaluate(*model, *task, device);
  if (!o.quiet && start < c.steps) bar.finish("loss " + std::to_string(smooth).substr(0, 5) + last_eval);
  return r;
}

}  // namespace gka::cli
