// `mambaextend inspect --model DIR [--json]`: loads a checkpoint (config + every tensor shape checked) and
// prints what it is: architecture, sizes, padded vocabulary, stored dtype, parameter count, file format.
// --json prints one JSON object with the keys arch, n_layer, d_model, d_inner, d_state, n_heads, n_groups,
// vocab_size, dtype, n_params, format (n_heads / n_groups are null for Mamba1), plus a few extra keys.
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "mambaextend/checkpoint.h"

namespace mx::cli {

namespace {

struct InspectArgs {
  std::string model;
  bool json = false;
};

nlohmann::ordered_json to_json(const Checkpoint& ck) {
  const ModelConfig& c = ck.config;
  const bool m2 = c.arch == Arch::Mamba2;
  nlohmann::ordered_json j;
  j["arch"] = arch_name(c.arch);
  j["n_layer"] = c.n_layer;
  j["d_model"] = c.d_model;
  j["d_inner"] = c.d_inner;
  j["d_state"] = c.d_state;
  j["n_heads"] = m2 ? nlohmann::ordered_json(c.n_heads) : nlohmann::ordered_json(nullptr);
  j["n_groups"] = m2 ? nlohmann::ordered_json(c.n_groups) : nlohmann::ordered_json(nullptr);
  j["vocab_size"] = c.vocab_size;
  j["dtype"] = dtype_name(ck.dtype);
  j["n_params"] = ck.n_params;
  j["format"] = ck.format;
  // extras
  j["head_dim"] = m2 ? nlohmann::ordered_json(c.head_dim) : nlohmann::ordered_json(nullptr);
  j["dt_rank"] = m2 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(c.dt_rank);
  j["d_conv"] = c.d_conv;
  j["vocab_size_unpadded"] = c.vocab_size_unpadded;
  j["tie_embeddings"] = c.tie_embeddings;
  j["config_scheme"] = c.scheme;
  j["config_sha256"] = ck.config_sha256;
  return j;
}

void print_table(const Checkpoint& ck) {
  const ModelConfig& c = ck.config;
  const bool m2 = c.arch == Arch::Mamba2;
  const auto row = [](const char* k, const std::string& v) { std::printf("%-14s %s\n", k, v.c_str()); };
  row("model", ck.dir.string());
  row("architecture", arch_name(c.arch));
  row("layers", std::to_string(c.n_layer));
  row("d_model", std::to_string(c.d_model));
  row("d_inner", std::to_string(c.d_inner));
  row("d_state", std::to_string(c.d_state));
  row("d_conv", std::to_string(c.d_conv));
  if (m2) {
    row("heads", std::to_string(c.n_heads) + " x head_dim " + std::to_string(c.head_dim));
    row("groups", std::to_string(c.n_groups));
  } else {
    row("dt_rank", std::to_string(c.dt_rank));
  }
  row("vocab", std::to_string(c.vocab_size) + " (padded; config " + std::to_string(c.vocab_size_unpadded) + ")");
  row("lm_head", c.tie_embeddings ? "tied to the embedding" : "untied");
  row("dtype", dtype_name(ck.dtype));
  row("parameters", std::to_string(ck.n_params));
  row("format", ck.format + " (" + c.scheme + " config)");
  row("config sha256", ck.config_sha256);
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd = app.add_subcommand("inspect", "Load a checkpoint, check it, and print its architecture and sizes");
  cmd->add_option("--model", args->model, "model directory (config.json + safetensors or pytorch_model.bin)")
      ->required();
  cmd->add_flag("--json", args->json, "print one JSON object instead of a table");
  cmd->callback([args] {
    const Checkpoint ck = load_checkpoint(args->model);
    if (args->json) {
      std::cout << to_json(ck).dump(1) << std::endl;
    } else {
      print_table(ck);
      std::fflush(stdout);
    }
  });
}

}  // namespace mx::cli
