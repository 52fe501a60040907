// The pieces of the decode kernel (decode.cu) with a job of their own, kept apart from its control flow (which
// state is where, when): the launch argument, the state buffer's layout, the CTA-wide sum, H held in registers as
// blocks (its update, norm and mat-vec) and the Chebyshev solve.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>

#include "cuda/bulk_copy.cuh"
#include "cuda/common.cuh"

namespace gka::cuda {

inline constexpr int kInlineSeqs = 128;
inline constexpr int kInlineOmegas = 64;
inline constexpr int kLateS = 4;  // iterations of the first solve before S's load, where the final H drains first

// Everything a decode launch needs travels in the kernel parameter (no uploads, no allocations): a call is
// one launch. Sequences beyond kInlineSeqs come from a device table; iterations beyond kInlineOmegas
// continue the omega recurrence on the device in fp64 from omega_tail, exactly as the host plan does.
struct DecArgs {
  CUtensorMap tmap[4];  // initial_kk, initial_kv, final_kk, final_kv (state_tmap), where tmap_ok
  int32_t tmap_ok[4];
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

__device__ __forceinline__ SeqInfo dec_seq(const DecArgs& a, int s) {
  return s < kInlineSeqs ? a.seqs[s] : a.seq_table[s];
}

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

// Threads of a decode CTA: 2 D (16 rows of H per warp in the block layout below).
template <int D>
inline constexpr int kDecThreads = 2 * D;

// Dynamic shared memory of a decode CTA: one state in the 128-byte swizzled layout of bulk_copy.cuh (D/32 boxes of
// D rows x 128 bytes), 1024-byte aligned by hand (hence the extra KB).
template <int D>
constexpr size_t dec_smem_bytes() {
  return static_cast<size_t>(D) * D * sizeof(float) + 1024;
}

// 16-byte chunk j of row i of the state in the buffer.
template <int D>
__device__ __forceinline__ float4& dec_chunk(char* buf, int i, int j) {
  return *reinterpret_cast<float4*>(buf + (j >> 3) * (D * 128) + swizzle128(i, j & 7));
}

// Sum over the CTA (NW warps; red holds NW floats); two barriers.
template <int NW>
__device__ __forceinline__ float dec_block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float s = 0.f;
#pragma unroll
  for (int w = 0; w < NW; ++w) s += red[w];
  __syncthreads();
  return s;
}

// H in registers as blocks: a warp holds 16 rows, each group of 8 lanes 4 of them (rows r0 .. r0 + 3), lane j of
// the group the 16-byte chunks j, j + 8, ... of those rows (D / 8 columns). Each x chunk a lane loads then serves
// four rows: a mat-vec moves D^2 / 4 floats of x out of shared memory instead of D^2 (at one row per lane pair that
// delivery was a quarter of an iteration, measured), for two more shuffle levels in the row sums. After the sums
// lane j holds row r = r0 + 2 ((j >> 2) & 1) + ((j >> 1) & 1), as does lane j ^ 1. Register chunk c = i MC + m: row
// r0 + i, 16-byte chunk j + 8 m. A group's 8 lanes touch one 128-byte row of a swizzled box at a time: no bank
// conflicts.
template <int D>
struct HBlock {
  static constexpr int NC = D / 4, MC = NC / 8;  // 16-byte chunks per row, per row of the block
  float v[D / 2];
  int jl, r0, r;

  __device__ __forceinline__ HBlock() {
    const int t = threadIdx.x, lane = t & 31;
    jl = lane & 7;
    r0 = 16 * (t >> 5) + 4 * (lane >> 3);
    r = r0 + 2 * ((jl >> 2) & 1) + ((jl >> 1) & 1);
  }
  __device__ __forceinline__ int row(int c) const { return r0 + c / MC; }
  __device__ __forceinline__ int chk(int c) const { return jl + 8 * (c % MC); }
  __device__ __forceinline__ bool owner() const { return (jl & 1) == 0; }  // writes row r's results

  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < D / 2; ++i) v[i] = 0.f;
  }
  __device__ __forceinline__ void from_buf(char* buf) {
#pragma unroll
    for (int c = 0; c < NC / 2; ++c) {
      const float4 u = dec_chunk<D>(buf, row(c), chk(c));
      v[4 * c] = u.x;
      v[4 * c + 1] = u.y;
      v[4 * c + 2] = u.z;
      v[4 * c + 3] = u.w;
    }
  }
  __device__ __forceinline__ void to_buf(char* buf) const {
#pragma unroll
    for (int c = 0; c < NC / 2; ++c)
      dec_chunk<D>(buf, row(c), chk(c)) = make_float4(v[4 * c], v[4 * c + 1], v[4 * c + 2], v[4 * c + 3]);
  }
  // Straight to a state view (4 rows x 128 bytes per warp store); row i of the state at off + i s2.
  __device__ __forceinline__ void store(const DView& s, int64_t off) const {
    const bool vec = vec_ok(s);
#pragma unroll
    for (int c = 0; c < NC / 2; ++c)
      st4(s, off + row(c) * s.s2 + 4 * chk(c), vec, make_float4(v[4 * c], v[4 * c + 1], v[4 * c + 2], v[4 * c + 3]));
  }
  // H = e^gk H + k kᵀ (k in shared memory).
  __device__ __forceinline__ void update(const float* k, float ak) {
#pragma unroll
    for (int c = 0; c < NC / 2; ++c) {
      const float kr = k[row(c)];
      const float4 kc = *reinterpret_cast<const float4*>(k + 4 * chk(c));
      v[4 * c] = fmaf(ak, v[4 * c], kr * kc.x);
      v[4 * c + 1] = fmaf(ak, v[4 * c + 1], kr * kc.y);
      v[4 * c + 2] = fmaf(ak, v[4 * c + 2], kr * kc.z);
      v[4 * c + 3] = fmaf(ak, v[4 * c + 3], kr * kc.w);
    }
  }
  __device__ __forceinline__ float sumsq() const {
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < D / 2; ++i) s = fmaf(v[i], v[i], s);
    return s;
  }
  // Row r of H times a vector in shared memory. Each lane forms its four rows' partial sums (two accumulators per
  // row), then the group's 8 lanes reduce them: at xor 4 each lane keeps two rows and sends two, at xor 2 one and
  // one, at xor 1 the pair j, j ^ 1 adds its two halves (a + b in one lane, b + a in the other: the same float).
  __device__ __forceinline__ float matvec(const float* vec) const {
    float4 u[MC];
#pragma unroll
    for (int m = 0; m < MC; ++m) u[m] = *reinterpret_cast<const float4*>(vec + 4 * (jl + 8 * m));
    float s4[4];
#pragma unroll
    for (int rho = 0; rho < 4; ++rho) {
      float e0 = 0.f, e1 = 0.f;
#pragma unroll
      for (int m = 0; m < MC; ++m) {
        const float* hc = v + 4 * (rho * MC + m);
        e0 = fmaf(hc[0], u[m].x, e0);
        e1 = fmaf(hc[1], u[m].y, e1);
        e0 = fmaf(hc[2], u[m].z, e0);
        e1 = fmaf(hc[3], u[m].w, e1);
      }
      s4[rho] = e0 + e1;
    }
    const bool hi4 = jl & 4, hi2 = jl & 2;
    float k0 = hi4 ? s4[2] : s4[0], k1 = hi4 ? s4[3] : s4[1];
    k0 += __shfl_xor_sync(0xffffffffu, hi4 ? s4[0] : s4[2], 4);
    k1 += __shfl_xor_sync(0xffffffffu, hi4 ? s4[1] : s4[3], 4);
    const float s = (hi2 ? k1 : k0) + __shfl_xor_sync(0xffffffffu, hi2 ? k0 : k1, 2);
    return s + __shfl_xor_sync(0xffffffffu, s, 1);
  }
};

// The Chebyshev solve of spec §A.3 for row r (every thread of the CTA calls it; x double-buffered in xb, one barrier
// per iteration): x_0 = eta q, then x' = omega (a0 x + eta (q - H x)) + (1 - omega) x_prev. With late > 0, `at()`
// runs once, after the first min(late, N) iterations (the caller issues a copy there). Returns x_N (q when N = 0).
template <int D, typename At>
__device__ __forceinline__ float dec_solve(const DecArgs& a, const HBlock<D>& hb, const float* om_s, float (*xb)[D],
                                           float qr, float f, float lam, int late, At at) {
  if (a.cc.n <= 0) return qr;
  const float eta = f > 0.f ? a.cc.eta_f / f : 0.f, a0 = 1.f - eta * lam;  // H = 0: x = 0
  float xp = 0.f, x = eta * qr;
  if (hb.owner()) xb[0][hb.r] = x;
  __syncthreads();
  auto step = [&](int it, float w) {
    const float hx = hb.matvec(xb[it & 1]);
    const float xn = w * a0 * x + w * eta * (qr - hx) + (1.f - w) * xp;
    xp = x;
    x = xn;
    if (hb.owner()) xb[(it + 1) & 1][hb.r] = x;
    __syncthreads();
  };
  // The omegas from shared memory, and past them the recurrence in fp64 in a loop of its own: the hot loop has no
  // branch and no indexed parameter load besides the mat-vec.
  const int n_inline = min(a.cc.n, kInlineOmegas);
  int it = 0;
  if (late > 0) {
    for (; it < min(late, n_inline); ++it) step(it, om_s[it]);
    at();
  }
  for (; it < n_inline; ++it) step(it, om_s[it]);
  for (double om = a.omega_tail; it < a.cc.n; ++it) {
    om = 1.0 / (1.0 - a.c * om);
    step(it, static_cast<float>(om));
  }
  return x;
}

}  // namespace gka::cuda
