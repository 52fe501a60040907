// Token-by-token forward (decode, spec §D) of the CUDA backend: one CTA of 2 D threads per (sequence, head). Two
// neighbour lanes own row r of H in registers, each the alternate 16-byte chunks of it, so a mat-vec is D/2 fp32
// FMAs per thread against the iterate broadcast from shared memory, one shuffle to add the halves, and one barrier
// per Chebyshev iteration (x double-buffered). Two threads per row rather than one: 64 registers of H instead of
// 128, twice the warps per scheduler, and 5 % off batched decode (measured).
// One shared buffer serves twice. First it stages H, a warp per row so that the global accesses are coalesced (a
// thread's own row straight from global memory makes each warp access span many rows: the H stores took 2.3x as
// long, measured), in rows padded by 32 bytes so that each thread then reads its chunks without bank conflicts; the
// final H goes out the same way when it is known before S needs the buffer (at most one token). Then it holds S
// (stored k-major, [D][Dv]): thread (g, c) = (t / (D/4), t % (D/4)) copies, updates, stores and reads out the
// 16-byte column chunk c of the rows of group g, so S needs no barrier of its own, and it arrives during the first
// solve. States are read completely before they are written (a thread stores only rows or chunks that the whole CTA
// has finished reading), so final_* may alias initial_* (pools are updated in place). The omega sequence comes
// precomputed from the host (no fp64 division on the chain). Where the time goes (B = 1, clock64 probes,
// docs/cuda_backend.md): ~450 cycles per iteration, and 2000-4000 cycles per 64 KB state transfer on one SM.
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

// Threads of a decode CTA: two per row of H.
template <int D>
inline constexpr int kDecThreads = 2 * D;

// Dynamic shared memory of a decode CTA, one buffer used twice. First it stages H: row i at float offset
// i (D + 8), so both the copy (a warp per row) and each thread's read of its chunks 2 c + half (rows 2 x 16 bytes
// off the bank pattern) are free of bank conflicts. Then it holds S: chunk j of thread t at float4 slot [j NT + t].
template <int D>
constexpr size_t dec_smem_bytes() {
  return static_cast<size_t>(D) * (D + 8) * sizeof(float);
}

template <int D>
__global__ void __launch_bounds__(kDecThreads<D>, 2) decode_kernel(const __grid_constant__ DecArgs a) {
  constexpr int NT = kDecThreads<D>, NC = D / 4, NW = NT / 32, LD = D + 8;  // LD: staged row stride
  constexpr int NG = NT / NC, RG = D / NG;  // S: row groups, rows per group
  extern __shared__ float4 s_buf[];
  float* const s_h = reinterpret_cast<float*>(s_buf);
  __shared__ __align__(16) float tok[3][D];  // k, q, v of the current token
  __shared__ __align__(16) float xb[2][D];   // iterate, double-buffered
  __shared__ __align__(16) float qt[D];
  __shared__ __align__(16) float part[NG][D];  // readout partials of the row groups of S
  __shared__ float red[NW];
  __shared__ float om_s[kInlineOmegas];
  const SeqInfo sq = blockIdx.x < kInlineSeqs ? a.seqs[blockIdx.x] : a.seq_table[blockIdx.x];
  if (threadIdx.x < kInlineOmegas) om_s[threadIdx.x] = a.omega[threadIdx.x];
  // Thread t: row r = t / 2 of H, the 16-byte chunks 2 c + half of it (the two halves are neighbour lanes);
  // S chunk column c4 of the rows of group g.
  const int t = threadIdx.x, h = blockIdx.y, r = t >> 1, half = t & 1, lane = t & 31;
  const int c4 = 4 * (t % NC), g = t / NC;
  const bool owner = half == 0;  // writes row r's results (both halves hold them, bitwise equal)
  const int64_t b = sq.batch, t_end = sq.start + sq.length;
  if (sq.state < 0) {  // pool padding: zero outputs, leave every state alone
    for (int64_t tt = sq.start; owner && tt < t_end; ++tt) {
      dstore(a.o, drow(a.o, b, tt, h) + r, 0.f);
      if (a.x.dt) dstore(a.x, drow(a.x, b, tt, h) + r, 0.f);
      if (r == 0) {
        if (a.fro.dt) dstore(a.fro, drow(a.fro, b, tt, h), 0.f);
        if (a.res.dt) dstore(a.res, drow(a.res, b, tt, h), 0.f);
      }
    }
    return;
  }
  // Column chunk of the thread's c-th register chunk, and chunk n of the staged H (row n / NC, column chunk
  // n % NC; thread t moves chunks t, t + NT, ...: a warp covers whole rows, so the global accesses coalesce).
  auto col = [&](int c) { return 4 * (2 * c + half); };
  auto staged = [&](int n) { return s_h + (n / NC) * LD + 4 * (n % NC); };
  float hr[D / 2];  // the thread's half of row r of H
  if (a.ikk.dt) {
    const float* base = static_cast<const float*>(a.ikk.p) + drow(a.ikk, sq.state, h, 0);
    const bool vk = vec_ok(a.ikk);
#pragma unroll 4
    for (int n = t; n < D * NC; n += NT) {
      const float* src = base + (n / NC) * a.ikk.s2 + 4 * (n % NC);
      if (vk)
        cp_async16(staged(n), src);
      else
        *reinterpret_cast<float4*>(staged(n)) = make_float4(src[0], src[1], src[2], src[3]);
    }
    cp_async_wait_all();
    __syncthreads();
#pragma unroll
    for (int c = 0; c < NC / 2; ++c) {
      const float4 u = *reinterpret_cast<const float4*>(s_h + r * LD + col(c));
      hr[4 * c] = u.x;
      hr[4 * c + 1] = u.y;
      hr[4 * c + 2] = u.z;
      hr[4 * c + 3] = u.w;
    }
    __syncthreads();  // the buffer is reused
  } else {
#pragma unroll
    for (int i = 0; i < D / 2; ++i) hr[i] = 0.f;
  }
  // The final H through the staging buffer (coalesced), or straight from the registers (16 rows per warp store)
  // once S occupies the buffer (several tokens).
  auto store_h = [&](bool staged_store) {
    if (!a.fkk.dt) return;
    const bool vk = vec_ok(a.fkk);
    const int64_t off = drow(a.fkk, sq.state, h, 0);  // row i at off + i s2
    if (staged_store) {
#pragma unroll
      for (int c = 0; c < NC / 2; ++c)
        *reinterpret_cast<float4*>(s_h + r * LD + col(c)) =
            make_float4(hr[4 * c], hr[4 * c + 1], hr[4 * c + 2], hr[4 * c + 3]);
      __syncthreads();
#pragma unroll 4
      for (int n = t; n < D * NC; n += NT)
        st4(a.fkk, off + (n / NC) * a.fkk.s2 + 4 * (n % NC), vk, *reinterpret_cast<const float4*>(staged(n)));
      __syncthreads();  // the buffer is reused
    } else {
#pragma unroll
      for (int c = 0; c < NC / 2; ++c)
        st4(a.fkk, off + r * a.fkk.s2 + col(c), vk,
            make_float4(hr[4 * c], hr[4 * c + 1], hr[4 * c + 2], hr[4 * c + 3]));
    }
  };
  // S row of this thread's chunk j (j < RG): group g's rows; its shared slot.
  auto srow = [&](int j) { return g * RG + j; };
  auto slot = [&](int j) -> float4& { return s_buf[j * NT + t]; };
  auto store_s = [&] {
    if (!a.fkv.dt) return;
    const bool vv = vec_ok(a.fkv);
#pragma unroll 4
    for (int j = 0; j < RG; ++j) st4(a.fkv, drow(a.fkv, sq.state, h, srow(j)) + c4, vv, slot(j));
  };
  auto bsum = [&](float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) red[t >> 5] = v;
    __syncthreads();
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < NW; ++w) s += red[w];
    __syncthreads();
    return s;
  };
  // Row r of H times a shared vector: eight accumulators per half (short FMA chains), summed in a fixed order,
  // then the two halves (a + b in one lane, b + a in the other: the same float).
  auto matvec = [&](const float* vec) {
    float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int c = 0; c < NC / 2; ++c) {
      const float4 u = *reinterpret_cast<const float4*>(vec + col(c));
      float* p = acc + 4 * (c & 1);
      p[0] = fmaf(hr[4 * c], u.x, p[0]);
      p[1] = fmaf(hr[4 * c + 1], u.y, p[1]);
      p[2] = fmaf(hr[4 * c + 2], u.z, p[2]);
      p[3] = fmaf(hr[4 * c + 3], u.w, p[3]);
    }
    const float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    return s + __shfl_xor_sync(0xffffffffu, s, 1);
  };
  // Token tt into tok, then H = e^gk H + k kᵀ.
  auto advance_h = [&](int64_t tt) {
    if (t < D) {
      tok[0][t] = dload(a.k, drow(a.k, b, tt, h) + t);
      tok[1][t] = dload(a.q, drow(a.q, b, tt, h) + t);
      tok[2][t] = dload(a.v, drow(a.v, b, tt, h) + t);
    }
    const float ak = expf(dscalar(a.gk, b, tt, h, 0.f));
    __syncthreads();
    const float kr = tok[0][r];
#pragma unroll
    for (int c = 0; c < NC / 2; ++c) {
      const float4 kc = *reinterpret_cast<const float4*>(&tok[0][col(c)]);
      hr[4 * c] = fmaf(ak, hr[4 * c], kr * kc.x);
      hr[4 * c + 1] = fmaf(ak, hr[4 * c + 1], kr * kc.y);
      hr[4 * c + 2] = fmaf(ak, hr[4 * c + 2], kr * kc.z);
      hr[4 * c + 3] = fmaf(ak, hr[4 * c + 3], kr * kc.w);
    }
  };
  // With at most one token the final H is known before S needs the buffer.
  if (sq.length >= 1) advance_h(sq.start);
  if (sq.length <= 1) store_h(true);
  if (a.ikv.dt) {  // S: the thread's own chunks (it alone reads and writes them), landing during the solve
    const bool vv = vec_ok(a.ikv);
#pragma unroll 4
    for (int j = 0; j < RG; ++j) {
      const int64_t off = drow(a.ikv, sq.state, h, srow(j)) + c4;
      if (vv)
        cp_async16(&slot(j), static_cast<const float*>(a.ikv.p) + off);
      else
        slot(j) = ld4(a.ikv, off, false);
    }
  } else {
    for (int j = 0; j < RG; ++j) slot(j) = float4{};
  }
  for (int64_t tt = sq.start; tt < t_end; ++tt) {
    const bool last = tt + 1 == t_end;
    if (tt > sq.start) advance_h(tt);
    if (last && sq.length > 1) store_h(false);
    const float qr = tok[1][r], av = expf(dscalar(a.g, b, tt, h, 0.f)), alpha = dscalar(a.alpha, b, tt, h, 1.f);
    float hh2 = 0.f;
#pragma unroll
    for (int i = 0; i < D / 2; ++i) hh2 = fmaf(hr[i], hr[i], hh2);
    const float f = sqrtf(bsum(hh2));
    const float lam = a.cc.r * f;
    float x = qr;
    if (a.cc.n > 0) {
      const float eta = f > 0.f ? a.cc.eta_f / f : 0.f, a0 = 1.f - eta * lam;  // H = 0: x = 0
      float xp = 0.f;
      x = eta * qr;
      if (owner) xb[0][r] = x;
      __syncthreads();
      auto step = [&](int it, float w) {
        const float hx = matvec(xb[it & 1]);
        const float xn = w * a0 * x + w * eta * (qr - hx) + (1.f - w) * xp;
        xp = x;
        x = xn;
        if (owner) xb[(it + 1) & 1][r] = x;
        __syncthreads();
      };
      // The omegas from shared memory, and past them the recurrence in fp64 in a loop of its own: the hot loop
      // has no branch and no indexed parameter load besides the mat-vec.
      const int n_inline = min(a.cc.n, kInlineOmegas);
      int it = 0;
      for (; it < n_inline; ++it) step(it, om_s[it]);
      for (double om = a.omega_tail; it < a.cc.n; ++it) {
        om = 1.0 / (1.0 - a.c * om);
        step(it, static_cast<float>(om));
      }
    }
    if (owner) qt[r] = qr + alpha * (x - qr);
    cp_async_wait_all();  // the thread's own S chunks (a no-op after the first token)
    __syncthreads();
    {  // S = e^g S + k vᵀ (stored k-major: row i scales by k_i) and the readout o = scale S'ᵀ q̃ on the
       // thread's chunks: a partial of four outputs per row group, the groups summed below
      const float4 v4 = *reinterpret_cast<const float4*>(&tok[2][c4]);
      float4 po = float4{};
#pragma unroll
      for (int j = 0; j < RG; ++j) {
        const float kj = tok[0][srow(j)], qj = qt[srow(j)];
        float4 sv = slot(j);
        sv.x = fmaf(av, sv.x, kj * v4.x);
        sv.y = fmaf(av, sv.y, kj * v4.y);
        sv.z = fmaf(av, sv.z, kj * v4.z);
        sv.w = fmaf(av, sv.w, kj * v4.w);
        slot(j) = sv;
        po.x = fmaf(sv.x, qj, po.x);
        po.y = fmaf(sv.y, qj, po.y);
        po.z = fmaf(sv.z, qj, po.z);
        po.w = fmaf(sv.w, qj, po.w);
      }
      *reinterpret_cast<float4*>(&part[g][c4]) = po;
    }
    if (last) store_s();
    __syncthreads();
    if (owner) {
      float o = 0.f;
#pragma unroll
      for (int gg = 0; gg < NG; ++gg) o += part[gg][r];
      dstore(a.o, drow(a.o, b, tt, h) + r, a.scale * o);
      if (a.x.dt) dstore(a.x, drow(a.x, b, tt, h) + r, x);
    }
    if (t == 0 && a.fro.dt) dstore(a.fro, drow(a.fro, b, tt, h), f);
    if (a.res.dt) {
      if (owner) xb[0][r] = x;
      __syncthreads();
      const float rr = matvec(xb[0]) + lam * x - qr;
      const float num = bsum(owner ? rr * rr : 0.f), den = bsum(owner ? qr * qr : 0.f);
      if (t == 0) dstore(a.res, drow(a.res, b, tt, h), sqrtf(num) / sqrtf(den));
    }
    __syncthreads();  // tok, xb and part are rewritten by the next token
  }
  if (sq.length == 0) {  // no token: the final S is the initial one
    cp_async_wait_all();
    store_s();
  }
}

template <int D>
void launch(dim3 grid, const DecArgs& a, cudaStream_t stream, const char* fn) {
  // Over 48 KB of dynamic shared memory needs opting in (per device: so on every call, a host-side setting).
  check(cudaFuncSetAttribute(decode_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(dec_smem_bytes<D>())),
        fn, "cudaFuncSetAttribute");
  decode_kernel<D><<<grid, kDecThreads<D>, dec_smem_bytes<D>(), stream>>>(a);
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
