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
// Iterations of the first solve before S's load, where the final H drains first. At B = 64 with v28's evict-first
// transfers: 12 79.2-79.3 us, 16 79.3-79.4, 8 80.4-80.5, 4 81.9-82.0, 20 80.9-81.0 (H200, one call; v26 had found 8
// and 12 alike, 84.3-84.7 / 84.4, against 85.8-86.1 for 4).
inline constexpr int kLateS = 12;
// The span over which the first wave's later CTAs start (dec_stagger), in ns. B = 64, H200, three calls: at D = 128
// 5 us 72.0-72.6 against 73.9-74.0 with none, 3 / 4 / 7 us 72.9 / 72.7-72.9 / 72.9-73.1; at D = 64 2 us 27.6-27.8
// against 28.7-28.9, 1 / 3 us 27.8-27.9 / 28.7.
template <int D>
inline constexpr int kDecStaggerNs = D == 128 ? 5000 : 2000;

// Everything a decode launch needs travels in the kernel parameter (no uploads, no allocations): a call is
// one launch. Sequences beyond kInlineSeqs come from a device table; iterations beyond kInlineOmegas
// continue the omega recurrence on the device in fp64 from omega_tail, exactly as the host plan does.
struct DecArgs {
  // initial_kk, initial_kv, final_kk, final_kv (state_tmap, boxes of D rows) and, for decode.cu's kernels that read
  // only H's upper triangle, initial_kk in boxes of 32, 64 and 96 rows (dec_load_upper), where tmap_ok (that of the
  // upper triangle's maps at 4).
  CUtensorMap tmap[7];
  int32_t tmap_ok[5];
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
  int first_wave[2] = {0, 0};  // dec_stagger: the CTAs [first_wave[0], first_wave[1]) start late
};

__device__ __forceinline__ SeqInfo dec_seq(const DecArgs& a, int s) {
  return s < kInlineSeqs ? a.seqs[s] : a.seq_table[s];
}

// All CTAs of a grid's first wave start at once, and their state loads queue behind each other (a %globaltimer
// probe at B = 64: H in the registers 5-6 us after the start, where the first to land took 2.1-2.4), then the CTAs
// sharing an SM solve side by side. Blocks 0 .. SMs - 1 start at once (the probe: blocks b and b + SMs share an SM,
// on most SMs); the rest of the wave wait up to kDecStaggerNs, spread by block index, which spreads the wave's loads
// and the phases of the CTAs that follow in their places.
template <int D>
__device__ __forceinline__ void dec_stagger(const int (&first_wave)[2]) {
  const int b = static_cast<int>(blockIdx.x), lo = first_wave[0], hi = first_wave[1];
  if (b < lo || b >= hi) return;
  const int64_t wait = int64_t{kDecStaggerNs<D>} * (b - lo) / (hi - lo);
  const uint64_t t0 = global_ns();
  while (static_cast<int64_t>(global_ns() - t0) < wait) __nanosleep(256);
}

// A pool padding slot (state < 0): zeros for its tokens' outputs, states left alone. The caller passes the row of o
// and x it writes (one thread a row); row 0 also writes the per-token statistics.
__device__ __forceinline__ void dec_zero_padding(const DecArgs& a, const SeqInfo& sq, int h, int row) {
  for (int64_t u = sq.start; u < sq.start + sq.length; ++u) {
    dstore(a.o, drow(a.o, sq.batch, u, h) + row, 0.f);
    if (a.x.dt) dstore(a.x, drow(a.x, sq.batch, u, h) + row, 0.f);
    if (row == 0 && a.fro.dt) dstore(a.fro, drow(a.fro, sq.batch, u, h), 0.f);
    if (row == 0 && a.res.dt) dstore(a.res, drow(a.res, sq.batch, u, h), 0.f);
  }
}

// Four consecutive fp32 of a state view (16-byte access when the view allows it).
__device__ __forceinline__ float4 ld4(const DView& v, int64_t off, bool vec) {
  const float* p = static_cast<const float*>(v.p) + off;
  if (vec) return *reinterpret_cast<const float4*>(p);
  return make_float4(p[0], p[1], p[2], p[3]);
}
// stream: evict-first streaming stores (st.global.cs), for states written once a step (l2_evict_first).
__device__ __forceinline__ void st4(const DView& v, int64_t off, bool vec, float4 x, bool stream = false) {
  float* p = static_cast<float*>(v.p) + off;
  if (vec) {
    if (stream)
      __stcs(reinterpret_cast<float4*>(p), x);
    else
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
constexpr size_t dec_smem_bytes() {  // also decode_split.cu's
  return static_cast<size_t>(D) * D * sizeof(float) + 1024;
}

// H's upper triangle into the buffer (one thread issues it): column block q (32 columns) down to the diagonal, rows
// 0 .. 32 q + 31, as one box of a map of that height (maps: DecArgs::tmap, the last block's the full state's) where
// the full state's box would put it; dec_upper_bytes<D>() arrive on bar. HBlock::from_buf mirrors the rest. One box
// per column block rather than one per 32 x 32 block (ten at D = 128): B = 64 73.5-73.9 us against 74.1-74.2 (H200).
template <int D>
constexpr uint32_t dec_upper_bytes() {
  return (D / 32) * (D / 32 + 1) / 2 * 32 * 32 * sizeof(float);
}
template <int D>
__device__ __forceinline__ void dec_load_upper(char* buf, const CUtensorMap* maps, int h, int state, uint64_t* bar,
                                               uint64_t policy) {
#pragma unroll
  for (int q = 0; q < D / 32; ++q)
    tma_load_4d(buf + q * D * 128, &maps[q + 1 == D / 32 ? 0 : 4 + q], 32 * q, 0, h, state, bar, policy);
}
// Whether 16-byte chunk j of row i lies in a 32 x 32 block on or above the diagonal (what dec_load_upper brings).
__host__ __device__ __forceinline__ bool dec_upper_chunk(int i, int j) { return (j >> 3) >= (i >> 5); }

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

// H in registers as blocks: a group of L lanes holds R rows (rows r0 .. r0 + R - 1), each lane D / L columns of
// them as the 16-byte chunks cb, cb + L, ... (MC per row). Each x chunk a lane loads then serves R rows: a mat-vec
// moves D^2 / R floats of x out of shared memory instead of D^2 (at one row per lane pair that delivery was a
// quarter of an iteration, measured), for log2 L shuffle levels in the row sums. Lane j keeps its rows in the order
// r0 + (i ^ sw), sw = j / (L / R): every lane then sends the same slots at each shuffle level (no selects on the
// chain), and after the sums lane j holds row r = r0 + sw (as does lane j ^ 1 where L = 2 R). Register chunk
// c = i MC + m: row r0 + (i ^ sw), 16-byte chunk cb + L m. Two layouts:
//   L = 2 R (decode.cu, R = 4: 2 D threads, 16 rows a warp): cb = j; a group's 8 lanes touch 8 distinct 16-byte
//     bank groups of a swizzled box at a time (j ^ (j >> 1) is a permutation). R = 4 balances the x loads against
//     the shuffles: R = 2 and R = 8 took 14.1-14.2 / 95.3 and 14.3-14.5 / 90.7-91.1 us a step (B = 1 / B = 64,
//     H200) against 12.6-12.9 / 86.0-86.4;
//   L = R = 4 (decode_split.cu: D threads, 32 rows a warp, one warp per scheduler at D = 128): cb = sigma(j), the
//     product by a generator of GF(4) (0 2 3 1), so that sigma(j) ^ j is a permutation too and the 8 lanes of a
//     quarter warp (two groups, rows 4 apart) read 8 distinct bank groups.
template <int D, int R = 4, int L = 2 * R, int A = 1>
struct HBlock {
  static_assert(L == 2 * R || (L == R && R == 4), "the layouts above");
  static constexpr int NC = D / 4, MC = NC / L;  // 16-byte chunks per row, per row of the block
  static constexpr int kRowsPerWarp = 32 * R / L, kThreads = 32 * D / kRowsPerWarp;
  float v[4 * R * MC];
  int jl, cb, r0, r;

  __device__ __forceinline__ HBlock() {
    const int t = threadIdx.x, lane = t & 31;
    jl = lane % L;
    cb = L == 2 * R ? jl : ((jl << 1) & 3) ^ (jl >> 1 ? 3 : 0);
    r0 = kRowsPerWarp * (t >> 5) + R * (lane / L);
    r = r0 + sw();
  }
  __device__ __forceinline__ int sw() const { return L == R ? jl : jl >> 1; }
  __device__ __forceinline__ int row(int c) const { return r0 + ((c / MC) ^ sw()); }
  __device__ __forceinline__ int chk(int c) const { return cb + L * (c % MC); }
  __device__ __forceinline__ bool owner() const { return L == R || (jl & 1) == 0; }  // writes row r's results

  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < 4 * R * MC; ++i) v[i] = 0.f;
  }
  // H from the buffer; where `upper`, only its upper triangle arrived (dec_load_upper: H is symmetric, spec §14), and
  // a chunk of a block below the diagonal is read from the mirror block's column, four scalar loads (free of bank
  // conflicts in decode.cu's layout; a warp's rows lie in one block row, so the branch is warp-uniform). decode.cu
  // instantiates its kernel for each value of `upper`: choosing at run time slowed every step by 0.6-1 us (or spilled
  // 68 bytes, with two loops). Mirroring in shared memory instead (a pass over the lower blocks, a barrier, then the
  // plain read) took 75.2 us at B = 64 against 74.1-74.2 (H200, ten boxes).
  __device__ __forceinline__ void from_buf(char* buf, bool upper = false) {
#pragma unroll
    for (int c = 0; c < R * MC; ++c) {
      const int i = row(c), j = chk(c);
      if (!upper || dec_upper_chunk(i, j)) {
        const float4 u = dec_chunk<D>(buf, i, j);
        v[4 * c] = u.x;
        v[4 * c + 1] = u.y;
        v[4 * c + 2] = u.z;
        v[4 * c + 3] = u.w;
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e)
          v[4 * c + e] = reinterpret_cast<const float*>(&dec_chunk<D>(buf, 4 * j + e, i >> 2))[i & 3];
      }
    }
  }
  __device__ __forceinline__ void to_buf(char* buf) const {
#pragma unroll
    for (int c = 0; c < R * MC; ++c)
      dec_chunk<D>(buf, row(c), chk(c)) = make_float4(v[4 * c], v[4 * c + 1], v[4 * c + 2], v[4 * c + 3]);
  }
  // Straight to a state view (in decode.cu's layout, 16 rows x 32 bytes per warp store: lanes j and j ^ 1 fill a
  // sector); row i of the state at off + i s2.
  __device__ __forceinline__ void store(const DView& s, int64_t off) const {
    const bool vec = vec_ok(s);
#pragma unroll
    for (int c = 0; c < R * MC; ++c)
      st4(s, off + row(c) * s.s2 + 4 * chk(c), vec, make_float4(v[4 * c], v[4 * c + 1], v[4 * c + 2], v[4 * c + 3]));
  }
  // H = e^gk H + k kᵀ (k in shared memory).
  __device__ __forceinline__ void update(const float* k, float ak) {
#pragma unroll
    for (int c = 0; c < R * MC; ++c) {
      const float kr = k[row(c)];
      const float4 kc = *reinterpret_cast<const float4*>(k + 4 * chk(c));
      v[4 * c] = fmaf(ak, v[4 * c], kr * kc.x);
      v[4 * c + 1] = fmaf(ak, v[4 * c + 1], kr * kc.y);
      v[4 * c + 2] = fmaf(ak, v[4 * c + 2], kr * kc.z);
      v[4 * c + 3] = fmaf(ak, v[4 * c + 3], kr * kc.w);
    }
  }
  // The sum of squares in C independent chains (a chain of 4 R MC FMAs, D / 2 in decode.cu's layout, is 4 cycles of
  // latency each; at two CTAs per SM (decode.cu) a second chain spilled).
  template <int C = 1>
  __device__ __forceinline__ float sumsq() const {
    float s[C] = {};
#pragma unroll
    for (int i = 0; i < 4 * R * MC; ++i) s[i % C] = fmaf(v[i], v[i], s[i % C]);
#pragma unroll
    for (int i = 1; i < C; ++i) s[0] += s[i];
    return s[0];
  }
  // Row r of H times a vector in shared memory. Each lane forms its R rows' partial sums (A accumulators a row: R A
  // independent chains; decode.cu's two CTAs an SM have registers for A = 1 only), then the group's L lanes reduce
  // them: at each level a lane keeps the lower half of its slots and adds the partner's upper half (which holds the
  // same rows), and where L = 2 R the pair j, j ^ 1 adds its two halves last (a + b in one lane, b + a in the other:
  // the same float).
  __device__ __forceinline__ float matvec(const float* vec) const {
    float4 u[MC];
#pragma unroll
    for (int m = 0; m < MC; ++m) u[m] = *reinterpret_cast<const float4*>(vec + 4 * chk(m));
    float s[R];
#pragma unroll
    for (int i = 0; i < R; ++i) {
      float e[A] = {};
#pragma unroll
      for (int m = 0; m < MC; ++m) {
        const float* hc = v + 4 * (i * MC + m);
        e[(4 * m) % A] = fmaf(hc[0], u[m].x, e[(4 * m) % A]);
        e[(4 * m + 1) % A] = fmaf(hc[1], u[m].y, e[(4 * m + 1) % A]);
        e[(4 * m + 2) % A] = fmaf(hc[2], u[m].z, e[(4 * m + 2) % A]);
        e[(4 * m + 3) % A] = fmaf(hc[3], u[m].w, e[(4 * m + 3) % A]);
      }
#pragma unroll
      for (int k = 1; k < A; ++k) e[0] += e[k];
      s[i] = e[0];
    }
#pragma unroll
    for (int w = R / 2; w >= 1; w /= 2)  // at xor (L / R) w: keep slots [0, w), add the partner's [w, 2 w)
#pragma unroll
      for (int i = 0; i < w; ++i) s[i] += __shfl_xor_sync(0xffffffffu, s[i + w], (L / R) * w);
    return L == R ? s[0] : s[0] + __shfl_xor_sync(0xffffffffu, s[0], 1);
  }
};

// The Chebyshev solve of spec §A.3 for row r (every thread of the CTA calls it; x double-buffered in xb, one barrier
// per iteration): x_0 = eta q, then x' = omega (a0 x + eta (q - H x)) + (1 - omega) x_prev. With late > 0, `at()`
// runs once, after the first min(late, N) iterations (the caller issues a copy there). Returns x_N (q when N = 0).
template <int D, typename HB, typename At>
__device__ __forceinline__ float dec_solve(const DecArgs& a, const HB& hb, const float* om_s, float (*xb)[D], float qr,
                                           float f, float lam, int late, At at) {
  if (a.cc.n <= 0) return qr;
  const float eta = f > 0.f ? a.cc.eta_f / f : 0.f, a0 = 1.f - eta * lam;  // H = 0: x = 0
  const float eq = eta * qr;
  float xp = 0.f, x = eq;
  if (hb.owner()) xb[0][hb.r] = x;
  __syncthreads();
  // x' = (1 - omega) xp + omega (a0 x + eta q) - omega eta H x: after the mat-vec, one operation (the form
  // xp + omega (y - xp), y = a0 x + eta (q - H x), had three on the chain).
  auto step = [&](float w, const float* cur, float* nxt) {
    const float d = fmaf(w, fmaf(a0, x, eq), (1.f - w) * xp);  // off the chain
    const float xn = fmaf(-w * eta, hb.matvec(cur), d);
    xp = x;
    x = xn;
    if (hb.owner()) nxt[hb.r] = x;
    __syncthreads();
  };
  // The omegas from shared memory in pairs of steps with fixed buffers (it is even where a pair loop starts), and
  // past them the recurrence in fp64 in a loop of its own: the hot loop has no branch and no indexed load besides
  // the mat-vec's and the omega's.
  static_assert(kLateS % 2 == 0, "the pair loop starts at an even iteration");
  const int n_inline = min(a.cc.n, kInlineOmegas);
  int it = 0;
  auto run = [&](int end) {
    for (; it + 1 < end; it += 2) {
      step(om_s[it], xb[0], xb[1]);
      step(om_s[it + 1], xb[1], xb[0]);
    }
    if (it < end) {
      step(om_s[it], xb[it & 1], xb[(it + 1) & 1]);
      ++it;
    }
  };
  if (late > 0) {
    run(min(late, n_inline));
    at();
  }
  run(n_inline);
  for (double om = a.omega_tail; it < a.cc.n; ++it) {
    om = 1.0 / (1.0 - a.c * om);
    step(static_cast<float>(om), xb[it & 1], xb[(it + 1) & 1]);
  }
  return x;
}

// The cluster form for one-token steps on grids with SMs to spare (decode_split.cu): whether this build has its code
// for the device (sm_90 PTX or better: below that its body is empty), and its launch (grid 3 seqs x H, clusters of
// three).
template <int D>
bool decode_split_ready();
template <int D>
void decode_split_launch(unsigned seqs, const DecArgs& a, cudaStream_t stream, const char* fn);

}  // namespace gka::cuda
