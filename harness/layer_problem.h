// Layer-like GKA problems: a shape, inputs drawn as the GKA layer would hand them to the operator, and the
// output, gradient-seed and gradient buffers of a forward / backward call. Shared by the GoogleTests (over
// tests/cases.json), gka-quickstart and the CPU benchmark.
//
// Inputs (drawn in fp64, rounded once to the dtype): q unit rows; k unit rows times sigmoid(randn) + 1e-6;
// v ~ randn times sigmoid(randn) + 1e-6; alpha = sigmoid(randn); log-decays g, gk: mild = log U(0.8, 0.999)
// (gk of untied gates: log U(0.85, 0.999)), strong = -A softplus(randn + dt_bias) per head as at layer init;
// initial states the Gram matrix of 8 random unit keys and a matching value state.
#pragma once

#include <cstdint>
#include <vector>

#include "gka/gka.h"
#include "harness/tensor.h"

namespace gka::harness {

enum class Gates { tied, untied, none, g_only, gk_only };  // tied: gk = g; none: both absent (no decay)
enum class GateStrength { mild, strong };

struct Shape {
  int64_t B = 1, T = 64, H = 2, D = 64, Dv = -1;  // Dv = -1: same as D
  std::vector<int64_t> varlen;  // sequence lengths packed into one row (then B = 1, T = their sum); empty: none
  bool h0 = false;              // random initial states
  bool alpha = true;            // false: alpha absent (= 1)
  Gates gates = Gates::tied;
  GateStrength gate_strength = GateStrength::mild;
  DType dtype = DType::f32;     // dtype of q, k, v (alpha, gates and states in fp32, fp64 with fp64)

  int64_t dv() const { return Dv < 0 ? D : Dv; }
  int64_t num_seqs() const { return varlen.empty() ? B : static_cast<int64_t>(varlen.size()); }
  DType state_dtype() const { return dtype == DType::f64 ? DType::f64 : DType::f32; }
};

// B x T x H x D, Dv = D, no varlen, no initial states, tied mild gates, alpha present.
Shape dense_shape(int64_t B, int64_t T, int64_t H, int64_t D, DType dtype = DType::f32);
// The sequences `lengths` packed into one row: B = 1, T = their sum.
Shape packed_shape(std::vector<int64_t> lengths, int64_t H, int64_t D, DType dtype = DType::f32);

struct LayerInputs {
  Tensor q, k, v, alpha, g, gk, h0_kk, h0_kv, cu_seqlens;  // absent (undefined) where the shape has none
  Inputs view() const;
};
LayerInputs layer_inputs_make(const Shape& s, uint64_t seed);

// o, final states, and the x / fro a training forward saves for the backward.
struct ForwardBuffers {
  Tensor o, final_kk, final_kv, x, fro;
  ForwardOutputs view(bool save_for_backward = true) const;
  void poison();  // NaN everywhere: an output a call leaves unwritten then fails every comparison
};
ForwardBuffers forward_buffers_make(const Shape& s);  // zero-filled

// Gradient seeds: d_o ~ randn, gradients arriving at the final states ~ 0.1 randn.
struct GradientSeeds {
  Tensor d_o, d_final_kk, d_final_kv;
  // The seeds plus, if `saved` is given, its x and fro (else the backward recomputes them).
  BackwardInputs view(const ForwardBuffers* saved = nullptr) const;
};
GradientSeeds gradient_seeds_make(const Shape& s, uint64_t seed);

// A gradient for each input `in` holds (like it: dtype and sizes) and for both initial states.
struct GradientBuffers {
  Tensor dq, dk, dv, dalpha, dg, dgk, dh0_kk, dh0_kv;
  Gradients view() const;
  void poison();  // NaN in every gradient buffer present
};
GradientBuffers gradient_buffers_make(const Shape& s, const LayerInputs& in);  // zero-filled

// chunk_forward (or recurrent_forward) into NaN-poisoned buffers, saving x and fro.
ForwardBuffers forward_run(const Shape& s, const LayerInputs& in, const Options& opt, bool recurrent = false);
// chunk_backward into NaN-poisoned buffers; with `saved`, from the forward's x and fro.
GradientBuffers backward_run(const Shape& s, const LayerInputs& in, const GradientSeeds& seeds, const Options& opt,
                             const ForwardBuffers* saved = nullptr);

}  // namespace gka::harness
