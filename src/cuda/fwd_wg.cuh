// The mixed forward on Hopper with one warpgroup per chunk (v17): norms and all N Chebyshev iterations of a (chunk,
// head) in a 128-thread CTA with 113 KB of shared memory (D = 128), so that two chunks run on each SM and one's
// products fill the tensor pipe while the other updates (chunk_fwd_kernel splits a chunk's columns over two
// warpgroups, which wait for each other every iteration, one CTA per SM). It stores x in fp32; the alpha-mix and
// readout are out_wg_kernel's (out_wg.cuh, v20: together the code overflowed the SM's instruction cache). A chunk
// outside f16's range goes onto the redo list (give_up, redo_list.cuh), and chunk_fwd_redo_kernel does all of it.
//
// The warpgroup owns all D columns of the iterate, which therefore lives in registers only as the scaled f16 words the
// products take as A (xa; the last step xd = x - x_prev): iterates rounded to f16 cost no accuracy measurably
// (bench/RESULTS.md, session 14: o 1.71e-3 -> 1.68e-3 when the two-warpgroup solve rounded its fp32 iterate the same
// way), and an fp32 iterate would not fit next to the 64 + 32 accumulators. The schedule is cheb_wgmma.cuh's: one-term
// f16 products on iterations 0 .. lead - 1, one accurate iteration (H̄ as f16 hi + lo, the scores in fp32 as f16 pairs;
// x_lead is exact in f16), whose residual rho = q - (H + lambda) x_lead replaces the right-hand side, then one-term
// iterations on z = x - x_lead; x = x_lead + z at the end.
//
// Per iteration: S = X Kᵀ (m64 x C), Y = X H̄ᵀ (m64 x D: m64n128 products at D = 128), P = S ⊙ M packed into A
// registers (the mask as f16 pairs in registers), Y = e^G Y + P K (K read MN-major), then the update from the
// right-hand side, which waits as eta sx q in fp32, thread-major (v23; f16 hi + lo words before, which every update
// unpacked), and from the accurate iteration on as eta sx rho.
//
// Norms (spec §B.2) on the same tiles: w from K H̄ᵀ (H̄ hi + lo), P = K Kᵀ (exact: k is 16-bit), M (P ⊙ P) with M and
// P ⊙ P as bf16 pairs (~2^-16; in f16 the products of small keys went subnormal: f 4 % off at f ~ 1e-2).
//
// The backward's adj_wg_kernel (v18) runs the same body with ADJ: step_b's dq~ and per-row work first (adj_wg.cuh),
// then the solve on H̄ᵀ (H̄'s tiles read MN-major, v20; they were transposed element by element before, 12 % of the
// kernel's stall samples) with dx = alpha dq~ as the right-hand side and the forward's norms; u goes to a scratch that
// step_b2 reads.
#pragma once

#include "cuda/adj_wg.cuh"

namespace gka::cuda {

// One chunk: the forward's norms and solve (x to a.x) or, where ADJ, the backward's dq~ and adjoint solve
// ((H_t + lambda_t I)ᵀ u_t = alpha_t dq~_t, the same iteration on H̄ᵀ).
template <int D, bool ADJ>
__device__ __forceinline__ void wg_chunk(const Item* items, const WgFwdArgs& a) {
  using L = WgFwdSmem<D>;
  constexpr int C = kChunkMax, NB = D / 8, KS = D / 16, NH = D / 64;
  extern __shared__ __align__(1024) char sm[];
  float* Gs = reinterpret_cast<float*>(sm + L::SMALL);
  float* ws = Gs + C;
  float* red = ws + C;
  const ChunkPos c = chunk_pos(items, a.H);
  const int n = c.n, tid = threadIdx.x, lane = tid & 31, wi = tid >> 5, g = lane >> 2, t = lane & 3;
  const int r0 = 16 * wi + g, r1 = r0 + 8;
  const uint32_t base = smem_addr(sm);
  if (base & 1023u) __trap();  // the swizzle needs 1024-byte aligned tiles
  // Element offset in a [B, T, H, D] view of this thread's first accumulator position in row rw (r0, r1): column
  // 2 t (add 8 j for n8 block j).
  auto at = [&](const DView& v, int rw) { return drow(v, c.it.batch, c.it.t0 + (rw ? r1 : r0), c.h) + 2 * t; };

  // ---- Tiles: K scaled (exact: 16-bit k), H̄ scaled as hi + lo (its scale and norm from the states kernel) ----
  float hh, mh;
  const float* Hg = wg_state<D>(a, c, 0, mh, hh);
  WgRows<D> kr;
  float mk = kr.load(a.k, c);
  mk = wg_block_max(mk, red + 4);
  bool bad = wg_gate_sums(Gs, a.gk, c);  // positive log-gates: mask entries beyond f16's reach
  int e;
  frexpf(mk * sqrtf(static_cast<float>(D)), &e);  // K's rows' norms < 2^e
  const int ek = -e;
  frexpf(mh, &e);  // |H̄| < 2^e
  const int eh = 14 - e;
  bad |= !isfinite(hh) || !isfinite(mh) || !isfinite(mk) || abs(ek) > 60 || abs(eh) > 100 || abs(2 * ek - eh) > 100;
  kr.tile(sm + L::K, a.k.dt, ldexpf(1.f, ek));
  float rhs[NB][4];  // the solve's right-hand side at this thread's positions: q, or the adjoint's dx = alpha dq~
  float f0 = 0.f, f1 = 0.f;
  if constexpr (ADJ) {
    if (!wg_adj_dqt<D>(a, c, sm, ek, bad, rhs, f0, f1)) return;
  }
  wg_state_tiles<D>(sm + L::HI, sm + L::LO, Hg, ldexpf(1.f, eh));
  fence_proxy_async();
  __syncthreads();
  const float G0 = Gs[r0], G1 = Gs[r1], eG0 = r0 < n ? expf(G0) : 0.f, eG1 = r1 < n ? expf(G1) : 0.f;
  // The decay mask at this thread's score positions (rows r0, r1; columns 8 j + 2 t, + 1), for the norms and the
  // accurate iteration. __expf (ex2.approx, ~2^-21 relative near the diagonal, where the entries are large): expf's
  // longer code runs once per CTA, where every instruction waits on instruction fetch.
  auto mask = [&](int rw, int col) {
    const int row = rw ? r1 : r0;
    return col <= row && row < n ? __expf((rw ? G1 : G0) - Gs[col]) : 0.f;
  };
  const uint64_t dK = sw128_desc(base + L::K), dHI = sw128_desc(base + L::HI), dLO = sw128_desc(base + L::LO);

  // ---- Norms: f_i² = e^{2 G_i} |H̄|² + 2 e^{G_i} (M w)_i + (M (P ⊙ P) Mᵀ)_ii, P = K Kᵀ, w_j = k_jᵀ H̄ k_j ----
  uint32_t mh2[C / 8][2];  // the mask as f16 pairs for the one-term scores
  if constexpr (ADJ) {  // a rolled loop through RL (free until the right-hand side), thread-major: unrolled, the 64
                        // masks were 1200 instructions of code run once (each waits on instruction fetch)
    uint32_t* mw = reinterpret_cast<uint32_t*>(sm + L::RL) + tid;
#pragma unroll 1
    for (int k = 0; k < C / 4; ++k) {
      const int col = 8 * (k >> 1) + 2 * t, rw = k & 1;
      mw[128 * k] = f16_word(mask(rw, col), mask(rw, col + 1));
    }
#pragma unroll
    for (int j = 0; j < C / 8; ++j)
#pragma unroll
      for (int rw = 0; rw < 2; ++rw) mh2[j][rw] = mw[128 * (2 * j + rw)];
  } else {
    float Y[NH][32], S[32];
    wgmma_fence();
#pragma unroll
    for (int h = 0; h < NH; ++h)
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) {
        const uint32_t ob = 64 * h * 128 + sw128_kstep(D, ks);
        wgmma<64, true>(Y[h], desc_plus(dK, sw128_kstep(C, ks)), desc_plus(dHI, ob), ks > 0);
        wgmma<64, true>(Y[h], desc_plus(dK, sw128_kstep(C, ks)), desc_plus(dLO, ob), 1);
      }
    wgmma_commit();
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      const uint64_t dk = desc_plus(dK, sw128_kstep(C, ks));
      wgmma<64, true>(S, dk, dk, ks > 0);
    }
    wgmma_commit();
    wgmma_wait<1>();
#pragma unroll
    for (int h = 0; h < NH; ++h) fence_regs(Y[h]);
    float w0 = 0.f, w1 = 0.f;  // rows r0, r1 of (K H̄ᵀ) ⊙ K
#pragma unroll
    for (int j = 0; j < NB; ++j) {
      const int col = 8 * j + 2 * t;
      const float2 k0 = f16_floats(*reinterpret_cast<const uint32_t*>(sm + L::K + sw128_bf16(C, r0, col)));
      const float2 k1 = f16_floats(*reinterpret_cast<const uint32_t*>(sm + L::K + sw128_bf16(C, r1, col)));
      const float* y = &Y[j >> 3][4 * (j & 7)];
      w0 = fmaf(y[0], k0.x, fmaf(y[1], k0.y, w0));
      w1 = fmaf(y[2], k1.x, fmaf(y[3], k1.y, w1));
    }
    const float uw = ldexpf(1.f, -2 * ek - eh);
    w0 = quad_sum(w0) * uw;
    w1 = quad_sum(w1) * uw;
    if (t == 0) ws[r0] = w0, ws[r1] = w1;
    wgmma_wait<0>();
    fence_regs(S);
    uint32_t mhi[C / 16][4], mlo[C / 16][4];  // the mask as A pairs; P ⊙ P into the P2 tile
#pragma unroll
    for (int j = 0; j < C / 8; ++j)
#pragma unroll
      for (int rw = 0; rw < 2; ++rw) {
        const int col = 8 * j + 2 * t, row = rw ? r1 : r0;
        const float p0 = S[4 * j + 2 * rw], p1 = S[4 * j + 2 * rw + 1];
        uint32_t h2, l2;
        bf16_pair(p0 * p0, p1 * p1, h2, l2);
        const uint32_t off = sw128_bf16(C, row, col);
        *reinterpret_cast<uint32_t*>(sm + L::P2 + off) = h2;
        *reinterpret_cast<uint32_t*>(sm + L::P2 + C * C * 2 + off) = l2;
        bf16_pair(mask(rw, col), mask(rw, col + 1), mhi[j >> 1][(j & 1) * 2 + rw], mlo[j >> 1][(j & 1) * 2 + rw]);
      }
    fence_proxy_async();
    __syncthreads();  // P2 and w complete
    const uint64_t dP = sw128_desc(base + L::P2), dPlo = sw128_desc(base + L::P2 + C * C * 2);
    wgmma_fence();
#pragma unroll
    for (int k = 0; k < C / 16; ++k) {  // Z = M (P ⊙ P): B = P ⊙ P (symmetric) K-major
      wgmma<64, false, 0>(S, mlo[k], desc_plus(dP, 32 * k), k > 0);
      wgmma<64, false, 0>(S, mhi[k], desc_plus(dPlo, 32 * k), 1);
      wgmma<64, false, 0>(S, mhi[k], desc_plus(dP, 32 * k), 1);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(S);
    float z0 = 0.f, z1 = 0.f, m0 = 0.f, m1 = 0.f;
    // The mask from its pairs (~2^-17; every recomputation is cold code), and as f16 for the one-term scores.
    auto mval = [&](int j, int rw, int u) {
      const uint32_t h = mhi[j >> 1][(j & 1) * 2 + rw], l = mlo[j >> 1][(j & 1) * 2 + rw];
      return __uint_as_float(u ? h & 0xffff0000u : h << 16) + __uint_as_float(u ? l & 0xffff0000u : l << 16);
    };
#pragma unroll
    for (int j = 0; j < C / 8; ++j)
#pragma unroll
      for (int rw = 0; rw < 2; ++rw) mh2[j][rw] = f16_word(mval(j, rw, 0), mval(j, rw, 1));
#pragma unroll
    for (int j = 0; j < C / 8; ++j)
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        const int col = 8 * j + 2 * t + u;
        const float a0 = mval(j, 0, u), a1 = mval(j, 1, u);
        z0 = fmaf(S[4 * j + u], a0, z0);
        z1 = fmaf(S[4 * j + 2 + u], a1, z1);
        m0 = fmaf(a0, ws[col], m0);
        m1 = fmaf(a1, ws[col], m1);
      }
    const float uz = ldexpf(1.f, -4 * ek);
    z0 = quad_sum(z0) * uz, z1 = quad_sum(z1) * uz, m0 = quad_sum(m0), m1 = quad_sum(m1);
    f0 = r0 < n ? sqrtf(fmaxf(0.f, eG0 * eG0 * hh + 2.f * eG0 * m0 + z0)) : 0.f;
    f1 = r1 < n ? sqrtf(fmaxf(0.f, eG1 * eG1 * hh + 2.f * eG1 * m1 + z1)) : 0.f;
    if (a.fro.dt && t == 0) {  // (chunk_fwd_kernel rewrites them where this kernel gives up)
      if (r0 < n) dstore(a.fro, drow(a.fro, c.it.batch, c.it.t0 + r0, c.h), f0);
      if (r1 < n) dstore(a.fro, drow(a.fro, c.it.batch, c.it.t0 + r1, c.h), f1);
    }
  }

  // ---- Solve set-up: per-row constants and scales, x_0 = the right-hand side eta sx q ----
  const float eta0 = f0 > 0.f ? a.cc.eta_f / f0 : 0.f, eta1 = f1 > 0.f ? a.cc.eta_f / f1 : 0.f;
  const float el0 = eta0 * a.cc.r * f0, el1 = eta1 * a.cc.r * f1;
  uint32_t xa[KS][4], xd[KS][4];
  float sx0, sx1;
  {
    float(&q)[NB][4] = rhs;
    if constexpr (!ADJ)
      wg_load_pairs<NB>(q, static_cast<const uint16_t*>(a.q.p) + at(a.q, 0),
                        static_cast<const uint16_t*>(a.q.p) + at(a.q, 1), a.q.dt, r0 < n, r1 < n);
    float qm0 = 0.f, qm1 = 0.f, qs = 0.f;
#pragma unroll
    for (int j = 0; j < NB; ++j) {
      qm0 = fmaxf(qm0, fmaxf(fabsf(q[j][0]), fabsf(q[j][1])));
      qm1 = fmaxf(qm1, fmaxf(fabsf(q[j][2]), fabsf(q[j][3])));
      qs += (q[j][0] + q[j][1]) + (q[j][2] + q[j][3]);
    }
    qm0 = quad_max(qm0), qm1 = quad_max(qm1);
    frexpf(eta0 * qm0, &e);  // |x_0| < 2^e in this row
    const int ex0 = -7 - e;  // the row's norm under 2^-3.5 after scaling (D <= 128)
    frexpf(eta1 * qm1, &e);
    const int ex1 = -7 - e;
    sx0 = ldexpf(1.f, ex0), sx1 = ldexpf(1.f, ex1);
    // f = 0 on a row (all keys so far zero: x = 0) is left to chunk_fwd_kernel too: q~ takes q from eta sx q.
    bad |= !isfinite(qs) || !(f0 > 0.f || r0 >= n) || !(f1 > 0.f || r1 >= n) || abs(ex0 + 2 * ek) > 120 ||
           abs(ex1 + 2 * ek) > 120 || (qm0 * eta0 > 0.f && !(el0 >= 0x1p-12f)) ||
           (qm1 * eta1 > 0.f && !(el1 >= 0x1p-12f));
    if (__syncthreads_or(bad)) {  // outside f16's range: chunk_fwd_kernel does this chunk
      if (tid == 0) give_up(a.ok, a.redo, c.id);
      return;
    }
    float4* rh = reinterpret_cast<float4*>(sm + L::RH) + tid;
#pragma unroll
    for (int m = 0; m < KS; ++m) {
      float v[8];
#pragma unroll
      for (int i = 0; i < 4; ++i) {  // word i: n8 block 2m + (i >> 1), row r0 (i even) or r1
        const int j = 2 * m + (i >> 1), rw = i & 1;
        const float s = (rw ? sx1 : sx0) * (rw ? eta1 : eta0);
        v[2 * i] = q[j][2 * rw] * s, v[2 * i + 1] = q[j][2 * rw + 1] * s;
        xa[m][i] = f16_word(v[2 * i], v[2 * i + 1]);
        xd[m][i] = xa[m][i];  // x_prev = 0
      }
      rh[256 * m] = make_float4(v[0], v[1], v[2], v[3]);
      rh[256 * m + 128] = make_float4(v[4], v[5], v[6], v[7]);
    }
  }
  // x' = a x + omega (R - eta sx H x) + (1 - omega) x_prev with R = eta sx q and Y = sx sigma_K² H x.
  const float uy = ldexpf(1.f, 2 * ek - eh), ye0 = eG0 * uy, ye1 = eG1 * uy;
  const float ey0 = eta0 * ldexpf(1.f, -2 * ek), ey1 = eta1 * ldexpf(1.f, -2 * ek);
  // The right-hand side in fp32, thread-major (this thread's values 4 i .. 4 i + 3 at rhs_s[128 i]), over RH and
  // RL (C D 4 bytes); the accurate iteration replaces it with eta sx rho.
  static_assert(L::END - L::RH == C * D * 4, "the fp32 right-hand side fills RH and RL");
  float4* rhs_s = reinterpret_cast<float4*>(sm + L::RH) + tid;
  uint4* xl_s = reinterpret_cast<uint4*>(sm + L::LO) + tid;  // x_lead's words, once H̄'s lo tile is done with
  const int iters = a.cc.n, lead = a.lead;

  // One iteration; ACC: the accurate one (H̄ hi + lo, the scores as fp32 pairs), which switches to the offset form.
  // Its own copy of the code: branches inside the update cost the one-term iteration registers.
  auto step = [&]<bool ACC>(int it) {
    float Y[NH][32], S[32];
    uint32_t b = base;
    asm volatile("" : "+r"(b));  // descriptors an add from an opaque base: not hoisted into registers
    // Y = X H̄ᵀ reads H̄ K-major; the adjoint's X H̄ reads the same tiles MN-major.
    const uint64_t dk = sw128_desc(b + L::K);
    const uint64_t dhi = ADJ ? sw128_desc_mn_at(b + L::HI, D, 0, 0) : sw128_desc(b + L::HI);
    const uint64_t dlo = ADJ ? sw128_desc_mn_at(b + L::LO, D, 0, 0) : sw128_desc(b + L::LO);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) wgmma<64, true, 0>(S, xa[ks], desc_plus(dk, sw128_kstep(C, ks)), ks > 0);
    wgmma_commit();
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {  // m64n128 products where D = 128 (the halves Y[0], Y[1]): half the instructions
      const uint32_t ob = ADJ ? 16 * ks * 128 : sw128_kstep(D, ks);
      if constexpr (ACC) wg_y_step<NH, ADJ>(Y, xa[ks], desc_plus(dlo, ob), ks > 0);
      wg_y_step<NH, ADJ>(Y, xa[ks], desc_plus(dhi, ob), ACC || ks > 0);
    }
    wgmma_commit();
    uint32_t ph[C / 16][4], pl[C / 16][4];
    if constexpr (ACC) {
      wg_scores_pairs(S, mask, t, ph, pl);
    } else {
      wgmma_wait<1>();
      fence_regs(S);
#pragma unroll
      for (int k = 0; k < C / 16; ++k)
#pragma unroll
        for (int i = 0; i < 4; ++i)
          ph[k][i] =
              wg_hmul2(f16_word(S[4 * (2 * k + (i >> 1)) + 2 * (i & 1)], S[4 * (2 * k + (i >> 1)) + 2 * (i & 1) + 1]),
                       mh2[2 * k + (i >> 1)][i & 1]);
    }
    wg_scale_add_pb<NH, ACC>(Y, ye0, ye1, ph, pl, b + L::K);
    const float om = __ldg(a.omega + it), w1 = 1.f - om;
    const float a0 = om * (1.f - el0), a1 = om * (1.f - el1);
    // The one-term update in f16x2 (v23) as x' = x + u, u = omega (s - el x) + (omega - 1) d, d = x - x_prev (the
    // last step, kept instead of x_prev: d' = u): the recurrence a x + omega s + (1 - omega) x_prev, whose fixed point
    // stays exact with omega and el rounded to f16 (rounded coefficients of that form would shift lambda by ~2^-11 /
    // el), and each f16 operation rounds relative to the increment. s stays fp32 up to its packing (Y is).
    const __half2 om2 = __float2half2_rn(om), omm2 = __float2half2_rn(om - 1.f);
    const __half2 nel[2] = {__float2half2_rn(-el0), __float2half2_rn(-el1)};
    if constexpr (ACC) __syncthreads();  // H̄'s lo tile read by every warp's products: x_lead goes there
#pragma unroll
    for (int m = 0; m < KS; ++m) {
      const float4 ra = rhs_s[256 * m], rb = rhs_s[256 * m + 128];
      float rv[8] = {ra.x, ra.y, ra.z, ra.w, rb.x, rb.y, rb.z, rb.w};
      if constexpr (ACC) xl_s[128 * m] = make_uint4(xa[m][0], xa[m][1], xa[m][2], xa[m][3]);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int j = 2 * m + (i >> 1), rw = i & 1;
        const float* y = &Y[j >> 3][4 * (j & 7) + 2 * rw];
        const float ey = rw ? ey1 : ey0;
        if constexpr (ACC) {  // eta rho = eta (rhs - (H + lambda) x_lead); from here on z = x - x_lead
          const float2 xv = f16_floats(xa[m][i]), dv = f16_floats(xd[m][i]), pv = {xv.x - dv.x, xv.y - dv.y};
          const float aa = rw ? a1 : a0, el = rw ? el1 : el0;
          const float s0 = fmaf(-ey, y[0], rv[2 * i]), s1 = fmaf(-ey, y[1], rv[2 * i + 1]);  // eta (rhs - H x), scaled
          const float n0 = aa * xv.x + om * s0 + w1 * pv.x, n1 = aa * xv.y + om * s1 + w1 * pv.y;
          rv[2 * i] = s0 - el * xv.x, rv[2 * i + 1] = s1 - el * xv.y;
          xa[m][i] = xd[m][i] = f16_word(n0 - xv.x, n1 - xv.y);  // z_lead = 0
        } else {
          const __half2 s2 = __floats2half2_rn(fmaf(-ey, y[0], rv[2 * i]), fmaf(-ey, y[1], rv[2 * i + 1]));
          const __half2 x2 = half2_of(xa[m][i]), e2 = __hfma2(nel[rw], x2, s2);  // eta (rhs - (H + lambda) x)
          const __half2 u2 = __hfma2(omm2, half2_of(xd[m][i]), __hmul2(om2, e2));
          xd[m][i] = word_of(u2);
          xa[m][i] = word_of(__hadd2(x2, u2));
        }
      }
      if constexpr (ACC) {  // eta sx rho = eta sx (rhs - (H + lambda) x_lead) over the right-hand side
        rhs_s[256 * m] = make_float4(rv[0], rv[1], rv[2], rv[3]);
        rhs_s[256 * m + 128] = make_float4(rv[4], rv[5], rv[6], rv[7]);
      }
    }
  };
  // Not unrolled, and the last iteration like the others: code run once per CTA waits on instruction fetch (a last
  // iteration of its own that kept x in fp32 cost 10 % of the kernel's samples; z in f16 moves x by ~2^-12 |z| ~ 1e-5
  // |x|).
#pragma unroll 1
  for (int it = 0; it < iters; ++it) {
    if (it != lead)
      step.template operator()<false>(it);
    else
      step.template operator()<true>(it);
  }
  // x = (x_lead + z) / sx in fp32: the forward's to its view (out_wg_kernel's q~ and the backward read it), the
  // adjoint's u to step_b2's scratch, every row (rows >= n stayed 0).
  float* xr[2];
#pragma unroll
  for (int rw = 0; rw < 2; ++rw)
    xr[rw] = ADJ ? a.adj_u + c.id * C * D + (rw ? r1 : r0) * D + 2 * t : static_cast<float*>(a.x.p) + at(a.x, rw);
#pragma unroll
  for (int m = 0; m < KS; ++m) {
    const uint4 xlv = lead < iters ? xl_s[128 * m] : make_uint4(0u, 0u, 0u, 0u);
    const uint32_t xl4[4] = {xlv.x, xlv.y, xlv.z, xlv.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int j = 2 * m + (i >> 1), rw = i & 1;
      const float2 z = f16_floats(xa[m][i]), xl = f16_floats(xl4[i]);
      const float is = inv_pow2(rw ? sx1 : sx0);
      if (ADJ || (rw ? r1 : r0) < n)
        *reinterpret_cast<float2*>(xr[rw] + 8 * j) = make_float2((z.x + xl.x) * is, (z.y + xl.y) * is);
    }
  }
  if (tid == 0) a.ok[c.id] = 1;
}

template <int D>
__global__ void __launch_bounds__(128, 2) fwd_wg_kernel(const Item* items, WgFwdArgs a) {
  wg_chunk<D, false>(items, a);
}
template <int D>
__global__ void __launch_bounds__(128, 2) adj_wg_kernel(const Item* items, WgFwdArgs a) {
  wg_chunk<D, true>(items, a);
}

// Launches a one-warpgroup kernel (fwd_wg, adj_wg, out_wg) over `grid` (items, H) with `bytes` of shared memory (by
// default fwd_wg's layout): two CTAs per SM need nearly all of it (2 x 113 KB at D = 128), so the largest carveout.
template <int D>
inline void wg_launch(void (*kernel)(const Item*, WgFwdArgs), dim3 grid, const Item* items, const WgFwdArgs& w,
                      cudaStream_t stream, const char* fn, uint32_t bytes = WgFwdSmem<D>::kBytes) {
  const int smem = static_cast<int>(bytes);
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), fn, "cudaFuncSetAttribute");
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared),
        fn, "cudaFuncSetAttribute");
  kernel<<<grid, 128, smem, stream>>>(items, w);
  launch_check(fn);
}

}  // namespace gka::cuda
