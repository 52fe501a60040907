// Unit tests of the `gka` command line's models and files: the baseline recurrences against their literal
// definitions, the chunked Gated DeltaNet against its recurrence (values and gradients), prefill + decode ==
// full forward for every mixer, and the safetensors round trip.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "checkpoint.h"
#include "models/cores.h"
#include "models/decoder.h"
#include "train.h"

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

// One forward and backward of gdn_chunked or gdn_recurrent in `dtype`: the output, the final state and the
// gradients of q, k, v, g, beta and the initial state under the loss sum(o ⊙ w), all returned in fp64.
struct GdnRun {
  at::Tensor o, state;
  std::vector<at::Tensor> grads;
};

GdnRun run_gdn(bool chunked, const Inputs& in, const at::Tensor& S0, const at::Tensor& w, at::ScalarType dtype,
               int64_t chunk) {
  std::vector<at::Tensor> x{in.q, in.k, in.v, in.g, in.beta, S0};
  for (auto& t : x) t = t.to(dtype).detach().requires_grad_(true);
  at::Tensor state = x[5];
  const at::Tensor o = chunked ? gdn_chunked(x[0], x[1], x[2], x[3], x[4], 0.7, &state, chunk)
                               : gdn_recurrent(x[0], x[1], x[2], x[3], x[4], 0.7, &state);
  (o * w.to(dtype)).sum().backward();
  GdnRun r{o.detach().to(at::kDouble), state.to(at::kDouble), {}};
  for (const auto& t : x) r.grads.push_back(t.grad().to(at::kDouble));
  return r;
}

// Error of `a` against the fp64 reference `ref`: the larger of the relative RMS error and the max-abs error
// relative to max |ref| (RMS alone hides a few large outliers).
double rel_error(const at::Tensor& a, const at::Tensor& ref) {
  const double rms = (a - ref).pow(2).mean().sqrt().item<double>() / ref.pow(2).mean().sqrt().item<double>();
  return std::max(rms, max_diff(a, ref) / ref.abs().max().item<double>());
}

class GdnChunked : public ::testing::TestWithParam<std::tuple<at::ScalarType, int64_t>> {};

// gdn_chunked (chunks of 64) against gdn_recurrent, with a nonzero initial state and T = 1, 63, 65, 130 (one
// partial chunk, one full chunk plus one token, two full chunks plus a partial one). fp64: equal to 1e-12
// (measured ~1e-15). fp32: the error against the fp64 recurrence is at most 4x that of the fp32 recurrence
// (measured 0.6-3.7x: both round O(T) products of unit-norm keys, the chunked form adds one triangular solve
// per chunk) plus 8 fp32 epsilons, for when the recurrence happens to round to nearly nothing (T = 1).
TEST_P(GdnChunked, MatchesRecurrence) {
  const auto [dtype, T] = GetParam();
  const int64_t B = 2, H = 2, Dk = 8, Dv = 6;
  Inputs in = random_inputs(B, T, H, Dk);
  in.v = at::randn({B, T, H, Dv}, at::kDouble);
  const at::Tensor S0 = at::randn({B, H, Dk, Dv}, at::kDouble), w = at::randn({B, T, H, Dv}, at::kDouble);
  const GdnRun ref = run_gdn(false, in, S0, w, at::kDouble, 64);
  const GdnRun chunked = run_gdn(true, in, S0, w, dtype, 64);
  const GdnRun floor = run_gdn(false, in, S0, w, dtype, 64);  // the same recurrence in `dtype`
  const char* names[] = {"dq", "dk", "dv", "dg", "dbeta", "dS0"};
  auto check = [&](const at::Tensor& a, const at::Tensor& r, const at::Tensor& f, const std::string& name) {
    ASSERT_TRUE(at::isfinite(a).all().item<bool>()) << name;
    const double err = rel_error(a, r);
    const double bound = dtype == at::kDouble ? 1e-12 : 4 * rel_error(f, r) + 8 * 1.19e-7;
    EXPECT_LE(err, bound) << name << " T=" << T;
  };
  check(chunked.o, ref.o, floor.o, "o");
  check(chunked.state, ref.state, floor.state, "final state");
  for (size_t i = 0; i < ref.grads.size(); ++i) check(chunked.grads[i], ref.grads[i], floor.grads[i], names[i]);
}

INSTANTIATE_TEST_SUITE_P(
    Lengths, GdnChunked,
    ::testing::Combine(::testing::Values(at::kDouble, at::kFloat), ::testing::Values<int64_t>(1, 63, 65, 130)),
    [](const auto& p) {
      return std::string(std::get<0>(p.param) == at::kDouble ? "fp64" : "fp32") + "_T" +
             std::to_string(std::get<1>(p.param));
    });

// Chunk sizes 16 and 64 and a single call vs two calls with the state handed over agree (fp64).
TEST(GdnChunked, ChunkSizeAndSplitInvariance) {
  const int64_t B = 1, T = 100, H = 2, D = 8;
  const Inputs in = random_inputs(B, T, H, D);
  at::Tensor s64, s16, s_split;
  const at::Tensor o64 = gdn_chunked(in.q, in.k, in.v, in.g, in.beta, 0.5, &s64, 64);
  const at::Tensor o16 = gdn_chunked(in.q, in.k, in.v, in.g, in.beta, 0.5, &s16, 16);
  auto part = [&](int64_t t0, int64_t t1) {
    return gdn_chunked(in.q.slice(1, t0, t1), in.k.slice(1, t0, t1), in.v.slice(1, t0, t1), in.g.slice(1, t0, t1),
                       in.beta.slice(1, t0, t1), 0.5, &s_split, 64);
  };
  const at::Tensor first = part(0, 37);
  const at::Tensor o_split = at::cat({first, part(37, T)}, 1);
  EXPECT_LT(max_diff(o16, o64), 1e-12);
  EXPECT_LT(max_diff(o_split, o64), 1e-12);
  EXPECT_LT(max_diff(s16, s64), 1e-12);
  EXPECT_LT(max_diff(s_split, s64), 1e-12);
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

// Every mixer gives the same logits and gradients on cuda as on the cpu (head dim 64, which gka's CUDA kernel
// needs; T = 80 spans two chunks), to fp32 rounding (1e-4) and its growth through the backward (1e-3).
// Skipped without a GPU.
TEST(Cuda, MixersMatchCpu) {
  load_torch_cuda();
  if (!::torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::globalContext().setAllowTF32CuDNN(false);  // the short convolutions: fp32 like the cpu (cuBLAS is by default)
  for (const std::string kind : {"gka", "gdn", "gla", "attention"}) {
    ::torch::manual_seed(0);
    DecoderOptions o;
    o.vocab_size = 17;
    o.mixer = MixerOptions{kind, 64, 1, 64, 4, 64, 30};
    Decoder cpu(o), gpu(o);
    {
      ::torch::NoGradGuard no_grad;
      for (size_t i = 0; i < cpu->parameters().size(); ++i) gpu->parameters()[i].copy_(cpu->parameters()[i]);
    }
    gpu->to(at::kCUDA);
    const at::Tensor tokens = at::randint(17, {2, 80}, at::kLong);
    const at::Tensor a = cpu->forward(tokens), b = gpu->forward(tokens.cuda()).cpu();
    a.pow(2).sum().backward();
    b.pow(2).sum().backward();
    EXPECT_LT(rel_error(b.to(at::kDouble), a.to(at::kDouble)), 1e-4) << kind;
    for (size_t i = 0; i < cpu->parameters().size(); ++i)
      EXPECT_LT(rel_error(gpu->parameters()[i].grad().cpu().to(at::kDouble), cpu->parameters()[i].grad().to(at::kDouble)),
                1e-3)
          << kind << " gradient " << i;
  }
}

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
