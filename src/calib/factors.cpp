// load_factors (factors.h): reads a mambaextend.factors/v1 object or a bare JSON array of per-layer scales and
// checks it against the model: layer count, per-layer width (1 or d_inner / n_heads), positive finite values,
// and, when the file names the model it was made for, its architecture and sizes.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "mambaextend/error.h"
#include "mambaextend/factors.h"
#include "mambaextend/log.h"

namespace mx {

std::string read_factors_text(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw IoError("factors file " + path.string() + " does not exist");
  if (std::filesystem::is_directory(path, ec))
    throw IoError("factors file " + path.string() + " is a directory, expected a JSON file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open factors file " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError("cannot read factors file " + path.string());
  return ss.str();
}

namespace {

using nlohmann::json;

double positive_value(const json& v, const std::string& where) {
  if (!v.is_number())
    throw ConfigError(fmt::format("{}: expected a number, got {} {}", where, v.type_name(), v.dump()));
  const double x = v.get<double>();
  if (!std::isfinite(x) || x <= 0)
    throw ConfigError(fmt::format("{}: a scale must be a positive finite number, got {}", where, v.dump()));
  if (x > std::numeric_limits<float>::max() || x < std::numeric_limits<float>::min())
    throw ConfigError(fmt::format("{}: scale {} is outside the float32 range of positive normal numbers", where,
                                  v.dump()));
  return x;
}

// The "model" object, when present, must describe a model of the same shape.
void check_model_entry(const json& m, const ModelConfig& cfg, const std::string& file, const std::string& sha) {
  if (!m.is_object()) throw ConfigError(file + ": field \"model\" must be an object, got " + m.type_name());
  auto mismatch = [&](const char* key, const std::string& theirs, const std::string& ours) {
    throw ConfigError(fmt::format("{}: made for a model with {} = {}, but this model has {} = {}", file, key, theirs,
                                  key, ours));
  };
  if (m.contains("arch") && !m["arch"].is_null()) {
    if (!m["arch"].is_string()) throw ConfigError(file + ": field \"model.arch\" must be a string");
    if (m["arch"].get<std::string>() != arch_name(cfg.arch))
      mismatch("arch", m["arch"].get<std::string>(), arch_name(cfg.arch));
  }
  const std::pair<const char*, int64_t> sizes[] = {
      {"n_layer", cfg.n_layer}, {"d_inner", cfg.d_inner}, {"nheads", cfg.arch == Arch::Mamba2 ? cfg.n_heads : -1}};
  for (const auto& [key, ours] : sizes) {
    if (!m.contains(key) || m[key].is_null() || ours < 0) continue;
    if (!m[key].is_number_integer())
      throw ConfigError(fmt::format("{}: field \"model.{}\" must be an integer, got {}", file, key, m[key].dump()));
    if (m[key].get<int64_t>() != ours) mismatch(key, m[key].dump(), std::to_string(ours));
  }
  if (!sha.empty() && m.contains("config_sha256") && m["config_sha256"].is_string() &&
      m["config_sha256"].get<std::string>() != sha)
    log::warn(fmt::format("{}: made for a model whose config.json has sha256 {}, this one has {} (same shape: "
                          "using the scales)", file, m["config_sha256"].get<std::string>(), sha));
}

}  // namespace

DtScales load_factors(const std::filesystem::path& path, const ModelConfig& cfg, const std::string& model_config_sha256) {
  return parse_factors(read_factors_text(path), cfg, "factors file " + path.string(), model_config_sha256);
}

std::string factors_calibration_sha256(const std::string& json_text) {
  const json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("calibration_data")) return "";
  const json& cd = j["calibration_data"];
  if (!cd.is_object() || !cd.contains("sha256") || !cd["sha256"].is_string()) return "";
  return cd["sha256"].get<std::string>();
}

DtScales parse_factors(const std::string& json_text, const ModelConfig& cfg, const std::string& file,
                       const std::string& model_config_sha256) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw ConfigError(file + ": invalid JSON: " + e.what());
  }
  const json* scales = &j;
  if (j.is_object()) {
    if (!j.contains("format")) throw ConfigError(file + ": no \"format\" field (expected \"" + kFactorsFormat + "\")");
    if (!j["format"].is_string() || j["format"].get<std::string>() != kFactorsFormat)
      throw ConfigError(fmt::format("{}: format is {}, expected \"{}\"", file, j["format"].dump(), kFactorsFormat));
    if (j.contains("model")) check_model_entry(j["model"], cfg, file, model_config_sha256);
    if (!j.contains("scales")) throw ConfigError(file + ": no \"scales\" field");
    scales = &j["scales"];
  } else if (!j.is_array()) {
    throw ConfigError(fmt::format("{}: expected a {} object or a JSON array of per-layer scales, got {}", file,
                                  kFactorsFormat, j.type_name()));
  }
  if (!scales->is_array())
    throw ConfigError(fmt::format("{}: \"scales\" must be an array, got {}", file, scales->type_name()));
  if (static_cast<int64_t>(scales->size()) != cfg.n_layer)
    throw ConfigError(fmt::format("{}: {} layers of scales, but the model ({}) has {} layers", file, scales->size(),
                                  arch_name(cfg.arch), cfg.n_layer));
  const int64_t W = cfg.scale_width();
  DtScales out;
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    const json& e = (*scales)[static_cast<size_t>(l)];
    const std::string where = fmt::format("{}: layer {}", file, l);
    std::vector<float> v;
    if (e.is_number()) {
      v.push_back(static_cast<float>(positive_value(e, where)));
    } else if (e.is_array()) {
      const int64_t n = static_cast<int64_t>(e.size());
      if (n != 1 && n != W)
        throw ConfigError(fmt::format("{}: {} values; expected 1 (per layer) or {} (per {} of {})", where, n, W,
                                      cfg.arch == Arch::Mamba1 ? "channel, d_inner" : "head, n_heads",
                                      arch_name(cfg.arch)));
      for (int64_t i = 0; i < n; ++i)
        v.push_back(static_cast<float>(positive_value(e[static_cast<size_t>(i)], fmt::format("{} value {}", where, i))));
    } else {
      throw ConfigError(fmt::format("{}: expected a number or a list of numbers, got {}", where, e.type_name()));
    }
    out.per_layer.push_back(at::tensor(v, at::TensorOptions().dtype(at::kFloat)));  // (1) or (W)
  }
  check_scales(cfg, out, file);
  return out;
}

}  // namespace mx
