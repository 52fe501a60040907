// Chunk-start states (see chunk_states.h) in one pass over each sequence's chunks. A CTA owns a block of RB rows
// of one state (H̄ with gk, or S̄ with g) of one (sequence, head) and carries it in registers: per chunk the local
// product L_c = Kᵀ diag(e^{G_last - G}) B (B = K or V) on tensor cores, then X ← e^{G_last} X + L_c, stored into
// the chunk's end slot. v7 wrote the local products, read them back in an elementwise scan and wrote the states
// again: three passes over the state buffers where this makes one. Two kernels: states_bf16_kernel where k and v
// are bf16 with 16-byte aligned rows (bf16 products, cp.async tiles; v11), states_kernel (3xTF32) otherwise. On Hopper
// the bf16 case runs states_wg.cu's kernel instead (warpgroup products).
#include "cuda/chunk_states.h"
#include "cuda/chunk_tile.cuh"

#include <tuple>

namespace gka::cuda {
namespace {

template <int D>
struct StatesCfg {
  static constexpr int C = kChunkMax;
  static constexpr int RB = D / 4;   // state rows per CTA: 4 CTAs per state keep every SM busy at B*H = 16
  static constexpr int LDT = D + 8;  // == 8 mod 32: the transposed A and k-major B fragment loads are conflict-free
  // Warp w holds rows [16 (w / WC), + 16) x columns [(w % WC) D / WC, + D / WC) of the CTA's block: each warp
  // splits the (scaled) k fragments it reads itself, so the fewer warps share a row, the less of that is redundant.
  static constexpr int WC = 8 / (RB / 16), MI = 1, NJ = D / (8 * WC);
  static constexpr size_t smem = (2 * C * LDT + C + 1) * sizeof(float);
};

template <int D>
using StateFrag = float[StatesCfg<D>::MI][StatesCfg<D>::NJ][4];

// Calls f(row, col, x0, x1) for this thread's element pairs (row, col), (row, col + 1) of the CTA's block.
template <int D, class Fn>
__device__ __forceinline__ void state_each(StateFrag<D>& x, int a0, Fn&& f) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int m0 = a0 + 16 * (warp / StatesCfg<D>::WC), n0 = (warp % StatesCfg<D>::WC) * (D / StatesCfg<D>::WC);
#pragma unroll
  for (int mi = 0; mi < StatesCfg<D>::MI; ++mi)
#pragma unroll
    for (int nj = 0; nj < StatesCfg<D>::NJ; ++nj)
#pragma unroll
      for (int hf = 0; hf < 2; ++hf)
        f(m0 + 16 * mi + (lane >> 2) + 8 * hf, n0 + 8 * nj + 2 * (lane & 3), x[mi][nj][2 * hf], x[mi][nj][2 * hf + 1]);
}

// A CTA's state block. The grid is one-dimensional with the NB row blocks of both states of a (sequence, head)
// adjacent, so that they run together and read that head's k and v rows from DRAM once: ordered by row block
// first, the waves went over every head once per block and read k and v four times (ncu: 1.1 GB of DRAM traffic
// for 0.69 GB of states and inputs at 8 x 2048).
struct StateCta {
  int s, h, which, block;
};
template <int NB>
__device__ __forceinline__ StateCta state_cta(int H) {
  const int x = blockIdx.x, sh = x / (2 * NB);
  return {sh / H, sh % H, (x / NB) & 1, x % NB};
}

// This warp's partial of a state's (max |x|, Σ x²) over the values its lanes hold (mx, ss), into stat
// (kStateParts per state: row block `block`, warp `warp`).
__device__ __forceinline__ void stat_store(float mx, float ss, const StateBufs& st, int64_t tile, int which,
                                           int block) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    ss += __shfl_xor_sync(0xffffffffu, ss, o);
  }
  static_assert(kStateParts == 4 * kThreads / 32, "four row blocks of kThreads per state");
  if ((threadIdx.x & 31) == 0)
    st.stat[state_stat_index(tile, which) + block * (kThreads / 32) + (threadIdx.x >> 5)] = make_float2(mx, ss);
}

// grid: state_cta (which = 0 H̄ with gk, 1 S̄ with g; D / RB row blocks each). W = 1 where k and v
// are 16-bit: two CTAs per SM; fp32 rows need twice the prefetch registers, which would spill at two.
template <int D, int W>
__global__ void __launch_bounds__(kThreads, 3 - W) states_kernel(const Item* items, const SeqInfo* seqs, DView k, DView v,
                                                             DView gk, DView g, int H, StateBufs st, DView init_kk,
                                                             DView init_kv, DView fin_kk, DView fin_kv) {
  using S = StatesCfg<D>;
  constexpr int C = S::C, LDT = S::LDT, MI = S::MI, NJ = S::NJ;
  extern __shared__ __align__(16) float sm[];
  const StateCta b = state_cta<D / S::RB>(H);
  const int s = b.s, h = b.h, which = b.which, a0 = b.block * S::RB;
  const SeqInfo sq = seqs[s];
  if (sq.state < 0) return;
  float* Kt = sm;                                // the chunk's k rows (C x D, ld LDT)
  float* Bt = which == 0 ? Kt : sm + C * LDT;    // its k (H̄) or v (S̄) rows
  float* wt = sm + 2 * C * LDT;                  // gate_weights
  const DView gate = which == 0 ? gk : g, init = which == 0 ? init_kk : init_kv;  // copies: no local-memory params
  float* buf = which == 0 ? st.Hs : st.Ss;
  const int lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3, warp = threadIdx.x >> 5;
  const int m0 = a0 + 16 * (warp / S::WC), n0 = (warp % S::WC) * (D / S::WC);
  auto slot_store = [&](StateFrag<D>& x, int64_t slot) {
    float* dst = buf + (slot * H + h) * D * D;
    float mx = 0.f, ss = 0.f;
    state_each<D>(x, a0, [&](int r, int c, float& x0, float& x1) {
      *reinterpret_cast<float2*>(dst + r * D + c) = make_float2(x0, x1);
      mx = fmaxf(mx, fmaxf(fabsf(x0), fabsf(x1)));
      ss = fmaf(x0, x0, fmaf(x1, x1, ss));
    });
    stat_store(mx, ss, st, slot * H + h, which, b.block);
  };

  StateFrag<D> x;
  state_each<D>(x, a0, [&](int r, int c, float& x0, float& x1) {
    x0 = init.dt ? dload(init, drow(init, sq.state, h, r) + c) : 0.f;
    x1 = init.dt ? dload(init, drow(init, sq.state, h, r) + c + 1) : 0.f;
  });
  slot_store(x, sq.first + s);

  // Each chunk's loads are issued before the previous chunk's product runs.
  RowsFetch<D, W> fk, fb;
  float g0 = 0.f, g1 = 0.f;
  auto fetch = [&](const Item& it) {
    rows_fetch<D, W>(fk, k, it, h);
    if (which == 1) rows_fetch<D, W>(fb, v, it, h);
    if (threadIdx.x < 32) {
      g0 = 2 * lane < it.n ? dscalar(gate, it.batch, it.t0 + 2 * lane, h, 0.f) : 0.f;
      g1 = 2 * lane + 1 < it.n ? dscalar(gate, it.batch, it.t0 + 2 * lane + 1, h, 0.f) : 0.f;
    }
  };
  Item it{};
  if (sq.count > 0) {
    it = items[sq.first];
    fetch(it);
  }
  for (int c = 0; c < sq.count; ++c) {
    const Item next = c + 1 < sq.count ? items[sq.first + c + 1] : it;
    __syncthreads();  // the previous chunk's fragments have been read
    rows_put<D, LDT, W>(Kt, fk, k, it, h);
    if (which == 1) rows_put<D, LDT, W>(Bt, fb, v, it, h);
    if (threadIdx.x < 32) gate_weights(g0, g1, it.n, wt);
    const int n = it.n;
    __syncthreads();
    if (c + 1 < sq.count) {
      it = next;
      fetch(it);
    }
    float acc[MI][NJ][4];
    frag_zero(acc);
#pragma unroll 2
    for (int j0 = 0; j0 < n; j0 += 8) {  // A(r, j) = w_j k_j[a0 + r], B(j, col) = b_j[col]; rows >= n are zero
      const float w0 = wt[j0 + tq], w1 = wt[j0 + tq + 4];
      uint32_t ah[MI][4], al[MI][4];
#pragma unroll
      for (int mi = 0; mi < MI; ++mi) {
        const float* p = Kt + j0 * LDT + m0 + 16 * mi + gq;
        tf32_split<true>(w0 * p[tq * LDT], ah[mi][0], al[mi][0]);
        tf32_split<true>(w0 * p[tq * LDT + 8], ah[mi][1], al[mi][1]);
        tf32_split<true>(w1 * p[(tq + 4) * LDT], ah[mi][2], al[mi][2]);
        tf32_split<true>(w1 * p[(tq + 4) * LDT + 8], ah[mi][3], al[mi][3]);
      }
#pragma unroll
      for (int nj = 0; nj < NJ; ++nj) {
        uint32_t bh[2], bl[2];
        frag_b<W == 2, false>(Bt + j0 * LDT + n0 + 8 * nj, LDT, gq, tq, bh, bl);  // 16-bit rows are exact in tf32
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) mma3<true, W == 1>(acc[mi][nj], ah[mi], al[mi], bh, bl);
      }
    }
    const float dec = wt[C];
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
      for (int nj = 0; nj < NJ; ++nj)
#pragma unroll
        for (int e = 0; e < 4; ++e) x[mi][nj][e] = fmaf(dec, x[mi][nj][e], acc[mi][nj][e]);
    slot_store(x, sq.first + s + c + 1);
    if (b.block == 0 && threadIdx.x == 0) st.decay[(static_cast<int64_t>(sq.first + c) * H + h) * 2 + which] = dec;
  }
  const DView fin = which == 0 ? fin_kk : fin_kv;
  if (fin.dt)
    state_each<D>(x, a0, [&](int r, int c, float& x0, float& x1) {
      dstore(fin, drow(fin, sq.state, h, r) + c, x0);
      dstore(fin, drow(fin, sq.state, h, r) + c + 1, x1);
    });
}

// ---- bf16 k and v with 16-byte aligned rows: the same recurrence on bf16 products, one barrier per chunk ----
// L_c = Kᵀ diag(w) B with B the raw bf16 rows (exact) and A = diag(w) K in three bf16 pieces hi + mid + lo (each
// the rounding of what the ones before left: ~2^-24 relative, the fp32 level of the 3xTF32 kernel above), so a
// 16 x 8 x 16 block takes three m16n8k16 products where the tf32 kernel needs four m16n8k8, and the fragments come
// by ldmatrix instead of a load, a scaling and a split per element per warp. The tiles arrive by cp.async into a
// ring of three stages (zero-filled past the chunk's rows), issued two chunks ahead and awaited one chunk later (the
// split of chunk c + 1 needs them; a fourth stage would not fit two CTAs per SM); the pieces of chunk c + 1 are split
// once per CTA (not once per warp) while chunk c is multiplied, into the other of two plane buffers; warp 0 forms
// the gate weights two chunks ahead. So each chunk needs one barrier. A chunk's rows follow from the sequence
// (the plan's items are its consecutive chunks of csize rows).
template <int D>
struct Bf16StatesCfg {
  static constexpr int C = kChunkMax, RB = D / 4, STAGES = 3;
  static constexpr int WC = 8 / (RB / 16), NT = D / (8 * WC);    // warp tile: 16 rows x NT n8 blocks
  static constexpr int LDB = D + 8, LDK = RB + 8, LDP = C + 8;  // in halves: rows shift by 16 bytes (no conflicts)
  static constexpr int JPT = RB * C / kThreads;                   // consecutive A elements a thread splits
  static constexpr int STAGE = C * (LDB + LDK), PLANES = 3 * RB * LDP;  // halves: B rows + S̄'s k columns; pieces
  static constexpr size_t smem = (STAGES * STAGE + 2 * PLANES) * sizeof(__nv_bfloat16) + STAGES * (C + 1) * sizeof(float);
  static_assert((JPT == 4 || JPT == 8) && (NT == 1 || NT % 2 == 0), "split and B fragment forms");
  static_assert(C * (D / 8) % kThreads == 0 && C * (RB / 8) <= kThreads, "copy pieces per thread");
};

template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    states_bf16_kernel(const SeqInfo* seqs, int csize, DView k, DView v, DView gk, DView g, int H, StateBufs st,
                       DView init_kk, DView init_kv, DView fin_kk, DView fin_kv) {
  using S = Bf16StatesCfg<D>;
  constexpr int C = S::C, RB = S::RB, NT = S::NT, LDB = S::LDB, LDK = S::LDK, LDP = S::LDP, JPT = S::JPT;
  extern __shared__ __align__(16) __nv_bfloat16 smb[];
  const StateCta b = state_cta<D / RB>(H);
  const int s = b.s, h = b.h, which = b.which, a0 = b.block * RB;
  const SeqInfo sq = seqs[s];
  if (sq.state < 0) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, tq = lane & 3;
  const int m0 = 16 * (warp / S::WC), n0 = (warp % S::WC) * 8 * NT;  // the warp's tile in the CTA's block
  const DView gate = which == 0 ? gk : g, init = which == 0 ? init_kk : init_kv, bsrc = which == 0 ? k : v;
  float* buf = which == 0 ? st.Hs : st.Ss;
  auto raw = [&](int c) { return smb + (c % S::STAGES) * S::STAGE; };  // B rows, ld LDB
  auto rawk = [&](int c) { return raw(c) + C * LDB; };                 // S̄: k columns [a0, a0 + RB), ld LDK
  auto planes = [&](int c) { return smb + S::STAGES * S::STAGE + (c & 1) * S::PLANES; };
  auto wts = [&](int c) {  // w_j of chunk c, then e^{G_last} at [C]
    return reinterpret_cast<float*>(smb + S::STAGES * S::STAGE + 2 * S::PLANES) + (c % S::STAGES) * (C + 1);
  };
  auto t0_of = [&](int c) { return sq.start + static_cast<int64_t>(c) * csize; };
  auto n_of = [&](int c) { return static_cast<int>(min(static_cast<int64_t>(csize), sq.length - int64_t{c} * csize)); };

  auto copy = [&](int c) {  // chunk c's tiles, one commit group (empty past the last chunk)
    if (c < sq.count) {
      constexpr int VPR = D / 8, KPR = RB / 8;
      const int n = n_of(c);
      const char* bb = static_cast<const char*>(bsrc.p) + drow(bsrc, sq.batch, t0_of(c), h) * 2;
#pragma unroll
      for (int p = 0; p < C * VPR / kThreads; ++p) {
        const int idx = threadIdx.x + p * kThreads, r = idx / VPR, c8 = (idx % VPR) * 8;
        cp_async16_zfill(raw(c) + r * LDB + c8, bb + (r < n ? r * bsrc.s1 + c8 : 0) * 2, r < n);
      }
      if (which == 1 && threadIdx.x < C * KPR) {
        const int r = threadIdx.x / KPR, c8 = a0 + (threadIdx.x % KPR) * 8;
        const char* kb = static_cast<const char*>(k.p) + drow(k, sq.batch, t0_of(c), h) * 2;
        cp_async16_zfill(rawk(c) + r * LDK + c8 - a0, kb + (r < n ? r * k.s1 + c8 : 0) * 2, r < n);
      }
    }
    cp_async_commit();
  };
  float g0 = 0.f, g1 = 0.f;  // warp 0: rows 2 lane, 2 lane + 1 of the gate of the chunk whose weights come next
  auto gates_load = [&](int c) {
    if (c >= sq.count) return;
    const int n = n_of(c);
    const int64_t t0 = t0_of(c);
    g0 = 2 * lane < n ? dscalar(gate, sq.batch, t0 + 2 * lane, h, 0.f) : 0.f;
    g1 = 2 * lane + 1 < n ? dscalar(gate, sq.batch, t0 + 2 * lane + 1, h, 0.f) : 0.f;
  };
  auto weights = [&](int c) {
    if (c < sq.count) gate_weights(g0, g1, n_of(c), wts(c));
  };
  auto split = [&](int c) {  // A(m, j) = w_j k_j[a0 + m] into the pieces hi, mid, lo ([m][j], ld LDP)
    const int m = threadIdx.x % RB, j0 = (threadIdx.x / RB) * JPT, ld = which == 0 ? LDB : LDK;
    const __nv_bfloat16* src = (which == 0 ? raw(c) + a0 : rawk(c)) + m;
    const float* w = wts(c);
    uint32_t pc[3][JPT / 2];
#pragma unroll
    for (int e = 0; e < JPT; e += 2)
      bf16_pieces(w[j0 + e] * __bfloat162float(src[(j0 + e) * ld]),
                  w[j0 + e + 1] * __bfloat162float(src[(j0 + e + 1) * ld]), pc[0][e / 2], pc[1][e / 2],
                  pc[2][e / 2]);
    __nv_bfloat16* dst = planes(c) + m * LDP + j0;
#pragma unroll
    for (int q = 0; q < 3; ++q) {
      if constexpr (JPT == 8)
        *reinterpret_cast<uint4*>(dst + q * RB * LDP) = make_uint4(pc[q][0], pc[q][1], pc[q][2], pc[q][3]);
      else
        *reinterpret_cast<uint2*>(dst + q * RB * LDP) = make_uint2(pc[q][0], pc[q][1]);
    }
  };

  float x[NT][4];  // the state: C fragments of the warp's tile (rows a0 + m0 + gq (+ 8), columns n0 + 8 nt + 2 tq)
  auto each = [&](auto&& f) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) f(a0 + m0 + gq + 8 * hf, n0 + 8 * nt + 2 * tq, x[nt][2 * hf], x[nt][2 * hf + 1]);
  };
  auto slot_store = [&](int64_t slot) {  // 16-byte stores: lanes 2u, 2u + 1 swap halves (rows g and g + 8)
    const bool odd = tq & 1;
    float* dst = buf + (slot * H + h) * D * D + (a0 + m0 + gq + 8 * odd) * D + n0 + 4 * (tq >> 1);
    float mx = 0.f, ss = 0.f;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const float s0 = __shfl_xor_sync(0xffffffffu, odd ? x[nt][0] : x[nt][2], 1);
      const float s1 = __shfl_xor_sync(0xffffffffu, odd ? x[nt][1] : x[nt][3], 1);
      *reinterpret_cast<float4*>(dst + 8 * nt) =
          odd ? make_float4(s0, s1, x[nt][2], x[nt][3]) : make_float4(x[nt][0], x[nt][1], s0, s1);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        mx = fmaxf(mx, fabsf(x[nt][e]));
        ss = fmaf(x[nt][e], x[nt][e], ss);
      }
    }
    stat_store(mx, ss, st, slot * H + h, which, b.block);
  };
  auto product = [&](int c) {  // X <- e^{G_last} X + (lo + mid + hi) B; k-steps past the chunk's rows are zeros
    float acc[NT][4] = {};
    const int n = n_of(c);
    const __nv_bfloat16* pl = planes(c) + (m0 + (lane & 7) + (lane & 8)) * LDP + (lane >> 4) * 8;
    const __nv_bfloat16* bt = raw(c) + ((lane & 7) + (lane & 8)) * LDB + n0 + (lane >> 4) * 8;
#pragma unroll
    for (int ks = 0; ks < C / 16; ++ks) {
      if (16 * ks >= n) break;
      uint32_t a[3][4], b[NT][2];
#pragma unroll
      for (int q = 0; q < 3; ++q) ldsm_x4(a[q], pl + q * RB * LDP + 16 * ks, false);
      if constexpr (NT == 1) {
        ldsm_x2_trans(b[0], bt + 16 * ks * LDB);
      } else {
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
          uint32_t r[4];
          ldsm_x4(r, bt + 16 * ks * LDB + 16 * np, true);
          b[2 * np][0] = r[0];
          b[2 * np][1] = r[1];
          b[2 * np + 1][0] = r[2];
          b[2 * np + 1][1] = r[3];
        }
      }
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int q = 2; q >= 0; --q) mma_bf16(acc[nt], a[q], b[nt]);
    }
    const float dec = wts(c)[C];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) x[nt][e] = fmaf(dec, x[nt][e], acc[nt][e]);
  };

  copy(0);
  copy(1);
  each([&](int r, int col, float& x0, float& x1) {
    x0 = init.dt ? dload(init, drow(init, sq.state, h, r) + col) : 0.f;
    x1 = init.dt ? dload(init, drow(init, sq.state, h, r) + col + 1) : 0.f;
  });
  slot_store(sq.first + s);
  if (warp == 0) {
    gates_load(0);
    weights(0);
    gates_load(1);
    weights(1);
    gates_load(2);
  }
  cp_async_wait<1>();
  __syncthreads();
  if (sq.count > 0) split(0);
  for (int c = 0; c < sq.count; ++c) {
    cp_async_wait<0>();  // chunk c + 1
    __syncthreads();     // its tiles, chunk c's pieces and chunk c + 1's weights are in; chunk c - 1 is done
    copy(c + 2);
    if (warp == 0) {
      weights(c + 2);
      gates_load(c + 3);
    }
    if (c + 1 < sq.count) split(c + 1);
    product(c);
    slot_store(sq.first + s + c + 1);
    if (b.block == 0 && threadIdx.x == 0) st.decay[(static_cast<int64_t>(sq.first + c) * H + h) * 2 + which] = wts(c)[C];
  }
  const DView fin = which == 0 ? fin_kk : fin_kv;
  if (fin.dt)
    each([&](int r, int col, float& x0, float& x1) {
      dstore(fin, drow(fin, sq.state, h, r) + col, x0);
      dstore(fin, drow(fin, sq.state, h, r) + col + 1, x1);
    });
}

// bf16 rows that cp.async can copy: 16-byte aligned base and strides (the last dimension is contiguous).
bool bf16_rows(const TensorView& t) {
  if (t.dtype != DType::bf16) return false;
  uintptr_t bits = reinterpret_cast<uintptr_t>(t.data);
  for (int d = 0; d < 3; ++d) bits |= static_cast<uintptr_t>(t.strides[d] * 2);
  return (bits & 15) == 0;
}

// GKA_STATES_BF16=0 keeps bf16 inputs on the 3xTF32 kernel, GKA_STATES_WG=0 off the Hopper one (A/B experiments).
bool bf16_kernel_on() {
  static const bool off = env_off("GKA_STATES_BF16");
  return !off;
}
bool wg_kernel_on() {
  static const bool off = env_off("GKA_STATES_WG");
  return !off && wgmma_available();
}

template <int D>
void run(const Problem& p, const Item* items, const SeqInfo* seqs, const StateBufs& st, const TensorView& final_kk,
         const TensorView& final_kv, const char* fn) {
  const int H = static_cast<int>(p.H);
  static_assert(Bf16StatesCfg<D>::RB == StatesCfg<D>::RB);
  const int64_t ctas = p.num_seqs() * H * 2 * (D / StatesCfg<D>::RB);
  if (ctas > INT32_MAX) fail(fn, "too many sequences x heads for one states launch: " + std::to_string(ctas / 8));
  const dim3 grid(static_cast<unsigned>(ctas));
  const auto args = [&] {
    return std::tuple(dview(p.in.k), dview(p.in.v), dview(p.in.gk), dview(p.in.g), H, st, dview(p.in.initial_kk),
                      dview(p.in.initial_kv), dview(final_kk), dview(final_kv));
  };
  const bool bf16 = bf16_kernel_on() && bf16_rows(p.in.k) && bf16_rows(p.in.v);
  if (bf16 && wg_kernel_on() && states_wg_compute(p, seqs, st, final_kk, final_kv, fn)) return;
  if (bf16) {
    constexpr size_t smem = Bf16StatesCfg<D>::smem;
    check(cudaFuncSetAttribute(states_bf16_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
          fn, "cudaFuncSetAttribute");
    std::apply([&](auto... a) { states_bf16_kernel<D><<<grid, kThreads, smem, stream_of(p)>>>(seqs, static_cast<int>(p.chunk_size), a...); },
               args());
  } else {
    const bool narrow = p.in.k.dtype != DType::f32 && p.in.v.dtype != DType::f32;
    const auto kernel = narrow ? states_kernel<D, 1> : states_kernel<D, 2>;
    constexpr size_t smem = StatesCfg<D>::smem;
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), fn,
          "cudaFuncSetAttribute");
    std::apply([&](auto... a) { kernel<<<grid, kThreads, smem, stream_of(p)>>>(items, seqs, a...); }, args());
  }
  launch_check(fn);
}

}  // namespace

void states_compute(const Problem& p, const Item* items, const SeqInfo* seqs, const StateBufs& st,
                    const TensorView& final_kk, const TensorView& final_kv, const char* fn) {
  if (p.D == 64)
    run<64>(p, items, seqs, st, final_kk, final_kv, fn);
  else
    run<128>(p, items, seqs, st, final_kk, final_kv, fn);
}

}  // namespace gka::cuda
