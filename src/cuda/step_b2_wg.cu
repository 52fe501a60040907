// Step (B)'s second half on Hopper warpgroup products (v22), for the chunks adj_wg_kernel solved, D = 128, bf16 k and
// dO with 16-byte aligned rows: step_b2_lean_kernel's work (chunk_bwd.cu). From adj_wg_kernel's u, dq~, x and q~ (fp32
// scratch): w (the λ path's row weights), dq = (1 - alpha) dq~ + u, u for step_d, the adjoint scan's ρ and γ, and the
// chunk sums Ψ = Uᵀ (-e^G X) + Kᵀ (-ρ K) (all but step_c's -γ H̄ term) and Φ = (s e^Gg Q~)ᵀ dO, D x D each.
// step_b2_lean_kernel formed the sums on 3xTF32 mma.sync from fp32 tiles and spread each row over 16 threads' 4-byte
// loads; here every chunk-row is one warp's 16-byte loads, all issued at once, the fp32 operands go to bf16 hi + lo
// pair tiles (~2^-16 relative, as step_d's), and each sum is a chain of wgmma products with A read transposed
// (MN-major) from the C x D tile: a warpgroup owns 64 rows of Ψ and Φ.
#include "cuda/bwd_wg_tiles.cuh"
#include "cuda/chunk_bwd.cuh"

namespace gka::cuda {
namespace {

constexpr int C = kChunkMax;

// Shared memory (bytes): K and dO raw; -ρ K, U, -e^G X and s e^Gg Q~ as pair tiles (hi, then lo), all C x D, 128-byte
// swizzled; then G, e^G, Gg, e^Gg, w and ρ (C floats each).
template <int D>
struct StepB2WgSmem {
  static constexpr uint32_t CD = C * D * 2;
  static constexpr uint32_t K = 0, KR = CD, U = 3 * CD, X = 5 * CD, Q = 7 * CD, DO = 9 * CD, SMALL = 10 * CD;
  static constexpr uint32_t kBytes = SMALL + 6 * C * 4;
};

__device__ __forceinline__ float4 scaled(float s, float4 v) { return make_float4(s * v.x, s * v.y, s * v.z, s * v.w); }

template <int D>
__global__ void __launch_bounds__(kThreads, 1) step_b2_wg_kernel(const Item* items, BwdArgs a) {
  static_assert(D == 128, "a warp per chunk row of 128 columns, two warpgroups of 64 rows of the sums");
  using L = StepB2WgSmem<D>;
  constexpr int PER = C * D / 4 / kThreads;  // rows per warp
  constexpr uint32_t CD = L::CD;
  constexpr int64_t DD = static_cast<int64_t>(D) * D;
  extern __shared__ __align__(1024) char sm[];
  const ChunkPos c = chunk_pos(items, a.H);
  const int n = c.n;
  const int64_t id = c.id;
  if (!a.ok[id]) return;  // given up: step_b2_redo_kernel's
  const uint32_t base = smem_addr(sm);
  if (base & 1023u) __trap();  // the swizzle needs 1024-byte aligned tiles
  float* rows = reinterpret_cast<float*>(sm + L::SMALL);
  float *G = rows, *eG = rows + C, *Gg = rows + 2 * C, *eGg = rows + 3 * C, *w = rows + 4 * C, *rho = rows + 5 * C;
  const int tid = threadIdx.x, lane = tid & 31, col = 4 * lane;
  const int64_t cd = id * C * D;

  rows_to_tile<D>(sm + L::K, a.k, c);
  rows_to_tile<D>(sm + L::DO, a.d_o, c);
  // Row r = warp + 8 u of every C x D operand, columns [4 lane, 4 lane + 4): all loads issued before any use. The U
  // scratch (dq~) and the Phi buffer (q~) are overwritten below: read through L2 (ld.cg), not the non-coherent path.
  float4 dqt[PER], u4[PER], x4[PER], q4[PER];
  uint2 k4[PER];
  float al[PER], f[PER];
  const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
  for (int u = 0; u < PER; ++u) {
    const int r = tid / 32 + 8 * u, o = r * D + col;
    const bool in = r < n;
    const auto* krow = static_cast<const __nv_bfloat16*>(a.k.p) + (in ? drow(a.k, c.it.batch, c.it.t0 + r, c.h) : 0);
    dqt[u] = in ? __ldcg(reinterpret_cast<const float4*>(a.U + cd + o)) : zero;
    u4[u] = in ? __ldg(reinterpret_cast<const float4*>(a.uadj + cd + o)) : zero;
    x4[u] = in ? __ldg(reinterpret_cast<const float4*>(a.X + cd + o)) : zero;
    q4[u] = in ? __ldcg(reinterpret_cast<const float4*>(a.Phi + id * DD + o)) : zero;  // q~ (adj_wg_kernel)
    k4[u] = in ? __ldg(reinterpret_cast<const uint2*>(krow + col)) : make_uint2(0u, 0u);
    al[u] = in ? dscalar(a.alpha, c.it.batch, c.it.t0 + r, c.h, 1.f) : 0.f;
    f[u] = a.scal[id * 3 * C + r];  // the norms (adj_wg_kernel)
  }
  gate_sums(a.gk, c, G, eG, nullptr, &a.g, Gg, eGg);

  const bool dq_fast = a.dq.dt == 2 && rows_fast(a.dq);
#pragma unroll
  for (int u = 0; u < PER; ++u) {
    const int r = tid / 32 + 8 * u, o = r * D + col;
    const bool in = r < n;
    float ux = u4[u].x * x4[u].x + u4[u].y * x4[u].y + u4[u].z * x4[u].z + u4[u].w * x4[u].w;
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) ux += __shfl_xor_sync(0xffffffffu, ux, m);
    if (lane == 0) {
      const float wr = (a.lambda_grad && in && f[u] > 0.f) ? a.cc.r * ux / f[u] : 0.f;
      w[r] = wr;
      a.scal[id * 3 * C + C + r] = wr;
    }
    *reinterpret_cast<float4*>(a.U + cd + o) = u4[u];  // u over dq~, for step_d
    if (in && a.dq.dt) {
      const float b = 1.f - al[u];
      const float4 dq = make_float4(fmaf(b, dqt[u].x, u4[u].x), fmaf(b, dqt[u].y, u4[u].y), fmaf(b, dqt[u].z, u4[u].z),
                                    fmaf(b, dqt[u].w, u4[u].w));
      const int64_t g = drow(a.dq, c.it.batch, c.it.t0 + r, c.h) + col;
      if (dq_fast) {
        *reinterpret_cast<uint2*>(static_cast<__nv_bfloat16*>(a.dq.p) + g) =
            make_uint2(bf16_word(dq.x, dq.y), bf16_word(dq.z, dq.w));
      } else {
        dstore(a.dq, g, dq.x), dstore(a.dq, g + 1, dq.y), dstore(a.dq, g + 2, dq.z), dstore(a.dq, g + 3, dq.w);
      }
    }
    const uint32_t off = sw128_bf16(C, r, col);
    put_pair(sm, L::U, L::U + CD, off, u4[u]);
    put_pair(sm, L::X, L::X + CD, off, scaled(-eG[r], x4[u]));
    put_pair(sm, L::Q, L::Q + CD, off, scaled(a.scale * eGg[r], q4[u]));
  }
  __syncthreads();
  if (tid < 32) {  // ρ_j = Σ_{s>=j} c_s e^{G_s - G_j}, c_s = e^{G_s} w_s (a suffix scan);  γ = Σ c_s e^{G_s}
    const int j = 2 * tid;
    auto cs = [&](int i) { return i < n ? eG[i] * w[i] : 0.f; };
    auto dec = [&](int i) { return i + 1 < n ? expf(G[i + 1] - G[i]) : 0.f; };  // the decay mask's entry
    warp_suffix_affine(dec(j), cs(j), dec(j + 1), cs(j + 1), rho[j], rho[j + 1]);
    float gamma = (j < n ? cs(j) * eG[j] : 0.f) + (j + 1 < n ? cs(j + 1) * eG[j + 1] : 0.f);
    for (int o = 16; o > 0; o >>= 1) gamma += __shfl_xor_sync(0xffffffffu, gamma, o);
    if (tid == 0) a.gamma[id] = gamma;
  }
  __syncthreads();
#pragma unroll
  for (int u = 0; u < PER; ++u) {
    const int r = tid / 32 + 8 * u;
    const float2 k01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&k4[u].x));
    const float2 k23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&k4[u].y));
    put_pair(sm, L::KR, L::KR + CD, sw128_bf16(C, r, col), scaled(-rho[r], make_float4(k01.x, k01.y, k23.x, k23.y)));
  }
  cp_async_wait_all();
  fence_proxy_async();
  __syncthreads();

  // Ψ and Φ: this warpgroup's 64 rows (the tiles' columns [m0, m0 + 64)), in two 64-column halves.
  const int m0 = 64 * (tid >> 7);
  const uint32_t tK = base + L::K, tKR = base + L::KR, tU = base + L::U, tX = base + L::X, tQ = base + L::Q;
  const uint32_t tDo = base + L::DO;
  float ps[2][32], pf[2][32];
  wgmma_fence();
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int ks = 0; ks < C / 16; ++ks) {
      const uint64_t au = mnmaj(tU, C, ks, m0), ak = mnmaj(tK, C, ks, m0);
      wgmma_at_b(ps[h], au, mnmaj(tX, C, ks, 64 * h), ks > 0);
      wgmma_at_b(ps[h], au, mnmaj(tX + CD, C, ks, 64 * h), 1);
      wgmma_at_b(ps[h], mnmaj(tU + CD, C, ks, m0), mnmaj(tX, C, ks, 64 * h), 1);
      wgmma_at_b(ps[h], ak, mnmaj(tKR, C, ks, 64 * h), 1);
      wgmma_at_b(ps[h], ak, mnmaj(tKR + CD, C, ks, 64 * h), 1);
    }
  wgmma_commit();
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int ks = 0; ks < C / 16; ++ks) {
      wgmma_at_b(pf[h], mnmaj(tQ, C, ks, m0), mnmaj(tDo, C, ks, 64 * h), ks > 0);
      wgmma_at_b(pf[h], mnmaj(tQ + CD, C, ks, m0), mnmaj(tDo, C, ks, 64 * h), 1);
    }
  wgmma_commit();
  // Rows m0 + r0, + 8 of the sums, columns 64 h + 8 j + 2 t, + 1 (the accumulator layout); Ψ stores while Φ runs.
  const int r0 = m0 + 16 * ((tid >> 5) & 3) + (lane >> 2), c0 = 2 * (lane & 3);
  auto store = [&](float* dst, float(&acc)[2][32]) {
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int rw = 0; rw < 2; ++rw)
          *reinterpret_cast<float2*>(dst + (r0 + 8 * rw) * D + 64 * h + 8 * j + c0) =
              make_float2(acc[h][4 * j + 2 * rw], acc[h][4 * j + 2 * rw + 1]);
  };
  wgmma_wait<1>();
  fence_regs(ps[0]);
  fence_regs(ps[1]);
  store(a.Psi + id * DD, ps);
  wgmma_wait<0>();
  fence_regs(pf[0]);
  fence_regs(pf[1]);
  store(a.Phi + id * DD, pf);
}

}  // namespace

void step_b2_wg_launch(const dim3& grid, cudaStream_t stream, const Item* items, const BwdArgs& a) {
  const char* fn = "gka::chunk_backward (cuda)";
  const int smem = static_cast<int>(StepB2WgSmem<128>::kBytes);
  check(cudaFuncSetAttribute(step_b2_wg_kernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem), fn,
        "cudaFuncSetAttribute");
  step_b2_wg_kernel<128><<<grid, kThreads, smem, stream>>>(items, a);
  launch_check(fn);
}

}  // namespace gka::cuda
