// Chunk-start states on Hopper warpgroup products (sm_90a; chunk_states.h), for bf16 k and v with 16-byte aligned
// rows. The recurrence of chunk_states.cu's states_bf16_kernel, X <- e^{G_last} X + L_c per chunk, with a CTA of one
// warpgroup owning 64 rows of one state (H̄ with gk, or S̄ with g) of one (sequence, head) as D / 64 wgmma
// accumulators of 64 x 64. L_c's rows are A B with A(m, j) = w_j k_j[a0 + m] from registers (ldmatrix of the raw k
// tile, scaled and split into bf16 pieces: hi + mid + lo at the fp32 level, hi + mid, ~2^-17, with precision=mixed;
// split once for all D columns) and B(j, col) = b_j[col] the raw bf16 rows (exact) by descriptor; the products of a
// k-step run while the next k-step's A is split. A chunk's tiles and its gate weights (chunk_weights_kernel, launched
// first) arrive by bulk copies into a ring of kStages, kStages - 1 chunks ahead, so a chunk needs one barrier.
// Measured on an H200 at 8 x 2048 (ncu): 64 x 64 blocks at three CTAs per SM took 270 us, 64 x D at two 242.
// Each warp stores its 16 rows of a state through shared memory by tensor-map stores, which drain while the next
// chunk's products run (v24; 8-byte st.global from the registers: 237 against 200 us at 8 x 2048, 495 against 431
// at 1 x 32768, H200, real clock).
//
// Long sequences leave most SMs idle (a CTA walks its sequence's chunks in order), so where the grid is small each
// sequence is cut into segments run in parallel, in two launches: the first (`totals`) runs every segment but the
// last from a zero state without storing anything and keeps its end state E_i and decay product D_i; the second
// starts segment s from init and the E_i, D_i before it (X = D_i X + E_i) and stores the states. (Segment 0 in the
// first launch, beside the totals, measured slower: 296 + 375 us against 192 + 431 at 1 x 32768 on an H200.)
#include <algorithm>
#include <cstdlib>

#include "cuda/bulk_copy.cuh"
#include "cuda/chunk_states.h"
#include "cuda/mma.cuh"
#include "cuda/wgmma.cuh"

namespace gka::cuda {
namespace {

constexpr int kWgThreads = 128, kStages = 3, kCtasPerSm = 2;  // D = 128: 4 stages and the store stage fit one CTA
constexpr int kTileBytes = kChunkMax * 128;  // a chunk's rows j x 64 bf16 columns, 128-byte swizzle (wgmma.cuh)
constexpr int kWeights = kChunkMax + 4;      // a chunk's w_j, then e^{G_last} at [kChunkMax]: 16-byte rows
constexpr int kBoxBytes = 16 * 128;          // a state store's box: a warp's 16 rows x 32 fp32 columns, swizzled
// Shared memory: per stage the tiles of B (D / 64) and A; the store stage (64 x D fp32); per stage the weights and a
// barrier.
template <int D>
constexpr size_t kSmemBytes = kStages * (D / 64 + 1) * kTileBytes + 64 * D * sizeof(float) +
                              kStages * (kWeights * sizeof(float) + sizeof(uint64_t));
constexpr int kBlock = 64 * 64;  // elements of a CTA's state block

struct WgStatesArgs {
  const SeqInfo* seqs;
  const float* W;                      // chunk_weights_kernel's rows: [item][head][which]
  int csize, H, segs, totals, pieces;  // segs per sequence; totals: the first launch (above); pieces: 2 or 3
  DView init_kk, init_kv, fin_kk, fin_kv;
  StateBufs st;
  float* E;    // [sequence, head, which, segment, row block][thread][32 D / 64]: segment end states
  float* dec;  // [sequence, head, which, segment]: their decay products
};

// The gate weights of every (chunk, head, which) into W ([item][head][which][kWeights]) and the decays into
// `decay` (StateBufs::decay): grid (sequences x heads x 2, groups of 32 chunks), a warp per chunk.
__global__ void __launch_bounds__(256)
    chunk_weights_kernel(const SeqInfo* seqs, int csize, int H, DView gk, DView g, float* W, float* decay) {
  const int sh = blockIdx.x / 2, which = blockIdx.x & 1, s = sh / H, h = sh % H;
  const SeqInfo sq = seqs[s];
  if (sq.state < 0) return;
  const DView gate = which == 0 ? gk : g;
  const int lane = threadIdx.x & 31, end = min(sq.count, static_cast<int>(blockIdx.y + 1) * 32);
  for (int c = blockIdx.y * 32 + (threadIdx.x >> 5); c < end; c += 8) {
    const int64_t t0 = sq.start + static_cast<int64_t>(c) * csize;
    const int n = static_cast<int>(min(static_cast<int64_t>(csize), sq.length - t0 + sq.start));
    const float g0 = 2 * lane < n ? dscalar(gate, sq.batch, t0 + 2 * lane, h, 0.f) : 0.f;
    const float g1 = 2 * lane + 1 < n ? dscalar(gate, sq.batch, t0 + 2 * lane + 1, h, 0.f) : 0.f;
    const int64_t row = (static_cast<int64_t>(sq.first + c) * H + h) * 2 + which;
    float* w = W + row * kWeights;
    gate_weights(g0, g1, n, w);
    if (lane == 0) decay[row] = w[kChunkMax];
    if (lane > 0 && lane < kWeights - kChunkMax) w[kChunkMax + lane] = 0.f;
  }
}

// One 8-byte shared-memory store.
__device__ __forceinline__ void sts2(uint32_t addr, float x0, float x1) {
  asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(x0), "f"(x1) : "memory");
}

// grid: x = (sequence, head) major, then which (0 H̄, 1 S̄), row block (D / 64); y = segment. mk, mv: 4-D maps
// over k and v ([B, T, H, D]) with boxes of 64 columns x 64 rows; mh, ms over the state buffers ([slot, H, D, D]
// fp32) with boxes of 32 columns x 16 rows.
template <int D>
__global__ void __launch_bounds__(kWgThreads, kCtasPerSm)
    states_wg_kernel(const __grid_constant__ CUtensorMap mk, const __grid_constant__ CUtensorMap mv,
                     const __grid_constant__ CUtensorMap mh, const __grid_constant__ CUtensorMap ms,
                     const WgStatesArgs a) {
  constexpr int C = kChunkMax, NB = D / 64, PER = 2 * NB;  // NB: 64-row blocks of a state, 64-column blocks of B
  extern __shared__ __align__(1024) unsigned char sm[];
  if (smem_addr(sm) & 1023u) __trap();  // the tensor-map copies' swizzle needs 1024-byte aligned tiles
  const int bx = blockIdx.x, sh = bx / PER, which = bx % PER / NB, rb = bx % NB;
  const int H = a.H, s = sh / H, h = sh % H, a0 = 64 * rb, seg = blockIdx.y;
  const SeqInfo sq = a.seqs[s];
  if (sq.state < 0) return;
  const int span = (sq.count + a.segs - 1) / a.segs, lo = min(sq.count, seg * span), hi = min(sq.count, lo + span);
  if (seg > 0 && lo == hi && !a.totals) return;  // an empty tail segment: nothing to store
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, tq = lane & 3;
  const DView init = which == 0 ? a.init_kk : a.init_kv;
  // Shared memory: the tile ring (stages of 1024-byte aligned tiles: B's NB column blocks, then A's k columns, which
  // for H̄ is B's block rb and not copied), the store stage (per warp D / 32 boxes), the weights ring, the stages'
  // barriers.
  constexpr int kRing = kStages * (NB + 1) * kTileBytes, kStage = 64 * D * sizeof(float);
  auto tile = [&](int c, int b) { return sm + (((c - lo) % kStages) * (NB + 1) + b) * kTileBytes; };
  auto tile_a = [&](int c) { return tile(c, which == 0 ? rb : NB); };
  auto weights = [&](int c) {
    return reinterpret_cast<float*>(sm + kRing + kStage) + ((c - lo) % kStages) * kWeights;
  };
  uint64_t* full = reinterpret_cast<uint64_t*>(sm + kRing + kStage + kStages * kWeights * sizeof(float));
  auto t0_of = [&](int c) { return sq.start + static_cast<int64_t>(c) * a.csize; };
  auto n_of = [&](int c) {
    return static_cast<int>(min(static_cast<int64_t>(a.csize), sq.length - int64_t{c} * a.csize));
  };
  const int64_t part = (static_cast<int64_t>(sh) * 2 + which) * a.segs;  // this state's first segment entry

  auto fetch = [&](int c) {  // one thread: chunk c's tiles and weights
    if (c >= hi) return;
    uint64_t* bar = &full[(c - lo) % kStages];
    const int t0 = static_cast<int>(t0_of(c));
    mbar_expect(bar, (NB + which) * kTileBytes + kWeights * sizeof(float));
    for (int b = 0; b < NB; ++b) tma_load_4d(tile(c, b), which == 0 ? &mk : &mv, 64 * b, h, t0, sq.batch, bar);
    if (which == 1) tma_load_4d(tile(c, NB), &mk, a0, h, t0, sq.batch, bar);
    bulk_load(weights(c), a.W + ((static_cast<int64_t>(sq.first + c) * H + h) * 2 + which) * kWeights,
              kWeights * sizeof(float), bar);
  };

  // The state block: warp w holds rows r0 + (0, 8), r0 = a0 + 16 w + gq; column block b's n8 block j at x[b][4 j ..]
  // (columns 2 tq + 64 b + 8 j, + 1). each(f) calls f(dr, dc, x0, x1) with the offsets (dr, dc) from (r0, 2 tq):
  // constants once unrolled, so the stage stores below take a few base addresses and immediate offsets.
  float x[NB][32];
  const int r0 = a0 + 16 * warp + gq;
  auto each = [&](auto&& f) {
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) f(8 * hf, 64 * b + 8 * j, x[b][4 * j + 2 * hf], x[b][4 * j + 2 * hf + 1]);
  };
  // Partials (max |x|, Σ x²) over groups of 4 NB lanes (kStateParts per state: NB CTAs x 4 warps x 8 / NB groups),
  // and the warp's rows into its part of the store stage (box q = column / 32; chunk (column % 32) / 4 of local row
  // i at swizzle128(i, chunk): two wavefronts per 8-byte store), then its lane 0 stores the boxes. The store stage
  // is rewritten once lane 0's previous stores have read it.
  const uint32_t out_stage = smem_addr(sm + kRing) + warp * 16 * D * sizeof(float) + gq * 128 + (tq & 1) * 8;
  auto slot_store = [&](int64_t slot) {
    float mx[4] = {0.f, 0.f, 0.f, 0.f}, ss[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
      for (int e = 0; e < 32; ++e) {
        mx[e & 3] = fmaxf(mx[e & 3], fabsf(x[b][e]));
        ss[e & 3] = fmaf(x[b][e], x[b][e], ss[e & 3]);
      }
    if (lane == 0) bulk_wait_read();
    __syncwarp();
    each([&](int dr, int dc, float x0, float x1) {  // dc % 32 / 4 + tq / 2: the chunk; (gq + dr) % 8 = gq
      sts2(out_stage + dc / 32 * kBoxBytes + dr * 128 + (((dc % 32 / 4 + tq / 2) ^ gq) << 4), x0, x1);
    });
    fence_proxy_async();  // the store stage's writes, before the async proxy reads them
    __syncwarp();
    if (lane == 0) {
#pragma unroll
      for (int box = 0; box < D / 32; ++box)
        tma_store_4d(which == 0 ? &mh : &ms, 32 * box, a0 + 16 * warp, h, static_cast<int>(slot),
                     sm + kRing + warp * 16 * D * sizeof(float) + box * kBoxBytes);
      bulk_commit();
    }
    float m = fmaxf(fmaxf(mx[0], mx[1]), fmaxf(mx[2], mx[3])), q = (ss[0] + ss[1]) + (ss[2] + ss[3]);
#pragma unroll
    for (int o = 2 * NB; o > 0; o >>= 1) {  // over lanes 4 NB u .. 4 NB u + 4 NB - 1
      m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
      q += __shfl_xor_sync(0xffffffffu, q, o);
    }
    static_assert(kStateParts == 32, "8 / NB partials per warp, NB CTAs per state");
    float2* stat = a.st.stat + state_stat_index(slot * H + h, which);
    if ((lane & (4 * NB - 1)) == 0) stat[(rb * 4 + warp) * (8 / NB) + lane / (4 * NB)] = make_float2(m, q);
  };

  // X <- e^{G_last} X + A B over the k-steps inside the chunk. ptxas injects a warpgroup.arrive before each k-step's
  // products (C7519: A's registers are rewritten per k-step), so tests/cuda/wgmma_pipeline.sh leaves this file out;
  // the piece count as a template parameter with explicit fences measured slower (168 registers with spills against
  // 153: 306-323 against 270 us, bench/RESULTS.md, session 18).
  const int lr = (lane & 7) + ((lane >> 4) << 3), lch = 2 * warp + ((lane >> 3) & 1);  // this lane's ldmatrix row
  const bool three = a.pieces == 3;
  auto product = [&](int c) {
    const int n = n_of(c);
    const unsigned char* ta = tile_a(c);
    const uint32_t tb = smem_addr(tile(c, 0));
    const float* w = weights(c);
    float acc[NB][32];
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < C / 16; ++ks) {
      if (16 * ks >= n) break;
      const int r = 16 * ks + lr;
      uint32_t raw[4], pc[3][4];
      ldsm_x4(raw, ta + swizzle128(r, lch), true);  // A(m, j), m = 16 warp + ..., j = 16 ks + ...: the mma A layout
      const float2 wa = *reinterpret_cast<const float2*>(w + 16 * ks + 2 * tq);
      const float2 wb = *reinterpret_cast<const float2*>(w + 16 * ks + 8 + 2 * tq);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        __nv_bfloat162 b2;
        memcpy(&b2, &raw[q], 4);
        const float2 f = __bfloat1622float2(b2), ww = q < 2 ? wa : wb;
        if (three)
          bf16_pieces(ww.x * f.x, ww.y * f.y, pc[0][q], pc[1][q], pc[2][q]);
        else
          bf16_pair(ww.x * f.x, ww.y * f.y, pc[0][q], pc[1][q]);
      }
#pragma unroll
      for (int b = 0; b < NB; ++b) {
        const uint64_t bd = sw128_desc_mn_at(tb + b * kTileBytes, C, 16 * ks, 0);
        if (three) wgmma<64>(acc[b], pc[2], bd, ks > 0);  // the smallest piece first
        wgmma<64>(acc[b], pc[1], bd, three || ks > 0);
        wgmma<64>(acc[b], pc[0], bd, 1);
      }
      wgmma_commit();
      wgmma_wait<1>();  // k-step ks - 1 is done: its A registers are free
    }
    wgmma_wait<0>();
    const float dec = w[C];
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      fence_regs(acc[b]);
#pragma unroll
      for (int e = 0; e < 32; ++e) x[b][e] = fmaf(dec, x[b][e], acc[b][e]);
    }
  };

  if (threadIdx.x == 0) {
    for (int i = 0; i < kStages; ++i) mbar_init(&full[i]);
  }
  __syncthreads();
  if (threadIdx.x == 0)
    for (int c = lo; c < lo + kStages - 1; ++c) fetch(c);
  // The segment's start: zero for the totals, else init and the segments before this one.
  each([&](int dr, int dc, float& x0, float& x1) {
    const bool from_init = init.dt && !a.totals;
    x0 = from_init ? dload(init, drow(init, sq.state, h, r0 + dr) + 2 * tq + dc) : 0.f;
    x1 = from_init ? dload(init, drow(init, sq.state, h, r0 + dr) + 2 * tq + dc + 1) : 0.f;
  });
  if (!a.totals) {
    for (int i = 0; i < seg; ++i) {
      const float d = a.dec[part + i];
      const float4* e =
          reinterpret_cast<const float4*>(a.E + ((part + i) * NB + rb) * NB * kBlock) + threadIdx.x * 8 * NB;
#pragma unroll
      for (int b = 0; b < NB; ++b)
#pragma unroll
        for (int v = 0; v < 8; ++v) {
          const float4 t = e[8 * b + v];
          x[b][4 * v] = fmaf(d, x[b][4 * v], t.x);
          x[b][4 * v + 1] = fmaf(d, x[b][4 * v + 1], t.y);
          x[b][4 * v + 2] = fmaf(d, x[b][4 * v + 2], t.z);
          x[b][4 * v + 3] = fmaf(d, x[b][4 * v + 3], t.w);
        }
    }
    if (seg == 0) slot_store(sq.first + s);  // later segments' first slot is the one before's last
  }
  float dprod = 1.f;
  for (int c = lo; c < hi; ++c) {
    const int n = n_of(c);
    mbar_wait(&full[(c - lo) % kStages], ((c - lo) / kStages) & 1);
    if (n < C) {  // rows past the chunk (another sequence's, or past T: zero already) must not reach the products
      for (int i = threadIdx.x; i < (NB + 1) * (C - n) * 8; i += kWgThreads)
        *reinterpret_cast<uint4*>(tile(c, i % (NB + 1)) + (n + i / (NB + 1) / 8) * 128 + i / (NB + 1) % 8 * 16) =
            make_uint4(0, 0, 0, 0);
      fence_proxy_async();  // B is read by the async proxy; the zeros land before a later copy into the stage
    }
    __syncthreads();  // every warp is past chunk c - 1: its stage is free
    if (threadIdx.x == 0) fetch(c + kStages - 1);
    product(c);
    if (a.totals)
      dprod *= weights(c)[C];
    else
      slot_store(sq.first + s + c + 1);
  }
  if (a.totals) {
    float4* e = reinterpret_cast<float4*>(a.E + ((part + seg) * NB + rb) * NB * kBlock) + threadIdx.x * 8 * NB;
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
      for (int v = 0; v < 8; ++v)
        e[8 * b + v] = make_float4(x[b][4 * v], x[b][4 * v + 1], x[b][4 * v + 2], x[b][4 * v + 3]);
    if (rb == 0 && threadIdx.x == 0) a.dec[part + seg] = dprod;
    return;
  }
  if (lane == 0) bulk_wait_read();  // the store stage stays until the last stores have read it
  const DView fin = which == 0 ? a.fin_kk : a.fin_kv;
  if (fin.dt && hi == sq.count)
    each([&](int dr, int dc, float x0, float x1) {
      const int64_t at = drow(fin, sq.state, h, r0 + dr) + 2 * tq + dc;
      dstore(fin, at, x0);
      dstore(fin, at + 1, x1);
    });
}

// A 4-D tensor map over a bf16 [B, T, H, D] view with boxes of 64 columns x 64 rows (128-byte swizzle; rows past T
// read as zeros). False where the driver has no encoder.
bool rows_tmap(const TensorView& v, CUtensorMap* m) {
  const auto encode = tensor_map_encoder();
  if (!encode) return false;
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(v.sizes[3]), static_cast<cuuint64_t>(v.sizes[2]),
                              static_cast<cuuint64_t>(v.sizes[1]), static_cast<cuuint64_t>(v.sizes[0])};
  const cuuint64_t strides[3] = {static_cast<cuuint64_t>(v.strides[2] * 2), static_cast<cuuint64_t>(v.strides[1] * 2),
                                 static_cast<cuuint64_t>(v.strides[0] * 2)};
  const cuuint32_t box[4] = {64, 1, static_cast<cuuint32_t>(kChunkMax), 1}, unit[4] = {1, 1, 1, 1};
  return encode(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, v.data, dims, strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// A 4-D tensor map over fp32 states [slots, H, D, D] with boxes of 32 columns x 16 rows (128-byte swizzle).
bool states_tmap(float* buf, int64_t slots, int64_t H, int64_t D, CUtensorMap* m) {
  const auto encode = tensor_map_encoder();
  if (!encode) return false;
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(D), static_cast<cuuint64_t>(D), static_cast<cuuint64_t>(H),
                              static_cast<cuuint64_t>(slots)};
  const cuuint64_t strides[3] = {static_cast<cuuint64_t>(D * 4), static_cast<cuuint64_t>(D * D * 4),
                                 static_cast<cuuint64_t>(H * D * D * 4)};
  const cuuint32_t box[4] = {32, 16, 1, 1}, unit[4] = {1, 1, 1, 1};
  return encode(m, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 4, buf, dims, strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

template <int D>
void run(const Problem& p, const SeqInfo* seqs, const StateBufs& st, const TensorView& final_kk,
         const TensorView& final_kv, const CUtensorMap& mk, const CUtensorMap& mv, const CUtensorMap& mh,
         const CUtensorMap& ms, const char* fn) {
  const int H = static_cast<int>(p.H);
  const int64_t per = 2 * (D / 64), ctas = p.num_seqs() * H * per;
  if (ctas > INT32_MAX) fail(fn, "too many sequences x heads for one states launch: " + std::to_string(ctas));
  // Segments: as many as keep the CTAs within one round of every SM's kCtasPerSm slots (a second, partial round
  // would double the time), each at least kMinSpan chunks long. GKA_STATES_SEGS=n sets n (experiments; at most
  // kMaxSegs).
  constexpr int64_t kMinSpan = 16, kMaxSegs = 16;
  static const int64_t env = [] {
    const char* e = std::getenv("GKA_STATES_SEGS");
    return e ? std::max(1, std::atoi(e)) : 0;
  }();
  int64_t longest = 0, items = 0;
  for (const Sequence& q : p.seqs) {
    longest = std::max(longest, (q.length + p.chunk_size - 1) / p.chunk_size);
    items += (q.length + p.chunk_size - 1) / p.chunk_size;
  }
  const int64_t fit = int64_t{kCtasPerSm} * sm_count() / ctas;
  const int segs = static_cast<int>(std::clamp<int64_t>(env ? env : std::min(fit, longest / kMinSpan), 1, kMaxSegs));
  Scratch E(fn, segs > 1 ? ctas * segs * (D / 64) * kBlock * sizeof(float) : 0, stream_of(p));
  Scratch dec(fn, segs > 1 ? p.num_seqs() * H * 2 * segs * sizeof(float) : 0, stream_of(p));
  Scratch W(fn, std::max<int64_t>(1, items * H * 2) * kWeights * sizeof(float), stream_of(p));
  const int csize = static_cast<int>(p.chunk_size);
  if (longest > 0) {
    chunk_weights_kernel<<<dim3(static_cast<unsigned>(p.num_seqs() * H * 2),
                                static_cast<unsigned>((longest + 31) / 32)),
                           256, 0, stream_of(p)>>>(seqs, csize, H, dview(p.in.gk), dview(p.in.g), W.as<float>(),
                                                   st.decay);
    launch_check(fn);
  }
  const int pieces = p.precision == Precision::mixed ? 2 : 3;
  WgStatesArgs a{seqs,
                 W.as<float>(),
                 csize,
                 H,
                 segs,
                 0,
                 pieces,
                 dview(p.in.initial_kk),
                 dview(p.in.initial_kv),
                 dview(final_kk),
                 dview(final_kv),
                 st,
                 E.as<float>(),
                 dec.as<float>()};
  check(cudaFuncSetAttribute(states_wg_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(kSmemBytes<D>)),
        fn, "cudaFuncSetAttribute");
  check(cudaFuncSetAttribute(states_wg_kernel<D>, cudaFuncAttributePreferredSharedMemoryCarveout,
                             cudaSharedmemCarveoutMaxShared),
        fn, "cudaFuncSetAttribute");  // two CTAs per SM
  if (segs > 1) {
    a.totals = 1;
    states_wg_kernel<D><<<dim3(static_cast<unsigned>(ctas), segs - 1), kWgThreads, kSmemBytes<D>, stream_of(p)>>>(
        mk, mv, mh, ms, a);
    launch_check(fn);
    a.totals = 0;
  }
  states_wg_kernel<D><<<dim3(static_cast<unsigned>(ctas), segs), kWgThreads, kSmemBytes<D>, stream_of(p)>>>(mk, mv, mh,
                                                                                                         ms, a);
  launch_check(fn);
}

}  // namespace

bool states_wg_compute(const Problem& p, const SeqInfo* seqs, const StateBufs& st, const TensorView& final_kk,
                       const TensorView& final_kv, const char* fn) {
  CUtensorMap mk, mv, mh, ms;
  if (!rows_tmap(p.in.k, &mk) || !rows_tmap(p.in.v, &mv) || !states_tmap(st.Hs, st.slots, p.H, p.D, &mh) ||
      !states_tmap(st.Ss, st.slots, p.H, p.D, &ms))
    return false;
  if (p.D == 64)
    run<64>(p, seqs, st, final_kk, final_kv, mk, mv, mh, ms, fn);
  else
    run<128>(p, seqs, st, final_kk, final_kv, mk, mv, mh, ms, fn);
  return true;
}

}  // namespace gka::cuda
