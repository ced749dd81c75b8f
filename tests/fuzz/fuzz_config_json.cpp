// libFuzzer target: parse_model_config (config.json, Hugging Face or state-spaces layout). An accepted config must
// describe a model whose sizes are positive and consistent (what the loader and the model code rely on).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mambaextend/config.h"
#include "mambaextend/error.h"

namespace {
void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_config_json: accepted a config with %s\n", what);
    std::abort();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  mx::ModelConfig c;
  try {
    c = mx::parse_model_config(text, "fuzz/config.json");
  } catch (const mx::ConfigError&) {
    return 0;
  }
  require(c.n_layer > 0 && c.d_model > 0 && c.d_inner > 0 && c.d_state > 0 && c.d_conv > 0, "a non-positive size");
  require(c.vocab_size_unpadded > 0, "a non-positive vocabulary");
  if (c.arch == mx::Arch::Mamba1) require(c.dt_rank > 0, "dt_rank <= 0");
  if (c.arch == mx::Arch::Mamba2)
    require(c.n_heads > 0 && c.head_dim > 0 && c.n_groups > 0 && c.n_heads * c.head_dim == c.d_inner,
            "inconsistent heads");
  require(c.conv_dim() > 0 && c.scale_width() > 0, "a non-positive derived size");
  return 0;
}
