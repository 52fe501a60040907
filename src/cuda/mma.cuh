// Tensor-core primitives of the chunk kernels: tf32 rounding and 3xTF32 splitting, mma.sync m16n8k8 and
// its fragment loads (sm_80+), used by chunk_tile.cuh; bf16 m16n8k16 with ldmatrix loads (the bf16 states kernel).
#pragma once

#include <cstdint>

#include "cuda/common.cuh"  // smem_addr

namespace gka::cuda {

// ---- Tensor-core products of the solver (mma.sync m16n8k8, tf32 inputs, fp32 accumulation) ----
// Fragment layout (g = lane / 4, t = lane % 4): A (16 x 8) a0 = (g, t), a1 = (g + 8, t), a2 = (g, t + 4),
// a3 = (g + 8, t + 4); B (8 x 8, k x n) b0 = (t, g), b1 = (t + 4, g); C (16 x 8) c0,c1 = (g, 2t..2t+1),
// c2,c3 = (g + 8, 2t..2t+1).
// 3xTF32: x = hi + lo with hi = rna_tf32(x) and lo = x - hi (exact in fp32; the mma reads its top 10
// mantissa bits), and a b ~ a_lo b_hi + a_hi b_lo + a_hi b_hi (lo lo dropped): ~fp32 accuracy. Without
// splitting (SPLIT = false) one tf32 product per term (~2^-11 relative rounding of each operand).
// Round to nearest, ties away (= cvt.rna.tf32.f32, bitwise, for every finite x): add half a tf32 ulp to the
// magnitude bits and clear the 13 low bits — two full-rate integer ops (GKA_SPLIT_CVT=1: the cvt instruction).
#ifndef GKA_SPLIT_CVT
#define GKA_SPLIT_CVT 0
#endif
__device__ __forceinline__ uint32_t tf32_rna(float x) {
#if GKA_SPLIT_CVT
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
#else
  return (__float_as_uint(x) + 0x1000u) & 0xffffe000u;
#endif
}

template <bool SPLIT>
__device__ __forceinline__ void tf32_split(float x, uint32_t& hi, uint32_t& lo) {
  hi = tf32_rna(x);
  if (SPLIT) lo = __float_as_uint(x - __uint_as_float(hi));
}

__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// BEXACT (AEXACT): b (a) is exact in tf32, e.g. a tile of bf16 or f16 inputs, so its lo part is zero and the
// product with it is skipped (the same sum, bitwise); the caller may then load that operand unsplit.
template <bool SPLIT, bool BEXACT = false, bool AEXACT = false>
__device__ __forceinline__ void mma3(float (&d)[4], const uint32_t (&ah)[4], const uint32_t (&al)[4],
                                     const uint32_t (&bh)[2], const uint32_t (&bl)[2]) {
  if (SPLIT && !AEXACT) mma_tf32(d, al, bh);
  if (SPLIT && !BEXACT) mma_tf32(d, ah, bl);
  mma_tf32(d, ah, bh);
}

// A fragment of rows [0, 16) x cols [0, 8) of a row-major tile at p (ld), split.
template <bool SPLIT>
__device__ __forceinline__ void frag_a(const float* p, int ld, int g, int t, uint32_t (&hi)[4], uint32_t (&lo)[4]) {
  tf32_split<SPLIT>(p[g * ld + t], hi[0], lo[0]);
  tf32_split<SPLIT>(p[(g + 8) * ld + t], hi[1], lo[1]);
  tf32_split<SPLIT>(p[g * ld + t + 4], hi[2], lo[2]);
  tf32_split<SPLIT>(p[(g + 8) * ld + t + 4], hi[3], lo[3]);
}

// B fragment with B(k, n) = p[n ld + k] ("col" operand stored n-major) or p[k ld + n] (k-major).
template <bool SPLIT, bool NMAJOR>
__device__ __forceinline__ void frag_b(const float* p, int ld, int g, int t, uint32_t (&hi)[2], uint32_t (&lo)[2]) {
  if (NMAJOR) {
    tf32_split<SPLIT>(p[g * ld + t], hi[0], lo[0]);
    tf32_split<SPLIT>(p[g * ld + t + 4], hi[1], lo[1]);
  } else {
    tf32_split<SPLIT>(p[t * ld + g], hi[0], lo[0]);
    tf32_split<SPLIT>(p[(t + 4) * ld + g], hi[1], lo[1]);
  }
}

// k-pair fragments: lane t holds k = 2t, 2t + 1 instead of t, t + 4 (the same permutation of the k-step on A
// and B, so the product is unchanged up to the mma's internal summation order). Row-major A and n-major B then
// come in one 8-byte load per row; k-major B reads rows 2t, 2t + 1 (banks 8t + g with ld == 4 mod 32: no conflict,
// where the (t, t + 4) layout has 4t + g: 2-way).
template <bool SPLIT>
__device__ __forceinline__ void frag_a_kp(const float* p, int ld, int g, int t, uint32_t (&hi)[4], uint32_t (&lo)[4]) {
  const float2 u = *reinterpret_cast<const float2*>(p + g * ld + 2 * t);
  const float2 v = *reinterpret_cast<const float2*>(p + (g + 8) * ld + 2 * t);
  tf32_split<SPLIT>(u.x, hi[0], lo[0]);
  tf32_split<SPLIT>(v.x, hi[1], lo[1]);
  tf32_split<SPLIT>(u.y, hi[2], lo[2]);
  tf32_split<SPLIT>(v.y, hi[3], lo[3]);
}

template <bool SPLIT, bool NMAJOR>
__device__ __forceinline__ void frag_b_kp(const float* p, int ld, int g, int t, uint32_t (&hi)[2], uint32_t (&lo)[2]) {
  if (NMAJOR) {
    const float2 u = *reinterpret_cast<const float2*>(p + g * ld + 2 * t);
    tf32_split<SPLIT>(u.x, hi[0], lo[0]);
    tf32_split<SPLIT>(u.y, hi[1], lo[1]);
  } else {
    tf32_split<SPLIT>(p[2 * t * ld + g], hi[0], lo[0]);
    tf32_split<SPLIT>(p[(2 * t + 1) * ld + g], hi[1], lo[1]);
  }
}

// ---- bf16 products (mma.sync m16n8k16, fp32 accumulation) with ldmatrix fragment loads ----
// Layout (g = lane / 4, t = lane % 4): A (16 x 16) a0 = (g, 2t..2t+1), a1 = (g + 8, 2t..), a2 = (g, 2t+8..),
// a3 = (g + 8, 2t+8..); B (16 x 8, k x n) b0 = (2t..2t+1, g), b1 = (2t+8..2t+9, g); C as for m16n8k8. Pairs are
// packed low half first.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// ldmatrix: 8 x 8 matrices of 16-bit values from shared memory, lane 8 q + i giving the address of row i of matrix q
// (16 bytes, 16-byte aligned). Without .trans each row is one row of A (k contiguous), so the x4 form over a 16 x 16
// row-major tile (matrix q at rows 8 (q & 1), columns 8 (q >> 1)) is an A fragment. With .trans over a k-major
// tile (n contiguous; matrix q at k rows 8 (q & 1), n columns 8 (q >> 1)) it is the B fragments of two n8 blocks.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p, bool trans) {
  const uint32_t a = smem_addr(p);
  if (trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

// The .trans x2 form (lanes 0-15 give the addresses): B fragment of one n8 block.
__device__ __forceinline__ void ldsm_x2_trans(uint32_t (&r)[2], const void* p) {
  const uint32_t a = smem_addr(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
}

}  // namespace gka::cuda
