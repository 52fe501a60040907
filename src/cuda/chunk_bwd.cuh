// What the chunked backward's kernels share (chunk_bwd.cu: steps (B), (C); chunk_bwd_d.cu: step (D)): their
// arguments, the layout of step_c's partial state dots, and step (D)'s launch.
#pragma once

#include "cuda/chunk_states.h"
#include "cuda/common.cuh"

namespace gka::cuda {

struct BwdArgs {
  DView q, k, v, alpha, g, gk, d_o, x_in, fro_in;
  DView dq, dk, dv, dalpha, dg, dgk;
  StateBufs st;
  float *X, *U, *Psi, *Phi, *scal, *dots;  // scratch, see backward_run
  ChebConst cc;
  const float* omega;
  float scale;
  int H;
  int lambda_grad;
  SolveSchedule sched;
  const float* uadj = nullptr;  // adj_wg_kernel's u (C x D per id), where ok[id]; else step_b2 solves
  const int* ok = nullptr;
  const int64_t* redo = nullptr;  // where adj_wg_kernel ran: the chunks it gave up (redo_list.cuh)
  float* gamma = nullptr;  // per id: γ of Ψ's chunk sum (step_b2_sums), applied by step_c
};

// Partial sums per (chunk, head) of the four state dots that step_d needs, <R_{c-1}, state_c> and <R_c, state_{c+1}>
// for both states, one per warp of step_c: dots[(id * 4 + 2 which + end) * kDotParts<D> + part].
template <int D>
inline constexpr int kDotParts = D * D / 128;

// (D): dk, dv, dgk, dg, one CTA per (chunk, head) of `grid`: on bf16 pair tiles where `bf16` (Precision::mixed with
// bf16 k, v, dO), else 3xTF32 (KX: k, v and dO are 16-bit).
template <int D>
void step_d_launch(const dim3& grid, cudaStream_t stream, const Item* items, const BwdArgs& a, bool bf16, bool kx);

// (D) on Hopper warpgroup products (step_d_wg.cu) where step_d_launch would take bf16 tiles, D = 128 and q, k, v, dO
// have 16-byte aligned rows.
void step_d_wg_launch(const dim3& grid, cudaStream_t stream, const Item* items, const BwdArgs& a);

// Step (B)'s second half for the chunks adj_wg_kernel solved, on Hopper warpgroup products (step_b2_wg.cu; D = 128,
// bf16 k and dO with 16-byte aligned rows): step_b2_lean_kernel's work.
void step_b2_wg_launch(const dim3& grid, cudaStream_t stream, const Item* items, const BwdArgs& a);

}  // namespace gka::cuda
