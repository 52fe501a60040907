#include "models/cores.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace gka::cli {

namespace {

// q, k, v [B, T, H, D] and the log decay g [B, T, H] cut into N chunks of C tokens, [B, H, N, C, ...], with
// what both chunked forms need: G = the chunk-local cumulative log decay (fp32, fp64 for fp64 inputs),
// Γ_ij = e^{G_i - G_j} for i >= j and 0 above the diagonal, γ = e^G, γ_C / γ and γ_C (the chunk's last γ).
// T is padded to N C with q = k = v = 0 and g = 0 (chunks() pads any [B, T, H, ...] the same way): padded
// tokens change neither the outputs of the real ones nor the state.
struct ChunkedInputs {
  int64_t B, H, C, N, pad;
  at::Tensor Q, K, V, G, Gamma, gam, to_end, gam_end;

  at::Tensor chunks(const at::Tensor& x) const {
    at::Tensor y = x.transpose(1, 2);
    if (pad > 0) {
      std::vector<int64_t> shape = y.sizes().vec();
      shape[2] = pad;
      y = at::cat({y, at::zeros(shape, y.options())}, 2);
    }
    std::vector<int64_t> shape{B, H, N, C};
    for (int64_t d = 3; d < y.dim(); ++d) shape.push_back(y.size(d));
    return y.reshape(shape);
  }
};

ChunkedInputs to_chunks(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                        int64_t chunk) {
  ChunkedInputs c;
  const int64_t T = q.size(1);
  c.B = q.size(0);
  c.H = q.size(2);
  c.C = std::min(chunk, T);
  c.N = (T + c.C - 1) / c.C;
  c.pad = c.N * c.C - T;
  const at::ScalarType dtype = q.scalar_type(), gate_type = at::promote_types(at::kFloat, dtype);
  c.Q = c.chunks(q);
  c.K = c.chunks(k);
  c.V = c.chunks(v);
  c.G = c.chunks(g.to(gate_type)).cumsum(-1);                                          // [B, H, N, C]
  const at::Tensor causal = at::ones({c.C, c.C}, q.options().dtype(at::kBool)).tril();
  c.Gamma = (c.G.unsqueeze(-1) - c.G.unsqueeze(-2)).masked_fill(causal.logical_not(), -INFINITY).exp().to(dtype);
  c.gam = c.G.exp().to(dtype);
  c.to_end = (c.G.narrow(-1, c.C - 1, 1) - c.G).exp().to(dtype);
  c.gam_end = c.G.select(-1, c.C - 1).exp().to(dtype);                                  // [B, H, N]
  return c;
}

// [B, H, N, C, Dv] -> [B, T, H, Dv] without the padding.
at::Tensor from_chunks(const at::Tensor& O, int64_t T) {
  return O.reshape({O.size(0), O.size(1), O.size(2) * O.size(3), O.size(4)}).narrow(2, 0, T).transpose(1, 2);
}

}  // namespace

at::Tensor gdn_recurrent(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                         const at::Tensor& beta, double scale, at::Tensor* state) {
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), Dk = q.size(3), Dv = v.size(3);
  at::Tensor M = (state && state->defined()) ? state->to(q.scalar_type())
                                             : at::zeros({B, H, Dk, Dv}, q.options());
  const at::Tensor a = g.exp().to(q.scalar_type()), b = beta.to(q.scalar_type());
  std::vector<at::Tensor> out;
  out.reserve(T);
  for (int64_t t = 0; t < T; ++t) {
    const at::Tensor kt = k.select(1, t), vt = v.select(1, t), qt = q.select(1, t);  // [B, H, D]
    const at::Tensor at_ = a.select(1, t).view({B, H, 1}), bt = b.select(1, t).view({B, H, 1});
    const at::Tensor kM = at::matmul(kt.unsqueeze(-2), M).squeeze(-2);            // (S k)ᵀ  [B, H, Dv]
    const at::Tensor delta = bt * (vt - at_ * kM);                                // beta (v - e^g S k)
    M = at_.unsqueeze(-1) * M + kt.unsqueeze(-1) * delta.unsqueeze(-2);
    out.push_back(at::matmul(qt.unsqueeze(-2), M).squeeze(-2) * scale);
  }
  if (state) *state = M.detach();
  return at::stack(out, 1);
}

// Derivation (per chunk; M = Sᵀ [Dk, Dv], rows of K, V, Q are the chunk's tokens i = 1..C, M_0 the state
// before the chunk, G_i = g_1 + ... + g_i the chunk-local cumulative log decay, γ_i = e^{G_i}):
//   M_i = e^{g_i} (I − β_i k_i k_iᵀ) M_{i-1} + β_i k_i v_iᵀ = e^{g_i} M_{i-1} + k_i u_iᵀ,
//   u_i = β_i (v_i − e^{g_i} M_{i-1}ᵀ k_i)                                       (the "delta").
// Unrolling, M_i = γ_i M_0 + Σ_{j≤i} e^{G_i−G_j} k_j u_jᵀ, so
//   u_i + Σ_{j<i} β_i e^{G_i−G_j} (k_iᵀ k_j) u_j = β_i v_i − β_i γ_i M_0ᵀ k_i,
// i.e. (I + A) U = diag(β) V − diag(βγ) K M_0 with A = tril(diag(β) (K Kᵀ ⊙ Γ), −1), Γ_ij = e^{G_i−G_j}.
// With T = (I + A)⁻¹ (unit lower triangular: a triangular solve, no inverse):
//   U = T diag(β) V − T diag(βγ) K M_0 = U' − W M_0,
//   O = scale (diag(γ) Q M_0 + (Q Kᵀ ⊙ Γ ⊙ causal) U),   M_C = γ_C M_0 + (diag(γ_C / γ) K)ᵀ U.
// U', W and the masked products do not depend on the state, so they are computed for all chunks at once;
// only U = U' − W M_0 and M_C run chunk after chunk. Every exponent is G_i − G_j ≤ 0 (i ≥ j) or G ≤ 0.
at::Tensor gdn_chunked(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                       const at::Tensor& beta, double scale, at::Tensor* state, int64_t chunk) {
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), Dk = q.size(3), Dv = v.size(3);
  const ChunkedInputs c = to_chunks(q, k, v, g, chunk);
  const at::Tensor be = c.chunks(beta.to(q.scalar_type()));                            // [B, H, N, C]
  at::Tensor M = (state && state->defined()) ? state->to(q.scalar_type()) : at::zeros({B, H, Dk, Dv}, q.options());
  // A is lower triangular (Γ vanishes above the diagonal); the unitriangular solve reads only its strictly
  // lower part, i.e. it solves with I + tril(A, -1), and its backward leaves the diagonal without gradient.
  const at::Tensor A = at::matmul(c.K, c.K.transpose(-1, -2)) * c.Gamma * be.unsqueeze(-1);
  const at::Tensor rhs = at::cat({be.unsqueeze(-1) * c.V, (be * c.gam).unsqueeze(-1) * c.K}, -1);
  const at::Tensor X = at::linalg_solve_triangular(A, rhs, /*upper=*/false, /*left=*/true, /*unitriangular=*/true);
  const at::Tensor Up = X.narrow(-1, 0, Dv), W = X.narrow(-1, Dv, Dk);                 // U', W [B, H, N, C, .]
  const at::Tensor Kend = (c.K * c.to_end.unsqueeze(-1)).transpose(-1, -2);            // [B, H, N, Dk, C]
  std::vector<at::Tensor> starts, us;
  starts.reserve(c.N);
  us.reserve(c.N);
  for (int64_t n = 0; n < c.N; ++n) {
    const at::Tensor U = Up.select(2, n) - at::matmul(W.select(2, n), M);              // [B, H, C, Dv]
    starts.push_back(M);
    us.push_back(U);
    M = c.gam_end.select(2, n).unsqueeze(-1).unsqueeze(-1) * M + at::matmul(Kend.select(2, n), U);
  }
  const at::Tensor QK = at::matmul(c.Q, c.K.transpose(-1, -2)) * c.Gamma;
  const at::Tensor O =
      (at::matmul(c.Q * c.gam.unsqueeze(-1), at::stack(starts, 2)) + at::matmul(QK, at::stack(us, 2))) * scale;
  if (state) *state = M.detach();
  return from_chunks(O, T);
}

at::Tensor gla_chunked(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                       double scale, at::Tensor* state, int64_t chunk) {
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), Dk = q.size(3), Dv = v.size(3);
  const ChunkedInputs c = to_chunks(q, k, v, g, chunk);
  at::Tensor S = (state && state->defined()) ? state->to(q.scalar_type()) : at::zeros({B, H, Dk, Dv}, q.options());
  // Per chunk: O = scale ((Q Kᵀ ⊙ Γ) V + diag(γ) Q S_0),  S_C = γ_C S_0 + (diag(γ_C / γ) K)ᵀ V.
  const at::Tensor dS = at::matmul((c.K * c.to_end.unsqueeze(-1)).transpose(-1, -2), c.V);  // [B, H, N, Dk, Dv]
  std::vector<at::Tensor> starts;
  starts.reserve(c.N);
  for (int64_t n = 0; n < c.N; ++n) {
    starts.push_back(S);
    S = c.gam_end.select(2, n).unsqueeze(-1).unsqueeze(-1) * S + dS.select(2, n);
  }
  const at::Tensor QK = at::matmul(c.Q, c.K.transpose(-1, -2)) * c.Gamma;
  const at::Tensor O = (at::matmul(QK, c.V) + at::matmul(c.Q * c.gam.unsqueeze(-1), at::stack(starts, 2))) * scale;
  if (state) *state = S.detach();
  return from_chunks(O, T);
}

}  // namespace gka::cli
