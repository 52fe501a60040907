// Throwaway benchmark (not part of the library): the key chunk-product shapes with Eigen (row-major Maps,
// noalias), OpenBLAS cblas_sgemm (single thread) and our register-blocked kernel (src/cpu/gemm.h).
// Build: g++ -O3 -march=native -DEIGEN_DONT_PARALLELIZE -I/usr/include/eigen3 -I../src gemm_shapes.cpp -lopenblas
#include <cblas.h>
#include <chrono>
#include <cstdio>
#include <vector>
#include <Eigen/Core>
#include "cpu/gemm.h"

using RM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class F>
double gflops(int M, int N, int K, F&& f) {
  for (int i = 0; i < 50; ++i) f();
  int reps = 1;
  double s = 0;
  for (;;) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) f();
    s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0.3) break;
    reps *= 2;
  }
  return 2.0 * M * N * K * reps / s * 1e-9;
}

int main() {
  openblas_set_num_threads(1);
  struct Shape { int M, N, K; const char* what; };
  const Shape shapes[] = {{64, 128, 192, "[eG X | S.M] [H;K], D=128 C=64"},
                          {64, 128, 128, "X H,  D=128 C=64"},
                          {64, 64, 128, "X K^T, D=128 C=64"},
                          {64, 128, 64, "(S.M) K, D=128 C=64"},
                          {64, 64, 128, "[eG X | S.M] [H;K], D=64 C=64"},
                          {64, 64, 64, "X K^T, D=64 C=64"},
                          {128, 128, 64, "K^T diag K (state scan), D=128"}};
  std::printf("%-36s %8s %8s %8s  (GFLOP/s, one core)\n", "shape MxNxK", "Eigen", "OpenBLAS", "ours");
  for (const Shape& s : shapes) {
    RM A = RM::Random(s.M, s.K), B = RM::Random(s.K, s.N), C(s.M, s.N);
    double e = gflops(s.M, s.N, s.K, [&] { C.noalias() = A * B; });
    double o = gflops(s.M, s.N, s.K, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.M, s.N, s.K, 1.f, A.data(), s.K, B.data(), s.N, 0.f,
                  C.data(), s.N);
    });
    double k = gflops(s.M, s.N, s.K, [&] {
      gka::cpu::gemm<float>(s.M, s.N, s.K, A.data(), s.K, B.data(), s.N, C.data(), s.N);
    });
    RM ref = A * B;
    std::printf("%4dx%4dx%4d %-26s %8.1f %8.1f %8.1f  maxdiff %.1e\n", s.M, s.N, s.K, s.what, e, o, k,
                (C - ref).cwiseAbs().maxCoeff());
  }
}
