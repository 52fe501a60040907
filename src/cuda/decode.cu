// Token-by-token forward (decode, spec §D) of the CUDA backend: one CTA of D/8 warps per (sequence, head).
// Warp w owns rows 8 w .. 8 w + 7 of H (and of Sᵀ); lane (ri, ci) = (lane / 16, lane % 16) holds rows
// 8 w + 4 ri + i (i < 4) at the columns c = 64 h + 4 ci + e (h < D/64, e < 4) in registers: 16-byte global
// loads and stores of the states, and per mat-vec only D/64 16-byte shared loads of x per lane
// (conflict-free). The four row partials are reduce-scattered over the 16 lanes of a half-warp (xor 8, 4)
// and all-reduced over the last four (xor 2, 1), so lane ci ends with the whole dot product of row
// 8 w + 4 ri + 2 b3 + b2 (b3, b2: bits 3 and 2 of ci), bitwise the same in the four lanes that share it;
// those lanes update that row of x redundantly, one of them publishes it. One barrier per iteration
// (x is double-buffered in shared memory). The iteration is a chain of latencies: the omega sequence
// comes precomputed from the host (no fp64 division on the chain). S is not needed before the readout: it
// lives in shared memory (each lane's tile in its own 16-byte slots, filled by cp.async that overlaps the
// first solve), which keeps the kernel at <= 64 registers so that two CTAs share an SM (batched decode:
// one CTA's loads and stores overlap the other's iterations). States are read completely before they are
// written, so final_* may alias initial_* (state pools are updated in place by slot).
#include <optional>

#include "backends.h"
#include "cuda/common.cuh"

namespace gka::cuda {

inline constexpr int kInlineSeqs = 128;
inline constexpr int kInlineOmegas = 64;

// Everything a decode launch needs travels in the kernel parameter (no uploads, no allocations): a call is
// one launch. Sequences beyond kInlineSeqs come from a device table; iterations beyond kInlineOmegas
// continue the omega recurrence on the device in fp64 from omega_tail, exactly as the host plan does.
struct DecArgs {
  DView q, k, v, alpha, g, gk, o, x, fro, res;
  DView ikk, ikv, fkk, fkv;
  ChebConst cc;
  double c;           // rho^2 / 4 of the omega recurrence (spec §A.3)
  double omega_tail;  // omega_{kInlineOmegas} in fp64 (when cc.n > kInlineOmegas)
  float scale;
  int H;
  const SeqInfo* seq_table;
  float omega[kInlineOmegas];
  SeqInfo seqs[kInlineSeqs];
};

// A lane's tile of H: rows i < 4, column groups h < D/64, four columns e each.
template <int D>
using DecTile = float[4][D / 64][4];

// Four consecutive fp32 of a state view (16-byte access when the view allows it).
__device__ __forceinline__ float4 ld4(const DView& v, int64_t off, bool vec) {
  const float* p = static_cast<const float*>(v.p) + off;
  if (vec) return *reinterpret_cast<const float4*>(p);
  return make_float4(p[0], p[1], p[2], p[3]);
}
__device__ __forceinline__ void st4(const DView& v, int64_t off, bool vec, float4 x) {
  float* p = static_cast<float*>(v.p) + off;
  if (vec) {
    *reinterpret_cast<float4*>(p) = x;
  } else {
    p[0] = x.x;
    p[1] = x.y;
    p[2] = x.z;
    p[3] = x.w;
  }
}
__device__ __forceinline__ bool vec_ok(const DView& v) {
  return ((reinterpret_cast<uintptr_t>(v.p) | static_cast<uintptr_t>((v.s0 | v.s1 | v.s2) * 4)) & 15) == 0;
}

// Dynamic shared memory of a decode CTA: the lane tiles of S, float4 slot j of thread t at [j NT + t].
template <int D>
constexpr size_t dec_smem_bytes() {
  return static_cast<size_t>(D) * D * sizeof(float);
}

template <int D>
__global__ void __launch_bounds__(4 * D, 2) decode_kernel(const __grid_constant__ DecArgs a) {
  constexpr int NH = D / 64, NT = 4 * D;
  extern __shared__ float4 s_tile[];
  __shared__ __align__(16) float kq[3][D];  // k, q, v of the current token
  __shared__ __align__(16) float xb[2][D];  // iterate, double-buffered
  __shared__ __align__(16) float qt[D];
  __shared__ float red[NT / 32];
  const SeqInfo sq = blockIdx.x < kInlineSeqs ? a.seqs[blockIdx.x] : a.seq_table[blockIdx.x];
  const int h = blockIdx.y, lane = threadIdx.x & 31, ci = lane & 15;
  const int row0 = 8 * (threadIdx.x >> 5) + 4 * (lane >> 4);            // the lane's rows row0 .. row0 + 3
  const int sel = 2 * ((ci >> 3) & 1) + ((ci >> 2) & 1), R = row0 + sel;  // the row whose sum the lane gets
  const bool writer = (ci & 3) == 0;
  const int64_t b = sq.batch;
  if (sq.state < 0) {  // pool padding: zero outputs, leave every state alone
    for (int64_t t = sq.start; t < sq.start + sq.length; ++t) {
      if (writer) {
        dstore(a.o, drow(a.o, b, t, h) + R, 0.f);
        if (a.x.dt) dstore(a.x, drow(a.x, b, t, h) + R, 0.f);
      }
      if (threadIdx.x == 0) {
        if (a.fro.dt) dstore(a.fro, drow(a.fro, b, t, h), 0.f);
        if (a.res.dt) dstore(a.res, drow(a.res, b, t, h), 0.f);
      }
    }
    return;
  }
  auto col = [&](int hh) { return 64 * hh + 4 * ci; };
  // Hr[i][hh][e] = H[row0 + i][c]; S slot j = 4 hh + e holds S[c][row0 .. row0 + 3]; c = col(hh) + e.
  DecTile<D> Hr;
  float4* Sl = s_tile + threadIdx.x;  // this lane's S slots, stride NT
  {
    const bool vk = vec_ok(a.ikk), vv = vec_ok(a.ikv);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int hh = 0; hh < NH; ++hh) {
        const float4 u = a.ikk.dt ? ld4(a.ikk, drow(a.ikk, sq.state, h, row0 + i) + col(hh), vk) : float4{};
        Hr[i][hh][0] = u.x;
        Hr[i][hh][1] = u.y;
        Hr[i][hh][2] = u.z;
        Hr[i][hh][3] = u.w;
      }
#pragma unroll
    for (int hh = 0; hh < NH; ++hh)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t off = drow(a.ikv, sq.state, h, col(hh) + e) + row0;
        if (!a.ikv.dt)
          Sl[(4 * hh + e) * NT] = float4{};
        else if (vv)
          cp_async16(&Sl[(4 * hh + e) * NT], static_cast<const float*>(a.ikv.p) + off);
        else
          Sl[(4 * hh + e) * NT] = ld4(a.ikv, off, false);
      }
  }
  auto bsum = [&](float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < NT / 32; ++w) s += red[w];
    __syncthreads();
    return s;
  };
  // The whole sum of row R from the lane's four row partials: reduce-scatter (xor 8, 4) and all-reduce
  // (xor 2, 1) as described above.
  auto row_sum = [&](const float (&p)[4]) {
    const bool b3 = ci & 8, b2 = ci & 4;
    const float k0 = (b3 ? p[2] : p[0]) + __shfl_xor_sync(0xffffffffu, b3 ? p[0] : p[2], 8);
    const float k1 = (b3 ? p[3] : p[1]) + __shfl_xor_sync(0xffffffffu, b3 ? p[1] : p[3], 8);
    float s = (b2 ? k1 : k0) + __shfl_xor_sync(0xffffffffu, b2 ? k0 : k1, 4);
    s += __shfl_xor_sync(0xffffffffu, s, 2);
    s += __shfl_xor_sync(0xffffffffu, s, 1);
    return s;
  };
  // Row R of H times a shared vector (per-row partials over the lane's columns in a fixed order).
  auto matvec = [&](const float* vec) {
    float p[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int hh = 0; hh < NH; ++hh) {
      const float4 u = *reinterpret_cast<const float4*>(vec + col(hh));
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        p[i] = fmaf(Hr[i][hh][0], u.x, p[i]);
        p[i] = fmaf(Hr[i][hh][1], u.y, p[i]);
        p[i] = fmaf(Hr[i][hh][2], u.z, p[i]);
        p[i] = fmaf(Hr[i][hh][3], u.w, p[i]);
      }
    }
    return row_sum(p);
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
    {  // H = e^gk H + k kᵀ
      const float4 r4 = *reinterpret_cast<const float4*>(&kq[0][row0]);
      const float rs[4] = {r4.x, r4.y, r4.z, r4.w};
#pragma unroll
      for (int hh = 0; hh < NH; ++hh) {
        const float4 kc = *reinterpret_cast<const float4*>(&kq[0][col(hh)]);
        const float kcs[4] = {kc.x, kc.y, kc.z, kc.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int e = 0; e < 4; ++e) Hr[i][hh][e] = fmaf(ak, Hr[i][hh][e], rs[i] * kcs[e]);
      }
    }
    float hh2 = 0.f;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int hh = 0; hh < NH; ++hh)
#pragma unroll
        for (int e = 0; e < 4; ++e) hh2 = fmaf(Hr[i][hh][e], Hr[i][hh][e], hh2);
    const float f = sqrtf(bsum(hh2));
    const float lam = a.cc.r * f, qr = kq[1][R];
    float x = qr;
    if (a.cc.n > 0) {
      const float eta = f > 0.f ? a.cc.eta_f / f : 0.f, a0 = 1.f - eta * lam;  // H = 0: x = 0
      float xp = 0.f;
      double om = a.omega_tail;
      // omega of iteration it + 1 is fetched during iteration it: an indexed parameter load after the
      // reductions would sit on the chain (seen in the SASS).
      auto omega_at = [&](int it) {
        if (it < kInlineOmegas) return a.omega[it];
        om = 1.0 / (1.0 - a.c * om);
        return static_cast<float>(om);
      };
      float w_next = omega_at(0);
      x = eta * qr;
      if (writer) xb[0][R] = x;
      __syncthreads();
      for (int it = 0; it < a.cc.n; ++it) {
        const float w = w_next;
        if (it + 1 < a.cc.n) w_next = omega_at(it + 1);
        const float hx = matvec(xb[it & 1]);
        const float xn = w * a0 * x + w * eta * (qr - hx) + (1.f - w) * xp;
        xp = x;
        x = xn;
        if (writer) xb[(it + 1) & 1][R] = x;
        __syncthreads();
      }
    }
    if (writer) qt[R] = qr + alpha * (x - qr);
    cp_async_wait_all();  // the lane's own S slots (a no-op after the first token)
    __syncthreads();
    float po[4] = {0.f, 0.f, 0.f, 0.f};  // S = e^g S + k vᵀ and the readout partials, one slot at a time
    {
      const float4 v4 = *reinterpret_cast<const float4*>(&kq[2][row0]);
#pragma unroll
      for (int hh = 0; hh < NH; ++hh) {
        const float4 kc = *reinterpret_cast<const float4*>(&kq[0][col(hh)]);
        const float4 q4 = *reinterpret_cast<const float4*>(&qt[col(hh)]);
        const float kcs[4] = {kc.x, kc.y, kc.z, kc.w}, qs[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float4 sv = Sl[(4 * hh + e) * NT];
          sv.x = fmaf(av, sv.x, v4.x * kcs[e]);
          sv.y = fmaf(av, sv.y, v4.y * kcs[e]);
          sv.z = fmaf(av, sv.z, v4.z * kcs[e]);
          sv.w = fmaf(av, sv.w, v4.w * kcs[e]);
          Sl[(4 * hh + e) * NT] = sv;
          po[0] = fmaf(sv.x, qs[e], po[0]);
          po[1] = fmaf(sv.y, qs[e], po[1]);
          po[2] = fmaf(sv.z, qs[e], po[2]);
          po[3] = fmaf(sv.w, qs[e], po[3]);
        }
      }
    }
    const float o = a.scale * row_sum(po);
    if (writer) {
      dstore(a.o, drow(a.o, b, t, h) + R, o);
      if (a.x.dt) dstore(a.x, drow(a.x, b, t, h) + R, x);
    }
    if (threadIdx.x == 0 && a.fro.dt) dstore(a.fro, drow(a.fro, b, t, h), f);
    if (a.res.dt) {
      if (writer) xb[0][R] = x;
      __syncthreads();
      const float hx = matvec(xb[0]);
      const float rr = hx + lam * x - qr;
      const float num = bsum(writer ? rr * rr : 0.f), den = bsum(writer ? qr * qr : 0.f);
      if (threadIdx.x == 0) dstore(a.res, drow(a.res, b, t, h), sqrtf(num) / sqrtf(den));
    }
    __syncthreads();
  }
  const bool vk = vec_ok(a.fkk), vv = vec_ok(a.fkv);
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int hh = 0; hh < NH; ++hh)
      if (a.fkk.dt)
        st4(a.fkk, drow(a.fkk, sq.state, h, row0 + i) + col(hh), vk,
            make_float4(Hr[i][hh][0], Hr[i][hh][1], Hr[i][hh][2], Hr[i][hh][3]));
  cp_async_wait_all();  // T = 0: the copies may still be in flight
#pragma unroll
  for (int hh = 0; hh < NH; ++hh)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (a.fkv.dt) st4(a.fkv, drow(a.fkv, sq.state, h, col(hh) + e) + row0, vv, Sl[(4 * hh + e) * NT]);
}

template <int D>
void launch(dim3 grid, const DecArgs& a, cudaStream_t stream, const char* fn) {
  // Over 48 KB of dynamic shared memory needs opting in (per device: so on every call, a host-side setting).
  check(cudaFuncSetAttribute(decode_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(dec_smem_bytes<D>())),
        fn, "cudaFuncSetAttribute");
  decode_kernel<D><<<grid, 4 * D, dec_smem_bytes<D>(), stream>>>(a);
}

void recurrent_forward(const Problem& p, const ForwardOutputs& out) {
  const char* fn = "gka::recurrent_forward (cuda)";
  supported_check(p, fn, false);
  std::vector<SeqInfo> table;
  for (const Sequence& s : p.seqs)
    table.push_back({s.start, s.length, 0, 0, static_cast<int32_t>(s.batch), static_cast<int32_t>(s.state)});
  const ChebyshevPlan plan = chebyshev_plan(p.ridge_ratio, p.num_iter);
  DecArgs a{dview(p.in.q), dview(p.in.k), dview(p.in.v), dview(p.in.alpha), dview(p.in.g), dview(p.in.gk),
            dview(out.o), dview(out.x), dview(out.fro), dview(out.residual), dview(p.in.initial_kk),
            dview(p.in.initial_kv), dview(out.final_kk), dview(out.final_kv), cheb_const(p), plan.c, 0.0,
            static_cast<float>(p.scale), static_cast<int>(p.H), nullptr, {}, {}};
  for (size_t i = 0; i < plan.omega.size() && i < static_cast<size_t>(kInlineOmegas); ++i)
    a.omega[i] = static_cast<float>(plan.omega[i]);
  if (plan.omega.size() > static_cast<size_t>(kInlineOmegas)) a.omega_tail = plan.omega[kInlineOmegas - 1];
  for (size_t i = 0; i < table.size() && i < static_cast<size_t>(kInlineSeqs); ++i) a.seqs[i] = table[i];
  std::optional<Upload<SeqInfo>> up;
  if (table.size() > static_cast<size_t>(kInlineSeqs)) {
    up.emplace(fn, table, stream_of(p));
    a.seq_table = up->get();
  }
  const dim3 grid(static_cast<unsigned>(p.num_seqs()), static_cast<unsigned>(p.H));
  if (p.D == 64)
    launch<64>(grid, a, stream_of(p), fn);
  else
    launch<128>(grid, a, stream_of(p), fn);
  launch_check(fn);
}

}  // namespace gka::cuda
