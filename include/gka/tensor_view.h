// Non-owning strided views: the only way tensors cross the libgka API, so any framework can call it.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace gka {

enum class DType : int32_t { f16, bf16, f32, f64, i32, i64 };
enum class Device : int32_t { cpu, cuda };

const char* dtype_name(DType dtype);
int64_t dtype_size(DType dtype);

inline constexpr int kMaxDims = 4;

// A view of someone else's memory: pointer, element type, sizes and strides counted in elements.
// A view with ndim == 0 is "absent" (optional arguments); every tensor libgka uses has rank 1..4.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  int32_t device_index = 0;
  int32_t ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  bool defined() const { return ndim > 0; }
  int64_t numel() const;
  bool is_contiguous() const;

  // A row-major (contiguous) view of `data` with the given sizes.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<int64_t> sizes,
                               Device device = Device::cpu, int32_t device_index = 0);
};

}  // namespace gka
