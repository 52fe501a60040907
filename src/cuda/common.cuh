// Shared pieces of the CUDA backend: device views of strided tensors, the chunk plan uploaded to the
// device, stream-ordered scratch buffers, the supported-shape check and error handling.
// All launches use the legacy default stream (the public API has no stream argument yet).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/chebyshev.h"
#include "common/problem.h"
#include "gka/error.h"

namespace gka::cuda {

inline constexpr int kChunkMax = 64;  // rows of a chunk tile; chunk_size <= 64 is supported
inline constexpr int kThreads = 256;  // threads of the chunk kernels: a 16 x 16 grid of thread tiles
inline constexpr int kMaxIter = 4096;

// A strided view as kernels see it: dtype code (0 absent, 1 f32, 2 bf16, 3 f16) and the strides of the
// first three dimensions (the last one is contiguous).
struct DView {
  void* p = nullptr;
  int32_t dt = 0;
  int64_t s0 = 0, s1 = 0, s2 = 0;
};

inline DView dview(const TensorView& v) {
  DView d;
  if (!v.defined()) return d;
  d.p = v.data;
  d.dt = v.dtype == DType::f32 ? 1 : v.dtype == DType::bf16 ? 2 : 3;
  d.s0 = v.strides[0];
  d.s1 = v.ndim > 1 ? v.strides[1] : 0;
  d.s2 = v.ndim > 2 ? v.strides[2] : 0;
  return d;
}

__device__ __forceinline__ float dload(const DView& v, int64_t off) {
  if (v.dt == 1) return static_cast<const float*>(v.p)[off];
  if (v.dt == 2) return __bfloat162float(static_cast<const __nv_bfloat16*>(v.p)[off]);
  return __half2float(static_cast<const __half*>(v.p)[off]);
}

// v0, v1 as packed bf16 words hi = bf16(v) and lo = bf16(v - hi): the pair that carries ~16 significant bits
// through bf16 products (the mixed solve's tiles, pair_tile.cuh).
__device__ __forceinline__ void bf16_pair(float v0, float v1, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h2 = __floats2bfloat162_rn(v0, v1);
  const float2 h = __bfloat1622float2(h2);
  const __nv_bfloat162 l2 = __floats2bfloat162_rn(v0 - h.x, v1 - h.y);
  memcpy(&hi, &h2, 4);
  memcpy(&lo, &l2, 4);
}

// v0, v1 as one packed f16 (or bf16) word, and back; f16 hi and lo words (lo = f16(v - hi); for values scaled to |v| <= 2^14,
// where lo goes subnormal its absolute error stays under 2^-24: far below the tile's or row's scale, which is what the
// products see).
__device__ __forceinline__ __half2 half2_of(uint32_t w) {
  __half2 h;
  memcpy(&h, &w, 4);
  return h;
}
__device__ __forceinline__ uint32_t word_of(__half2 h) {
  uint32_t w;
  memcpy(&w, &h, 4);
  return w;
}
__device__ __forceinline__ uint32_t f16_word(float v0, float v1) { return word_of(__floats2half2_rn(v0, v1)); }
__device__ __forceinline__ uint32_t bf16_word(float v0, float v1) {
  const __nv_bfloat162 b2 = __floats2bfloat162_rn(v0, v1);
  uint32_t w;
  memcpy(&w, &b2, 4);
  return w;
}
__device__ __forceinline__ float2 f16_floats(uint32_t w) { return __half22float2(half2_of(w)); }
__device__ __forceinline__ void f16_pair(float v0, float v1, uint32_t& hi, uint32_t& lo) {
  hi = f16_word(v0, v1);
  const float2 h = f16_floats(hi);
  lo = f16_word(v0 - h.x, v1 - h.y);
}

__device__ __forceinline__ void dstore(const DView& v, int64_t off, float x) {
  if (v.dt == 1)
    static_cast<float*>(v.p)[off] = x;
  else if (v.dt == 2)
    static_cast<__nv_bfloat16*>(v.p)[off] = __float2bfloat16_rn(x);
  else
    static_cast<__half*>(v.p)[off] = __float2half_rn(x);
}

__device__ __forceinline__ int64_t drow(const DView& v, int64_t a, int64_t b, int64_t c) {
  return a * v.s0 + b * v.s1 + c * v.s2;
}

// One scalar of a [B,T,H] view, `absent` when the view is not given.
__device__ __forceinline__ float dscalar(const DView& v, int64_t b, int64_t t, int64_t h, float absent) {
  return v.dt == 0 ? absent : dload(v, drow(v, b, t, h));
}

// One chunk of one sequence. `slot` is the chunk-start state's slot in the state buffers (the chunk's end
// state sits in slot + 1).
struct Item {
  int64_t t0;
  int32_t n, seq, chunk, batch, state, slot;
};

// One sequence: its chunks are items [first, first + count), its state slots [first + seq, first + seq + count].
struct SeqInfo {
  int64_t start, length;
  int32_t first, count, batch, state;
};

// The Chebyshev constants of a call (spec §A.3), passed by value to kernels.
struct ChebConst {
  float eta_f = 0, r = 0;
  int32_t n = 0;
};

[[noreturn]] inline void fail(const char* fn, const std::string& msg) { throw Error(std::string(fn) + ": " + msg); }

// The exact inverse of a power of two p, by its exponent's bits.
__device__ __forceinline__ float inv_pow2(float p) { return __int_as_float(0x7f000000 - __float_as_int(p)); }

// The GPU's global nanosecond timer (the same on every SM).
__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

inline void check(cudaError_t e, const char* fn, const char* what) {
  if (e != cudaSuccess) fail(fn, std::string(what) + " failed: " + cudaGetErrorString(e));
}

// Rejects what the CUDA backend does not implement, with a message naming the limit.
inline void supported_check(const Problem& p, const char* fn, bool backward) {
  if (p.fp64) fail(fn, "the cuda backend supports f32, bf16 and f16 inputs, got f64");
  if (p.D != 64 && p.D != 128)
    fail(fn, "the cuda backend supports head dim D in {64, 128}, got D = " + std::to_string(p.D));
  if (p.Dv != p.D)
    fail(fn, "the cuda backend needs Dv == D, got D = " + std::to_string(p.D) + ", Dv = " + std::to_string(p.Dv));
  if (p.solver != Solver::chebyshev) fail(fn, "the cuda backend supports solver chebyshev only");
  if (p.chunk_size > kChunkMax)
    fail(fn, "the cuda backend supports chunk_size <= 64, got " + std::to_string(p.chunk_size));
  if (p.num_iter > kMaxIter) fail(fn, "the cuda backend supports num_iter <= 4096");
  (void)backward;
}

// Host copy of the chunk plan plus its device copy.
struct Plan {
  std::vector<Item> items;
  std::vector<SeqInfo> seqs;
  int64_t slots = 0;
};

inline Plan plan_make(const Problem& p) {
  Plan pl;
  const int64_t C = p.chunk_size;
  for (int64_t s = 0; s < p.num_seqs(); ++s) {
    const Sequence& q = p.seqs[s];
    const int32_t first = static_cast<int32_t>(pl.items.size());
    const int64_t nc = q.state < 0 ? 0 : (q.length + C - 1) / C;
    for (int64_t c = 0; c < nc; ++c)
      pl.items.push_back({q.start + c * C, static_cast<int32_t>(std::min(C, q.length - c * C)), static_cast<int32_t>(s),
                          static_cast<int32_t>(c), static_cast<int32_t>(q.batch), static_cast<int32_t>(q.state),
                          static_cast<int32_t>(first + s + c)});
    pl.seqs.push_back({q.start, q.length, first, static_cast<int32_t>(nc), static_cast<int32_t>(q.batch),
                       static_cast<int32_t>(q.state)});
  }
  pl.slots = static_cast<int64_t>(pl.items.size()) + p.num_seqs();
  return pl;
}

// The stream every launch, copy and allocation of a call is ordered on (Options::cuda_stream).
inline cudaStream_t stream_of(const Problem& p) { return static_cast<cudaStream_t>(p.cuda_stream); }

// The library's pool for scratch on the stream's device (scratch_pool.cu: kept between calls, unlike the default pool's).
cudaMemPool_t scratch_pool(cudaStream_t stream, const char* fn);

// Stream-ordered device scratch from scratch_pool on the call's stream, freed the same way.
class Scratch {
 public:
  Scratch(const char* fn, size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes == 0) return;
    check(cudaMallocFromPoolAsync(&p_, bytes, scratch_pool(stream, fn), stream_), fn, "cudaMallocFromPoolAsync");
  }
  ~Scratch() {
    if (p_) (void)cudaFreeAsync(p_, stream_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

// A host vector uploaded to scratch.
template <class T>
struct Upload {
  Scratch buf;
  Upload(const char* fn, const std::vector<T>& v, cudaStream_t stream) : buf(fn, v.size() * sizeof(T), stream) {
    if (!v.empty())
      check(cudaMemcpyAsync(buf.as<T>(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, stream), fn, "upload");
  }
  const T* get() const { return buf.as<T>(); }
};

inline ChebConst cheb_const(const Problem& p) {
  ChebConst c;
  c.eta_f = static_cast<float>(2.0 / (1.0 + 2.0 * p.ridge_ratio));
  c.r = static_cast<float>(p.ridge_ratio);
  c.n = p.num_iter;
  return c;
}

// Where a call's Chebyshev iterations run (cheb_solve): all on Hopper warpgroup products (cheb_wgmma.cuh: one
// scaled f16 product term on the first one_term iterations, f16 pairs on the next, one term again in the offset
// form after it) or all on mma.sync (one plain tf32 product before one_term, 3xTF32 after).
// - fp32: every iteration in 3xTF32 on mma.sync (fp32 accuracy: the suite's fp32 tolerances on every case);
// - mixed: one-term products on all but the last iterations (params.h): on Hopper on wgmma, elsewhere on
//   mma.sync. GKA_CUDA_ONE_TERM_ITERS sets the number of one-term iterations (experiments).
// Hopper products need an sm_90 device and a build with sm_90a (GKA_HAVE_SM90A); GKA_CUDA_WGMMA=0 turns them
// off (the portable path, for comparison and testing on the same card).
struct SolveSchedule {
  int32_t wgmma = 0, one_term = 0;
  int32_t k_bf16 = 0;  // k is bf16: exact in one bf16 term (cheb_wgmma.cuh)
};

// The chunk kernels' KX: every input tile they multiply raw (k, v, and dO in the backward) is 16-bit, so exact
// in tf32 (mma.cuh, mma3's AEXACT / BEXACT).
inline bool inputs_tf32_exact(const Problem& p, const TensorView* d_o = nullptr) {
  const auto narrow = [](const TensorView& v) { return v.dtype == DType::bf16 || v.dtype == DType::f16; };
  return narrow(p.in.k) && narrow(p.in.v) && (!d_o || narrow(*d_o));
}

// True where the environment variable `name` is "0": the switches that turn a fast path off for A/B experiments.
inline bool env_off(const char* name) {
  const char* e = std::getenv(name);
  return e && std::string(e) == "0";
}

inline bool wgmma_available() {
#if GKA_HAVE_SM90A
  static const bool off = env_off("GKA_CUDA_WGMMA");
  int dev = 0, major = 0;
  return !off && cudaGetDevice(&dev) == cudaSuccess &&
         cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major == 9;
#else
  return false;
#endif
}

inline SolveSchedule solve_schedule(const Problem& p) {
  static const int env = [] {
    const char* e = std::getenv("GKA_CUDA_ONE_TERM_ITERS");
    return e ? std::max(0, std::atoi(e)) : -1;
  }();
  SolveSchedule s;
  s.k_bf16 = p.in.k.dtype == DType::bf16 ? 1 : 0;
  if (p.precision != Precision::mixed) return s;
  s.wgmma = wgmma_available() ? 1 : 0;
  // wgmma: the one accurate iteration at 2N/5 (cheb_wgmma.cuh; at N = 30, switches at 10, 12, 16 and 20 measured
  // o within 1.71e-3 .. 2.03e-3, dalpha 6.1e-4 .. 1.6e-3, least at 12); up to kMixedFinishIters iterations all
  // accurate, as on mma.sync, whose schedule ends on kMixedFinishIters 3xTF32 iterations.
  const int n = p.num_iter;
  s.one_term = env >= 0 ? env : n <= kMixedFinishIters ? 0 : s.wgmma ? 2 * n / 5 : n - kMixedFinishIters;
  return s;
}

// The omega sequence lives in constant memory of each translation unit that solves.
inline std::vector<float> omegas(const Problem& p) {
  const ChebyshevPlan pl = chebyshev_plan(p.ridge_ratio, p.num_iter);
  return std::vector<float>(pl.omega.begin(), pl.omega.end());
}

// The 32-bit shared-memory address of p (the operand form of the asynchronous copies, ldmatrix, descriptors).
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Makes this thread's ordinary writes to shared memory visible to the async proxy (wgmma operands, bulk copies)
// after a barrier (sm_90+).
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// Asynchronous 16-byte copies global -> shared (cp.async.cg); wait with cp_async_wait_all() (+ __syncthreads()
// where other threads read what this one copied).
__device__ __forceinline__ void cp_async16(void* sdst, const void* gsrc) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(sdst)), "l"(gsrc));
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::); }

// The same with zero fill where !full (nothing read from gsrc), and groups: cp_async_commit() after a step's
// copies, then cp_async_wait<N>() leaves at most this thread's N latest groups in flight.
__device__ __forceinline__ void cp_async16_zfill(void* sdst, const void* gsrc, bool full) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(sdst)), "l"(gsrc), "r"(full ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

inline void launch_check(const char* fn) { check(cudaGetLastError(), fn, "kernel launch"); }

// The current device's SM count at the first call (132 where the query fails): grid sizes only.
inline int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    return cudaGetDevice(&dev) == cudaSuccess &&
                   cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess
               ? v
               : 132;
  }();
  return n;
}

}  // namespace gka::cuda
