// The mixed forward's readout on Hopper (v20), for the chunks fwd_wg_kernel solved: q~ = q + alpha (x - q) from its
// x, o = s [e^Gg Q~ S̄ + ((Q~ Kᵀ) ⊙ Mg) V] in one warpgroup per chunk. A kernel of its own because code size is what
// costs here: the SM keeps about 128 KB of instructions (dev/icache_probe.cu: straight-line code issues every ~2
// cycles up to 112 KB, every ~6 past 160 KB), and with the readout fwd_wg_kernel was 164 KB, almost all of it run once
// per CTA; without it (7.2 K instructions) the same kernel took 1.41 ms instead of 2.27 at 8x2048. Split: fwd_wg_kernel
// 6.5 K instructions, 1.39 ms, and this one 4.1 K, 0.35 ms (ncu, H200; bench/RESULTS.md, session 17).
//
// Tiles as in fwd_wg_kernel's readout: S̄ as f16 hi + lo under a power-of-two scale (its largest element under 2^14),
// K and V under their own, q~ as f16 pairs in registers under a per-row scale (the row's largest |q~| under 2^6, so
// |q~ k| < 2^9.5 and P = (q~ k) Mg < 2^14.5): every product ~2^-22. A chunk whose scales leave f16's range (or with
// positive log-gates) goes onto the redo list, and chunk_fwd_redo_kernel, launched after this kernel, redoes all of it.
#pragma once

#include "cuda/fwd_wg_tiles.cuh"

namespace gka::cuda {

// Shared memory: S̄ hi, lo, K, V (f16, 128-byte swizzled), the chunk-local g sums and a reduction buffer.
template <int D>
struct WgOutSmem {
  static constexpr int C = kChunkMax;
  static constexpr uint32_t HI = 0, LO = D * D * 2, K = 2 * D * D * 2, V = K + C * D * 2, SMALL = V + C * D * 2;
  static constexpr uint32_t kBytes = SMALL + (C + 8) * 4;
};

template <int D>
__global__ void __launch_bounds__(128, 2) out_wg_kernel(const Item* items, WgFwdArgs a) {
  using L = WgOutSmem<D>;
  constexpr int C = kChunkMax, NB = D / 8, KS = D / 16, NH = D / 64;
  extern __shared__ __align__(1024) char sm[];
  const ChunkPos c = chunk_pos(items, a.H);
  if (!a.ok[c.id]) return;  // fwd_wg_kernel gave the chunk up
  float* Gg = reinterpret_cast<float*>(sm + L::SMALL);
  float* red = Gg + C;
  const int n = c.n, tid = threadIdx.x, lane = tid & 31, t = lane & 3;
  const int r0 = 16 * (tid >> 5) + (lane >> 2), r1 = r0 + 8;
  const uint32_t base = smem_addr(sm);
  if (base & 1023u) __trap();  // the swizzle needs 1024-byte aligned tiles
  auto at = [&](const DView& v, int rw) { return drow(v, c.it.batch, c.it.t0 + (rw ? r1 : r0), c.h) + 2 * t; };

  WgRows<D> kr, vr;
  float mk = kr.load(a.k, c), mv = vr.load(a.v, c), ms, unused;
  const float* Sg = wg_state<D>(a, c, 1, ms, unused);
  const bool gpos = wg_gate_sums(Gg, a.g, c);
  mk = wg_block_max(mk, red);
  mv = wg_block_max(mv, red + 4);
  int e;
  frexpf(mk * sqrtf(static_cast<float>(D)), &e);  // K's rows' norms < 2^e
  const int ek = -e;
  frexpf(ms, &e);
  const int es = 14 - e;  // |S̄| < 2^14 after scaling
  frexpf(mv, &e);
  const int ev = 14 - e;
  // The same in every thread. Q~ S̄ (|.| < 2^6 2^14 D <= 2^27) is brought to P V's scale by 2^(ek + ev - es)
  // (below): at most 2^90 keeps it under 2^117.
  if (gpos || !isfinite(ms) || !isfinite(mk) || !isfinite(mv) || abs(ek) > 60 || abs(es) > 100 || abs(ev) > 100 ||
      abs(ek + ev - es) > 90) {
    if (tid == 0) give_up(a.ok, a.redo, c.id);  // chunk_fwd_redo_kernel redoes the chunk (x included)
    return;
  }

  // q~ = q + alpha (x - q) at this thread's accumulator positions, as f16 pairs under the row's scale.
  uint32_t qh[KS][4], ql[KS][4];
  float sq[2];
  {
    float q[NB][4];
    wg_load_pairs<NB>(q, static_cast<const uint16_t*>(a.q.p) + at(a.q, 0),
                      static_cast<const uint16_t*>(a.q.p) + at(a.q, 1), a.q.dt, r0 < n, r1 < n);
    float qm[2] = {0.f, 0.f};
#pragma unroll
    for (int rw = 0; rw < 2; ++rw) {
      const bool in = (rw ? r1 : r0) < n;
      const float al = in ? dscalar(a.alpha, c.it.batch, c.it.t0 + (rw ? r1 : r0), c.h, 1.f) : 0.f;
      const float* xb = static_cast<const float*>(a.x.p) + (in ? at(a.x, rw) : 0);
#pragma unroll
      for (int j = 0; j < NB; ++j) {
        const float2 x = in ? *reinterpret_cast<const float2*>(xb + 8 * j) : make_float2(0.f, 0.f);
        float* v = &q[j][2 * rw];
        v[0] += al * (x.x - v[0]);
        v[1] += al * (x.y - v[1]);
        qm[rw] = fmaxf(qm[rw], fmaxf(fabsf(v[0]), fabsf(v[1])));
      }
      frexpf(quad_max(qm[rw]), &e);
      sq[rw] = ldexpf(1.f, 6 - e);
    }
#pragma unroll
    for (int m = 0; m < KS; ++m)
#pragma unroll
      for (int i = 0; i < 4; ++i) {  // word i: n8 block 2m + (i >> 1), row r0 (i even) or r1
        const float* v = &q[2 * m + (i >> 1)][2 * (i & 1)];
        f16_pair(v[0] * sq[i & 1], v[1] * sq[i & 1], qh[m][i], ql[m][i]);
      }
  }

  wg_state_tiles<D>(sm + L::HI, sm + L::LO, Sg, ldexpf(1.f, es));
  kr.tile(sm + L::K, a.k.dt, ldexpf(1.f, ek));
  vr.tile(sm + L::V, a.v.dt, ldexpf(1.f, ev));
  fence_proxy_async();
  __syncthreads();
  const float Gg0 = Gg[r0], Gg1 = Gg[r1];
  auto gmask = [&](int rw, int col) {
    const int row = rw ? r1 : r0;
    return col <= row && row < n ? __expf((rw ? Gg1 : Gg0) - Gg[col]) : 0.f;
  };
  float Y[NH][32], S[32];
  const uint64_t dk = sw128_desc(base + L::K);
  wgmma_fence();
  wg_scores_exact_b(S, qh, ql, dk);  // Q~ Kᵀ
#pragma unroll
  for (int h = 0; h < NH; ++h)
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {  // Q~ S̄: S̄ (rows: k) read MN-major, three terms
      const uint64_t dsh = sw128_desc_mn_at(base + L::HI, D, 16 * ks, 64 * h);
      const uint64_t dsl = sw128_desc_mn_at(base + L::LO, D, 16 * ks, 64 * h);
      wgmma<64, true>(Y[h], ql[ks], dsh, ks > 0);
      wgmma<64, true>(Y[h], qh[ks], dsl, 1);
      wgmma<64, true>(Y[h], qh[ks], dsh, 1);
    }
  wgmma_commit();
  uint32_t ph[C / 16][4], pl[C / 16][4];
  wg_scores_pairs(S, gmask, t, ph, pl);
  // Q~ S̄ comes out scaled by sq sigma_S, P V by sq sigma_K sigma_V: bring the first to the second's scale.
  const float u = ldexpf(1.f, ek + ev - es), ge0 = r0 < n ? expf(Gg0) * u : 0.f, ge1 = r1 < n ? expf(Gg1) * u : 0.f;
  wg_scale_add_pb<NH, true>(Y, ge0, ge1, ph, pl, base + L::V);
  const float uo = ldexpf(1.f, -ek - ev) * a.scale, os[2] = {uo * inv_pow2(sq[0]), uo * inv_pow2(sq[1])};
  uint16_t* ob[2] = {static_cast<uint16_t*>(a.o.p) + at(a.o, 0), static_cast<uint16_t*>(a.o.p) + at(a.o, 1)};
  const bool bf = a.o.dt == 2;
#pragma unroll
  for (int j = 0; j < NB; ++j)
#pragma unroll
    for (int rw = 0; rw < 2; ++rw) {
      const float* y = &Y[j >> 3][4 * (j & 7) + 2 * rw];
      if ((rw ? r1 : r0) < n) wg_store16(ob[rw] + 8 * j, y[0] * os[rw], y[1] * os[rw], bf);
    }
}

}  // namespace gka::cuda
