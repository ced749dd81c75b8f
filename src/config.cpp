// Parses a model's config.json into mx::ModelConfig. Two layouts are understood:
//   Hugging Face  (has "model_type"): MambaConfig ("mamba") and Mamba2Config ("mamba2"), transformers 5.x
//                 field names and defaults (configuration_mamba.py / configuration_mamba2.py).
//   state-spaces  (has "d_model" / "ssm_cfg"): mamba_ssm's MambaConfig (models/config_mamba.py) with the
//                 mixer chosen by ssm_cfg["layer"] and the Mamba / Mamba2 module defaults (kernels.md §1a).
// Python's json writes infinity as a bare `Infinity` and HF as {"__float__": "Infinity"}; both are accepted.
// Limits: only pure Mamba / Mamba2 LMs (no attention or MLP layers, RMSNorm everywhere, Mamba2 with the gated
// RMSNorm applied after the gate); anything else is a ConfigError naming the file and the field.
#include "mambaextend/config.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "checkpoint/text.h"
#include "mambaextend/error.h"

namespace mx {

const char* arch_name(Arch a) { return a == Arch::Mamba1 ? "mamba1" : "mamba2"; }

namespace {

using nlohmann::json;

// Upper bounds that keep later allocations sane; far above any released Mamba (d_model 8192, 64 layers).
constexpr int64_t kMaxDim = int64_t{1} << 20;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxVocab = int64_t{1} << 26;

// Replaces the bare tokens Infinity / -Infinity / NaN that Python's json.dumps emits (outside strings) with
// HF's {"__float__": "..."} form, which is valid JSON.
std::string normalise_nonfinite(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      continue;
    }
    bool replaced = false;
    for (const char* tok : {"-Infinity", "Infinity", "NaN"}) {
      const size_t n = std::char_traits<char>::length(tok);
      if (text.compare(i, n, tok) == 0) {
        out += std::string("{\"__float__\": \"") + tok + "\"}";
        i += n - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}

// Typed access to the fields of one JSON object, with errors naming the file and the field.
class Fields {
 public:
  Fields(const json& obj, std::string where, std::string prefix)
      : obj_(obj), where_(std::move(where)), prefix_(std::move(prefix)) {}

  bool has(const char* key) const { return obj_.contains(key) && !obj_.at(key).is_null(); }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw ConfigError(where_ + ": field '" + prefix_ + key + "' " + what);
  }
  const json& at(const char* key) const {
    if (!obj_.contains(key)) fail(key, "is missing");
    return obj_.at(key);
  }

  int64_t integer(const char* key, int64_t lo, int64_t hi) const { return check_int(key, at(key), lo, hi); }
  int64_t integer(const char* key, int64_t lo, int64_t hi, int64_t dflt) const {
    return has(key) ? check_int(key, obj_.at(key), lo, hi) : dflt;
  }
  bool boolean(const char* key, bool dflt) const {
    if (!has(key)) return dflt;
    const json& v = obj_.at(key);
    if (!v.is_boolean()) fail(key, "must be true or false, got " + text::brief_json(v));
    return v.get<bool>();
  }
  double number(const char* key, double dflt) const {
    if (!has(key)) return dflt;
    return as_number(key, obj_.at(key));
  }
  // A JSON number, or a non-finite value in HF's {"__float__": "Infinity"} form.
  double as_number(const std::string& key, const json& v) const {
    if (v.is_number()) return v.get<double>();
    if (v.is_object() && v.size() == 1 && v.contains("__float__") && v.at("__float__").is_string()) {
      const std::string s = v.at("__float__").get<std::string>();
      if (s == "Infinity" || s == "inf") return std::numeric_limits<double>::infinity();
      if (s == "-Infinity" || s == "-inf") return -std::numeric_limits<double>::infinity();
      if (s == "NaN" || s == "nan") return std::numeric_limits<double>::quiet_NaN();
    }
    fail(key, "must be a number, got " + text::brief_json(v));
  }
  int64_t check_int(const std::string& key, const json& v, int64_t lo, int64_t hi) const {
    int64_t x = 0;
    if (v.is_number_integer()) {
      x = v.get<int64_t>();
    } else if (v.is_number_float() && std::isfinite(v.get<double>()) &&
               v.get<double>() == std::floor(v.get<double>()) && std::fabs(v.get<double>()) < 9e15) {
      x = static_cast<int64_t>(v.get<double>());  // e.g. "expand": 2.0
    } else {
      fail(key, "must be an integer, got " + text::brief_json(v));
    }
    if (x < lo || x > hi)
      fail(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(x));
    return x;
  }

 private:
  const json& obj_;
  std::string where_;
  std::string prefix_;
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// time_step_limit / dt_limit: a two-element list; null or a missing bound means no bound.
void read_dt_limit(const Fields& f, const json& v, const std::string& key, ModelConfig& cfg) {
  if (!v.is_array() || v.size() != 2) f.fail(key, "must be a list [min, max], got " + text::brief_json(v));
  cfg.dt_limit_min = v[0].is_null() ? 0.0 : f.as_number(key, v[0]);
  cfg.dt_limit_max = v[1].is_null() ? std::numeric_limits<double>::infinity() : f.as_number(key, v[1]);
  if (std::isnan(cfg.dt_limit_min) || std::isnan(cfg.dt_limit_max) || cfg.dt_limit_min < 0.0 ||
      cfg.dt_limit_min > cfg.dt_limit_max)
    f.fail(key, "must satisfy 0 <= min <= max, got " + text::brief_json(v));
}

void check_mamba2_heads(const Fields& f, const ModelConfig& cfg, const char* heads_field, const char* groups_field) {
  if (cfg.n_heads * cfg.head_dim != cfg.d_inner)
    f.fail(heads_field, "times head_dim (" + std::to_string(cfg.n_heads) + " x " + std::to_string(cfg.head_dim) +
                            ") must equal the inner size expand * d_model = " + std::to_string(cfg.d_inner));
  if (cfg.n_heads % cfg.n_groups != 0)
    f.fail(groups_field,
           "must divide the number of heads " + std::to_string(cfg.n_heads) + ", got " + std::to_string(cfg.n_groups));
}

ModelConfig parse_hf(const json& j, const std::string& where) {
  const Fields f(j, where, "");
  const json& mt = f.at("model_type");
  if (!mt.is_string()) f.fail("model_type", "must be a string, got " + text::brief_json(mt));
  const std::string model_type = mt.get<std::string>();
  if (model_type != "mamba" && model_type != "mamba2")
    f.fail("model_type",
           "names an unknown architecture '" + text::printable(model_type) + "' (supported: mamba, mamba2)");
  ModelConfig cfg;
  cfg.scheme = "hf";
  cfg.d_model = f.integer("hidden_size", 1, kMaxDim);
  cfg.n_layer = f.integer("num_hidden_layers", 1, kMaxLayers);
  cfg.vocab_size_unpadded = f.integer("vocab_size", 1, kMaxVocab);
  cfg.vocab_size = cfg.vocab_size_unpadded;  // HF configs carry the padded vocab
  cfg.norm_eps = f.number("layer_norm_epsilon", 1e-5);
  if (!(cfg.norm_eps > 0.0) || !std::isfinite(cfg.norm_eps))
    f.fail("layer_norm_epsilon", "must be a positive finite number");
  cfg.d_conv = f.integer("conv_kernel", 1, 64, 4);
  const int64_t expand = f.integer("expand", 1, 64, 2);
  cfg.d_inner = expand * cfg.d_model;
  cfg.use_bias = f.boolean("use_bias", false);
  cfg.use_conv_bias = f.boolean("use_conv_bias", true);

  if (model_type == "mamba") {
    cfg.arch = Arch::Mamba1;
    cfg.tie_embeddings = f.boolean("tie_word_embeddings", true);
    cfg.d_state = f.integer("state_size", 1, kMaxDim, 16);
    // transformers' MambaConfig recomputes intermediate_size = expand * hidden_size; a stored value that
    // disagrees would describe weights of another shape, so it is an error rather than silently ignored.
    if (f.has("intermediate_size")) {
      const int64_t inter = f.integer("intermediate_size", 1, kMaxDim * 64);
      if (inter != cfg.d_inner)
        f.fail("intermediate_size",
               "is " + std::to_string(inter) + " but expand * hidden_size = " + std::to_string(cfg.d_inner));
    }
    if (f.has("time_step_rank") && j.at("time_step_rank").is_string()) {
      if (j.at("time_step_rank").get<std::string>() != "auto")
        f.fail("time_step_rank", "must be an integer or \"auto\", got " + text::brief_json(j.at("time_step_rank")));
      cfg.dt_rank = ceil_div(cfg.d_model, 16);
    } else {
      cfg.dt_rank = f.integer("time_step_rank", 1, kMaxDim, ceil_div(cfg.d_model, 16));
    }
  } else {  // "mamba2"
    cfg.arch = Arch::Mamba2;
    cfg.tie_embeddings = f.boolean("tie_word_embeddings", false);  // Mamba2Config's default, unlike Mamba's
    cfg.d_state = f.integer("state_size", 1, kMaxDim, 128);
    cfg.n_heads = f.integer("num_heads", 1, kMaxDim);
    cfg.head_dim = f.integer("head_dim", 1, kMaxDim, 64);
    cfg.n_groups = f.integer("n_groups", 1, kMaxDim, 8);
    cfg.chunk_size = f.integer("chunk_size", 1, kMaxDim, 256);
    if (f.has("time_step_limit")) read_dt_limit(f, j.at("time_step_limit"), "time_step_limit", cfg);
    if (!f.boolean("rms_norm", true)) f.fail("rms_norm", "is false: only Mamba2 with the gated RMSNorm is supported");
    if (f.boolean("norm_before_gate", false))
      f.fail("norm_before_gate", "is true: only the norm after the gate (norm_before_gate=false) is supported");
    check_mamba2_heads(f, cfg, "num_heads", "n_groups");
  }
  return cfg;
}

ModelConfig parse_state_spaces(const json& j, const std::string& where) {
  const Fields f(j, where, "");
  ModelConfig cfg;
  cfg.scheme = "state-spaces";
  cfg.d_model = f.integer("d_model", 1, kMaxDim);
  cfg.n_layer = f.integer("n_layer", 1, kMaxLayers);
  cfg.vocab_size_unpadded = f.integer("vocab_size", 1, kMaxVocab);
  const int64_t pad = f.integer("pad_vocab_size_multiple", 1, 1 << 16, 8);
  cfg.vocab_size = ceil_div(cfg.vocab_size_unpadded, pad) * pad;  // the loader confirms it from the weights
  cfg.tie_embeddings = f.boolean("tie_embeddings", true);
  cfg.norm_eps = 1e-5;  // mamba_ssm hard-codes norm_epsilon = 1e-5 (no config field)
  if (!f.boolean("rms_norm", true)) f.fail("rms_norm", "is false: only RMSNorm blocks are supported");
  if (f.has("d_intermediate") && f.integer("d_intermediate", 0, kMaxDim * 64) != 0)
    f.fail("d_intermediate", "is not 0: blocks with an MLP are not supported");
  if (f.has("attn_layer_idx")) {
    const json& a = j.at("attn_layer_idx");
    if (!a.is_array()) f.fail("attn_layer_idx", "must be a list, got " + text::brief_json(a));
    if (!a.empty())
      f.fail("attn_layer_idx", "is " + text::brief_json(a) + ": hybrid models with attention layers are not supported");
  }

  json ssm = json::object();
  if (f.has("ssm_cfg")) {
    ssm = j.at("ssm_cfg");
    if (!ssm.is_object()) f.fail("ssm_cfg", "must be an object, got " + text::brief_json(ssm));
  }
  const Fields s(ssm, where, "ssm_cfg.");
  std::string layer = "Mamba1";
  if (s.has("layer")) {
    if (!ssm.at("layer").is_string()) s.fail("layer", "must be a string, got " + text::brief_json(ssm.at("layer")));
    layer = ssm.at("layer").get<std::string>();
  }
  const int64_t expand = s.integer("expand", 1, 64, 2);
  cfg.d_inner = expand * cfg.d_model;
  cfg.d_conv = s.integer("d_conv", 1, 64, 4);
  if (layer == "Mamba1") {
    cfg.arch = Arch::Mamba1;
    cfg.d_state = s.integer("d_state", 1, kMaxDim, 16);
    cfg.use_bias = s.boolean("bias", false);
    cfg.use_conv_bias = s.boolean("conv_bias", true);
    if (s.has("dt_rank") && ssm.at("dt_rank").is_string()) {
      if (ssm.at("dt_rank").get<std::string>() != "auto")
        s.fail("dt_rank", "must be an integer or \"auto\", got " + text::brief_json(ssm.at("dt_rank")));
      cfg.dt_rank = ceil_div(cfg.d_model, 16);
    } else {
      cfg.dt_rank = s.integer("dt_rank", 1, kMaxDim, ceil_div(cfg.d_model, 16));
    }
  } else if (layer == "Mamba2") {
    cfg.arch = Arch::Mamba2;
    cfg.d_state = s.integer("d_state", 1, kMaxDim, 128);
    cfg.head_dim = s.integer("headdim", 1, kMaxDim, 64);
    cfg.n_groups = s.integer("ngroups", 1, kMaxDim, 1);
    cfg.chunk_size = s.integer("chunk_size", 1, kMaxDim, 256);
    cfg.use_bias = s.boolean("bias", false);
    cfg.use_conv_bias = s.boolean("conv_bias", true);
    if (s.has("dt_limit")) read_dt_limit(s, ssm.at("dt_limit"), "dt_limit", cfg);
    if (!s.boolean("rmsnorm", true)) s.fail("rmsnorm", "is false: only Mamba2 with the gated RMSNorm is supported");
    if (s.boolean("norm_before_gate", false))
      s.fail("norm_before_gate", "is true: only the norm after the gate (norm_before_gate=false) is supported");
    if (s.boolean("D_has_hdim", false)) s.fail("D_has_hdim", "is true: only a per-head D is supported");
    if (s.has("d_ssm") && s.integer("d_ssm", 1, kMaxDim * 64) != cfg.d_inner)
      s.fail("d_ssm", "differs from expand * d_model = " + std::to_string(cfg.d_inner) + ": not supported");
    if (cfg.d_inner % cfg.head_dim != 0)
      s.fail("headdim",
             "must divide expand * d_model = " + std::to_string(cfg.d_inner) + ", got " + std::to_string(cfg.head_dim));
    cfg.n_heads = cfg.d_inner / cfg.head_dim;
    check_mamba2_heads(s, cfg, "headdim", "ngroups");
  } else {
    s.fail("layer", "names an unknown mixer '" + text::printable(layer) + "' (supported: Mamba1, Mamba2)");
  }
  return cfg;
}

}  // namespace

ModelConfig parse_model_config(const std::string& json_text, const std::string& where) {
  json j;
  try {
    j = json::parse(normalise_nonfinite(json_text));
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number that overflows
    throw ConfigError(where + ": malformed JSON: " + e.what());
  }
  if (!j.is_object()) throw ConfigError(where + ": expected a JSON object at the top level, got " + j.type_name());
  if (j.contains("model_type")) return parse_hf(j, where);
  if (j.contains("d_model") || j.contains("ssm_cfg")) return parse_state_spaces(j, where);
  throw ConfigError(where +
                    ": unknown config layout: neither 'model_type' (Hugging Face) nor 'd_model' / "
                    "'ssm_cfg' (state-spaces) is present");
}

}  // namespace mx
