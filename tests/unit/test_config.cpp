// config.json parsing (src/config.cpp): both layouts (Hugging Face MambaConfig / Mamba2Config and state-spaces
// MambaConfig with ssm_cfg), their defaults, the non-finite number forms, and errors that name file and field.
// Expected values are the transformers / mamba_ssm defaults written out in kernels.md §1 and design.md.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "mambaextend/config.h"
#include "mambaextend/error.h"

namespace mx {
namespace {

// Runs f, which must throw a ConfigError; returns the message.
std::string config_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  } catch (const Error& e) {
    ADD_FAILURE() << "expected a ConfigError, got another mx::Error: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError, nothing was thrown";
  return "";
}

TEST(ConfigParse, HfMamba1DefaultsAndAutoRank) {
  const auto c = parse_model_config(
      R"({"model_type": "mamba", "hidden_size": 40, "num_hidden_layers": 3, "vocab_size": 96,
          "time_step_rank": "auto", "intermediate_size": 80})",
      "cfg.json");
  EXPECT_EQ(c.arch, Arch::Mamba1);
  EXPECT_EQ(c.d_inner, 80);
  EXPECT_EQ(c.d_state, 16);
  EXPECT_EQ(c.dt_rank, 3);  // ceil(40 / 16)
  EXPECT_EQ(c.d_conv, 4);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_TRUE(c.use_conv_bias);
  EXPECT_FALSE(c.use_bias);
  EXPECT_EQ(c.vocab_size, 96);
  EXPECT_EQ(c.scheme, "hf");
  EXPECT_STREQ(arch_name(c.arch), "mamba1");
}

TEST(ConfigParse, StateSpacesDefaults) {
  const auto m1 = parse_model_config(R"({"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {}})", "c");
  EXPECT_EQ(m1.arch, Arch::Mamba1);
  EXPECT_EQ(m1.dt_rank, 48);
  EXPECT_EQ(m1.d_inner, 1536);
  EXPECT_EQ(m1.d_state, 16);
  EXPECT_EQ(m1.vocab_size, 50280);  // padded to a multiple of 8
  EXPECT_EQ(m1.vocab_size_unpadded, 50277);
  EXPECT_DOUBLE_EQ(m1.norm_eps, 1e-5);
  const auto m2 = parse_model_config(
      R"({"d_model": 768, "n_layer": 24, "vocab_size": 50277, "pad_vocab_size_multiple": 16,
          "ssm_cfg": {"layer": "Mamba2", "dt_limit": [0.001, Infinity]}, "d_intermediate": 0, "attn_layer_idx": []})",
      "c");
  EXPECT_EQ(m2.arch, Arch::Mamba2);
  EXPECT_EQ(m2.d_state, 128);
  EXPECT_EQ(m2.head_dim, 64);
  EXPECT_EQ(m2.n_heads, 24);
  EXPECT_EQ(m2.n_groups, 1);
  EXPECT_EQ(m2.chunk_size, 256);
  EXPECT_EQ(m2.vocab_size, 50288);
  EXPECT_EQ(m2.conv_dim(), 1536 + 256);
  EXPECT_DOUBLE_EQ(m2.dt_limit_min, 0.001);
  EXPECT_TRUE(std::isinf(m2.dt_limit_max));
}

TEST(ConfigParse, NonFiniteForms) {
  const std::string head = R"({"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 1, "vocab_size": 8,
                               "num_heads": 2, "head_dim": 64, "n_groups": 1, "time_step_limit": )";
  for (const std::string lim : {R"([0.0, {"__float__": "Infinity"}])", "[0.0, Infinity]", "[0.0, null]"}) {
    const auto c = parse_model_config(head + lim + "}", "c");
    EXPECT_TRUE(std::isinf(c.dt_limit_max)) << lim;
  }
  // "Infinity" inside a string is left alone
  const auto c = parse_model_config(head + R"([0.0, 2.5], "note": "Infinity"})", "c");
  EXPECT_DOUBLE_EQ(c.dt_limit_max, 2.5);
}

TEST(ConfigParse, ErrorsNameFileAndField) {
  struct Case {
    std::string json, field;
  };
  const std::vector<Case> cases = {
      {R"({"model_type": "mamba", "num_hidden_layers": 2, "vocab_size": 8})", "hidden_size"},
      {R"({"model_type": "mamba", "hidden_size": 16.5, "num_hidden_layers": 2, "vocab_size": 8})", "hidden_size"},
      {R"({"model_type": "mamba", "hidden_size": 16, "num_hidden_layers": 2, "vocab_size": 8, "use_bias": 1})",
       "use_bias"},
      {R"({"model_type": "mamba", "hidden_size": 16, "num_hidden_layers": 2, "vocab_size": 8,
           "intermediate_size": 48})",
       "intermediate_size"},
      {R"({"model_type": "jamba", "hidden_size": 16})", "jamba"},
      {R"({"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 1, "vocab_size": 8, "num_heads": 3,
           "head_dim": 64})",
       "num_heads"},
      {R"({"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 1, "vocab_size": 8, "num_heads": 2,
           "head_dim": 64, "n_groups": 1, "norm_before_gate": true})",
       "norm_before_gate"},
      {R"({"d_model": 64, "n_layer": 2, "vocab_size": 8, "ssm_cfg": {"layer": "Mamba2", "rmsnorm": false}})",
       "ssm_cfg.rmsnorm"},
      {R"({"d_model": 64, "n_layer": 2, "vocab_size": 8, "ssm_cfg": {"layer": "Mamba3"}})", "Mamba3"},
      {R"({"d_model": 64, "n_layer": 2, "vocab_size": 8, "d_intermediate": 256})", "d_intermediate"},
      {R"({"d_model": 64, "n_layer": 2, "vocab_size": 8, "ssm_cfg": {"headdim": 5, "layer": "Mamba2"}})", "headdim"},
      {R"({"d_model": 64, "n_layer": 2, "vocab_size": 8, "ssm_cfg": {"layer": "Mamba2", "headdim": 32, "ngroups": 3}})",
       "ssm_cfg.ngroups"},
      {R"({"hidden_size": 64})", "model_type"},
      {R"([1, 2])", "object"},
      {R"({"model_type": "mamba", )", "malformed JSON"},
      {R"({"model_type": "mamba", "hidden_size": 64E6528})", "malformed JSON"},  // number overflow
  };
  for (const auto& c : cases) {
    const std::string msg = config_error_of([&] { parse_model_config(c.json, "dir/config.json"); });
    EXPECT_NE(msg.find("dir/config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.field), std::string::npos) << "expected '" << c.field << "' in: " << msg;
  }
}

TEST(ConfigParse, DeeplyNestedValueIsRefusedWithoutRecursion) {
  const int depth = 1000000;
  const std::string deep = std::string(depth, '[') + std::string(depth, ']');
  const std::string msg =
      config_error_of([&] { parse_model_config(R"({"model_type": "mamba", "hidden_size": )" + deep + "}", "c.json"); });
  EXPECT_NE(msg.find("hidden_size"), std::string::npos) << msg.substr(0, 300);
  EXPECT_LT(msg.size(), 600u);
  const std::string nl = config_error_of([&] { parse_model_config(R"({"model_type": "mam\nba"})", "c.json"); });
  EXPECT_EQ(nl.find('\n'), std::string::npos) << nl;
}

}  // namespace
}  // namespace mx
