// The backward's first part in adj_wg_kernel (fwd_wg.cuh's chunk body with ADJ), before the adjoint solve: what
// step_b does for a chunk, on the forward readout's tiles with the roles of the operands swapped,
//   dq~ = s [diag(e^Gg) dO S̄ᵀ + ((dO Vᵀ) ⊙ Mg) K],
// then per row dalpha = dq~ . (x - q), q~ . dq~ and the adjoint's right-hand side dx = alpha dq~ (x, f: the forward's,
// saved). S̄ as f16 hi + lo read K-major (as the forward's solve reads H̄), V over the right-hand side's tile under K's
// kind of scale (the scores dO Vᵀ stay in f16's range), K where the solve finds it, dO as f16 pairs under a per-row
// scale: every product ~2^-22.
#pragma once

#include "cuda/fwd_wg_tiles.cuh"

namespace gka::cuda {

// Runs after K's tile is written (ek: its scale) and before H̄'s; `bad` carries the prologue's range checks. Returns
// false, the chunk on the redo list, where it is outside f16's range: step_b and step_b2's redo kernels then do all
// of it. Else fills rhs (this thread's positions: rows r0, r1, columns 8 j + 2 t, + 1) and f, writes dalpha and
// step_b2's scratch, and leaves the tiles free for H̄'s.
template <int D>
__device__ __forceinline__ bool wg_adj_dqt(const WgFwdArgs& a, const ChunkPos& c, char* sm, int ek, bool bad,
                                           float (&rhs)[D / 8][4], float& f0, float& f1) {
  using L = WgFwdSmem<D>;
  constexpr int C = kChunkMax, NB = D / 8, KS = D / 16, NH = D / 64;
  float* ws = reinterpret_cast<float*>(sm + L::SMALL) + C;
  float* red = ws + C;
  const int n = c.n, tid = threadIdx.x, lane = tid & 31, wi = tid >> 5, t = lane & 3;
  const int r0 = 16 * wi + (lane >> 2), r1 = r0 + 8;
  const uint32_t base = smem_addr(sm);
  auto at = [&](const DView& v, int rw) { return drow(v, c.it.batch, c.it.t0 + (rw ? r1 : r0), c.h) + 2 * t; };

  float ms, unused;
  const float* Sg = wg_state<D>(a, c, 1, ms, unused);
  WgRows<D> vr;
  float mv = vr.load(a.v, c);
  float dq[NB][4];
  wg_load_pairs<NB>(dq, static_cast<const uint16_t*>(a.d_o.p) + at(a.d_o, 0),
                    static_cast<const uint16_t*>(a.d_o.p) + at(a.d_o, 1), a.d_o.dt, r0 < n, r1 < n);
  mv = wg_block_max(mv, red + 4);
  bad |= wg_gate_sums(ws, a.g, c);
  float sd[2];  // dO's per-row scales: the row's largest |element| under 2^6 (as q~ in the forward's readout)
  {
    float m0 = 0.f, m1 = 0.f;
#pragma unroll
    for (int j = 0; j < NB; ++j) {
      m0 = fmaxf(m0, fmaxf(fabsf(dq[j][0]), fabsf(dq[j][1])));
      m1 = fmaxf(m1, fmaxf(fabsf(dq[j][2]), fabsf(dq[j][3])));
    }
    m0 = quad_max(m0), m1 = quad_max(m1);
    int e;
    frexpf(m0, &e);
    sd[0] = ldexpf(1.f, 6 - e);
    frexpf(m1, &e);
    sd[1] = ldexpf(1.f, 6 - e);
    bad |= !isfinite(m0) || !isfinite(m1);
  }
  int e;
  frexpf(ms, &e);
  const int es = 14 - e;  // |S̄| < 2^14 after scaling
  frexpf(mv * sqrtf(static_cast<float>(D)), &e);  // v's rows' norms < 2^e: scaled under 1, as K's (|P| < 2^9.5)
  const int ev = -e;
  // dO S̄ᵀ (|.| < 2^6 2^14 D <= 2^27) is brought to P K's scale by 2^(ek + ev - es) (below): at most 2^90 keeps it
  // under 2^117.
  bad |= !isfinite(ms) || !isfinite(mv) || abs(es) > 100 || abs(ev) > 60 || abs(ek + ev - es) > 90;
  if (__syncthreads_or(bad)) {
    if (tid == 0) give_up(a.ok, a.redo, c.id);
    return false;
  }
  wg_state_tiles<D>(sm + L::HI, sm + L::LO, Sg, ldexpf(1.f, es));
  vr.tile(sm + L::RH, a.v.dt, ldexpf(1.f, ev));
  uint32_t dh[KS][4], dl[KS][4];
#pragma unroll
  for (int m = 0; m < KS; ++m)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int j = 2 * m + (i >> 1), rw = i & 1;
      f16_pair(dq[j][2 * rw] * sd[rw], dq[j][2 * rw + 1] * sd[rw], dh[m][i], dl[m][i]);
    }
  fence_proxy_async();
  __syncthreads();

  float Y[NH][32], S[32];
  {
    const uint64_t dv = sw128_desc(base + L::RH), dhi = sw128_desc(base + L::HI), dlo = sw128_desc(base + L::LO);
    wgmma_fence();
    wg_scores_exact_b(S, dh, dl, dv);  // dO Vᵀ
#pragma unroll
    for (int h = 0; h < NH; ++h)
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) {  // dO S̄ᵀ: S̄ (rows: k) read K-major, three terms
        const uint32_t ob = 64 * h * 128 + sw128_kstep(D, ks);
        wgmma<64, true, 0>(Y[h], dl[ks], desc_plus(dhi, ob), ks > 0);
        wgmma<64, true, 0>(Y[h], dh[ks], desc_plus(dlo, ob), 1);
        wgmma<64, true, 0>(Y[h], dh[ks], desc_plus(dhi, ob), 1);
      }
    wgmma_commit();
  }
  const float Gg0 = ws[r0], Gg1 = ws[r1];
  auto gmask = [&](int rw, int col) {
    const int row = rw ? r1 : r0;
    return col <= row && row < n ? __expf((rw ? Gg1 : Gg0) - ws[col]) : 0.f;
  };
  uint32_t ph[C / 16][4], pl[C / 16][4];
  wg_scores_pairs(S, gmask, t, ph, pl);
  // dO S̄ᵀ comes out scaled by sd sigma_S, P K by sd sigma_V sigma_K: bring the first to the second's scale.
  const float u = ldexpf(1.f, ek + ev - es), ge0 = r0 < n ? expf(Gg0) * u : 0.f, ge1 = r1 < n ? expf(Gg1) * u : 0.f;
  wg_scale_add_pb<NH, true>(Y, ge0, ge1, ph, pl, base + L::K);

  // dq~ through shared memory, over S̄'s tiles (C x D fp32 rows), so that the per-row work runs as a short loop over
  // whole rows: code run once per CTA waits on instruction fetch, and evicts the solve's loop from the cache.
  const float uo = ldexpf(1.f, -ek - ev) * a.scale, os[2] = {uo * inv_pow2(sd[0]), uo * inv_pow2(sd[1])};
  static_assert(C * D * 4 <= L::K, "dq~'s rows fit over S̄'s two tiles");
  float* dq_s = reinterpret_cast<float*>(sm + L::HI);
  __syncthreads();  // every warp's products are done
#pragma unroll
  for (int j = 0; j < NB; ++j)
#pragma unroll
    for (int rw = 0; rw < 2; ++rw) {
      const float* y = &Y[j >> 3][4 * (j & 7) + 2 * rw];
      *reinterpret_cast<float2*>(dq_s + (rw ? r1 : r0) * D + 8 * j + 2 * t) =
          make_float2(y[0] * os[rw], y[1] * os[rw]);
    }
  __syncthreads();
  // Per row (LPR lanes, four columns each): q~ = q + alpha (x - q), dalpha, q~ . dq~, and dx = alpha dq~ over dq~;
  // x, dq~, q~ to step_b2's scratch (rows >= n: zeros), the norms and q~ . dq~ to scal.
  // Each batch's loads go out before its stores, which the compiler may not move them past (they could alias).
  constexpr int LPR = D / 4, RPP = 128 / LPR, PB = 4;
  static_assert(C / RPP % PB == 0, "whole batches of rows");
  const int c4 = 4 * (tid % LPR);
#pragma unroll 1
  for (int p0 = 0; p0 < C / RPP; p0 += PB) {
    float4 xb[PB];
    uint2 qb[PB];
    float ab[PB], fb[PB];
#pragma unroll
    for (int b = 0; b < PB; ++b) {
      const int row = tid / LPR + RPP * (p0 + b);
      const int64_t tok = c.it.t0 + row;
      xb[b] = make_float4(0.f, 0.f, 0.f, 0.f);
      qb[b] = make_uint2(0u, 0u);
      ab[b] = fb[b] = 0.f;
      if (row < n) {
        xb[b] =
            *reinterpret_cast<const float4*>(static_cast<const float*>(a.x.p) + drow(a.x, c.it.batch, tok, c.h) + c4);
        qb[b] =
            *reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(a.q.p) + drow(a.q, c.it.batch, tok, c.h) + c4);
        ab[b] = dscalar(a.alpha, c.it.batch, tok, c.h, 1.f);
        fb[b] = dload(a.fro, drow(a.fro, c.it.batch, tok, c.h));
      }
    }
#pragma unroll
    for (int b = 0; b < PB; ++b) {
      const int row = tid / LPR + RPP * (p0 + b);
      const bool in = row < n;
      const int64_t tok = c.it.t0 + row;
      const float4 x = xb[b];
      const uint2 qw = qb[b];
      const float al = ab[b];
      float* gp = dq_s + row * D + c4;
      const float4 g = *reinterpret_cast<const float4*>(gp);
      const float q[4] = {
          wg_in16(static_cast<uint16_t>(qw.x & 0xffffu), a.q.dt), wg_in16(static_cast<uint16_t>(qw.x >> 16), a.q.dt),
          wg_in16(static_cast<uint16_t>(qw.y & 0xffffu), a.q.dt), wg_in16(static_cast<uint16_t>(qw.y >> 16), a.q.dt)};
      const float xv[4] = {x.x, x.y, x.z, x.w}, gv[4] = {g.x, g.y, g.z, g.w};
      float qt[4], da = 0.f, qd = 0.f;
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        qt[u] = q[u] + al * (xv[u] - q[u]);
        da = fmaf(gv[u], xv[u] - q[u], da);
        qd = fmaf(qt[u], gv[u], qd);
      }
      const int64_t off = c.id * C * D + row * D + c4;
      *reinterpret_cast<float4*>(a.adj_x + off) = x;
      *reinterpret_cast<float4*>(a.adj_dqt + off) = g;
      *reinterpret_cast<float4*>(a.adj_qt + c.id * D * D + row * D + c4) = make_float4(qt[0], qt[1], qt[2], qt[3]);
      *reinterpret_cast<float4*>(gp) = make_float4(al * g.x, al * g.y, al * g.z, al * g.w);
#pragma unroll
      for (int o = LPR / 2; o > 0; o >>= 1) {
        da += __shfl_xor_sync(0xffffffffu, da, o);
        qd += __shfl_xor_sync(0xffffffffu, qd, o);
      }
      if (c4 == 0) {
        if (a.dalpha.dt && in) dstore(a.dalpha, drow(a.dalpha, c.it.batch, tok, c.h), da);
        a.adj_scal[c.id * 3 * C + row] = fb[b];
        a.adj_scal[c.id * 3 * C + 2 * C + row] = qd;
      }
    }
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < NB; ++j)
#pragma unroll
    for (int rw = 0; rw < 2; ++rw) {
      const float2 v = *reinterpret_cast<const float2*>(dq_s + (rw ? r1 : r0) * D + 8 * j + 2 * t);
      rhs[j][2 * rw] = v.x, rhs[j][2 * rw + 1] = v.y;
    }
  f0 = r0 < n ? dload(a.fro, drow(a.fro, c.it.batch, c.it.t0 + r0, c.h)) : 0.f;
  f1 = r1 < n ? dload(a.fro, drow(a.fro, c.it.batch, c.it.t0 + r1, c.h)) : 0.f;
  __syncthreads();  // H̄'s tiles go over dq_s
  return true;
}

}  // namespace gka::cuda
