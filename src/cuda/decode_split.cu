// One-token decode for grids that leave most SMs idle: each head gets a cluster of three CTAs, so that its state
// traffic leaves the solve's critical path. On one SM (decode.cu) a B = 1 step moves 256 KB through that SM around
// the solve (the final S alone, 64 KB of stores after it, took 1.6 us) and the traffic slowed the solve itself by
// ~1 us (v26 probes, bench/RESULTS.md). Here:
//   rank 0 loads H, updates it in registers, takes its norm, solves (decode_common.cuh) and sends q̃ into rank 2's
//     shared memory (st.async); it writes x and the per-token statistics;
//   rank 1 loads H and stores the final H;
//   rank 2 loads S, stores the final S while rank 0 solves, and reads out o = scale S'ᵀ q̃ from the registers when
//     q̃ lands.
// Rank 0 is a CTA of D threads holding H as 4-row blocks over 4-lane groups (one warp per scheduler at D = 128):
// an iteration took ~360 cycles as 2 D threads with 8-lane groups, bound by its latency chain (x's loads, the FMA
// chains, the shuffle levels, the barrier) rather than by issue; the shorter chain is 0.3 us a step faster. Both
// states in one CTA beside the solving one (clusters of two) put that CTA on the critical path: B = 1 10.2 us against
// 10.0 with three, and with N = 0 9.1 against 6.3 (H200).
// Rank 1 stores the final H only after rank 0 has signalled that its own copy of H arrived, so final_kk may alias
// initial_kk (pools in place). Both compute the final H as fmaf(e^gk, H, k_i k_j): the stored H is the one solved
// with. The host (decode.cu, split_fits) takes this path only for sequences of one token, clusters that fit one CTA
// per SM, tensor-map-able initial states and builds with sm_90 code for the device.
#include <cuda.h>
#include <cudaTypedefs.h>

#include "cuda/cluster.cuh"
#include "cuda/decode_common.cuh"

namespace gka::cuda {

template <int D>
using SplitH = HBlock<D, 4, 4, 2>;  // two accumulators a row: 8 FMA chains a lane

template <int D>
__global__ void __launch_bounds__(SplitH<D>::kThreads, 1) decode_split_kernel(const __grid_constant__ DecArgs a) {
#if GKA_BULK_DEVICE
  constexpr int NT = SplitH<D>::kThreads, NC = D / 4, NW = NT / 32;
  constexpr int NG = NT / NC, RG = D / NG;  // ranks 1 and 2: row groups, rows per group
  enum { kIkk, kIkv, kFkk, kFkv };
  extern __shared__ unsigned char s_raw[];
  char* const buf = reinterpret_cast<char*>(s_raw) + ((1024u - (smem_addr(s_raw) & 1023u)) & 1023u);
  __shared__ __align__(16) float tok[2][D];  // k and q (rank 0), k (rank 1), k and v (rank 2)
  __shared__ __align__(16) float xb[2][D];
  __shared__ __align__(16) float qt[D];  // rank 2: q̃, stored by rank 0
  __shared__ __align__(16) float part[NG][D];
  __shared__ float red[NW];
  __shared__ float om_s[kInlineOmegas];
  __shared__ uint64_t bar[2];  // the state's arrival; rank 1: rank 0 has H, rank 2: q̃ landed
  const uint32_t rank = cluster_rank();
  const SeqInfo sq = dec_seq(a, blockIdx.x / 3);
  const int t = threadIdx.x, h = blockIdx.y;
  const int64_t b = sq.batch, tt = sq.start;
  if (sq.state < 0) {  // pool padding: rank 0 zeros the outputs (NT = D: a row a thread); no cluster traffic
    if (rank == 0) dec_zero_padding(a, sq, h, t);
    return;
  }
  // Thread 0 starts a state's load (the host made every map this path reads), after initialising the barriers.
  auto start = [&](int k, bool load) {
    if (t != 0) return;
    mbar_init(&bar[0]);
    mbar_init(&bar[1]);
    if (!load) return;
    mbar_expect(&bar[0], D * D * sizeof(float));
    for (int q = 0; q < D / 32; ++q) tma_load_4d(buf + q * D * 128, &a.tmap[k], 32 * q, 0, h, sq.state, &bar[0]);
  };
  if (rank == 0) {
    SplitH<D> hb;
    const int r = hb.r;
    start(kIkk, a.ikk.dt);
    const float k_t = dload(a.k, drow(a.k, b, tt, h) + t), q_t = dload(a.q, drow(a.q, b, tt, h) + t);
    const float alpha = dscalar(a.alpha, b, tt, h, 1.f), ak = expf(dscalar(a.gk, b, tt, h, 0.f));
    cluster_arrive();
    if (t >= NT - kInlineOmegas) om_s[t - (NT - kInlineOmegas)] = a.omega[t - (NT - kInlineOmegas)];
    cluster_wait();  // the peers' barriers are initialised (while the token's loads are in flight)
    tok[0][t] = k_t;
    tok[1][t] = q_t;
    __syncthreads();
    if (a.ikk.dt) {
      mbar_wait(&bar[0], 0);
      hb.from_buf(buf);
    } else {
      hb.zero();
    }
    if (t == 0 && a.fkk.dt) peer_arrive(peer_addr(&bar[1], 1));  // rank 1 waits for it (and exits without)
    hb.update(tok[0], ak);
    const float qr = tok[1][r];
    const float f = sqrtf(dec_block_sum<NW>(hb.template sumsq<4>(), red));
    const float lam = a.cc.r * f;
    const float x = dec_solve<D>(a, hb, om_s, xb, qr, f, lam, 0, [] {});
    peer_store(peer_addr(&qt[r], 2), qr + alpha * (x - qr), peer_addr(&bar[1], 2));
    if (a.x.dt) dstore(a.x, drow(a.x, b, tt, h) + r, x);
    if (t == 0 && a.fro.dt) dstore(a.fro, drow(a.fro, b, tt, h), f);
    if (a.res.dt) {
      xb[0][r] = x;
      __syncthreads();
      const float rr = hb.matvec(xb[0]) + lam * x - qr;
      const float num = dec_block_sum<NW>(rr * rr, red), den = dec_block_sum<NW>(qr * qr, red);
      if (t == 0) dstore(a.res, drow(a.res, b, tt, h), sqrtf(num) / sqrtf(den));
    }
    return;
  }
  // Ranks 1 and 2: thread (g, c) = (t / NC, t % NC) owns the 16-byte column chunk c of rows g RG .. g RG + RG - 1 of
  // its state (a warp reads or writes whole rows: full sectors) and forms them as fmaf(decay, state, k_i w_c), with
  // w = k for H and v for S.
  const int c = t % NC, c4 = 4 * c, g = t / NC;
  const bool h_rank = rank == 1;
  const DView& fin = h_rank ? a.fkk : a.fkv;
  start(h_rank ? kIkk : kIkv, h_rank ? a.fkk.dt && a.ikk.dt : a.ikv.dt);
  if (t == 0 && !h_rank) mbar_expect(&bar[1], D * sizeof(float));  // q̃'s bytes, which rank 0 completes
  cluster_arrive();
  tok[0][t] = dload(a.k, drow(a.k, b, tt, h) + t);
  if (!h_rank) tok[1][t] = dload(a.v, drow(a.v, b, tt, h) + t);
  const float decay = expf(dscalar(h_rank ? a.gk : a.g, b, tt, h, 0.f));  // e^gk for H, e^g for S
  const bool have = h_rank ? a.ikk.dt : a.ikv.dt;
  __syncthreads();
  if (h_rank && !a.fkk.dt) {
    cluster_wait();
    return;
  }
  float4 st[RG];
  if (have) mbar_wait(&bar[0], 0);
  const float4 w4 = *reinterpret_cast<const float4*>(&tok[h_rank ? 0 : 1][c4]);
#pragma unroll
  for (int j = 0; j < RG; ++j) {
    const int i = g * RG + j;
    const float ki = tok[0][i];
    const float4 s0 = have ? dec_chunk<D>(buf, i, c) : float4{};
    st[j] = make_float4(fmaf(decay, s0.x, ki * w4.x), fmaf(decay, s0.y, ki * w4.y), fmaf(decay, s0.z, ki * w4.z),
                        fmaf(decay, s0.w, ki * w4.w));
  }
  if (h_rank) mbar_wait_cluster(&bar[1], 0);  // rank 0 holds H: storing in place is safe
  if (fin.dt) {
    const bool vec = vec_ok(fin);
    const int64_t off = drow(fin, sq.state, h, g * RG) + c4;
#pragma unroll
    for (int j = 0; j < RG; ++j) st4(fin, off + j * fin.s2, vec, st[j]);
  }
  if (!h_rank) {  // o = scale S'ᵀ q̃: four outputs a thread over its rows, the row groups summed in shared memory
    mbar_wait_cluster(&bar[1], 0);  // st.async's bytes complete with release at cluster scope
    float4 po = float4{};
#pragma unroll
    for (int j = 0; j < RG; j += 4) {
      const float4 q4 = *reinterpret_cast<const float4*>(&qt[g * RG + j]);
      const float qs[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
      for (int e = 0; e < 4; ++e)
        po = make_float4(fmaf(st[j + e].x, qs[e], po.x), fmaf(st[j + e].y, qs[e], po.y), fmaf(st[j + e].z, qs[e], po.z),
                         fmaf(st[j + e].w, qs[e], po.w));
    }
    *reinterpret_cast<float4*>(&part[g][c4]) = po;
    __syncthreads();
    float o = 0.f;
#pragma unroll
    for (int gg = 0; gg < NG; ++gg) o += part[gg][t];
    dstore(a.o, drow(a.o, b, tt, h) + t, a.scale * o);
  }
  cluster_wait();
#endif
}

template <int D>
bool decode_split_ready() {
  static const bool ok = [] {
    cudaFuncAttributes fa{};
    return cudaFuncGetAttributes(&fa, decode_split_kernel<D>) == cudaSuccess && fa.ptxVersion >= 90;
  }();
  (void)cudaGetLastError();
  return ok;
}

template <int D>
void decode_split_launch(unsigned seqs, const DecArgs& a, cudaStream_t stream, const char* fn) {
  const size_t smem = dec_smem_bytes<D>();
  check(
      cudaFuncSetAttribute(decode_split_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
      fn, "cudaFuncSetAttribute");
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(3 * seqs, static_cast<unsigned>(a.H));
  cfg.blockDim = dim3(SplitH<D>::kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = 3;
  attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  check(cudaLaunchKernelEx(&cfg, decode_split_kernel<D>, a), fn, "cudaLaunchKernelEx");
}

template bool decode_split_ready<64>();
template bool decode_split_ready<128>();
template void decode_split_launch<64>(unsigned, const DecArgs&, cudaStream_t, const char*);
template void decode_split_launch<128>(unsigned, const DecArgs&, cudaStream_t, const char*);

}  // namespace gka::cuda
