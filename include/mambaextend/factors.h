// Factors files (design.md "Factors file"): the Δ scales found by `calibrate`, read by eval-ppl, passkey,
// generate and calibrate --init. Two accepted forms:
//   {"format": "mambaextend.factors/v1", "model": {"arch", "n_layer", "d_inner", "nheads", "config_sha256"},
//    "scales": [[s], [s], ...] or [[s_0, ..., s_{W-1}], ...], ...}   one list per layer: 1 or W values,
//                                                                       W = d_inner (Mamba1) / n_heads (Mamba2)
//   [s_0, s_1, ...]   a bare JSON array, one number (or one list as above) per layer (the official code's form)
// A file whose shape does not fit the model is refused (ConfigError naming the file, the layer and expected vs
// actual), never broadcast; every value must be a positive finite number.
#pragma once
#include <filesystem>
#include <string>

#include "mambaextend/config.h"
#include "mambaextend/model.h"

namespace mx {

// The "format" value of a factors file written by this tool.
inline constexpr const char* kFactorsFormat = "mambaextend.factors/v1";

// Reads a factors file into per-layer scales (float32 CPU tensors of shape (1) or (W)). Throws IoError when it
// cannot be read, ConfigError when it is malformed or does not fit `cfg`. A "model.config_sha256" that differs
// from the model's only logs a warning (the shape is what must agree).
DtScales load_factors(const std::filesystem::path& path, const ModelConfig& cfg,
                      const std::string& model_config_sha256 = "");
// The same from the file's text; `where` names it in messages (e.g. "factors file x.json").
DtScales parse_factors(const std::string& json_text, const ModelConfig& cfg, const std::string& where,
                       const std::string& model_config_sha256 = "");
// The bytes of a factors file (IoError: missing, a directory, unreadable), for parse_factors.
std::string read_factors_text(const std::filesystem::path& path);
// calibration_data.sha256 of a factors file's text (corpus_sha256 of the data it was calibrated on); "" for a
// bare list, a file without it, or text that is not JSON.
std::string factors_calibration_sha256(const std::string& json_text);

}  // namespace mx
