// Pieces of fwd_wg.cuh's kernel: its arguments and shared-memory layout, f16 words and pairs, the loads of its 16-bit
// rows and fp32 states into swizzled tiles, the states' scales.
#pragma once

#include "cuda/chunk_states.h"
#include "cuda/chunk_tile.cuh"
#include "cuda/redo_list.cuh"
#include "cuda/wgmma.cuh"

namespace gka::cuda {

struct WgFwdArgs {
  DView q, k, v, alpha, g, gk, o, x, fro;  // fro optional; x: fwd_wg_kernel's output, out_wg_kernel's input
  const float *Hs, *Ss, *omega;            // chunk-start states (fp32, per slot and head), N omegas
  int* ok;                                 // out, per (item, head): 1 where this kernel did the chunk
  int64_t* redo;                           // out: the chunks given up (give_up)
  ChebConst cc;
  float scale;
  int H, lead;
  // The backward (adj_wg_kernel; x and fro are the forward's, saved): dq~ and dalpha from d_o, the adjoint solve, and
  // step_b's scratch for step_b2 per (item, head) id: x, dq~ and u as C x D rows at + C D id, q~ at + D² id, the
  // norms and q~ . dq~ in scal (+ 3 C id, at 0 and 2 C).
  DView d_o, dalpha;
  float *adj_x = nullptr, *adj_dqt = nullptr, *adj_u = nullptr, *adj_qt = nullptr, *adj_scal = nullptr;
  const float2* stat = nullptr;  // the states' (max |x|, Σ x²) partials (StateBufs::stat), required
};

// Whether a view's rows can be read in pieces of `bytes` (last dim contiguous, base and strides aligned).
inline bool wg_rows_aligned(const TensorView& v, int64_t bytes) {
  const int64_t esz = v.dtype == DType::f32 ? 4 : 2;
  int64_t a = static_cast<int64_t>(reinterpret_cast<uintptr_t>(v.data));
  for (int d = 0; d + 1 < v.ndim; ++d) a |= v.strides[d] * esz;
  return v.strides[v.ndim - 1] == 1 && a % bytes == 0;
}
inline bool wg_16bit(const TensorView& v) { return v.dtype == DType::bf16 || v.dtype == DType::f16; }

template <int D>
struct WgFwdSmem {
  static constexpr int C = kChunkMax;
  // f16 tiles, 128-byte swizzled: H̄ hi, H̄ lo (after the accurate iteration x_lead's words), K; the right-hand side
  // eta sx q in fp32 (RH, its second half RL), thread-major; P ⊙ P's pairs for the norms (over the right-hand side
  // where they fit); then G, w and a reduction buffer. adj_wg_kernel: S̄'s tiles and V first (dq~'s fp32 rows over
  // S̄'s after its products), the decay mask's words over RL before the right-hand side.
  static constexpr uint32_t HI = 0, LO = D * D * 2, K = 2 * D * D * 2, RH = K + C * D * 2, RL = RH + C * D * 2;
  static constexpr uint32_t END = RL + C * D * 2;
  static constexpr uint32_t P2 = 2 * C * D * 2 >= 2 * C * C * 2 ? RH : END;
  static constexpr uint32_t E2 = P2 == RH ? END : END + 2 * C * C * 2;
  static constexpr uint32_t SMALL = E2;
  static constexpr uint32_t kBytes = SMALL + (2 * C + 16) * 4;
};

__device__ __forceinline__ uint32_t wg_hmul2(uint32_t a, uint32_t b) {
  return word_of(__hmul2(half2_of(a), half2_of(b)));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
// A 16-bit input element (dt 2 bf16, 3 f16) from its bits.
__device__ __forceinline__ float wg_in16(uint16_t b, int dt) {
  const float bf = __uint_as_float(static_cast<uint32_t>(b) << 16), hf = __half2float(__ushort_as_half(b));
  return dt == 2 ? bf : hf;  // both computed: a select, no branch
}
// The largest element of v over the CTA's 128 threads (red: 4 floats; every thread calls, two barriers).
__device__ __forceinline__ float wg_block_max(float v, float* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  return fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3]));
}

// This thread's 16-byte pieces of rows [t0, t0 + n) of head h of a 16-bit [B, T, H, D] view with 16-byte aligned rows
// (fwd_wg_usable; rows >= n zero); returns their largest |element|.
template <int D>
struct WgRows {
  static constexpr int PER = kChunkMax * D / 8 / 128;
  uint4 r[PER];
  __device__ float load(const DView& v, const ChunkPos& c) {
#pragma unroll
    for (int p = 0; p < PER; ++p) {
      const int idx = threadIdx.x + 128 * p, row = idx / (D / 8), c8 = (idx % (D / 8)) * 8;
      const uint16_t* src = static_cast<const uint16_t*>(v.p) + drow(v, c.it.batch, c.it.t0 + row, c.h) + c8;
      r[p] = row < c.n ? __ldg(reinterpret_cast<const uint4*>(src)) : make_uint4(0u, 0u, 0u, 0u);
    }
    // |bf16| and |f16| order like their bits without the sign: the largest by packed 16-bit integer maxima.
    uint32_t mb = 0u;
#pragma unroll
    for (int p = 0; p < PER; ++p)
      mb = __vmaxu2(__vmaxu2(mb, r[p].x & 0x7fff7fffu),
                    __vmaxu2(r[p].y & 0x7fff7fffu, __vmaxu2(r[p].z & 0x7fff7fffu, r[p].w & 0x7fff7fffu)));
    return fmaxf(wg_in16(static_cast<uint16_t>(mb & 0xffffu), v.dt), wg_in16(static_cast<uint16_t>(mb >> 16), v.dt));
  }
  // The pieces times `scale` as f16 into a C x D swizzled tile.
  __device__ void tile(char* t, int dt, float scale) const {
#pragma unroll
    for (int p = 0; p < PER; ++p) {
      const int idx = threadIdx.x + 128 * p, row = idx / (D / 8), c8 = (idx % (D / 8)) * 8;
      const uint16_t* e = reinterpret_cast<const uint16_t*>(&r[p]);
      uint32_t w[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) w[u] = f16_word(wg_in16(e[2 * u], dt) * scale, wg_in16(e[2 * u + 1], dt) * scale);
      *reinterpret_cast<uint4*>(t + sw128_bf16(kChunkMax, row, c8)) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
};

// The chunk-start state `which` (0: H̄, 1: S̄) of chunk c: returns its D x D tile, and its largest |element| and
// squared Frobenius norm from the states kernel's partials (chunk_states.h), the same in every lane (xor butterflies:
// a + b and b + a agree); the state itself is read once, for its tiles.
template <int D>
__device__ __forceinline__ const float* wg_state(const WgFwdArgs& a, const ChunkPos& c, int which, float& mx,
                                                 float& ss) {
  static_assert(kStateParts == 32, "one partial per lane");
  const float* state = (which ? a.Ss : a.Hs) + c.tile * D * D;
  const float2 p = a.stat[state_stat_index(c.tile, which) + (threadIdx.x & 31)];
  mx = p.x;
  ss = p.y;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    ss += __shfl_xor_sync(0xffffffffu, ss, o);
  }
  return state;
}
// The state times `scale` as f16 hi and lo swizzled tiles (rows: the state's rows; the adjoint reads them MN-major).
template <int D>
__device__ __forceinline__ void wg_state_tiles(char* hi, char* lo, const float* S, float scale) {
  constexpr int PER = D * D / 4 / 128;
#pragma unroll 1
  for (int p0 = 0; p0 < PER; p0 += 8) {
    float4 v[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) v[u] = __ldg(reinterpret_cast<const float4*>(S) + threadIdx.x + 128 * (p0 + u));
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const int i = 4 * (threadIdx.x + 128 * (p0 + u)), r = i / D, cc = i % D;
      uint32_t h0, l0, h1, l1;
      f16_pair(v[u].x * scale, v[u].y * scale, h0, l0);
      f16_pair(v[u].z * scale, v[u].w * scale, h1, l1);
      const uint32_t off = sw128_bf16(D, r, cc);
      *reinterpret_cast<uint2*>(hi + off) = make_uint2(h0, h1);
      *reinterpret_cast<uint2*>(lo + off) = make_uint2(l0, l1);
    }
  }
}

// The element pairs at p0 + 8 j (row r0) and p1 + 8 j (row r1) of a 16-bit view (dt; pairs 4-byte aligned:
// fwd_wg_usable) into q[j][0, 1] and q[j][2, 3]; rows not `in` give 0.
template <int NB>
__device__ __forceinline__ void wg_load_pairs(float (&q)[NB][4], const uint16_t* p0, const uint16_t* p1, int dt,
                                              bool in0, bool in1) {
#pragma unroll
  for (int j = 0; j < NB; ++j)
#pragma unroll
    for (int rw = 0; rw < 2; ++rw) {
      const uint32_t w = (rw ? in1 : in0) ? *reinterpret_cast<const uint32_t*>((rw ? p1 : p0) + 8 * j) : 0u;
      q[j][2 * rw] = wg_in16(static_cast<uint16_t>(w & 0xffffu), dt);
      q[j][2 * rw + 1] = wg_in16(static_cast<uint16_t>(w >> 16), dt);
    }
}
// (v0, v1) as a bf16 (bf) or f16 pair at p (both packed: a select, no branch).
__device__ __forceinline__ void wg_store16(uint16_t* p, float v0, float v1, bool bf) {
  const uint32_t wb = bf16_word(v0, v1), wh = f16_word(v0, v1);
  *reinterpret_cast<uint32_t*>(p) = bf ? wb : wh;
}

// Chunk-local inclusive sums of a [B, T, H] gate into G (fixed order, as gate_build; 0 where absent). Returns, to every
// thread, whether a log-gate is positive or not finite (then mask entries above 1 can leave f16's range).
__device__ __forceinline__ bool wg_gate_sums(float* G, const DView& gate, const ChunkPos& c) {
  float g = 0.f;
  if (threadIdx.x < kChunkMax && static_cast<int>(threadIdx.x) < c.n)
    g = dscalar(gate, c.it.batch, c.it.t0 + threadIdx.x, c.h, 0.f);
  if (threadIdx.x < kChunkMax) G[threadIdx.x] = g;
  const bool bad = __syncthreads_or(!(g <= 0.f));
  if (threadIdx.x == 0) {
    float acc = 0.f;
    for (int j = 0; j < kChunkMax; ++j) acc += G[j], G[j] = acc;
  }
  __syncthreads();
  return bad;
}

// Issues S = A Bᵀ (64 x C, over D = 16 KS) as one group: A as f16 hi + lo pairs in registers, B a 16-bit input tile
// exact in one f16 term (K-major at descriptor d), so two products per k-step. The caller fences before.
template <int KS>
__device__ __forceinline__ void wg_scores_exact_b(float (&S)[32], const uint32_t (&hi)[KS][4],
                                                  const uint32_t (&lo)[KS][4], uint64_t d) {
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) {
    wgmma<64, true, 0>(S, lo[ks], desc_plus(d, sw128_kstep(kChunkMax, ks)), ks > 0);
    wgmma<64, true, 0>(S, hi[ks], desc_plus(d, sw128_kstep(kChunkMax, ks)), 1);
  }
  wgmma_commit();
}

// Once the scores S are back (all but the last group of products): P = S ⊙ M as the A registers of P's k-steps (n8
// blocks 2k, 2k + 1 of the accumulator), f16 hi and lo words; M(rw, col) at this thread's rows r0 (rw 0), r1 and
// columns col = 8 j + 2 t, + 1.
template <class Mask>
__device__ __forceinline__ void wg_scores_pairs(float (&S)[32], Mask&& M, int t, uint32_t (&ph)[kChunkMax / 16][4],
                                                uint32_t (&pl)[kChunkMax / 16][4]) {
  wgmma_wait<1>();
  fence_regs(S);
#pragma unroll
  for (int k = 0; k < kChunkMax / 16; ++k)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int j = 2 * k + (i >> 1), rw = i & 1;
      f16_pair(S[4 * j + 2 * rw] * M(rw, 8 * j + 2 * t), S[4 * j + 2 * rw + 1] * M(rw, 8 * j + 2 * t + 1), ph[k][i],
               pl[k][i]);
    }
}

// One k-step of Y (its NH halves of 64 columns) += A B, f16, A from registers, B at descriptor b (MN-major where TB):
// one m64n128 product where NH = 2 (half the issue slots of two m64n64 ones).
template <int NH, int TB>
__device__ __forceinline__ void wg_y_step(float (&Y)[NH][32], const uint32_t (&a)[4], uint64_t b, int accumulate) {
  if constexpr (NH == 2)
    wgmma_f16_n128<TB>(Y[0], Y[1], a, b, accumulate);
  else
    wgmma<64, true, TB>(Y[0], a, b, accumulate);
}

// After the products in flight: Y = diag(e0, e1) Y + P B (rows r0, r1 of this thread), B the C x D tile at b read
// MN-major, P in A registers (hi, and lo where PAIR). Waits for it.
template <int NH, bool PAIR>
__device__ __forceinline__ void wg_scale_add_pb(float (&Y)[NH][32], float e0, float e1,
                                                const uint32_t (&ph)[kChunkMax / 16][4],
                                                const uint32_t (&pl)[kChunkMax / 16][4], uint32_t b) {
  wgmma_wait<0>();
#pragma unroll
  for (int h = 0; h < NH; ++h) {
    fence_regs(Y[h]);
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      Y[h][4 * u] *= e0, Y[h][4 * u + 1] *= e0, Y[h][4 * u + 2] *= e1, Y[h][4 * u + 3] *= e1;
    }
  }
  wgmma_fence();
  const uint64_t d = sw128_desc_mn_at(b, kChunkMax, 0, 0);
#pragma unroll
  for (int k = 0; k < kChunkMax / 16; ++k) {
    if constexpr (PAIR) wg_y_step<NH, 1>(Y, pl[k], desc_plus(d, 16 * k * 128), 1);
    wg_y_step<NH, 1>(Y, ph[k], desc_plus(d, 16 * k * 128), 1);
  }
  wgmma_commit();
  wgmma_wait<0>();
#pragma unroll
  for (int h = 0; h < NH; ++h) fence_regs(Y[h]);
}

}  // namespace gka::cuda
