// libFuzzer target: the factors file reader (parse_factors), against the two bundled organisms' shapes
// (mamba1: 8 layers, d_inner 256; mamba2: 8 layers, 4 heads), selected by the input's first byte. Every accepted
// file must give one positive finite float32 scale vector of width 1 or W per layer.
#include <ATen/ATen.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mambaextend/error.h"
#include "mambaextend/factors.h"

namespace {
mx::ModelConfig organism(bool mamba2) {
  mx::ModelConfig c;
  c.arch = mamba2 ? mx::Arch::Mamba2 : mx::Arch::Mamba1;
  c.n_layer = 8;
  c.d_model = 128;
  c.d_inner = 256;
  c.d_state = 16;
  c.dt_rank = 8;
  c.n_heads = mamba2 ? 4 : 0;
  c.head_dim = mamba2 ? 64 : 0;
  return c;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const mx::ModelConfig cfg = organism(data[0] & 1);
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    const mx::DtScales s = mx::parse_factors(text, cfg, "fuzz factors file", "0123");
    bool ok = static_cast<int64_t>(s.per_layer.size()) == cfg.n_layer;
    for (const auto& t : s.per_layer)
      ok = ok && t.dim() == 1 && (t.size(0) == 1 || t.size(0) == cfg.scale_width()) &&
           at::isfinite(t).all().item<bool>() && (t > 0).all().item<bool>();
    if (!ok) {
      std::fprintf(stderr, "fuzz_factors: accepted scales of the wrong shape or value\n");
      std::abort();
    }
  } catch (const mx::ConfigError&) {
  } catch (const mx::ShapeError&) {
  }
  return 0;
}
