// Layer-like GKA problems with their output buffers, shared by gka-quickstart and the benchmarks.
// Inputs look like what the GKA layer feeds the operator: unit q; unit k scaled by sigmoid(randn) + 1e-6;
// v ~ randn scaled the same way; alpha = sigmoid(randn); g = gk = log U(0.8, 0.999).
#pragma once

#include <cstdint>
#include <vector>

#include "buffer.h"
#include "gka/params.h"

namespace gka::quickstart {

struct Shape {
  int64_t B = 1, T = 64, H = 2, D = 64, Dv = -1;  // Dv = -1: same as D
  std::vector<int64_t> varlen;  // sequence lengths packed into one row (sets B = 1 and T); empty: none
  bool h0 = false;              // random initial states
  bool untied_gates = false;    // gk drawn apart from g (log U(0.85, 0.999))
  DType dtype = DType::f32;     // dtype of q, k, v (gates and states in fp32, fp64 with fp64)

  int64_t dv() const { return Dv < 0 ? D : Dv; }
  int64_t num_seqs() const { return varlen.empty() ? B : static_cast<int64_t>(varlen.size()); }
  DType state_dtype() const { return dtype == DType::f64 ? DType::f64 : DType::f32; }
  Shape resolved() const;  // B and T filled in from varlen
};

// B x T x H x D, Dv = D, no varlen, no initial states, tied gates.
Shape dense_shape(int64_t B, int64_t T, int64_t H, int64_t D, DType dtype = DType::f32);

struct LayerInputs {
  Buffer q, k, v, alpha, g, gk, h0_kk, h0_kv, cu_seqlens;
  Inputs view() const;
};
LayerInputs layer_inputs_make(const Shape& shape, uint64_t seed);

// o, final states, and the x / fro a training forward saves for the backward.
struct ForwardBuffers {
  Buffer o, final_kk, final_kv, x, fro;
  ForwardOutputs view(bool save_for_backward) const;
};
ForwardBuffers forward_buffers_make(const Shape& shape);

// Gradient seeds (d_o ~ randn, gradients at the final states ~ 0.1 randn) and every gradient output.
struct BackwardBuffers {
  Buffer d_o, d_final_kk, d_final_kv;
  Buffer dq, dk, dv, dalpha, dg, dgk, d_h0_kk, d_h0_kv;
  // Seeds plus, if `saved` is given, the forward's x and fro (else the backward recomputes them).
  BackwardInputs seeds(const ForwardBuffers* saved) const;
  Gradients grads() const;
};
BackwardBuffers backward_buffers_make(const Shape& shape, uint64_t seed);

}  // namespace gka::quickstart
