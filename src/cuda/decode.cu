// Token-by-token forward (decode, spec §D) of the CUDA backend: one CTA of 4 D threads per (sequence, head).
// Thread (r, l), r = tid / 4, l = tid % 4, holds H[r][l + 4 j] and S[l + 4 j][r] (j < D/4) in registers, so
// the N mat-vecs H x and the readout Sᵀ q~ are register dot products plus a 4-lane shuffle; one barrier per
// iteration (x is double-buffered in shared memory). States are read completely before they are written,
// so final_* may alias initial_* (state pools are updated in place by slot).
#include <optional>

#include "backends.h"
#include "cuda/common.cuh"

namespace gka::cuda {

inline constexpr int kInlineSeqs = 128;

// Everything a decode launch needs travels in the kernel parameter (no uploads, no allocations): a call is
// one launch. Sequences beyond kInlineSeqs come from a device table.
struct DecArgs {
  DView q, k, v, alpha, g, gk, o, x, fro, res;
  DView ikk, ikv, fkk, fkv;
  ChebConst cc;
  double c;  // rho^2 / 4 of the omega recurrence (spec §A.3), evaluated on the device in fp64 like the host plan
  float scale;
  int H;
  const SeqInfo* seq_table;
  SeqInfo seqs[kInlineSeqs];
};

template <int D>
__global__ void __launch_bounds__(4 * D) decode_kernel(const __grid_constant__ DecArgs a) {
  constexpr int J = D / 4, NT = 4 * D;
  __shared__ float kq[3][D];    // k, q, v of the current token
  __shared__ float xb[2][D];    // iterate, double-buffered
  __shared__ float qt[D];
  __shared__ float red[NT / 32];
  const SeqInfo sq = blockIdx.x < kInlineSeqs ? a.seqs[blockIdx.x] : a.seq_table[blockIdx.x];
  const int h = blockIdx.y, r = threadIdx.x / 4, l = threadIdx.x % 4;
  const int64_t b = sq.batch;
  if (sq.state < 0) {  // pool padding: zero outputs, leave every state alone
    for (int64_t t = sq.start; t < sq.start + sq.length; ++t) {
      if (l == 0) {
        dstore(a.o, drow(a.o, b, t, h) + r, 0.f);
        if (a.x.dt) dstore(a.x, drow(a.x, b, t, h) + r, 0.f);
      }
      if (threadIdx.x == 0) {
        if (a.fro.dt) dstore(a.fro, drow(a.fro, b, t, h), 0.f);
        if (a.res.dt) dstore(a.res, drow(a.res, b, t, h), 0.f);
      }
    }
    return;
  }
  float Hr[J], Sr[J];
#pragma unroll
  for (int j = 0; j < J; ++j) {
    const int c = l + 4 * j;
    Hr[j] = a.ikk.dt ? static_cast<const float*>(a.ikk.p)[drow(a.ikk, sq.state, h, r) + c] : 0.f;
    Sr[j] = a.ikv.dt ? static_cast<const float*>(a.ikv.p)[drow(a.ikv, sq.state, h, c) + r] : 0.f;
  }
  auto bsum = [&](float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < NT / 32; ++w) s += red[w];
    __syncthreads();
    return s;
  };
  auto quad = [](float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    v += __shfl_xor_sync(0xffffffffu, v, 2);
    return v;
  };
  for (int64_t t = sq.start; t < sq.start + sq.length; ++t) {
    if (threadIdx.x < 3 * D) {
      const int w = threadIdx.x / D, c = threadIdx.x % D;
      const DView& src = w == 0 ? a.k : w == 1 ? a.q : a.v;
      kq[w][c] = dload(src, drow(src, b, t, h) + c);
    }
    const float ak = expf(dscalar(a.gk, b, t, h, 0.f)), av = expf(dscalar(a.g, b, t, h, 0.f));
    const float alpha = dscalar(a.alpha, b, t, h, 1.f);
    __syncthreads();
    const float kr = kq[0][r], qr = kq[1][r], vr = kq[2][r];
    float hh = 0.f;
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const float kc = kq[0][l + 4 * j];
      Hr[j] = fmaf(ak, Hr[j], kr * kc);
      Sr[j] = fmaf(av, Sr[j], kc * vr);
      hh = fmaf(Hr[j], Hr[j], hh);
    }
    const float f = sqrtf(bsum(hh));
    const float lam = a.cc.r * f;
    float x = qr;
    if (a.cc.n > 0) {
      const float eta = f > 0.f ? a.cc.eta_f / f : 0.f, a0 = 1.f - eta * lam;  // H = 0: x = 0
      float xp = 0.f;
      double om = 2.0;
      x = eta * qr;
      if (l == 0) xb[0][r] = x;
      __syncthreads();
      for (int it = 0; it < a.cc.n; ++it) {
        const float* xc = xb[it & 1];
        float p = 0.f;
#pragma unroll
        for (int j = 0; j < J; ++j) p = fmaf(Hr[j], xc[l + 4 * j], p);
        const float hx = quad(p);
        om = 1.0 / (1.0 - a.c * om);
        const float w = static_cast<float>(om);
        const float xn = w * a0 * x + w * eta * (qr - hx) + (1.f - w) * xp;
        xp = x;
        x = xn;
        if (l == 0) xb[(it + 1) & 1][r] = x;
        __syncthreads();
      }
    }
    if (l == 0) qt[r] = qr + alpha * (x - qr);
    __syncthreads();
    float p = 0.f;
#pragma unroll
    for (int j = 0; j < J; ++j) p = fmaf(Sr[j], qt[l + 4 * j], p);
    const float o = a.scale * quad(p);
    if (l == 0) {
      dstore(a.o, drow(a.o, b, t, h) + r, o);
      if (a.x.dt) dstore(a.x, drow(a.x, b, t, h) + r, x);
    }
    if (threadIdx.x == 0 && a.fro.dt) dstore(a.fro, drow(a.fro, b, t, h), f);
    if (a.res.dt) {
      if (l == 0) xb[0][r] = x;
      __syncthreads();
      float hx = 0.f;
#pragma unroll
      for (int j = 0; j < J; ++j) hx = fmaf(Hr[j], xb[0][l + 4 * j], hx);
      hx = quad(hx);
      const float rr = hx + lam * x - qr;
      const float num = bsum(l == 0 ? rr * rr : 0.f), den = bsum(l == 0 ? qr * qr : 0.f);
      if (threadIdx.x == 0) dstore(a.res, drow(a.res, b, t, h), sqrtf(num) / sqrtf(den));
    }
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < J; ++j) {
    const int c = l + 4 * j;
    if (a.fkk.dt) static_cast<float*>(a.fkk.p)[drow(a.fkk, sq.state, h, r) + c] = Hr[j];
    if (a.fkv.dt) static_cast<float*>(a.fkv.p)[drow(a.fkv, sq.state, h, c) + r] = Sr[j];
  }
}

void recurrent_forward(const Problem& p, const ForwardOutputs& out) {
  const char* fn = "gka::recurrent_forward (cuda)";
  supported_check(p, fn, false);
  std::vector<SeqInfo> table;
  for (const Sequence& s : p.seqs)
    table.push_back({s.start, s.length, 0, 0, static_cast<int32_t>(s.batch), static_cast<int32_t>(s.state)});
  const double rho = 1.0 / (1.0 + 2.0 * p.ridge_ratio);
  DecArgs a{dview(p.in.q), dview(p.in.k), dview(p.in.v), dview(p.in.alpha), dview(p.in.g), dview(p.in.gk),
            dview(out.o), dview(out.x), dview(out.fro), dview(out.residual), dview(p.in.initial_kk),
            dview(p.in.initial_kv), dview(out.final_kk), dview(out.final_kv), cheb_const(p), 0.25 * rho * rho,
            static_cast<float>(p.scale), static_cast<int>(p.H), nullptr, {}};
  for (size_t i = 0; i < table.size() && i < static_cast<size_t>(kInlineSeqs); ++i) a.seqs[i] = table[i];
  std::optional<Upload<SeqInfo>> up;
  if (table.size() > static_cast<size_t>(kInlineSeqs)) {
    up.emplace(fn, table, stream_of(p));
    a.seq_table = up->get();
  }
  const dim3 grid(static_cast<unsigned>(p.num_seqs()), static_cast<unsigned>(p.H));
  if (p.D == 64)
    decode_kernel<64><<<grid, 256, 0, stream_of(p)>>>(a);
  else
    decode_kernel<128><<<grid, 512, 0, stream_of(p)>>>(a);
  launch_check(fn);
}

}  // namespace gka::cuda
