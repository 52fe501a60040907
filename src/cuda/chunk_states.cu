// Chunk-start states (see chunk_states.h) in one pass over each sequence's chunks. A CTA owns a block of RB rows
// of one state (H̄ with gk, or S̄ with g) of one (sequence, head) and carries it in registers: per chunk the local
// product L_c = Kᵀ diag(e^{G_last - G}) B (B = K or V) on tensor cores (3xTF32), then X ← e^{G_last} X + L_c,
// stored into the chunk's end slot. v7 wrote the local products, read them back in an elementwise scan and
// wrote the states again: three passes over the state buffers where this makes one.
#include "cuda/chunk_states.h"
#include "cuda/chunk_tile.cuh"

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

// Warp 0: the chunk's weights w_j = e^{G_last - G_j} (0 from row n on) into w[0, C) and e^{G_last} into w[C],
// from suffix sums of the gate (lane l holds rows 2l, 2l + 1, zero from n on).
__device__ __forceinline__ void gate_weights(float g0, float g1, int n, float* w) {
  const int lane = threadIdx.x & 31;
  float p = g0 + g1;  // becomes Σ over rows >= 2 lane
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float t = __shfl_down_sync(0xffffffffu, p, o);
    if (lane + o < 32) p += t;
  }
  const float after = __shfl_down_sync(0xffffffffu, p, 1);
  const float e1 = lane < 31 ? after : 0.f;  // Σ over rows > 2 lane + 1
  w[2 * lane] = 2 * lane < n ? expf(g1 + e1) : 0.f;
  w[2 * lane + 1] = 2 * lane + 1 < n ? expf(e1) : 0.f;
  if (lane == 0) w[kChunkMax] = expf(p);
}

// grid (seqs * H, 2, D / RB): which = 0 H̄ with gk, 1 S̄ with g; blockIdx.z the row block. W = 1 where k and v
// are 16-bit: two CTAs per SM; fp32 rows need twice the prefetch registers, which would spill at two.
template <int D, int W>
__global__ void __launch_bounds__(kThreads, 3 - W) states_kernel(const Item* items, const SeqInfo* seqs, DView k, DView v,
                                                             DView gk, DView g, int H, StateBufs st, DView init_kk,
                                                             DView init_kv, DView fin_kk, DView fin_kv) {
  using S = StatesCfg<D>;
  constexpr int C = S::C, LDT = S::LDT, MI = S::MI, NJ = S::NJ;
  extern __shared__ __align__(16) float sm[];
  const int s = blockIdx.x / H, h = blockIdx.x % H, which = blockIdx.y, a0 = blockIdx.z * S::RB;
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
    state_each<D>(x, a0, [&](int r, int c, float& x0, float& x1) {
      *reinterpret_cast<float2*>(dst + r * D + c) = make_float2(x0, x1);
    });
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
    if (blockIdx.z == 0 && threadIdx.x == 0) st.decay[(static_cast<int64_t>(sq.first + c) * H + h) * 2 + which] = dec;
  }
  const DView fin = which == 0 ? fin_kk : fin_kv;
  if (fin.dt)
    state_each<D>(x, a0, [&](int r, int c, float& x0, float& x1) {
      dstore(fin, drow(fin, sq.state, h, r) + c, x0);
      dstore(fin, drow(fin, sq.state, h, r) + c + 1, x1);
    });
}

template <int D>
void run(const Problem& p, const Item* items, const SeqInfo* seqs, const StateBufs& st, const TensorView& final_kk,
         const TensorView& final_kv, const char* fn) {
  using S = StatesCfg<D>;
  const int H = static_cast<int>(p.H);
  const bool narrow = p.in.k.dtype != DType::f32 && p.in.v.dtype != DType::f32;
  const auto kernel = narrow ? states_kernel<D, 1> : states_kernel<D, 2>;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(S::smem)), fn,
        "cudaFuncSetAttribute");
  kernel<<<dim3(static_cast<unsigned>(p.num_seqs() * H), 2, D / S::RB), kThreads, S::smem, stream_of(p)>>>(
      items, seqs, dview(p.in.k), dview(p.in.v), dview(p.in.gk), dview(p.in.g), H, st, dview(p.in.initial_kk),
      dview(p.in.initial_kv), dview(final_kk), dview(final_kv));
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
