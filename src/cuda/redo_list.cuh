// The chunks a Hopper warpgroup kernel (fwd_wg_kernel, out_wg_kernel, adj_wg_kernel) hands back, outside the range of
// its f16 scales, and the fallback kernels that redo them (chunk_fwd, step_b, step_b2) from a list, one CTA per SM,
// instead of a CTA per chunk that exits at once for the others (25-34 us per kernel at 1 x 32768 x 16 heads, H200).
// The list's order only decides which CTA redoes a chunk, not what it computes: results stay bitwise reproducible.
#pragma once

#include "cuda/chunk_tile.cuh"
#include "cuda/common.cuh"

namespace gka::cuda {

// Device memory for up to n chunk ids, emptied on the stream: [0] the count, then the ids (item * H + head).
class RedoList {
 public:
  RedoList(const char* fn, size_t n, cudaStream_t stream) : buf_(fn, n ? (n + 1) * sizeof(int64_t) : 0, stream) {
    if (n) check(cudaMemsetAsync(buf_.as<int64_t>(), 0, sizeof(int64_t), stream), fn, "cudaMemsetAsync");
  }
  int64_t* get() const { return buf_.as<int64_t>(); }

 private:
  Scratch buf_;
};

// The grid of a kernel that works through a list of up to `n` chunks: one CTA per SM.
inline dim3 redo_grid(int64_t n) {
  return dim3(static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(n, sm_count()))));
}

// A warpgroup kernel hands chunk `id` back (one thread): ok[id] = 0, and the id onto the list.
__device__ __forceinline__ void give_up(int* ok, int64_t* redo, int64_t id) {
  ok[id] = 0;
  const unsigned long long i = atomicAdd(reinterpret_cast<unsigned long long*>(redo), 1ull);
  redo[1 + i] = id;
}

// f(chunk) for every gridDim.x-th chunk of the list, from blockIdx.x, with a barrier between two (f reuses shared
// memory). Kernels of their own (the *_redo_kernel): as a loop around the one-chunk kernels' bodies, the D = 128
// bodies spilled and ptxas serialized their wgmma chains (C7510) where the lambda was not inlined.
template <class F>
__device__ __forceinline__ void for_redo_chunks(const Item* items, int H, const int64_t* redo, F&& f) {
  const int64_t n = redo[0];
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    if (i >= gridDim.x) __syncthreads();
    const int64_t id = redo[1 + i];
    f(chunk_pos_at(items, H, id / H, static_cast<int>(id % H)));
  }
}

}  // namespace gka::cuda
