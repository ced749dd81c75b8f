// Δ scales (DtScales): construction and validation against a model config.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include "mambaextend/error.h"
#include "mambaextend/model.h"

namespace mx {

DtScales DtScales::ones(const ModelConfig& cfg, bool per_channel, at::ScalarType dtype) {
  DtScales s;
  for (int64_t l = 0; l < cfg.n_layer; ++l)
    s.per_layer.push_back(at::ones({per_channel ? cfg.scale_width() : 1}, at::TensorOptions().dtype(dtype)));
  return s;
}

void check_scales(const ModelConfig& cfg, const DtScales& s, const std::string& where) {
  if (static_cast<int64_t>(s.per_layer.size()) != cfg.n_layer)
    throw ShapeError(fmt::format("{}: {} layers of scales for a model with {} layers", where, s.per_layer.size(),
                                 cfg.n_layer));
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    const auto& t = s.per_layer[l];
    if (!t.defined() || t.dim() != 1 || (t.size(0) != 1 && t.size(0) != cfg.scale_width()))
      throw ShapeError(fmt::format("{}: layer {} has {} scale values; expected 1 or {} ({} of {})", where, l,
                                   t.defined() ? t.numel() : 0, cfg.scale_width(),
                                   cfg.arch == Arch::Mamba1 ? "d_inner" : "n_heads", arch_name(cfg.arch)));
    if (!at::isfinite(t).all().item<bool>() || !(t > 0).all().item<bool>())
      throw ShapeError(fmt::format("{}: layer {} has a scale that is not a positive finite number", where, l));
  }
}

}  // namespace mx
