// Step (D) of the chunked backward (chunk_bwd.cu): dk, dv, dgk and dg per (chunk, head), from step_b2's scratch
// and step_c's adjoint states. Two kernels: 3xTF32 on fp32 tiles, and bf16 pair tiles for Precision::mixed on bf16
// inputs.
#include "cuda/chunk_bwd.cuh"
#include "cuda/pair_tile.cuh"

namespace gka::cuda {

// The end of (D), after the products: dg from the row dots k0, k1 of dkr with K (this thread's partials), the
// gates' suffix sums with step_c's state dots, and the stores of dgk, dg, dk = dks + dkr and dv.
template <int D>
__device__ __forceinline__ void step_d_finish(ChunkSmem<D>& s, const BwdArgs& a, const ChunkPos& c,
                                              const SolveWarp& w, float k0, float k1, FragC<D>& dks,
                                              const FragC<D>& dkr, const FragC<D>& dv) {
  const auto [it, h, n, id, tile] = c;
  float* dG = s.eta;
  float* dGg = s.lam;
  frag_row_sum(-k0, -k1, w, s.rowp, dGg);
  if (threadIdx.x < kChunkMax) dGg[threadIdx.x] += s.t1[threadIdx.x];
  float dot[4] = {0.f, 0.f, 0.f, 0.f};  // <R_{c-1}, H̄_c>, <R_c, H̄_{c+1}>, <Q_{c-1}, S̄_c>, <Q_c, S̄_{c+1}> (step_c)
  for (int i = threadIdx.x; i < kDotParts<D>; i += blockDim.x)
#pragma unroll
    for (int d = 0; d < 4; ++d) dot[d] += a.dots[(id * 4 + d) * kDotParts<D> + i];
  const float rd0 = block_sum(dot[0], s.red), rh = block_sum(dot[1], s.red);
  const float qd0 = block_sum(dot[2], s.red), qs = block_sum(dot[3], s.red);
  if (threadIdx.x == 0) {
    dG[n - 1] += rh;
    dGg[n - 1] += qs;
    for (int i = n - 2; i >= 1; --i) {
      dG[i] += dG[i + 1];
      dGg[i] += dGg[i + 1];
    }
    dG[0] = rd0;
    dGg[0] = qd0;
  }
  __syncthreads();
  if (threadIdx.x < n) {
    const int i = threadIdx.x;
    if (a.dgk.dt) dstore(a.dgk, drow(a.dgk, it.batch, it.t0 + i, h), dG[i]);
    if (a.dg.dt) dstore(a.dg, drow(a.dg, it.batch, it.t0 + i, h), dGg[i]);
  }
#pragma unroll
  for (int j = 0; j < D / 16; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) dks[0][j][e] += dkr[0][j][e];
  // Every tile is dead by now (the barriers above): the stores go through two bf16 tiles over s.H and s.K.
  __nv_bfloat16* stage = reinterpret_cast<__nv_bfloat16*>(s.H);
  static_assert(2 * kTileBytes<kChunkMax, D, false> <= offsetof(ChunkSmem<D>, X), "two staging tiles fit over H, K");
  if (a.dk.dt) frag_store_rows<D>(dks, w, a.dk, it, h, stage);
  if (a.dv.dt) frag_store_rows<D>(dv, w, a.dv, it, h, stage + kChunkMax * (D + 8));
}

// (D) with 3xTF32 products on fp32 tiles (KX: k, v and dO are 16-bit, exact in tf32); step_d_bf16_kernel below
// takes bf16 inputs with Precision::mixed.
// The readout passes' scores P_ts = s v Mg_st for s >= t (rows t, columns u = s < n; Mg stored as M[s][t]), for
// frag_put / frag_put_pair.
template <int D>
__device__ __forceinline__ auto readout_scores(const ChunkSmem<D>& s, const BwdArgs& a, int n) {
  return [&s, scale = a.scale, n](int t, int u, float v) {
    return (u >= t && u < n) ? scale * v * s.M[u * Cfg<D>::LC + t] : 0.f;
  };
}

template <int D, bool KX>
__global__ void __launch_bounds__(kThreads, 1) step_d_kernel(const Item* items, BwdArgs a) {
  using F = Cfg<D>;
  extern __shared__ __align__(1024) float4 smem_raw[];  // 1024: the wgmma tiles (cheb_wgmma.cuh)
  ChunkSmem<D>& s = *reinterpret_cast<ChunkSmem<D>*>(smem_raw);
  const ChunkPos c = chunk_pos(items, a.H);
  const auto [it, h, n, id, tile] = c;
  const bool solve = a.cc.n > 0;
  constexpr int64_t DD = static_cast<int64_t>(D) * D;
  const float* Xg = a.X + id * F::C * D;
  const float* Ug = a.U + id * F::C * D;
  const float* R = a.Psi + id * DD;
  const float* Qc = a.Phi + id * DD;
  float* dG = s.eta;
  float* dGg = s.lam;

  k_state_load<D>(s, a.k, a.st.Hs, c, false);
  if (threadIdx.x < F::C) {
    const int i = threadIdx.x;
    s.alpha[i] = i < n ? dscalar(a.alpha, it.batch, it.t0 + i, h, 1.f) : 0.f;
    s.f[i] = a.scal[id * 3 * F::C + i];
    s.w[i] = a.scal[id * 3 * F::C + F::C + i];
    s.t1[i] = a.scal[id * 3 * F::C + 2 * F::C + i];
  }
  gate_build<D>(a.gk, it, h, s.G, s.eG, s.M, &a.g, s.Gg, s.eGg);
  cp_async_wait_all();
  __syncthreads();
  const float GL = s.G[n - 1];
  // Every product on tensor cores (3xTF32); C x D results in the SolveWarp fragment layout (chunk_tile.cuh).
  constexpr int LD = F::LD, LC = F::LC, C = F::C, NT = D / 16;
  const SolveWarp w;
  const int r0 = 16 * w.rb + w.g, r1 = r0 + 8;
  const int n8 = (n + 7) & ~7;
  // Operands from the fp32 scratch are staged in shared memory first (cp.async, all in flight): fragment
  // loads straight from global memory left the products waiting on L2 latency.
  // dk of the solve: K (R + Rᵀ), rows scaled by e^{G_last - G_t}; R (D x D) staged over the X and V tiles.
  static_assert(offsetof(ChunkSmem<D>, V) == offsetof(ChunkSmem<D>, X) + sizeof(float) * C * LD && 2 * C >= D,
                "R is staged over the adjacent X and V tiles");
  tile_copy_async<D>(s.X, R, D);
  __syncthreads();
  FragC<D> dks;
  {
    FragC<D> t;
    frag_zero(t);
    frag_zero(dks);
    tile_gemm<D, false, false, KX>(t, w, s.K, LD, s.X, LD, D);
    tile_gemm<D, false, true, KX>(t, w, s.K, LD, s.X, LD, D);
    frag_add_rows<D>(dks, t, expf(GL - s.G[r0]), expf(GL - s.G[r1]));
  }
  if (solve) {  // X and U staged in s.X and s.V
    __syncthreads();
    tile_copy_async<D>(s.X, Xg, C);
    tile_copy_async<D>(s.V, Ug, C);
    __syncthreads();
    // -((K Xᵀ) ⊙ M̃) U - ((K Uᵀ) ⊙ M̃) X with M̃_ts = M_st (s >= t).
    for (int pass = 0; pass < 2; ++pass) {
      const float* A = pass == 0 ? s.X : s.V;
      const float* B = pass == 0 ? s.V : s.X;
      FragC<C> sc;
      frag_zero(sc);
      tile_gemm<C, false, true, KX>(sc, w, s.K, LD, A, LD, D);
      frag_put<C>(s.P, sc, w, [&](int t, int u, float v) { return (u >= t && u < n) ? -v * s.M[u * LC + t] : 0.f; });
      __syncthreads();
      tile_gemm<D, false, false>(dks, w, s.P, LC, B, LD, n8);
      __syncthreads();
    }
    if (a.lambda_grad) {
      if (threadIdx.x == 0) {  // Ŵ_m = w_m + e^{2 gk_{m+1}} Ŵ_{m+1}
        float wh = 0.f;
        for (int m = n - 1; m >= 0; --m) {
          const float e = m + 1 < n ? s.M[(m + 1) * F::LC + m] : 0.f;
          wh = s.w[m] + e * e * wh;
          s.t0[m] = wh;
        }
      }
      __syncthreads();
      FragC<C> sc;
      frag_zero(sc);
      tile_gemm<C, false, true, KX, KX>(sc, w, s.K, LD, s.K, LD, D);
      frag_put<C>(s.P, sc, w, [&](int t, int u, float v) {
        const int m = max(t, u);
        return (t < n && u < n) ? -2.f * s.M[m * LC + t] * s.M[m * LC + u] * s.t0[m] * v : 0.f;
      });
      __syncthreads();
      tile_gemm<D, false, false, false, KX>(dks, w, s.P, LC, s.K, LD, n8);
      FragC<D> t;
      frag_zero(t);
      tile_gemm<D, false, false, KX>(t, w, s.K, LD, s.H, LD, D);
      tile_gemm<D, false, true, KX>(t, w, s.K, LD, s.H, LD, D);
      frag_add_rows<D>(dks, t, -s.eG[r0] * s.t0[r0], -s.eG[r1] * s.t0[r1]);
    }
    // H_i x_i (one more operator application) for the gate gradient; X is still in s.X, U in s.V.
    __syncthreads();
    float mk[4][4], hx[NT][4];
    mask_frag<D>(s.M, w, mk);
    op_mma<D, true, true, KX>(s, w, mk, hx);
    float u0, u1, k0, k1;
    frag_row_dot<D>(reinterpret_cast<const FragC<D>&>(hx), w, s.V, LD, u0, u1);
    frag_row_dot<D>(dks, w, s.K, LD, k0, k1);
    frag_row_sum(-0.5f * k0 - u0, -0.5f * k1 - u1, w, s.rowp, dG);
    if (threadIdx.x < C) dG[threadIdx.x] -= s.w[threadIdx.x] * s.f[threadIdx.x] * s.f[threadIdx.x];
  } else {
    float k0, k1;
    frag_row_dot<D>(dks, w, s.K, LD, k0, k1);
    frag_row_sum(-0.5f * k0, -0.5f * k1, w, s.rowp, dG);
  }

  // Readout part: dO into H's space, Q~ into X, V, and the g mask.
  __syncthreads();
  rows_load<D>(s.H, a.d_o, it, h);
  rows_load<D>(s.X, a.q, it, h);
  rows_load<D>(s.V, a.v, it, h);
  gate_mask<D>(s.Gg, n, s.M);
  __syncthreads();
  tile_ldg_each<C, D>(Xg, [&](int r, int c, float4 x) {  // Q~ = q + alpha (x - q)
    float4& qv = *reinterpret_cast<float4*>(s.X + r * LD + c);
    const float al = s.alpha[r];
    qv = make_float4(qv.x + al * (x.x - qv.x), qv.y + al * (x.y - qv.y), qv.z + al * (x.z - qv.z),
                     qv.w + al * (x.w - qv.w));
  });
  __syncthreads();
  const float GgL = s.Gg[n - 1];
  FragC<D> dkr, dv;
  frag_zero(dkr);
  frag_zero(dv);
  for (int pass = 0; pass < 2; ++pass) {
    // pass 0: P_ts = s (V_t·dO_s) Mg_st, dkr += P Q~;  pass 1: P_ts = s (K_t·Q~_s) Mg_st, dv += P dO.
    const float* A = pass == 0 ? s.V : s.K;
    const float* B = pass == 0 ? s.H : s.X;
    FragC<C> sc;
    frag_zero(sc);
    if (pass == 0)  // V dOᵀ: both raw inputs
      tile_gemm<C, false, true, KX, KX>(sc, w, A, LD, B, LD, D);
    else
      tile_gemm<C, false, true, KX>(sc, w, A, LD, B, LD, D);
    frag_put<C>(s.P, sc, w, readout_scores<D>(s, a, n));
    __syncthreads();
    if (pass == 0)
      tile_gemm<D, false, false>(dkr, w, s.P, LC, s.X, LD, n8);
    else
      tile_gemm<D, false, false, false, KX>(dv, w, s.P, LC, s.H, LD, n8);
    __syncthreads();
  }
  {  // Q_c staged over dO (dead after the passes)
    tile_copy_async<D>(s.H, Qc, D);
    __syncthreads();
    const float e0 = expf(GgL - s.Gg[r0]), e1 = expf(GgL - s.Gg[r1]);
    FragC<D> t;
    frag_zero(t);
    tile_gemm<D, false, true, KX>(t, w, s.V, LD, s.H, LD, D);  // V Q_cᵀ
    frag_add_rows<D>(dkr, t, e0, e1);
    frag_zero(t);
    tile_gemm<D, false, false, KX>(t, w, s.K, LD, s.H, LD, D);  // K Q_c
    frag_add_rows<D>(dv, t, e0, e1);
  }
  float k0, k1;
  frag_row_dot<D>(dkr, w, s.K, LD, k0, k1);
  step_d_finish<D>(s, a, c, w, k0, k1, dks, dkr, dv);
}

// Byte offsets of step_d_bf16_kernel's bf16 tiles in ChunkSmem, over H, K, X, V and P (M and the per-row arrays
// stay): K raw throughout; then by phase R (pairs); X, U, P (pairs) and H̄ (pairs, after P); V, dO (raw), Q~ (pairs,
// up to P) and Q_c (pairs, where H̄ was). Loading H̄ with R, before the solve's passes, was slower (ncu, H100).
template <int D>
struct StepDTiles {
  static constexpr int C = kChunkMax;
  static constexpr uint32_t RAW = kTileBytes<C, D, false>, PCD = kTileBytes<C, D, true>, PDD = kTileBytes<D, D, true>;
  static constexpr uint32_t K = 0, R = RAW, X = RAW, U = X + PCD, P = U + PCD, H = P + kTileBytes<C, C, true>;
  static constexpr uint32_t V = RAW, DO = 2 * RAW, QT = 3 * RAW, QC = H;
  static_assert(QT + PCD == P && R + PDD <= offsetof(ChunkSmem<D>, M) && H + PDD <= offsetof(ChunkSmem<D>, M) &&
                    RAW <= kTileBytes<C, C, true>,
                "step_d_bf16's tiles overflow ChunkSmem (or raw q does not fit over P)");
};

// Q~ = q + alpha (x - q) into a pair tile, q from a raw tile (rows >= n zero), x from global memory.
template <int D>
__device__ __forceinline__ void qtilde_pairs(const BTile& t, const BTile& q, const float* Xg, const float* alpha) {
  tile_ldg_each<kChunkMax, D>(Xg, [&](int r, int c, float4 x) {
    const auto* qr = reinterpret_cast<const __nv_bfloat162*>(q.hi + r * q.ld + c);
    const float2 q01 = __bfloat1622float2(qr[0]), q23 = __bfloat1622float2(qr[1]);
    const float al = alpha[r];
    pair_put(t, r, c, q01.x + al * (x.x - q01.x), q01.y + al * (x.y - q01.y));
    pair_put(t, r, c + 2, q23.x + al * (x.z - q23.x), q23.y + al * (x.w - q23.y));
  });
}

// (D) with Precision::mixed where k, v and dO are bf16: step_d_kernel's products on bf16 tiles (pair_tile.cuh), k, v
// and dO raw, every fp32 operand (the scratch tiles, H̄, P, Q~) as hi/lo pairs split once. Its products round to
// ~2^-16 relative (3xTF32: ~2^-21), far below the bf16 rounding of the gradients it stores. ncu, 8x2048, H100: 1.98
// ms against 2.91 for step_d_kernel<128, true>.
template <int D>
__global__ void __launch_bounds__(kThreads, 1) step_d_bf16_kernel(const Item* items, BwdArgs a) {
  using F = Cfg<D>;
  using L = StepDTiles<D>;
  extern __shared__ __align__(1024) float4 smem_raw[];
  ChunkSmem<D>& s = *reinterpret_cast<ChunkSmem<D>*>(smem_raw);
  const ChunkPos c = chunk_pos(items, a.H);
  const auto [it, h, n, id, tile] = c;
  const bool solve = a.cc.n > 0;
  constexpr int64_t DD = static_cast<int64_t>(D) * D;
  constexpr int LC = F::LC, C = F::C;
  const float* Xg = a.X + id * C * D;
  float* dG = s.eta;
  const BTile K = btile_at<C, D, false>(&s, L::K), P = btile_at<C, C, true>(&s, L::P);

  rows_copy_bf16<D>(K, a.k, it, h);
  if (threadIdx.x < C) {
    const int i = threadIdx.x;
    s.alpha[i] = i < n ? dscalar(a.alpha, it.batch, it.t0 + i, h, 1.f) : 0.f;
    s.f[i] = a.scal[id * 3 * C + i];
    s.w[i] = a.scal[id * 3 * C + C + i];
    s.t1[i] = a.scal[id * 3 * C + 2 * C + i];
  }
  gate_build<D>(a.gk, it, h, s.G, s.eG, s.M, &a.g, s.Gg, s.eGg);
  const BTile R = btile_at<D, D, true>(&s, L::R), Hb = btile_at<D, D, true>(&s, L::H);
  pairs_from_global<D, D>(R, a.Psi + id * DD);
  cp_async_wait_all();
  __syncthreads();
  const float GL = s.G[n - 1];
  const SolveWarp w;
  const int r0 = 16 * w.rb + w.g, r1 = r0 + 8;
  const int n16 = (n + 15) & ~15;  // P is zero from column n on
  FragC<D> dks;
  frag_zero(dks);
  {  // dk of the solve: K (R + Rᵀ), rows scaled by e^{G_last - G_t}
    FragC<D> t;
    frag_zero(t);
    pair_gemm<D, false, false, true>(t, w, K, R, D);
    pair_gemm<D, true, false, true>(t, w, K, R, D);
    frag_add_rows<D>(dks, t, expf(GL - s.G[r0]), expf(GL - s.G[r1]));
  }
  if (solve) {
    const BTile X = btile_at<C, D, true>(&s, L::X), U = btile_at<C, D, true>(&s, L::U);
    __syncthreads();  // R is read
    pairs_from_global<C, D>(X, Xg);
    pairs_from_global<C, D>(U, a.U + id * C * D);
    __syncthreads();
    // -((K Xᵀ) ⊙ M̃) U - ((K Uᵀ) ⊙ M̃) X with M̃_ts = M_st (s >= t).
#pragma unroll  // constant passes: the tiles picked by pass stay out of local memory
    for (int pass = 0; pass < 2; ++pass) {
      FragC<C> sc;
      frag_zero(sc);
      pair_gemm<C, true, false, true>(sc, w, K, pass == 0 ? X : U, D);
      frag_put_pair<C>(P, sc, w, [&](int t, int u, float v) { return (u >= t && u < n) ? -v * s.M[u * LC + t] : 0.f; });
      __syncthreads();
      pair_gemm<D, false, true, true>(dks, w, P, pass == 0 ? U : X, n16);
      __syncthreads();
    }
    pairs_from_global<D, D>(Hb, a.st.Hs + tile * DD);
    if (a.lambda_grad) {
      if (threadIdx.x == 0) {  // Ŵ_m = w_m + e^{2 gk_{m+1}} Ŵ_{m+1}
        float wh = 0.f;
        for (int m = n - 1; m >= 0; --m) {
          const float e = m + 1 < n ? s.M[(m + 1) * LC + m] : 0.f;
          wh = s.w[m] + e * e * wh;
          s.t0[m] = wh;
        }
      }
      __syncthreads();
      FragC<C> sc;
      frag_zero(sc);
      pair_gemm<C, true, false, false>(sc, w, K, K, D);
      frag_put_pair<C>(P, sc, w, [&](int t, int u, float v) {
        const int m = max(t, u);
        return (t < n && u < n) ? -2.f * s.M[m * LC + t] * s.M[m * LC + u] * s.t0[m] * v : 0.f;
      });
      __syncthreads();
      pair_gemm<D, false, true, false>(dks, w, P, K, n16);
      FragC<D> t;
      frag_zero(t);
      pair_gemm<D, false, false, true>(t, w, K, Hb, D);
      pair_gemm<D, true, false, true>(t, w, K, Hb, D);
      frag_add_rows<D>(dks, t, -s.eG[r0] * s.t0[r0], -s.eG[r1] * s.t0[r1]);
    }
    // H_i x_i = diag(e^G) X H̄ᵀ + ((X Kᵀ) ⊙ M) K (one more operator application) for the gate gradient.
    __syncthreads();
    FragC<D> hx;
    {
      frag_zero(hx);
      FragC<C> sc;
      frag_zero(sc);
      pair_gemm<D, true, true, true>(hx, w, X, Hb, D);
      pair_gemm<C, true, true, false>(sc, w, X, K, D);
      frag_put_pair<C>(P, sc, w, [&](int t, int u, float v) { return v * s.M[t * LC + u]; });
      const float e0 = s.eG[r0], e1 = s.eG[r1];
#pragma unroll
      for (int j = 0; j < D / 16; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) hx[0][j][i] *= i < 2 ? e0 : e1;
      __syncthreads();
      pair_gemm<D, false, true, false>(hx, w, P, K, n16);
    }
    float u0, u1, k0, k1;
    frag_row_dot_b<D>(hx, w, U, u0, u1);
    frag_row_dot_b<D>(dks, w, K, k0, k1);
    frag_row_sum(-0.5f * k0 - u0, -0.5f * k1 - u1, w, s.rowp, dG);
    if (threadIdx.x < C) dG[threadIdx.x] -= s.w[threadIdx.x] * s.f[threadIdx.x] * s.f[threadIdx.x];
  } else {
    float k0, k1;
    frag_row_dot_b<D>(dks, w, K, k0, k1);
    frag_row_sum(-0.5f * k0, -0.5f * k1, w, s.rowp, dG);
  }

  // Readout part: dO and V raw, Q~ and Q_c as pairs, the g mask.
  __syncthreads();
  const BTile V = btile_at<C, D, false>(&s, L::V), dO = btile_at<C, D, false>(&s, L::DO);
  const BTile Qt = btile_at<C, D, true>(&s, L::QT), Qc = btile_at<D, D, true>(&s, L::QC);
  const BTile Qr = btile_at<C, D, false>(&s, L::P);  // q, raw, over P until Q~ is formed (scalar loads: 7 % slower)
  rows_copy_bf16<D>(dO, a.d_o, it, h);
  rows_copy_bf16<D>(V, a.v, it, h);
  rows_copy_bf16<D>(Qr, a.q, it, h);  // q has k's dtype (validate.cpp)
  pairs_from_global<D, D>(Qc, a.Phi + id * DD);
  gate_mask<D>(s.Gg, n, s.M);
  cp_async_wait_all();
  __syncthreads();
  qtilde_pairs<D>(Qt, Qr, Xg, s.alpha);
  __syncthreads();
  const float GgL = s.Gg[n - 1];
  FragC<D> dkr, dv;
  frag_zero(dkr);
  frag_zero(dv);
  for (int pass = 0; pass < 2; ++pass) {
    // pass 0: P_ts = s (V_t·dO_s) Mg_st, dkr += P Q~;  pass 1: P_ts = s (K_t·Q~_s) Mg_st, dv += P dO.
    FragC<C> sc;
    frag_zero(sc);
    if (pass == 0)
      pair_gemm<C, true, false, false>(sc, w, V, dO, D);
    else
      pair_gemm<C, true, false, true>(sc, w, K, Qt, D);
    frag_put_pair<C>(P, sc, w, readout_scores<D>(s, a, n));
    __syncthreads();
    if (pass == 0)
      pair_gemm<D, false, true, true>(dkr, w, P, Qt, n16);
    else
      pair_gemm<D, false, true, false>(dv, w, P, dO, n16);
    __syncthreads();
  }
  {
    const float e0 = expf(GgL - s.Gg[r0]), e1 = expf(GgL - s.Gg[r1]);
    FragC<D> t;
    frag_zero(t);
    pair_gemm<D, true, false, true>(t, w, V, Qc, D);  // V Q_cᵀ
    frag_add_rows<D>(dkr, t, e0, e1);
    frag_zero(t);
    pair_gemm<D, false, false, true>(t, w, K, Qc, D);  // K Q_c
    frag_add_rows<D>(dv, t, e0, e1);
  }
  float k0, k1;
  frag_row_dot_b<D>(dkr, w, K, k0, k1);
  step_d_finish<D>(s, a, c, w, k0, k1, dks, dkr, dv);
}

template <int D>
void step_d_launch(const dim3& grid, cudaStream_t stream, const Item* items, const BwdArgs& a, bool bf16, bool kx) {
  const char* fn = "gka::chunk_backward (cuda)";
  const size_t smem = sizeof(ChunkSmem<D>);
  const auto kernel = bf16 ? step_d_bf16_kernel<D> : kx ? step_d_kernel<D, true> : step_d_kernel<D, false>;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), fn,
        "cudaFuncSetAttribute");
  kernel<<<grid, kThreads, smem, stream>>>(items, a);
  launch_check(fn);
}

template void step_d_launch<64>(const dim3&, cudaStream_t, const Item*, const BwdArgs&, bool, bool);
template void step_d_launch<128>(const dim3&, cudaStream_t, const Item*, const BwdArgs&, bool, bool);

}  // namespace gka::cuda
