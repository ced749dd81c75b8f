// Model hyper-parameters, read from a Hugging Face config.json (MambaConfig / Mamba2Config) or a
// state-spaces config.json (mamba_ssm MambaConfig with ssm_cfg), normalised into one struct.
// Shapes that depend on the weights (padded vocab) are filled in by the checkpoint loader.
#pragma once
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>

namespace mx {

enum class Arch { Mamba1, Mamba2 };
const char* arch_name(Arch a);  // "mamba1" | "mamba2"

struct ModelConfig {
  Arch arch = Arch::Mamba1;
  int64_t n_layer = 0;
  int64_t d_model = 0;
  int64_t d_inner = 0;     // E = expand * d_model
  int64_t d_state = 0;     // N
  int64_t d_conv = 4;      // K
  int64_t dt_rank = 0;     // Mamba1 only: R
  int64_t n_heads = 0;     // Mamba2 only: H = E / head_dim
  int64_t head_dim = 0;    // Mamba2 only: P
  int64_t n_groups = 1;    // Mamba2 only: G
  int64_t chunk_size = 256;  // Mamba2 only (kernel tiling hint, no effect on the math)
  int64_t vocab_size = 0;    // padded vocab: rows of the embedding
  int64_t vocab_size_unpadded = 0;  // as the config says (50277 for state-spaces; equal to padded for HF)
  double norm_eps = 1e-5;
  double dt_limit_min = 0.0;  // Mamba2 Δ clamp (time_step_limit); (0, inf) = no clamp
  double dt_limit_max = std::numeric_limits<double>::infinity();
  bool use_conv_bias = true;
  bool use_bias = false;      // bias of in_proj / out_proj
  bool tie_embeddings = true;
  bool gated_norm = true;     // Mamba2 rmsnorm on (the only supported mode)
  bool norm_before_gate = false;
  std::string scheme;         // "hf" or "state-spaces": which config.json layout it came from

  int64_t conv_dim() const {  // channels of the causal conv: E (Mamba1) or E + 2GN (Mamba2)
    return arch == Arch::Mamba1 ? d_inner : d_inner + 2 * n_groups * d_state;
  }
  // Length of one layer's Δ-scale vector at channel granularity: d_inner (Mamba1) or n_heads (Mamba2).
  int64_t scale_width() const { return arch == Arch::Mamba1 ? d_inner : n_heads; }
};

// Parses config.json text; `where` names the file in error messages. Throws ConfigError.
ModelConfig parse_model_config(const std::string& json_text, const std::string& where);

}  // namespace mx
