// Test helpers for the oracle fixtures written by tests/oracle/oracle_<name>.py (make_oracle.py):
//   fixture_dir(name)    $MX_FIXTURES/<name>/ (throws when MX_FIXTURES is unset or the directory is missing:
//                        a missing fixture is a failure, never a skip)
//   source_dir()         $MX_SOURCE_DIR (the source tree, for assets/)
//   read_json(path)      a JSON file (e.g. the fixture manifest.json)
//   read_tensors(path)   every tensor of a safetensors file as CPU at::Tensor copies. Deliberately independent
//                        of the checkpoint loader under test (no MappedFile, no read_safetensors_header) and
//                        limited to what fixtures hold: F32, F64, I64, little-endian, contiguous.
//   max_rel_error(a, b)  max|a − b| / max|b|, computed in float64 (b is the reference).
#pragma once
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace mx::test {

inline std::filesystem::path env_dir(const char* var) {
  const char* v = std::getenv(var);
  if (v == nullptr || *v == '\0')
    throw std::runtime_error(std::string(var) + " is not set (run the tests through ctest, or export it)");
  return std::filesystem::path(v);
}

inline std::filesystem::path source_dir() { return env_dir("MX_SOURCE_DIR"); }

inline std::filesystem::path fixture_dir(const std::string& name) {
  auto dir = env_dir("MX_FIXTURES") / name;
  if (!std::filesystem::is_directory(dir))
    throw std::runtime_error("fixture directory " + dir.string() +
                             " is missing: run tests/oracle/make_oracle.py --out $MX_FIXTURES");
  return dir;
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open fixture file " + path.string());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline nlohmann::json read_json(const std::filesystem::path& path) {
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path.string() + ": invalid JSON: " + e.what());
  }
}

inline std::map<std::string, at::Tensor> read_tensors(const std::filesystem::path& path) {
  const std::string bytes = read_file(path);
  const std::string where = path.string();
  if (bytes.size() < 8) throw std::runtime_error(where + ": shorter than the 8-byte safetensors header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  if (n > bytes.size() - 8)
    throw std::runtime_error(where + ": header length " + std::to_string(n) + " exceeds the file");
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  const char* data = bytes.data() + 8 + n;
  const uint64_t data_size = bytes.size() - 8 - n;
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, rec] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string dt = rec.at("dtype").get<std::string>();
    at::ScalarType type;
    size_t elem;
    if (dt == "F32") { type = at::kFloat; elem = 4; }
    else if (dt == "F64") { type = at::kDouble; elem = 8; }
    else if (dt == "I64") { type = at::kLong; elem = 8; }
    else throw std::runtime_error(where + ": tensor " + name + " has dtype " + dt + ", expected F32, F64 or I64");
    const auto shape = rec.at("shape").get<std::vector<int64_t>>();
    const auto off = rec.at("data_offsets").get<std::vector<uint64_t>>();
    uint64_t numel = 1;
    for (auto s : shape) numel *= static_cast<uint64_t>(s);
    if (off.size() != 2 || off[1] < off[0] || off[1] > data_size || off[1] - off[0] != numel * elem)
      throw std::runtime_error(where + ": tensor " + name + " has inconsistent data_offsets");
    auto t = at::empty(shape, at::TensorOptions().dtype(type));
    if (numel > 0) std::memcpy(t.data_ptr(), data + off[0], numel * elem);
    out.emplace(name, t);
  }
  return out;
}

inline const at::Tensor& get(const std::map<std::string, at::Tensor>& m, const std::string& name) {
  auto it = m.find(name);
  if (it == m.end()) throw std::runtime_error("fixture has no tensor named " + name);
  return it->second;
}

inline double max_rel_error(const at::Tensor& ours, const at::Tensor& ref) {
  const auto a = ours.to(at::kDouble), b = ref.to(at::kDouble);
  if (a.sizes() != b.sizes())
    throw std::runtime_error("max_rel_error: shapes differ: " + std::to_string(a.numel()) + " vs " +
                             std::to_string(b.numel()) + " elements");
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), 1e-300);
}

}  // namespace mx::test
