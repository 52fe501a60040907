// Register-blocked row-major GEMM for the chunk tiles, C = (or +=) A·B, written with Eigen's packet
// primitives (AVX-512 with -march=native, narrower SIMD otherwise). B is used in place: the operator
// matrices of a chunk ([H̄; K], Kᵀ) are reused by all N solver iterations, so packing would be wasted work.
// Why not Eigen's own product: see docs/cpu_backend.md (measured on these shapes).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>

namespace gka::cpu {

template <class T>
struct Simd {
  using P = typename Eigen::internal::packet_traits<T>::type;
  static constexpr int L = Eigen::internal::unpacket_traits<P>::size;
};

// Columns of every tile are padded to a multiple of this (pads hold zeros).
template <class T>
constexpr int64_t kLanes = Simd<T>::L;

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// One MR x (NP packets) block of C over an inner extent K.
template <class T, int MR, int NP, bool Acc>
inline void gemm_block(const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc, int64_t K) {
  using P = typename Simd<T>::P;
  constexpr int L = Simd<T>::L;
  namespace ei = Eigen::internal;
  P acc[MR][NP];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NP; ++j) acc[i][j] = Acc ? ei::ploadu<P>(C + i * ldc + j * L) : ei::pset1<P>(T(0));
  for (int64_t k = 0; k < K; ++k) {
    P b[NP];
    for (int j = 0; j < NP; ++j) b[j] = ei::ploadu<P>(B + k * ldb + j * L);
    for (int i = 0; i < MR; ++i) {
      const P a = ei::pset1<P>(A[i * lda + k]);
      for (int j = 0; j < NP; ++j) acc[i][j] = ei::pmadd(a, b[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NP; ++j) ei::pstoreu(C + i * ldc + j * L, acc[i][j]);
}

template <class T, int NP, bool Acc>
inline void gemm_rows(int64_t rows, const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc,
                      int64_t K) {
  switch (rows) {
    case 1: gemm_block<T, 1, NP, Acc>(A, lda, B, ldb, C, ldc, K); break;
    case 2: gemm_block<T, 2, NP, Acc>(A, lda, B, ldb, C, ldc, K); break;
    case 3: gemm_block<T, 3, NP, Acc>(A, lda, B, ldb, C, ldc, K); break;
    case 4: gemm_block<T, 4, NP, Acc>(A, lda, B, ldb, C, ldc, K); break;
    case 5: gemm_block<T, 5, NP, Acc>(A, lda, B, ldb, C, ldc, K); break;
    case 6: gemm_block<T, 6, NP, Acc>(A, lda, B, ldb, C, ldc, K); break;
    case 7: gemm_block<T, 7, NP, Acc>(A, lda, B, ldb, C, ldc, K); break;
    default: gemm_block<T, 8, NP, Acc>(A, lda, B, ldb, C, ldc, K); break;
  }
}

// Triangular structure of the chunk products (rows i only couple to rows j <= i):
//   k_tri >= 0: row block [i0, i1) uses the inner extent min(K, k_tri + i1);
//   n_tri:      row block [i0, i1) needs only the columns < i1 (the rest of C is left untouched);
//   k_upper:    row block [i0, i1) uses only the inner range [i0, K) (A upper triangular).
struct Tri {
  int64_t k_tri = -1;
  bool n_tri = false;
  bool k_upper = false;
};

// C[M x N] = (Acc: +=) A[M x K] · B[K x N]; N a multiple of the packet size.
template <class T, bool Acc = false>
inline void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                 int64_t ldc, Tri tri = {}) {
  constexpr int L = Simd<T>::L;
  constexpr int MR = 8;
  for (int64_t j0 = 0; j0 < N; j0 += 2 * L) {
    const bool two = j0 + 2 * L <= N;
    for (int64_t i0 = 0; i0 < M; i0 += MR) {
      const int64_t rows = std::min<int64_t>(MR, M - i0), i1 = i0 + rows;
      if (tri.n_tri && j0 >= i1) continue;
      const int64_t k0 = tri.k_upper ? std::min(i0, K) : 0;
      const int64_t k1 = tri.k_tri >= 0 ? std::min(K, tri.k_tri + i1) : K;
      const T* a = A + i0 * lda + k0;
      const T* b = B + k0 * ldb + j0;
      T* c = C + i0 * ldc + j0;
      if (two)
        gemm_rows<T, 2, Acc>(rows, a, lda, b, ldb, c, ldc, k1 - k0);
      else
        gemm_rows<T, 1, Acc>(rows, a, lda, b, ldb, c, ldc, k1 - k0);
    }
  }
}

}  // namespace gka::cpu
