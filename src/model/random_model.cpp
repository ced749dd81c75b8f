// Random same-shape models (random_model.h). Shapes from kernels.md §1a; initialisation after mamba_ssm's
// Mamba / Mamba2 modules so that Δ, decays and activations have realistic magnitudes.
#include "mambaextend/random_model.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>

#include "mambaextend/error.h"

namespace mx {

namespace {
struct Preset { const char* name; Arch arch; int64_t n_layer, d_model; };
constexpr Preset kPresets[] = {
    {"mamba-130m", Arch::Mamba1, 24, 768},   {"mamba-370m", Arch::Mamba1, 48, 1024},
    {"mamba-790m", Arch::Mamba1, 48, 1536},  {"mamba-1.4b", Arch::Mamba1, 48, 2048},
    {"mamba-2.8b", Arch::Mamba1, 64, 2560},  {"mamba2-130m", Arch::Mamba2, 24, 768},
    {"mamba2-370m", Arch::Mamba2, 48, 1024}, {"mamba2-780m", Arch::Mamba2, 48, 1536},
    {"mamba2-1.3b", Arch::Mamba2, 48, 2048}, {"mamba2-2.7b", Arch::Mamba2, 64, 2560},
};
}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> out;
  for (const auto& p : kPresets) out.push_back(p.name);
  return out;
}

ModelConfig preset_config(const std::string& name) {
  for (const auto& p : kPresets) {
    if (name != p.name) continue;
    ModelConfig c;
    c.arch = p.arch;
    c.n_layer = p.n_layer;
    c.d_model = p.d_model;
    c.d_inner = 2 * p.d_model;
    c.d_conv = 4;
    c.scheme = "preset";
    if (p.arch == Arch::Mamba1) {
      c.d_state = 16;
      c.dt_rank = (p.d_model + 15) / 16;
      c.vocab_size = 50280;
    } else {
      c.d_state = 128;
      c.head_dim = 64;
      c.n_heads = c.d_inner / 64;
      c.n_groups = 1;
      c.vocab_size = 50288;
    }
    c.vocab_size_unpadded = c.vocab_size;
    return c;
  }
  std::string names;
  for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
  throw UsageError(fmt::format("unknown model shape '{}' (known: {})", name, names));
}

Checkpoint random_checkpoint(const ModelConfig& cfg, uint64_t seed, at::ScalarType dtype) {
  at::manual_seed(seed);
  const auto o = at::TensorOptions().dtype(at::kFloat);
  const int64_t D = cfg.d_model, E = cfg.d_inner, N = cfg.d_state, K = cfg.d_conv, V = cfg.vocab_size;
  Checkpoint ck;
  ck.config = cfg;
  ck.format = "random";
  ck.dtype = dtype == at::kBFloat16 ? DType::BF16 : dtype == at::kHalf ? DType::F16 : dtype == at::kDouble ? DType::F64 : DType::F32;
  auto put = [&](const std::string& name, at::Tensor t) { ck.tensors[name] = t.to(dtype).contiguous(); };
  // softplus^{-1} of dt drawn log-uniformly in [1e-3, 1e-1] (mamba_ssm dt_init).
  auto dt_bias = [&](int64_t n) {
    auto dt = at::exp(at::rand({n}, o) * (std::log(0.1) - std::log(1e-3)) + std::log(1e-3));
    return dt + at::log(-at::expm1(-dt));
  };
  put("embedding.weight", at::randn({V, D}, o) * 0.02);
  put("norm_f.weight", at::ones({D}, o));
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    const auto p = fmt::format("layers.{}.", l);
    put(p + "norm.weight", at::ones({D}, o));
    if (cfg.arch == Arch::Mamba1) {
      const int64_t R = cfg.dt_rank;
      put(p + "mixer.in_proj.weight", at::randn({2 * E, D}, o) * 0.02);
      put(p + "mixer.conv1d.weight", (at::rand({E, 1, K}, o) * 2 - 1) / std::sqrt(double(K)));
      put(p + "mixer.conv1d.bias", (at::rand({E}, o) * 2 - 1) / std::sqrt(double(K)));
      put(p + "mixer.x_proj.weight", at::randn({R + 2 * N, E}, o) * 0.02);
      put(p + "mixer.dt_proj.weight", (at::rand({E, R}, o) * 2 - 1) / std::sqrt(double(R)));
      put(p + "mixer.dt_proj.bias", dt_bias(E));
      put(p + "mixer.A_log", at::log(at::arange(1, N + 1, o)).repeat({E, 1}));
      put(p + "mixer.D", at::ones({E}, o));
    } else {
      const int64_t G = cfg.n_groups, H = cfg.n_heads, C = cfg.conv_dim();
      put(p + "mixer.in_proj.weight", at::randn({2 * E + 2 * G * N + H, D}, o) * 0.02);
      put(p + "mixer.conv1d.weight", (at::rand({C, 1, K}, o) * 2 - 1) / std::sqrt(double(K)));
      put(p + "mixer.conv1d.bias", (at::rand({C}, o) * 2 - 1) / std::sqrt(double(K)));
      put(p + "mixer.dt_bias", dt_bias(H));
      put(p + "mixer.A_log", at::log(at::rand({H}, o) * 15 + 1));
      put(p + "mixer.D", at::ones({H}, o));
      put(p + "mixer.norm.weight", at::ones({E}, o));
    }
    put(p + "mixer.out_proj.weight", at::randn({D, E}, o) * (0.02 / std::sqrt(2.0 * cfg.n_layer)));
  }
  for (const auto& [name, t] : ck.tensors) ck.n_params += t.numel();
  return ck;
}

}  // namespace mx
