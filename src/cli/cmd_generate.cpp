// `mambaextend generate`: continue a prompt with a Mamba / Mamba2 LM, optionally with calibrated Δ scales
// (--factors), applied in the prefill and in every decoding step (generate.h). The continuation streams to
// stdout as it is decoded, whole UTF-8 characters only (a character split across tokens is printed once its
// last byte arrives); the stop token (EOS, id 0) is not printed. Timings go to stderr.
#include <ATen/Context.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "cli/device.h"
#include "mambaextend/checkpoint.h"
#include "mambaextend/error.h"
#include "mambaextend/factors.h"
#include "mambaextend/generate.h"
#include "mambaextend/log.h"
#include "mambaextend/model.h"
#include "mambaextend/tokenizer.h"

namespace mx::cli {

namespace {

namespace fs = std::filesystem;

struct GenerateArgs {
  std::string model, prompt, factors, tokenizer, device = "cpu", dtype = "fp32";
  int64_t max_new_tokens = 64, top_k = 0, segment_len = 0;
  double temperature = 0, top_p = 1;
  uint64_t seed = 0;
};

void run_generate(const GenerateArgs& a) {
  GenerateOptions opts;
  opts.max_new_tokens = a.max_new_tokens;
  opts.sampling = SamplingOptions{a.temperature, a.top_k, a.top_p, a.seed};
  check_sampling(opts.sampling);
  if (a.max_new_tokens < 0) throw UsageError(fmt::format("--max-new-tokens {} must be >= 0", a.max_new_tokens));
  if (a.segment_len < 0) throw UsageError(fmt::format("--segment-len {} must be positive (0: default)", a.segment_len));
  if (a.dtype != "fp32" && a.dtype != "bf16") throw UsageError("--dtype '" + a.dtype + "' is not one of fp32, bf16");
  const c10::Device device = parse_device(a.device);
  opts.segment_len = a.segment_len > 0 ? a.segment_len : (device.is_cuda() ? 16384 : 4096);
  fs::path tok_path = a.tokenizer;
  if (tok_path.empty()) {
    tok_path = fs::path(a.model) / "tokenizer.json";
    std::error_code ec;
    if (!fs::is_regular_file(tok_path, ec))
      throw UsageError(fmt::format("no tokenizer: {} does not exist; pass --tokenizer FILE (a Hugging Face "
                                   "tokenizer.json)", tok_path.string()));
  }

  const Tokenizer tok = Tokenizer::from_file(tok_path);
  std::vector<int64_t> prompt;
  for (uint32_t id : tok.encode(a.prompt)) prompt.push_back(id);
  if (prompt.empty()) throw UsageError("--prompt is empty: give at least one character of text");
  const Checkpoint ckpt = load_checkpoint(a.model);
  const MambaLM model(ckpt, ModelOptions{a.dtype == "bf16" ? at::kBFloat16 : at::kFloat, device});
  for (int64_t id : prompt)
    if (id >= model.config().vocab_size)
      throw DataError(fmt::format("--prompt: token id {} is outside the model's vocabulary of {} (tokenizer {} does "
                                  "not fit model {})", id, model.config().vocab_size, tok_path.string(), a.model));
  DtScales scales;
  if (!a.factors.empty()) {
    scales = load_factors(a.factors, model.config(), ckpt.config_sha256);
    log::info(fmt::format("Δ scales from {} (applied in the prefill and in every decoding step)", a.factors));
  }
  opts.vocab_limit = std::min<int64_t>(tok.vocab_size(), model.config().vocab_size);
  log::info(fmt::format("model {}: {} {} layers, {} {}; prompt {} tokens; {}", a.model, arch_name(model.config().arch),
                        model.config().n_layer, device.str(), a.dtype, prompt.size(),
                        a.temperature == 0 ? std::string("greedy")
                                           : fmt::format("sampling T={} top-k={} top-p={} seed={}", a.temperature,
                                                         a.top_k, a.top_p, a.seed)));

  Utf8Stream stream;
  const GenerateResult r = generate(model, scales, prompt, opts, [&](int64_t id) {
    if (std::find(opts.stop_ids.begin(), opts.stop_ids.end(), id) != opts.stop_ids.end()) return;
    const std::string text = stream.push(tok.token_bytes(static_cast<uint32_t>(id)));
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  });
  const std::string tail = stream.finish() + "\n";
  std::fwrite(tail.data(), 1, tail.size(), stdout);
  std::fflush(stdout);
  const size_t n = r.tokens.size();
  log::info(fmt::format("{} new tokens ({}); prefill {:.3f} s ({:.0f} tok/s), decode {:.3f} s ({:.1f} tok/s)", n,
                        r.stopped ? "stopped at EOS" : "max-new-tokens reached", r.prefill_seconds,
                        r.prefill_seconds > 0 ? static_cast<double>(prompt.size()) / r.prefill_seconds : 0.0,
                        r.decode_seconds,
                        r.decode_seconds > 0 && n > 1 ? static_cast<double>(n - 1) / r.decode_seconds : 0.0));
}

}  // namespace

void register_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "continue a prompt (prefill, then recurrent decoding with the Δ scales)");
  cmd->add_option("--model", a->model, "model directory (Hugging Face or state-spaces layout)")->required();
  cmd->add_option("--prompt", a->prompt, "prompt text (UTF-8)")->required();
  cmd->add_option("--max-new-tokens", a->max_new_tokens, "stop after this many new tokens (or at EOS)")
      ->capture_default_str();
  cmd->add_option("--factors", a->factors, "Δ-scale factors file (mambaextend.factors/v1 or a JSON array)");
  cmd->add_option("--temperature", a->temperature, "0: greedy; > 0: sample from softmax(logits / T)")
      ->capture_default_str();
  cmd->add_option("--top-k", a->top_k, "sample among the k most likely tokens (0: off)")->capture_default_str();
  cmd->add_option("--top-p", a->top_p, "nucleus sampling: smallest set with probability >= p (1: off)")
      ->capture_default_str();
  cmd->add_option("--seed", a->seed, "sampling seed (std::mt19937_64); one seed gives one output")
      ->capture_default_str();
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json (default: DIR/tokenizer.json)");
  cmd->add_option("--device", a->device, "cpu|cuda")->capture_default_str();
  cmd->add_option("--dtype", a->dtype, "fp32|bf16 (weights and activations; the state is fp32)")->capture_default_str();
  cmd->add_option("--segment-len", a->segment_len, "prefill segment length (default 4096 on cpu, 16384 on cuda)");
  cmd->callback([a] { run_generate(*a); });
}

}  // namespace mx::cli
