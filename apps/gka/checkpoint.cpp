#include "checkpoint.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace gka::cli {
namespace {

struct DtypeName {
  at::ScalarType type;
  const char* name;
};
constexpr DtypeName kDtypes[] = {{at::kFloat, "F32"}, {at::kDouble, "F64"}, {at::kLong, "I64"},
                                 {at::kBFloat16, "BF16"}, {at::kHalf, "F16"}, {at::kInt, "I32"}};

const char* dtype_name(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw std::invalid_argument(std::string("safetensors: unsupported dtype ") + c10::toString(t));
}

}  // namespace

void save_safetensors(const std::string& path, const TensorFile& file) {
  nlohmann::json header = nlohmann::json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  std::vector<at::Tensor> data;
  int64_t offset = 0;
  for (const auto& [name, t] : file.tensors) {
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    const int64_t n = c.numel() * static_cast<int64_t>(c.element_size());
    header[name] = {{"dtype", dtype_name(c.scalar_type())}, {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
    data.push_back(c);
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write '" + tmp + "'");
    const uint64_t len = h.size();
    out.write(reinterpret_cast<const char*>(&len), 8);  // little-endian hosts only (x86-64, aarch64)
    out.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (const auto& c : data)
      out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * c.element_size()));
    if (!out) throw std::runtime_error("writing '" + tmp + "' failed (disk full?)");
  }
  std::filesystem::rename(tmp, path);
}

TensorFile load_safetensors(const std::string& path) {
  auto corrupt = [&](const std::string& why) { return std::runtime_error("corrupt checkpoint '" + path + "': " + why); };
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read checkpoint '" + path + "'");
  const auto size = static_cast<uint64_t>(std::filesystem::file_size(path));
  uint64_t len = 0;
  if (size < 8 || !in.read(reinterpret_cast<char*>(&len), 8)) throw corrupt("shorter than 8 bytes");
  if (len > size - 8 || len > (uint64_t{1} << 30)) throw corrupt("header length " + std::to_string(len) + " exceeds the file");
  std::string h(len, '\0');
  in.read(h.data(), static_cast<std::streamsize>(len));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(h);
  } catch (const nlohmann::json::exception& e) {
    throw corrupt(std::string("header is not JSON (") + e.what() + ")");
  }
  if (!header.is_object()) throw corrupt("header is not a JSON object");
  const uint64_t data_size = size - 8 - len;
  std::vector<char> data(data_size);
  in.read(data.data(), static_cast<std::streamsize>(data_size));
  if (!in) throw corrupt("truncated data");
  TensorFile file;
  for (const auto& [name, entry] : header.items()) {
    try {
      if (name == "__metadata__") {
        file.metadata = entry.get<std::map<std::string, std::string>>();
        continue;
      }
      const std::string dt = entry.at("dtype").get<std::string>();
      const auto shape = entry.at("shape").get<std::vector<int64_t>>();
      const auto off = entry.at("data_offsets").get<std::vector<uint64_t>>();
      at::ScalarType type = at::kFloat;
      bool known = false;
      for (const auto& d : kDtypes)
        if (dt == d.name) type = d.type, known = true;
      if (!known) throw corrupt("tensor '" + name + "' has unsupported dtype " + dt);
      int64_t numel = 1;
      for (int64_t s : shape) {
        if (s < 0) throw corrupt("tensor '" + name + "' has a negative dimension");
        numel *= s;
      }
      const uint64_t bytes = static_cast<uint64_t>(numel) * c10::elementSize(type);
      if (off.size() != 2 || off[0] > off[1] || off[1] > data_size || off[1] - off[0] != bytes)
        throw corrupt("tensor '" + name + "' has data_offsets outside the file or not matching its shape");
      at::Tensor t = at::empty(shape, at::TensorOptions().dtype(type));
      std::memcpy(t.data_ptr(), data.data() + off[0], bytes);
      file.tensors[name] = t;
    } catch (const nlohmann::json::exception& e) {
      throw corrupt("entry '" + name + "' is malformed (" + e.what() + ")");
    }
  }
  return file;
}

}  // namespace gka::cli
