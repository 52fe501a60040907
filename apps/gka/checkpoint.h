// Safetensors files (8-byte little-endian header length, JSON header, raw little-endian data), written to a
// temporary name and renamed, so a crash never leaves a half-written checkpoint behind.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>

namespace gka::cli {

struct TensorFile {
  std::map<std::string, at::Tensor> tensors;       // CPU tensors (F32, F64, I64, BF16, F16)
  std::map<std::string, std::string> metadata;     // the "__metadata__" entry
};

void save_safetensors(const std::string& path, const TensorFile& file);
// Throws std::runtime_error("corrupt checkpoint '<path>': ...") or ("cannot read ...").
TensorFile load_safetensors(const std::string& path);

}  // namespace gka::cli
