// LibTorch C++ program using gka::torch without Python: the op's C++ autograd gives gradients, the
// GatedKalmaNet module trains a few steps, and prefill + decode with the cache equals the full forward.
#include <gka/torch/gated_kalmanet.h>
#include <torch/torch.h>

#include <cstdio>

int main() {
  ::torch::manual_seed(0);
  // Op + autograd in fp64: gradient of o and the final states reach q and the initial state.
  auto opts = ::torch::TensorOptions().dtype(::torch::kFloat64);
  auto q = ::torch::nn::functional::normalize(::torch::randn({1, 6, 2, 4}, opts),
                                              ::torch::nn::functional::NormalizeFuncOptions().dim(-1))
               .requires_grad_(true);
  auto k = ::torch::nn::functional::normalize(::torch::randn({1, 6, 2, 4}, opts),
                                              ::torch::nn::functional::NormalizeFuncOptions().dim(-1));
  auto v = ::torch::randn({1, 6, 2, 3}, opts);
  auto h0 = ::torch::zeros({1, 2, 4, 3}, opts).requires_grad_(true);
  gka::torch::GkaArgs a;
  a.initial_kv = h0;
  auto r = gka::torch::chunk_gka(q, k, v, a);
  (r.o.sum() + r.final_kv.square().sum()).backward();
  if (!q.grad().defined() || !h0.grad().defined()) {
    std::fprintf(stderr, "missing gradients\n");
    return 1;
  }
  // The layer: a few training steps, then prefill + decode == full forward.
  gka::torch::GatedKalmaNet layer(gka::torch::GatedKalmaNetOptions(32, 4, 8).num_kv_heads(2).chunk_size(16));
  ::torch::optim::AdamW opt(layer->parameters(), ::torch::optim::AdamWOptions(3e-3));
  auto x = ::torch::randn({2, 24, 32});
  double first = 0, last = 0;
  for (int step = 0; step < 10; ++step) {
    auto [y, cache] = layer->forward(x);
    auto loss = ::torch::mse_loss(y, ::torch::roll(x, 1, 1));
    opt.zero_grad();
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  ::torch::NoGradGuard no_grad;
  auto [full, unused] = layer->forward(x);
  auto [pre, cache] = layer->forward(x.slice(1, 0, 20), std::nullopt, true);
  auto [dec, cache2] = layer->forward(x.slice(1, 20), cache);
  const double err = (::torch::cat({pre, dec}, 1) - full).abs().max().item<double>();
  std::printf("loss %.4f -> %.4f, prefill+decode max err %.2e\n", first, last, err);
  return (last < first && err < 1e-4) ? 0 : 1;
}
