// Unit tests of the `gka` command line's models and files: the baseline recurrences against their literal
// definitions, prefill + decode == full forward for every mixer, and the safetensors round trip.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "checkpoint.h"
#include "models/cores.h"
#include "models/decoder.h"

namespace gka::cli {
namespace {

struct Inputs {
  at::Tensor q, k, v, g, beta;
};

Inputs random_inputs(int64_t B, int64_t T, int64_t H, int64_t D) {
  at::manual_seed(1);
  auto o = at::TensorOptions().dtype(at::kDouble);
  auto unit = [&](at::Tensor x) { return x / x.norm(2, {-1}, true); };
  return {unit(at::randn({B, T, H, D}, o)), unit(at::randn({B, T, H, D}, o)), at::randn({B, T, H, D}, o),
          at::log_sigmoid(at::randn({B, T, H}, o) + 2), at::sigmoid(at::randn({B, T, H}, o))};
}

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

// S_t = a_t S_{t-1} (I - b_t k_t k_tᵀ) + b_t v_t k_tᵀ, o_t = scale S_t q_t, with explicit [Dv, Dk] matrices.
TEST(GatedDeltaNet, MatchesLiteralRecurrence) {
  const int64_t B = 2, T = 9, H = 3, D = 5;
  const Inputs in = random_inputs(B, T, H, D);
  const double scale = 0.7;
  at::Tensor state;
  const at::Tensor o = gdn_recurrent(in.q, in.k, in.v, in.g, in.beta, scale, &state);
  const at::Tensor I = at::eye(D, at::kDouble);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      at::Tensor S = at::zeros({D, D}, at::kDouble);
      for (int64_t t = 0; t < T; ++t) {
        const at::Tensor k = in.k[b][t][h].unsqueeze(1), v = in.v[b][t][h].unsqueeze(1), q = in.q[b][t][h];
        const double a = in.g[b][t][h].exp().item<double>(), be = in.beta[b][t][h].item<double>();
        S = a * S.matmul(I - be * k.matmul(k.t())) + be * v.matmul(k.t());
        EXPECT_LT(max_diff(scale * S.matmul(q), o[b][t][h]), 1e-12);
      }
      EXPECT_LT(max_diff(S.t(), state[b][h]), 1e-12);
    }
}

// S_t = a_t S_{t-1} + v_t k_tᵀ, in chunks of 4 (T = 11 leaves a partial chunk), with an initial state.
TEST(GatedLinearAttention, ChunkedMatchesRecurrence) {
  const int64_t B = 2, T = 11, H = 2, D = 4;
  const Inputs in = random_inputs(B, T, H, D);
  const at::Tensor S0 = at::randn({B, H, D, D}, at::kDouble);
  at::Tensor state = S0.clone();
  const at::Tensor o = gla_chunked(in.q, in.k, in.v, in.g, 0.5, &state, 4);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      at::Tensor S = S0[b][h].t();
      for (int64_t t = 0; t < T; ++t) {
        S = in.g[b][t][h].exp() * S + in.v[b][t][h].unsqueeze(1).matmul(in.k[b][t][h].unsqueeze(0));
        EXPECT_LT(max_diff(0.5 * S.matmul(in.q[b][t][h]), o[b][t][h]), 1e-12);
      }
      EXPECT_LT(max_diff(S.t(), state[b][h]), 1e-12);
    }
}

class MixerDecode : public ::testing::TestWithParam<std::string> {};

// Prefill 13 tokens, then decode 3 one at a time and 4 at once: equal to the full forward.
TEST_P(MixerDecode, PrefillThenDecodeMatchesFullForward) {
  ::torch::manual_seed(0);
  DecoderOptions o;
  o.vocab_size = 17;
  o.num_layers = 2;
  o.mixer = MixerOptions{GetParam(), 16, 2, 8, 4, 8, 30};
  Decoder model(o);
  model->eval();
  ::torch::NoGradGuard no_grad;
  const at::Tensor tokens = at::randint(17, {2, 20}, at::kLong);
  const at::Tensor full = model->forward(tokens);
  std::vector<MixerCache> caches;
  std::vector<at::Tensor> parts{model->forward(tokens.slice(1, 0, 13), &caches)};
  for (int64_t t = 13; t < 16; ++t) parts.push_back(model->forward(tokens.slice(1, t, t + 1), &caches));
  parts.push_back(model->forward(tokens.slice(1, 16, 20), &caches));
  EXPECT_LT(max_diff(at::cat(parts, 1), full), 2e-4) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(AllMixers, MixerDecode, ::testing::Values("gka", "gdn", "gla", "attention"));

TEST(Safetensors, RoundTripAndCorruption) {
  const std::string dir = ::testing::TempDir() + "gka_cli_st";
  std::filesystem::create_directories(dir);
  TensorFile f;
  f.tensors["a"] = at::randn({3, 4});
  f.tensors["b.c"] = at::arange(5, at::kLong);
  f.metadata["step"] = "7";
  save_safetensors(dir + "/x.safetensors", f);
  const TensorFile g = load_safetensors(dir + "/x.safetensors");
  EXPECT_TRUE(at::equal(g.tensors.at("a"), f.tensors.at("a")));
  EXPECT_TRUE(at::equal(g.tensors.at("b.c"), f.tensors.at("b.c")));
  EXPECT_EQ(g.metadata.at("step"), "7");
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.safetensors.tmp"));
  // Truncated data, garbage header, missing file: clear errors.
  std::filesystem::resize_file(dir + "/x.safetensors", std::filesystem::file_size(dir + "/x.safetensors") - 4);
  EXPECT_THROW(load_safetensors(dir + "/x.safetensors"), std::runtime_error);
  std::ofstream(dir + "/y.safetensors") << "\x10\0\0\0\0\0\0\0not json at all!";
  EXPECT_THROW(load_safetensors(dir + "/y.safetensors"), std::runtime_error);
  EXPECT_THROW(load_safetensors(dir + "/missing.safetensors"), std::runtime_error);
}

}  // namespace
}  // namespace gka::cli
