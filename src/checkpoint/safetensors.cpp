// safetensors reader (https://github.com/huggingface/safetensors, format section of its README):
//   [u64 little-endian N][N bytes of JSON header][data region]
//   header = {"__metadata__": {...}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
//   offsets are relative to the start of the data region, end exclusive.
// Everything a hostile file could lie about is validated before any tensor is described: the header length
// against the file, every offset pair against the data region, the byte count against numel * dtype size
// (overflow-checked), and that no two tensors overlap. Only F32 / F16 / BF16 / F64 tensors are accepted.
// Also reads model.safetensors.index.json (tensor name -> shard file name).
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "checkpoint/text.h"
#include "mambaextend/checkpoint.h"
#include "mambaextend/error.h"

namespace mx {

namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;  // the safetensors library's own limit (100 MB)
constexpr size_t kMaxRank = 8;

bool parse_dtype(const std::string& s, DType* d) {
  if (s == "F32")
    *d = DType::F32;
  else if (s == "F16")
    *d = DType::F16;
  else if (s == "BF16")
    *d = DType::BF16;
  else if (s == "F64")
    *d = DType::F64;
  else
    return false;
  return true;
}

// a * b, or false on uint64 overflow.
bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > UINT64_MAX / a) return false;
  *out = a * b;
  return true;
}

uint64_t read_u64(const json& v, bool* ok) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  *ok = false;
  return 0;
}

}  // namespace

std::vector<TensorRecord> read_safetensors_header(const uint8_t* data, uint64_t size, const std::string& where) {
  if (size < 8)
    throw CheckpointError(where + ": truncated safetensors file: " + std::to_string(size) +
                          " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > size - 8)
    throw CheckpointError(where + ": truncated safetensors file: header length " + std::to_string(n) + " exceeds the " +
                          std::to_string(size - 8) + " bytes after it");
  if (n > kMaxHeaderBytes)
    throw CheckpointError(where + ": safetensors header length " + std::to_string(n) + " exceeds the limit of " +
                          std::to_string(kMaxHeaderBytes) + " bytes");
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = size - data_start;

  json header;
  try {
    header = json::parse(reinterpret_cast<const char*>(data) + 8, reinterpret_cast<const char*>(data) + data_start);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number that overflows
    throw CheckpointError(where + ": malformed safetensors JSON header: " + e.what());
  }
  if (!header.is_object())
    throw CheckpointError(where + ": safetensors header must be a JSON object, got " + header.type_name());

  std::vector<TensorRecord> records;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;  // free-form string map, not needed
    const std::string at = where + ": tensor '" + text::printable(name) + "'";
    if (name.empty() || name.size() > 1024 || text::has_control(name))
      throw CheckpointError(at + ": tensor names must be 1 to 1024 bytes without control characters");
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
      throw CheckpointError(at + ": header entry must be an object with dtype, shape and data_offsets, got " +
                            text::brief_json(entry));
    TensorRecord r;
    r.name = name;
    const json& dt = entry.at("dtype");
    if (!dt.is_string() || !parse_dtype(dt.get<std::string>(), &r.dtype))
      throw CheckpointError(at + ": unsupported dtype " + text::brief_json(dt) + " (supported: F32, F16, BF16, F64)");

    const json& shape = entry.at("shape");
    if (!shape.is_array() || shape.size() > kMaxRank)
      throw CheckpointError(at + ": shape must be a list of at most " + std::to_string(kMaxRank) + " sizes, got " +
                            text::brief_json(shape));
    uint64_t numel = 1;
    for (const json& s : shape) {
      bool ok = true;
      const uint64_t d = read_u64(s, &ok);
      if (!ok || d > static_cast<uint64_t>(INT64_MAX))
        throw CheckpointError(at + ": shape entries must be non-negative integers, got " + text::brief_json(shape));
      if (!mul_ok(numel, d, &numel)) throw CheckpointError(at + ": shape " + text::brief_json(shape) + " overflows");
      r.shape.push_back(static_cast<int64_t>(d));
    }
    uint64_t expect_bytes = 0;
    if (!mul_ok(numel, dtype_size(r.dtype), &expect_bytes))
      throw CheckpointError(at + ": shape " + text::brief_json(shape) + " overflows");

    const json& off = entry.at("data_offsets");
    bool ok = off.is_array() && off.size() == 2;
    const uint64_t begin = ok ? read_u64(off[0], &ok) : 0;
    const uint64_t end = ok ? read_u64(off[1], &ok) : 0;
    if (!ok) throw CheckpointError(at + ": data_offsets must be [begin, end] integers, got " + text::brief_json(off));
    if (begin > end) throw CheckpointError(at + ": data_offsets " + text::brief_json(off) + " has begin > end");
    if (end > data_size)
      throw CheckpointError(at + ": data_offsets " + text::brief_json(off) + " run past the end of the data region (" +
                            std::to_string(data_size) + " bytes): truncated or corrupt file");
    if (end - begin != expect_bytes)
      throw CheckpointError(at + ": data_offsets " + text::brief_json(off) + " span " + std::to_string(end - begin) +
                            " bytes, expected " + std::to_string(expect_bytes) + " for shape " +
                            text::brief_json(shape) + " of " + dtype_name(r.dtype));
    r.offset = data_start + begin;
    r.nbytes = expect_bytes;
    records.push_back(std::move(r));
  }

  // No two tensors may share bytes (safetensors forbids aliasing; overlapping ranges mean a corrupt header).
  std::vector<const TensorRecord*> by_offset;
  for (const auto& r : records)
    if (r.nbytes > 0) by_offset.push_back(&r);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorRecord* a, const TensorRecord* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorRecord* a = by_offset[i - 1];
    const TensorRecord* b = by_offset[i];
    if (b->offset < a->offset + a->nbytes)
      throw CheckpointError(where + ": tensors '" + a->name + "' and '" + b->name +
                            "' overlap in the data region (data_offsets [" + std::to_string(a->offset - data_start) +
                            ", " + std::to_string(a->offset - data_start + a->nbytes) + ") and [" +
                            std::to_string(b->offset - data_start) + ", " +
                            std::to_string(b->offset - data_start + b->nbytes) + "))");
  }
  return records;
}

std::map<std::string, std::string> read_safetensors_index(const std::string& json_text, const std::string& where) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number that overflows
    throw CheckpointError(where + ": malformed JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j.at("weight_map").is_object())
    throw CheckpointError(where + ": expected an object with a 'weight_map' object");
  std::map<std::string, std::string> out;
  for (const auto& [name, file] : j.at("weight_map").items()) {
    if (name.empty() || name.size() > 1024 || text::has_control(name))
      throw CheckpointError(where + ": weight_map key '" + text::printable(name) + "' is not a valid tensor name");
    if (!file.is_string())
      throw CheckpointError(where + ": weight_map['" + name + "'] must be a file name, got " + text::brief_json(file));
    const std::string f = file.get<std::string>();
    const std::filesystem::path p(f);
    bool bad =
        f.empty() || f.size() > 1024 || p.is_absolute() || f.find('\\') != std::string::npos || text::has_control(f);
    for (const auto& part : p) bad = bad || part == "..";
    if (bad)
      throw CheckpointError(where + ": weight_map['" + name + "'] = '" + text::printable(f) +
                            "' is not a plain relative file name inside the model directory");
    out.emplace(name, f);
  }
  return out;
}

}  // namespace mx
