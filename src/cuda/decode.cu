// Token-by-token forward (decode, spec §D) of the CUDA backend: one CTA of 2 D threads per (sequence, head). H
// lives in registers, D/2 floats per thread as a block of 4 rows x D/8 columns, so a mat-vec is D/2 fp32 FMAs per
// thread against the iterate broadcast from shared memory, three shuffle levels to finish the row sums, and one
// barrier per Chebyshev iteration (x double-buffered). Blocks rather than half rows: each x chunk loaded serves four
// rows; delivering x from shared memory was about a quarter of an iteration (v25: 3.4-3.8 % off batched decode).
// At two CTAs per SM the iteration is issue-bound, so its instructions are counted (decode_common.cuh: at D = 128, 86
// per iteration and warp in v26, 64 of them the mat-vec's FMAs, from 116; 88 in v27, whose update has one operation
// after the mat-vec instead of three). One-token steps on grids with SMs to spare go to decode_split.cu instead.
// One shared buffer (D/32 boxes of D rows x 128 bytes, 128-byte swizzle) serves twice. First H arrives in it as D/32
// tensor-map bulk copies (bulk_copy.cuh; per-thread copies of a 64 KB state took 2000-4000 cycles on one SM, and one
// 64 KB 1-D bulk copy each way into a plain layout 1.2-1.3 / 5.6-5.7 us more a step at B = 1 / 64), on grids of more
// than one wave only its upper triangle (decode_kernel<D, true>: H is symmetric), is read into registers, and, when
// the final H is known before S needs the buffer (at most one token), goes out the same way; with several tokens it
// is stored straight from the registers. Then it holds S (stored k-major, [D][Dv]), which
// arrives during the first solve (after that H store, its load goes out a few iterations in): thread (g, c) =
// (t / (D/4), t % (D/4)) updates and reads out the 16-byte column chunk c of the rows of group g; the final S goes
// from those registers straight to global memory (a warp per row at D = 128, two at D = 64: whole 32-byte sectors),
// sparing the buffer a second pass (B = 64: 85.3 against 86.2-86.4 us). All four state transfers carry an evict-first
// L2 policy (bulk_copy.cuh, l2_evict_first). Views that no tensor map fits (16-byte alignment of data and strides),
// and builds below sm_90, move the same layout by per-thread copies. On grids of more than one wave the first wave's
// CTAs start spread over a few microseconds (dec_stagger). States are read completely before they are
// written, so final_* may alias initial_* (pools are updated in place). The omega sequence comes precomputed from the
// host (no fp64 division on the chain).
#include <cuda.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <string>

#include "backends.h"
#include "cuda/decode_common.cuh"

namespace gka::cuda {

template <int D, bool Upper>
__global__ void __launch_bounds__(kDecThreads<D>, 2) decode_kernel(const __grid_constant__ DecArgs a) {
  constexpr int NT = kDecThreads<D>, NC = D / 4, NW = NT / 32;
  constexpr int NG = NT / NC, RG = D / NG;  // S: row groups, rows per group
  enum { kIkk, kIkv, kFkk, kFkv, kIkkUpper };
  extern __shared__ unsigned char s_raw[];
  char* const buf = reinterpret_cast<char*>(s_raw) + ((1024u - (smem_addr(s_raw) & 1023u)) & 1023u);
  __shared__ __align__(16) float tok[3][D];  // k, q, v of the current token
  __shared__ __align__(16) float xb[2][D];   // iterate, double-buffered
  __shared__ __align__(16) float qt[D];
  __shared__ __align__(16) float part[NG][D];  // readout partials of the row groups of S
  __shared__ float red[NW];
  __shared__ float om_s[kInlineOmegas];
  __shared__ uint64_t bar[2];  // arrival of H, of S
  if constexpr (Upper) dec_stagger<D>(a.first_wave);
  const SeqInfo sq = dec_seq(a, blockIdx.x / a.H);
  // H in registers as blocks (HBlock, decode_common.cuh): this thread's mat-vec row is r; S chunk column t % NC of
  // the rows of group g.
  HBlock<D> hb;
  const int t = threadIdx.x, h = blockIdx.x % a.H, r = hb.r;
  const int c4 = 4 * (t % NC), g = t / NC;
  const bool owner = hb.owner();  // writes row r's results (lanes j and j ^ 1 hold them, bitwise equal)
  const int64_t b = sq.batch, t_end = sq.start + sq.length;
  if (sq.state < 0) {  // pool padding
    if (owner) dec_zero_padding(a, sq, h, r);
    return;
  }
  auto chunk = [&](int i, int j) -> float4& { return dec_chunk<D>(buf, i, j); };
  // A state between global memory and the buffer: D/32 tensor-map boxes issued by thread 0 where the host made a
  // map (sm_90), else every thread copies chunks (a warp per row: coalesced). Where Upper (see the launch), of
  // the initial H only the upper triangle's blocks (or their chunks) come, and HBlock::from_buf mirrors the
  // rest. A load is complete after state_wait; a store reads what every thread wrote before it, and thread 0 waits
  // for its bulk reads (bulk_wait_read) before the buffer is rewritten or the CTA exits.
  auto tma = [&](int k) { return GKA_BULK_DEVICE && a.tmap_ok[k == kIkk && Upper ? kIkkUpper : k]; };
  auto state_load = [&](int k, const DView& v, uint64_t* br) {
    const bool upper = k == kIkk && Upper;
    if (tma(k)) {
      if (t == 0) {
        mbar_expect(br, upper ? dec_upper_bytes<D>() : D * D * sizeof(float));
        const uint64_t policy = l2_evict_first();
        if (upper)
          dec_load_upper<D>(buf, a.tmap, h, sq.state, br, policy);
        else
          for (int q = 0; q < D / 32; ++q)
            tma_load_4d(buf + q * D * 128, &a.tmap[k], 32 * q, 0, h, sq.state, br, policy);
      }
    } else {
      const bool vec = vec_ok(v);
#pragma unroll 4
      for (int n = t; n < D * NC; n += NT) {
        const int i = n / NC, j = n % NC;
        if (!upper || dec_upper_chunk(i, j)) chunk(i, j) = ld4(v, drow(v, sq.state, h, i) + 4 * j, vec);
      }
    }
  };
  auto state_wait = [&](int k, uint64_t* br) {
    if (tma(k)) mbar_wait(br, 0);
    __syncthreads();
  };
  auto state_store = [&](int k, const DView& v) {
    fence_proxy_async();  // also orders these writes before a later bulk load into the buffer
    __syncthreads();
    if (tma(k)) {
      if (t == 0) {
        const uint64_t policy = l2_evict_first();
        for (int q = 0; q < D / 32; ++q) tma_store_4d(&a.tmap[k], 32 * q, 0, h, sq.state, buf + q * D * 128, policy);
        bulk_commit();
      }
    } else {
      const bool vec = vec_ok(v);
#pragma unroll 4
      for (int n = t; n < D * NC; n += NT) st4(v, drow(v, sq.state, h, n / NC) + 4 * (n % NC), vec, chunk(n / NC, n % NC));
    }
  };
  // Token tt into tok (read after a barrier) and its scalars.
  float ak = 1.f, av = 1.f, alpha = 1.f;
  auto load_token = [&](int64_t tt) {
    if (t < D) {
      tok[0][t] = dload(a.k, drow(a.k, b, tt, h) + t);
      tok[1][t] = dload(a.q, drow(a.q, b, tt, h) + t);
      tok[2][t] = dload(a.v, drow(a.v, b, tt, h) + t);
    }
    ak = expf(dscalar(a.gk, b, tt, h, 0.f));
    av = expf(dscalar(a.g, b, tt, h, 0.f));
    alpha = dscalar(a.alpha, b, tt, h, 1.f);
  };
  // What takes longest starts first: thread 0 initialises the barriers and issues H's copy on the one it has just
  // initialised, the first D threads load the token, the last kInlineOmegas copy the omegas out of the launch argument
  // (reads at distinct addresses, which the constant cache serves one by one); one barrier then publishes the
  // barriers' initialisation and the omegas.
  if (t == 0) {
    mbar_init(&bar[0]);
    mbar_init(&bar[1]);
  }
  if (a.ikk.dt) state_load(kIkk, a.ikk, &bar[0]);
  if (t >= NT - kInlineOmegas) om_s[t - (NT - kInlineOmegas)] = a.omega[t - (NT - kInlineOmegas)];
  if (sq.length > 0) load_token(sq.start);
  __syncthreads();
  if (a.ikk.dt) {
    state_wait(kIkk, &bar[0]);
    hb.from_buf(buf, Upper);
    __syncthreads();  // the buffer is rewritten
  } else {
    hb.zero();
  }
  // The final H: through the buffer when it is known before S needs the buffer (at most one token), else
  // straight from the registers (16 rows x 32 bytes per warp store: full sectors).
  auto store_h_direct = [&] {
    if (a.fkk.dt) hb.store(a.fkk, drow(a.fkk, sq.state, h, 0));
  };
  if (sq.length >= 1) {
    __syncthreads();  // tok
    hb.update(tok[0], ak);
  }
  // S: arrives during the first solve; each thread then updates and reads out its own chunks. Where the final H
  // has just left this buffer by tensor map, S's load is issued kLateS iterations into the solve, so that the store
  // drains meanwhile instead of holding up the solve (thread 0 issues both; it waits for the drain then).
  bool s_late = sq.length <= 1 && a.fkk.dt && tma(kFkk) && a.ikv.dt && tma(kIkv);
  auto load_s_late = [&] {
    if (!s_late) return;
    if (t == 0) bulk_wait_read();
    state_load(kIkv, a.ikv, &bar[1]);
    s_late = false;
  };
  if (sq.length <= 1 && a.fkk.dt) {
    hb.to_buf(buf);
    state_store(kFkk, a.fkk);
    if (!s_late) {
      if (t == 0) bulk_wait_read();  // before S lands in the buffer (thread 0 issues that load too)
      __syncthreads();               // the plain store path read the buffer in every thread
    }
  }
  if (a.ikv.dt) {
    if (!s_late) state_load(kIkv, a.ikv, &bar[1]);
  } else {
    for (int n = t; n < D * NC; n += NT) chunk(n / NC, n % NC) = float4{};
  }
  bool s_ready = !a.ikv.dt;
  auto bsum = [&](float v) { return dec_block_sum<NW>(v, red); };
  for (int64_t tt = sq.start; tt < t_end; ++tt) {
    const bool last = tt + 1 == t_end;
    if (tt > sq.start) {
      load_token(tt);
      __syncthreads();
      hb.update(tok[0], ak);
    }
    if (last && sq.length > 1) store_h_direct();
    const float qr = tok[1][r];
    const float hh2 = hb.sumsq();
    const float f = sqrtf(bsum(hh2));
    const float lam = a.cc.r * f;
    const float x = dec_solve<D>(a, hb, om_s, xb, qr, f, lam, s_late ? kLateS : 0, [&] { load_s_late(); });
    if (owner) qt[r] = qr + alpha * (x - qr);
    load_s_late();  // N = 0 (else already issued within the solve)
    if (!s_ready) {
      state_wait(kIkv, &bar[1]);  // its barrier also publishes qt
      s_ready = true;
    } else {
      __syncthreads();
    }
    {  // S = e^g S + k vᵀ (stored k-major: row i scales by k_i) and the readout o = scale S'ᵀ q̃ on the
       // thread's chunks: a partial of four outputs per row group, the groups summed below
      const float4 v4 = *reinterpret_cast<const float4*>(&tok[2][c4]);
      float4 po = float4{};
      const bool s_out = last && a.fkv.dt;  // the final S: straight from the registers
      const bool s_vec = s_out && vec_ok(a.fkv);
      const int64_t s_off = s_out ? drow(a.fkv, sq.state, h, g * RG) + c4 : 0;
#pragma unroll
      for (int j = 0; j < RG; ++j) {
        const int i = g * RG + j;
        const float ki = tok[0][i], qi = qt[i];
        float4& cell = chunk(i, t % NC);
        float4 sv = cell;
        sv.x = fmaf(av, sv.x, ki * v4.x);
        sv.y = fmaf(av, sv.y, ki * v4.y);
        sv.z = fmaf(av, sv.z, ki * v4.z);
        sv.w = fmaf(av, sv.w, ki * v4.w);
        if (s_out)
          st4(a.fkv, s_off + j * a.fkv.s2, s_vec, sv, /*stream=*/true);
        else
          cell = sv;
        po.x = fmaf(sv.x, qi, po.x);
        po.y = fmaf(sv.y, qi, po.y);
        po.z = fmaf(sv.z, qi, po.z);
        po.w = fmaf(sv.w, qi, po.w);
      }
      *reinterpret_cast<float4*>(&part[g][c4]) = po;
    }
    __syncthreads();  // part
    if (owner) {
      float o = 0.f;
#pragma unroll
      for (int gg = 0; gg < NG; ++gg) o += part[gg][r];
      dstore(a.o, drow(a.o, b, tt, h) + r, a.scale * o);
      if (a.x.dt) dstore(a.x, drow(a.x, b, tt, h) + r, x);
    }
    if (t == 0 && a.fro.dt) dstore(a.fro, drow(a.fro, b, tt, h), f);
    if (a.res.dt) {
      if (owner) xb[0][r] = x;
      __syncthreads();
      const float rr = hb.matvec(xb[0]) + lam * x - qr;
      const float num = bsum(owner ? rr * rr : 0.f), den = bsum(owner ? qr * qr : 0.f);
      if (t == 0) dstore(a.res, drow(a.res, b, tt, h), sqrtf(num) / sqrtf(den));
    }
    __syncthreads();  // tok, xb and part are rewritten by the next token
  }
  if (sq.length == 0) {  // no token: the final S is the initial one (and a load in flight must land first)
    load_s_late();
    if (!s_ready) state_wait(kIkv, &bar[1]);
    if (a.fkv.dt) state_store(kFkv, a.fkv);
  }
  if (t == 0) bulk_wait_read();  // the bulk stores read shared memory that lives as long as the CTA
}

// A 4-D tensor map over a state view [S, H, D, D] (fp32): boxes of `rows` rows x 32 columns, 128-byte swizzle. False
// where the view does not qualify (16-byte alignment of the data and of every stride) or the driver has no encoder.
bool state_tmap(const TensorView& v, int64_t D, int rows, CUtensorMap* m) {
  const auto encode = tensor_map_encoder();
  if (!encode || !v.defined() || v.ndim != 4 || v.strides[3] != 1 || reinterpret_cast<uintptr_t>(v.data) % 16) return false;
  for (int d = 0; d < 3; ++d)
    if (v.strides[d] <= 0 || (v.strides[d] * 4) % 16) return false;
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(D), static_cast<cuuint64_t>(D),
                              static_cast<cuuint64_t>(v.sizes[1]), static_cast<cuuint64_t>(v.sizes[0])};
  const cuuint64_t strides[3] = {static_cast<cuuint64_t>(v.strides[2] * 4), static_cast<cuuint64_t>(v.strides[1] * 4),
                                 static_cast<cuuint64_t>(v.strides[0] * 4)};
  const cuuint32_t box[4] = {32, static_cast<cuuint32_t>(rows), 1, 1}, unit[4] = {1, 1, 1, 1};
  return encode(m, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 4, v.data, dims, strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

template <int D, bool Upper>
void launch(dim3 grid, const DecArgs& a, cudaStream_t stream, const char* fn) {
  // Over 48 KB of dynamic shared memory needs opting in (per device: so on every call, a host-side setting).
  check(cudaFuncSetAttribute(decode_kernel<D, Upper>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(dec_smem_bytes<D>())),
        fn, "cudaFuncSetAttribute");
  decode_kernel<D, Upper><<<grid, kDecThreads<D>, dec_smem_bytes<D>(), stream>>>(a);
}

// CTAs of decode_kernel<D, *> resident on one SM (two at D = 128, three at D = 64, by registers; 2 where the query
// fails): one wave is that many per SM. Asked once per D (grid sizes only, like sm_count).
template <int D>
int decode_ctas_per_sm() {
  static const int n = [] {
    int b = 0;
    const bool ok = cudaFuncSetAttribute(decode_kernel<D, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(dec_smem_bytes<D>())) == cudaSuccess &&
                    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, decode_kernel<D, false>, kDecThreads<D>,
                                                                  dec_smem_bytes<D>()) == cudaSuccess;
    (void)cudaGetLastError();
    return ok && b > 0 ? b : 2;
  }();
  return n;
}

// The cluster form (decode_split.cu) where it applies: one token per sequence, its three CTAs per head one per SM
// (at B = 4, H = 16, two an SM took 13.9 us against decode.cu's 12.9), initial states a tensor map reads, a build
// and device with clusters. GKA_CUDA_DECODE_SPLIT=0 turns it off (A/B).
bool split_fits(const Problem& p, const DecArgs& a) {
  const bool off = env_off("GKA_CUDA_DECODE_SPLIT");  // read at each call, as the tests' with_env expects
  const bool one_token =
      std::all_of(p.seqs.begin(), p.seqs.end(), [](const Sequence& s) { return s.state < 0 || s.length == 1; });
  return !off && one_token && p.num_seqs() > 0 && 3 * p.num_seqs() * p.H <= sm_count() &&
         (!a.ikk.dt || a.tmap_ok[0]) && (!a.ikv.dt || a.tmap_ok[1]) &&
         (p.D == 64 ? decode_split_ready<64>() : decode_split_ready<128>());
}

void recurrent_forward(const Problem& p, const ForwardOutputs& out) {
  const char* fn = "gka::recurrent_forward (cuda)";
  supported_check(p, fn, false);
  std::vector<SeqInfo> table;
  for (const Sequence& s : p.seqs)
    table.push_back({s.start, s.length, 0, 0, static_cast<int32_t>(s.batch), static_cast<int32_t>(s.state)});
  const ChebyshevPlan plan = chebyshev_plan(p.ridge_ratio, p.num_iter);
  DecArgs a{{}, {}, dview(p.in.q), dview(p.in.k), dview(p.in.v), dview(p.in.alpha), dview(p.in.g), dview(p.in.gk),
            dview(out.o), dview(out.x), dview(out.fro), dview(out.residual), dview(p.in.initial_kk),
            dview(p.in.initial_kv), dview(out.final_kk), dview(out.final_kv), cheb_const(p), plan.c, 0.0,
            static_cast<float>(p.scale), static_cast<int>(p.H), nullptr, {}, {}};
  // final_kv leaves the buffer by tensor map only where a sequence has no token (else from the registers): its map
  // is encoded only then.
  const bool empty_seq = std::any_of(p.seqs.begin(), p.seqs.end(), [](const Sequence& s) { return s.length == 0; });
  const TensorView* states[4] = {&p.in.initial_kk, &p.in.initial_kv, &out.final_kk, &out.final_kv};
  for (int k = 0; k < 4; ++k)
    a.tmap_ok[k] = (states[k] != &out.final_kv || empty_seq) && state_tmap(*states[k], p.D, p.D, &a.tmap[k]) ? 1 : 0;
  for (size_t i = 0; i < plan.omega.size() && i < static_cast<size_t>(kInlineOmegas); ++i)
    a.omega[i] = static_cast<float>(plan.omega[i]);
  if (plan.omega.size() > static_cast<size_t>(kInlineOmegas)) a.omega_tail = plan.omega[kInlineOmegas - 1];
  for (size_t i = 0; i < table.size() && i < static_cast<size_t>(kInlineSeqs); ++i) a.seqs[i] = table[i];
  std::optional<Upload<SeqInfo>> up;
  if (table.size() > static_cast<size_t>(kInlineSeqs)) {
    up.emplace(fn, table, stream_of(p));
    a.seq_table = up->get();
  }
  if (split_fits(p, a)) {
    if (p.D == 64)
      decode_split_launch<64>(static_cast<unsigned>(p.num_seqs()), a, stream_of(p), fn);
    else
      decode_split_launch<128>(static_cast<unsigned>(p.num_seqs()), a, stream_of(p), fn);
    return launch_check(fn);
  }
  // One CTA per (sequence, head), head fastest: the CTAs of a wave then read and write consecutive 64 KB states
  // (B = 64 82.0 us against 83.5 with the sequence fastest, H200).
  if (p.num_seqs() * p.H > std::numeric_limits<int32_t>::max())
    fail(fn, "decode takes at most 2^31 - 1 (sequence, head) pairs a call, got " + std::to_string(p.num_seqs() * p.H));
  const dim3 grid(static_cast<unsigned>(p.num_seqs() * p.H));
  // Past one wave (decode_ctas_per_sm) the step is bound by the state traffic, and reading only the initial H's upper
  // triangle (H is symmetric, spec §14: 40 of its 64 KB at D = 128) pays: B = 64 73.5-73.9 us against 78.8-78.9, B =
  // 32 40.1 against 42.5. Within one wave it is bound by latency, and the triangle (as ten 4 KB boxes then) arrived
  // later than all of H: B = 1 / 4 / 8 without the cluster form 13.6 / 13.9 / 14.8 against 12.7 / 13.1 / 14.2 (H200).
  // These grids also stagger their first wave's start (dec_stagger): B = 64 72.0-72.6 against 73.5-74.0, B = 32
  // 39.3-39.7 against 40.0-40.2.
  const int per_sm = p.D == 64 ? decode_ctas_per_sm<64>() : decode_ctas_per_sm<128>();
  const bool upper = int64_t{grid.x} > int64_t{per_sm} * sm_count() && a.ikk.dt;
  if (upper) {  // the maps of dec_load_upper: heights 32 (and 64, 96 at D = 128), then the full state's
    bool ok = a.tmap_ok[0];
    for (int q = 0; q + 1 < p.D / 32; ++q) ok = ok && state_tmap(p.in.initial_kk, p.D, 32 * (q + 1), &a.tmap[4 + q]);
    a.tmap_ok[4] = ok ? 1 : 0;
    a.first_wave[0] = sm_count();  // one CTA an SM starts at once (dec_stagger)
    a.first_wave[1] = per_sm * sm_count();
  }
  if (p.D == 64)
    upper ? launch<64, true>(grid, a, stream_of(p), fn) : launch<64, false>(grid, a, stream_of(p), fn);
  else
    upper ? launch<128, true>(grid, a, stream_of(p), fn) : launch<128, false>(grid, a, stream_of(p), fn);
  launch_check(fn);
}

}  // namespace gka::cuda
