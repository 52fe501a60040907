// Hopper warpgroup products (wgmma.mma_async, sm_90a only): bf16 or f16 operands read from shared memory through
// matrix descriptors (or A from registers), fp32 accumulators in registers. Used by the mixed-precision
// solve (cheb_wgmma.cuh). Compiled to traps for other architectures; the host only selects them on sm_90
// devices of a build that includes sm_90a (GKA_HAVE_SM90A).
#pragma once

#include <cstdint>
#include <type_traits>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define GKA_WGMMA_DEVICE 1
#else
#define GKA_WGMMA_DEVICE 0
#endif

namespace gka::cuda {

// The 128-byte swizzled K-major layout of wgmma: a tile of R rows (R % 8 == 0) by K bf16 columns is stored
// as K / 64 blocks of R x 128 bytes; within a block row r sits at r * 128 and its 16-byte chunk c at
// (c ^ (r % 8)) * 16. Tiles start on 1024-byte boundaries. Byte offset of element (r, k):
__device__ __forceinline__ uint32_t sw128_bf16(int R, int r, int k) {
  return static_cast<uint32_t>((k >> 6) * (R * 128) + r * 128 + ((((k >> 3) & 7) ^ (r & 7)) << 4) + ((k & 7) << 1));
}

// Byte offset of k-step ks (columns [16 ks, 16 ks + 16)) in such a tile of R rows: what a descriptor moves by.
__device__ __forceinline__ uint32_t sw128_kstep(int R, int ks) { return sw128_bf16(R, 0, 16 * ks); }

// Descriptor of the 8 x 8-row core groups at `p` (byte address in shared memory): 128-byte swizzle,
// groups of 8 rows 1024 bytes apart (the leading offset is unused by swizzled K-major layouts).
__device__ __forceinline__ uint64_t sw128_desc(uint32_t p) {
  return static_cast<uint64_t>((p & 0x3FFFFu) >> 4) | (static_cast<uint64_t>(1) << 16) |
         (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}

// The same tile read MN-major (as the K x N operand B with N along the tile's columns): rows [k0, k0 + 16) x
// columns [n0, n0 + N) of a swizzled tile of R rows at `base`; 8-row groups 1024 bytes apart, 64-column
// blocks R * 128 bytes apart.
__device__ __forceinline__ uint64_t sw128_desc_mn_at(uint32_t base, int R, int k0, int n0) {
  const uint32_t p = base + (n0 >> 6) * (R * 128) + k0 * 128 + (n0 & 63) * 2;
  return static_cast<uint64_t>((p & 0x3FFFFu) >> 4) | (static_cast<uint64_t>((R * 128) >> 4) << 16) |
         (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
}

// Descriptor of rows [r0, r0 + N) x columns [k0, k0 + 16) of a swizzled tile of R rows at byte address `base`.
__device__ __forceinline__ uint64_t sw128_desc_bf16_at(uint32_t base, int R, int r0, int k0) {
  return sw128_desc(base + (k0 >> 6) * (R * 128) + r0 * 128 + (k0 & 63) * 2);
}

// Descriptor d moved by `bytes` (a multiple of 16 that keeps it inside shared memory): the start address field
// (bits 0-13, address / 16 < 2^14) takes the add without a carry, so one 32-bit add forms it.
__device__ __forceinline__ uint64_t desc_plus(uint64_t d, uint32_t bytes) {
  return (d & 0xFFFFFFFF00000000ull) | static_cast<uint32_t>(static_cast<uint32_t>(d) + (bytes >> 4));
}

__device__ __forceinline__ void wgmma_fence() {
#if GKA_WGMMA_DEVICE
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if GKA_WGMMA_DEVICE
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if GKA_WGMMA_DEVICE
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Keeps the compiler from moving accumulator reads/writes across the asynchronous products.
template <int R>
__device__ __forceinline__ void fence_regs(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// d (+)= A B for a 64 x N x 16 step, 16-bit A and B (both K-major; bf16, or f16 where F16) by descriptor, fp32
// accumulation; accumulate = 0 overwrites d. Accumulator layout: warp w of the warpgroup holds rows 16 w + g (+ 8),
// n8 block j in d[4 j .. 4 j + 3] exactly as an mma.sync m16n8 C fragment (g = lane / 4, t = lane % 4: columns
// 8 j + 2 t, + 1).
//
// A from registers (the _rs forms): the mma.sync m16n8k16 A layout per warp (a[0] row g columns 2t, 2t + 1; a[1]
// row g + 8; a[2], a[3] the same rows at columns 8 + 2t, packed in pairs, low half first), B by an MN-major
// descriptor (sw128_desc_mn: B's N index contiguous). An accumulator's n8 blocks 2k, 2k + 1 packed this way are the
// A of k-step k.
#define GKA_ACC16 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}"
#define GKA_ACC32                                                                                       \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27," \
  "%28,%29,%30,%31}"
#define GKA_OUT16(d)                                                                                              \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), \
      "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
#define GKA_OUT32(d)                                                                                            \
  GKA_OUT16(d), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]),   \
      "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), \
      "+f"(d[31])
// One function per (N, type), overloaded on the A source: the type is part of the instruction text. TB: B is
// MN-major (its N index contiguous); TA (descriptor A only): A is MN-major (its M index contiguous).
#if GKA_WGMMA_DEVICE
#define GKA_WGMMA_SS(NAME, N, R, TY, ACC, OUT, IA, IB, IC, IT, ITA)                                            \
  template <int TB, int TA = 0>                                                                               \
  __device__ __forceinline__ void NAME(float (&d)[R], uint64_t a, uint64_t b, int accumulate) {               \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" IC ", 0;\n"                                             \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " " ACC                            \
                 ", %" IA ", %" IB ", p, 1, 1, %" ITA ", %" IT ";\n}\n"                                         \
                 : OUT(d)                                                                                     \
                 : "l"(a), "l"(b), "r"(accumulate), "n"(TB), "n"(TA));                                        \
  }
#define GKA_WGMMA_RS(NAME, N, R, TY, ACC, OUT, IA, IB, IC, IT)                                                \
  template <int TB>                                                                                           \
  __device__ __forceinline__ void NAME(float (&d)[R], const uint32_t (&a)[4], uint64_t b, int accumulate) {    \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" IC ", 0;\n"                                             \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " " ACC ", " IA ", %" IB            \
                 ", p, 1, 1, %" IT ";\n}\n"                                                                     \
                 : OUT(d)                                                                                     \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(TB));             \
  }
#else  // other architectures: never selected by the host
#define GKA_WGMMA_SS(NAME, N, R, TY, ACC, OUT, IA, IB, IC, IT, ITA) \
  template <int TB, int TA = 0>                                     \
  __device__ __forceinline__ void NAME(float (&)[R], uint64_t, uint64_t, int) { __trap(); }
#define GKA_WGMMA_RS(NAME, N, R, TY, ACC, OUT, IA, IB, IC, IT) \
  template <int TB>                                        \
  __device__ __forceinline__ void NAME(float (&)[R], const uint32_t (&)[4], uint64_t, int) { __trap(); }
#endif
GKA_WGMMA_SS(wgmma_bf16_n32, 32, 16, "bf16", GKA_ACC16, GKA_OUT16, "16", "17", "18", "19", "20")
GKA_WGMMA_SS(wgmma_bf16_n64, 64, 32, "bf16", GKA_ACC32, GKA_OUT32, "32", "33", "34", "35", "36")
GKA_WGMMA_SS(wgmma_f16_n32, 32, 16, "f16", GKA_ACC16, GKA_OUT16, "16", "17", "18", "19", "20")
GKA_WGMMA_SS(wgmma_f16_n64, 64, 32, "f16", GKA_ACC32, GKA_OUT32, "32", "33", "34", "35", "36")
GKA_WGMMA_RS(wgmma_bf16_n32, 32, 16, "bf16", GKA_ACC16, GKA_OUT16, "{%16,%17,%18,%19}", "20", "21", "22")
GKA_WGMMA_RS(wgmma_bf16_n64, 64, 32, "bf16", GKA_ACC32, GKA_OUT32, "{%32,%33,%34,%35}", "36", "37", "38")
GKA_WGMMA_RS(wgmma_f16_n32, 32, 16, "f16", GKA_ACC16, GKA_OUT16, "{%16,%17,%18,%19}", "20", "21", "22")
GKA_WGMMA_RS(wgmma_f16_n64, 64, 32, "f16", GKA_ACC32, GKA_OUT32, "{%32,%33,%34,%35}", "36", "37", "38")
// 64 x 128 x 16, f16, A from registers: one instruction where two of N = 64 take twice the issue slots (the solves'
// loops are issue-bound). The accumulator comes as its two 64-column halves (d0: columns 0 .. 63, d1: 64 .. 127),
// each in the N = 64 layout. TB: B MN-major.
#define GKA_ACC64 \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26," \
  "%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50," \
  "%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"
#if GKA_WGMMA_DEVICE
template <int TB>
__device__ __forceinline__ void wgmma_f16_n128(float (&d0)[32], float (&d1)[32], const uint32_t (&a)[4], uint64_t b,
                                               int accumulate) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " GKA_ACC64 ", {%64,%65,%66,%67}, %68, p, 1, 1, %70;\n}\n"
               : GKA_OUT32(d0), GKA_OUT32(d1)
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(TB));
}
#else
template <int TB>
__device__ __forceinline__ void wgmma_f16_n128(float (&)[32], float (&)[32], const uint32_t (&)[4], uint64_t, int) {
  __trap();
}
#endif
#undef GKA_ACC64
#undef GKA_WGMMA_RS
#undef GKA_WGMMA_SS
#undef GKA_OUT32
#undef GKA_OUT16
#undef GKA_ACC32
#undef GKA_ACC16

// 64 x N x 16 step for N in {32, 64} on an accumulator of N / 2 floats; f16 operands where F16, else bf16; A by
// descriptor (uint64_t) or from registers (uint32_t[4]): the overloads above. B is K-major by default with A by
// descriptor and MN-major with A from registers; BMN = 1 makes it MN-major for both.
template <int N, bool F16 = false, int BMN = -1, class A>
__device__ __forceinline__ void wgmma(float (&d)[N / 2], const A& a, uint64_t b, int accumulate) {
  static_assert(N == 32 || N == 64, "wgmma: N in {32, 64}");
  constexpr int tb = BMN >= 0 ? BMN : (std::is_same_v<A, uint64_t> ? 0 : 1);
  if constexpr (N == 32 && F16)
    wgmma_f16_n32<tb>(d, a, b, accumulate);
  else if constexpr (N == 32)
    wgmma_bf16_n32<tb>(d, a, b, accumulate);
  else if constexpr (F16)
    wgmma_f16_n64<tb>(d, a, b, accumulate);
  else
    wgmma_bf16_n64<tb>(d, a, b, accumulate);
}

}  // namespace gka::cuda
