#include "models/cores.h"

namespace gka::cli {

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

at::Tensor gla_chunked(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                       double scale, at::Tensor* state, int64_t chunk) {
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), Dk = q.size(3), Dv = v.size(3);
  at::Tensor S = (state && state->defined()) ? state->to(q.scalar_type())
                                             : at::zeros({B, H, Dk, Dv}, q.options());
  const at::ScalarType gate_type = at::promote_types(at::kFloat, q.scalar_type());  // fp32, fp64 for fp64
  std::vector<at::Tensor> out;
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t t1 = std::min(T, t0 + chunk), C = t1 - t0;
    // [B, H, C, D] per chunk; G = cumulative log decay inside the chunk (fp32).
    const at::Tensor qc = q.slice(1, t0, t1).transpose(1, 2), kc = k.slice(1, t0, t1).transpose(1, 2);
    const at::Tensor vc = v.slice(1, t0, t1).transpose(1, 2);
    const at::Tensor G = g.slice(1, t0, t1).transpose(1, 2).to(gate_type).cumsum(-1);  // [B, H, C]
    const at::Tensor diff = G.unsqueeze(-1) - G.unsqueeze(-2);                          // G_t - G_s
    const at::Tensor causal = at::ones({C, C}, q.options().dtype(at::kBool)).tril();
    const at::Tensor decay = diff.masked_fill(causal.logical_not(), -INFINITY).exp().to(q.scalar_type());
    const at::Tensor A = at::matmul(qc, kc.transpose(-1, -2)) * decay;                   // [B, H, C, C]
    const at::Tensor eG = G.exp().to(q.scalar_type()).unsqueeze(-1);                    // [B, H, C, 1]
    at::Tensor o = at::matmul(A, vc) + at::matmul(qc * eG, S);
    out.push_back((o * scale).transpose(1, 2));
    // S_end = e^{G_C} S + sum_s e^{G_C - G_s} k_s v_sᵀ
    const at::Tensor GC = G.select(-1, C - 1).unsqueeze(-1);                            // [B, H, 1]
    const at::Tensor w = (GC - G).exp().to(q.scalar_type()).unsqueeze(-1);              // [B, H, C, 1]
    S = GC.exp().to(q.scalar_type()).unsqueeze(-1) * S + at::matmul((kc * w).transpose(-1, -2), vc);
  }
  if (state) *state = S.detach();
  return at::cat(out, 1);
}

}  // namespace gka::cli
