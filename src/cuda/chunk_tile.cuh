// Block-level building blocks of the chunk kernels (forward and backward): one CTA of 256 threads owns one
// chunk of one head. A C x D tile (C = 64 rows) is spread over a 16 x 16 grid of threads: thread (tr, tc)
// holds rows tr + 16 i (i < 4) and columns tc + 16 j (j < D/16) in registers. Operands live in shared
// memory in fp32 with padded leading dimensions (D + 1, C + 1) so the products below are conflict-free.
// All products accumulate in fp32 with fmaf in a fixed order: results are bitwise reproducible.
#pragma once

#include "cuda/common.cuh"

namespace gka::cuda {

template <int D>
struct Cfg {
  static constexpr int C = kChunkMax;
  static constexpr int LD = D + 1;  // leading dim of C x D and D x D tiles
  static constexpr int LC = C + 1;  // leading dim of C x C tiles
  static constexpr int TN = D / 16; // columns per thread of a C x D tile
  static constexpr int TM = C / 16; // rows per thread
};

// acc[i][j] += sum_{k < K} A(tr + 16 i, k) B(k, tc + 16 j) with A(r, k) = A[r ar + k ak], B(k, c) = B[k bk + c bc].
template <int RM, int RN>
__device__ __forceinline__ void tile_mac(float (&acc)[RM][RN], const float* A, int ar, int ak, const float* B, int bk,
                                         int bc, int K, int tr, int tc) {
#pragma unroll 2
  for (int k = 0; k < K; ++k) {
    float a[RM], b[RN];
#pragma unroll
    for (int i = 0; i < RM; ++i) a[i] = A[(tr + 16 * i) * ar + k * ak];
#pragma unroll
    for (int j = 0; j < RN; ++j) b[j] = B[k * bk + (tc + 16 * j) * bc];
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
      for (int j = 0; j < RN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
  }
}

template <int RM, int RN>
__device__ __forceinline__ void tile_zero(float (&acc)[RM][RN]) {
#pragma unroll
  for (int i = 0; i < RM; ++i)
#pragma unroll
    for (int j = 0; j < RN; ++j) acc[i][j] = 0.f;
}

// Sum over the 16 threads that share a row (lanes tc = 0..15 of one half-warp).
__device__ __forceinline__ float row_sum16(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 8);
  v += __shfl_xor_sync(0xffffffffu, v, 4);
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v;
}

// Deterministic block sum (fixed order); `red` holds >= 8 floats. Every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float s = 0.f;
  for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) s += red[w];
  __syncthreads();
  return s;
}

// Shared memory of one chunk CTA. H: a D x D state; K, X, V: C x D tiles (V doubles as the second
// iterate buffer of the solver); P: C x C scores; M: C x C decay mask.
template <int D>
struct ChunkSmem {
  using F = Cfg<D>;
  float H[D * F::LD];
  float K[F::C * F::LD];
  float X[F::C * F::LD];
  float V[F::C * F::LD];
  float P[F::C * F::LC];
  float M[F::C * F::LC];
  float G[F::C], eG[F::C], Gg[F::C], eGg[F::C], alpha[F::C], f[F::C], eta[F::C], lam[F::C], w[F::C], t0[F::C],
      t1[F::C];
  float red[32];
};

// Rows [t0, t0+n) of head h of a [B,T,H,D] view into a C x D tile (ld LD, rows >= n zeroed), times `scale`.
template <int D>
__device__ void rows_load(float* dst, const DView& v, const Item& it, int h, float scale = 1.f) {
  using F = Cfg<D>;
  for (int idx = threadIdx.x; idx < F::C * D; idx += blockDim.x) {
    const int r = idx / D, c = idx % D;
    float x = 0.f;
    if (r < it.n) x = scale * dload(v, drow(v, it.batch, it.t0 + r, h) + c);
    dst[r * F::LD + c] = x;
  }
}

// A D x D fp32 tile (row-major, ld D) into shared memory (ld LD).
template <int D>
__device__ void square_load(float* dst, const float* src) {
  for (int idx = threadIdx.x; idx < D * D; idx += blockDim.x) dst[(idx / D) * Cfg<D>::LD + idx % D] = src[idx];
}

// Chunk-local inclusive cumulative sum G of a gate, e^G, and (if M) the mask M_ij = e^{G_i - G_j} (j <= i < n).
template <int D>
__device__ void gate_build(const DView& gate, const Item& it, int h, float* G, float* eG, float* M) {
  using F = Cfg<D>;
  if (threadIdx.x == 0) {
    float acc = 0.f;
    for (int i = 0; i < F::C; ++i) {
      if (i < it.n) acc += dscalar(gate, it.batch, it.t0 + i, h, 0.f);
      G[i] = acc;
      eG[i] = i < it.n ? expf(acc) : 0.f;
    }
  }
  __syncthreads();
  if (M)
    for (int idx = threadIdx.x; idx < F::C * F::C; idx += blockDim.x) {
      const int i = idx / F::C, j = idx % F::C;
      M[i * F::LC + j] = (j <= i && i < it.n) ? expf(G[i] - G[j]) : 0.f;
    }
}

// Registers of a C x D tile held by this thread.
template <int D>
using Regs = float[Cfg<D>::TM][Cfg<D>::TN];

template <int D>
__device__ __forceinline__ void regs_from_smem(Regs<D>& r, const float* src) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
#pragma unroll
  for (int i = 0; i < F::TM; ++i)
#pragma unroll
    for (int j = 0; j < F::TN; ++j) r[i][j] = src[(tr + 16 * i) * F::LD + tc + 16 * j];
}

template <int D>
__device__ __forceinline__ void regs_to_smem(const Regs<D>& r, float* dst) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
#pragma unroll
  for (int i = 0; i < F::TM; ++i)
#pragma unroll
    for (int j = 0; j < F::TN; ++j) dst[(tr + 16 * i) * F::LD + tc + 16 * j] = r[i][j];
}

// Stores rows < n of a register tile into a [B,T,H,D] view.
template <int D>
__device__ __forceinline__ void regs_store(const Regs<D>& r, const DView& v, const Item& it, int h) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
#pragma unroll
  for (int i = 0; i < F::TM; ++i) {
    const int row = tr + 16 * i;
    if (row >= it.n) continue;
    const int64_t base = drow(v, it.batch, it.t0 + row, h);
#pragma unroll
    for (int j = 0; j < F::TN; ++j) dstore(v, base + tc + 16 * j, r[i][j]);
  }
}

// Contiguous C x D fp32 scratch tile (ld D) <-> registers.
template <int D>
__device__ __forceinline__ void regs_to_global(const Regs<D>& r, float* dst) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
#pragma unroll
  for (int i = 0; i < F::TM; ++i)
#pragma unroll
    for (int j = 0; j < F::TN; ++j) dst[(tr + 16 * i) * D + tc + 16 * j] = r[i][j];
}

// P = (A Bᵀ) ⊙ mask on and below the diagonal (rows < n), 0 elsewhere; A, B are C x D tiles (ld lda/ldb).
// The mask is M (ld LC) when `masked`, else ones. Result times `sign`.
template <int D>
__device__ __forceinline__ void scores_lower(float* P, const float* A, int lda, const float* B, int ldb,
                                             const float* M, int n, float sign) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
  float acc[F::TM][F::TM];
  tile_zero(acc);
  tile_mac(acc, A, lda, 1, B, 1, ldb, D, tr, tc);
#pragma unroll
  for (int i = 0; i < F::TM; ++i)
#pragma unroll
    for (int j = 0; j < F::TM; ++j) {
      const int r = tr + 16 * i, c = tc + 16 * j;
      P[r * F::LC + c] = (c <= r && r < n) ? sign * acc[i][j] * M[r * F::LC + c] : 0.f;
    }
}

// The chunk operator on the iterate in X (docs/algorithm.md): acc = diag(e^G) X H̄ᵀ + ((X Kᵀ) ⊙ M) K, i.e.
// row i holds H_i x_i (adjoint = true: H_iᵀ x_i, with H̄ read transposed). Overwrites P. Caller syncs
// before (X ready) and after (before X or P change).
template <int D>
__device__ __forceinline__ void op_apply(ChunkSmem<D>& s, const float* X, int n, bool adjoint, Regs<D>& acc) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
  scores_lower<D>(s.P, X, F::LD, s.K, F::LD, s.M, n, 1.f);
  tile_zero(acc);
  if (adjoint)
    tile_mac(acc, X, F::LD, 1, s.H, F::LD, 1, D, tr, tc);
  else
    tile_mac(acc, X, F::LD, 1, s.H, 1, F::LD, D, tr, tc);
#pragma unroll
  for (int i = 0; i < F::TM; ++i) {
    const float e = s.eG[tr + 16 * i];
#pragma unroll
    for (int j = 0; j < F::TN; ++j) acc[i][j] *= e;
  }
  __syncthreads();
  tile_mac(acc, s.P, F::LC, 1, s.K, F::LD, 1, n, tr, tc);
}

// Per-token Frobenius norms by the closed form (spec §B.2) into s.f; needs H (= H̄), K, M, eG. Uses P.
template <int D>
__device__ void fro_norms(ChunkSmem<D>& s, int n) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
  float hh = 0.f;
  for (int idx = threadIdx.x; idx < D * D; idx += blockDim.x) {
    const float x = s.H[(idx / D) * F::LD + idx % D];
    hh = fmaf(x, x, hh);
  }
  hh = block_sum(hh, s.red);
  {  // w_j = k_jᵀ H̄ k_j
    Regs<D> acc;
    tile_zero(acc);
    tile_mac(acc, s.K, F::LD, 1, s.H, F::LD, 1, D, tr, tc);
#pragma unroll
    for (int i = 0; i < F::TM; ++i) {
      float v = 0.f;
#pragma unroll
      for (int j = 0; j < F::TN; ++j) v = fmaf(acc[i][j], s.K[(tr + 16 * i) * F::LD + tc + 16 * j], v);
      v = row_sum16(v);
      if (tc == 0) s.w[tr + 16 * i] = v;
    }
  }
  {  // P = (K Kᵀ)²
    float acc[F::TM][F::TM];
    tile_zero(acc);
    tile_mac(acc, s.K, F::LD, 1, s.K, 1, F::LD, D, tr, tc);
#pragma unroll
    for (int i = 0; i < F::TM; ++i)
#pragma unroll
      for (int j = 0; j < F::TM; ++j) s.P[(tr + 16 * i) * F::LC + tc + 16 * j] = acc[i][j] * acc[i][j];
  }
  __syncthreads();
  {  // third_i = rowsum((M P²) ⊙ M)_i
    float acc[F::TM][F::TM];
    tile_zero(acc);
    tile_mac(acc, s.M, F::LC, 1, s.P, F::LC, 1, n, tr, tc);
#pragma unroll
    for (int i = 0; i < F::TM; ++i) {
      float v = 0.f;
#pragma unroll
      for (int j = 0; j < F::TM; ++j) v = fmaf(acc[i][j], s.M[(tr + 16 * i) * F::LC + tc + 16 * j], v);
      v = row_sum16(v);
      if (tc == 0) s.t0[tr + 16 * i] = v;
    }
  }
  __syncthreads();
  if (threadIdx.x < F::C) {
    const int i = threadIdx.x;
    float mw = 0.f;
    for (int j = 0; j <= i && j < n; ++j) mw = fmaf(s.M[i * F::LC + j], s.w[j], mw);
    const float e = s.eG[i];
    s.f[i] = i < n ? sqrtf(fmaxf(0.f, e * e * hh + 2.f * e * mw + s.t0[i])) : 0.f;
  }
  __syncthreads();
}

// Chebyshev iteration (spec §A.3) on all rows: (H_i + lambda_i I) x_i = rhs_i with f from s.f. The result
// is returned in x. Uses X and V as the two iterate buffers, P for scores.
template <int D>
__device__ void cheb_solve(ChunkSmem<D>& s, int n, const ChebConst& cc, const float* omega, const Regs<D>& rhs,
                           bool adjoint, Regs<D>& x) {
  using F = Cfg<D>;
  const int tr = threadIdx.x / 16;
  if (threadIdx.x < F::C) {
    const int i = threadIdx.x;
    const float f = s.f[i];
    s.eta[i] = i < n && f > 0.f ? cc.eta_f / f : 0.f;  // H = 0: x stays 0 (docs/algorithm.md)
    s.lam[i] = i < n ? cc.r * f : 0.f;
  }
  __syncthreads();
  Regs<D> xp;
#pragma unroll
  for (int i = 0; i < F::TM; ++i) {
    const float e = s.eta[tr + 16 * i];
#pragma unroll
    for (int j = 0; j < F::TN; ++j) {
      x[i][j] = e * rhs[i][j];
      xp[i][j] = 0.f;
    }
  }
  float* bufs[2] = {s.X, s.V};
  regs_to_smem<D>(x, bufs[0]);
  __syncthreads();
  for (int it = 0; it < cc.n; ++it) {
    const float* cur = bufs[it & 1];
    Regs<D> hx;
    op_apply<D>(s, cur, n, adjoint, hx);
    const float w = omega[it], w1 = 1.f - w;
#pragma unroll
    for (int i = 0; i < F::TM; ++i) {
      const int row = tr + 16 * i;
      const float eta = s.eta[row], a = w * (1.f - eta * s.lam[row]), bq = w * eta;
#pragma unroll
      for (int j = 0; j < F::TN; ++j) {
        const float xn = a * x[i][j] + bq * (rhs[i][j] - hx[i][j]) + w1 * xp[i][j];
        xp[i][j] = x[i][j];
        x[i][j] = xn;
      }
    }
    regs_to_smem<D>(x, bufs[(it + 1) & 1]);
    __syncthreads();
  }
}

}  // namespace gka::cuda
