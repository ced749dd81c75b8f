// `mambaextend passkey`: the passkey retrieval grid (passkey.h, method.md §4) over --lengths × --depths with
// the haystack from --data, optionally with calibrated Δ scales (--factors). Output: one log line per sample on
// stderr, a depth × length table per success rule on stdout, --out JSON (cells, every sample, the protocol)
// written atomically, and --heatmap FILE.svg (+ FILE.png with cairo: report/figures.h). Flags may also come from --config FILE (config_file.h; configs/).
#include <ATen/Context.h>
#include <fmt/format.h>

#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "cli/device.h"
#include "cli/config_file.h"
#include "mambaextend/checkpoint.h"
#include "mambaextend/corpus.h"
#include "mambaextend/error.h"
#include "mambaextend/factors.h"
#include "mambaextend/io.h"
#include "mambaextend/log.h"
#include "mambaextend/model.h"
#include "mambaextend/passkey.h"
#include "mambaextend/tokenizer.h"
#include "report/figures.h"

namespace mx::cli {

namespace {

namespace fs = std::filesystem;

struct PasskeyArgs {
  std::string model, lengths, depths = "0,0.25,0.5,0.75,1", factors, out, data, heatmap, tokenizer, device = "cpu",
                                  dtype = "fp32";
  uint64_t seed = 0;
  int64_t samples = 1, segment_len = 0;
  std::string config;
  std::map<std::string, CLI::Option*> flags;  // flag name (no dashes) -> option, for --config
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    out.push_back(b == std::string::npos ? "" : item.substr(b, e - b + 1));
  }
  return out;
}

std::vector<int64_t> parse_lengths(const std::string& s) {
  std::vector<int64_t> out;
  for (const auto& t : split_list(s)) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (t.empty() || used != t.size() || v < 1)
      throw UsageError(fmt::format("--lengths: '{}' is not a context length (a positive integer)", t));
    out.push_back(v);
  }
  return out;
}

std::vector<double> parse_depths(const std::string& s) {
  std::vector<double> out;
  for (const auto& t : split_list(s)) {
    size_t used = 0;
    double v = -1;
    try {
      v = std::stod(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (t.empty() || used != t.size()) throw UsageError(fmt::format("--depths: '{}' is not a number in [0, 1]", t));
    out.push_back(v);
  }
  return out;
}

void check_out_dir(const std::string& flag, const std::string& path) {
  if (path.empty()) return;
  const fs::path dir = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw IoError(fmt::format("{} {}: directory {} does not exist", flag, path, dir.string()));
}

void print_tables(const PasskeyReport& rep, const std::string& model_name) {
  fmt::print("passkey  model {}  {} samples per cell  seed {}\n", model_name, rep.options.samples, rep.options.seed);
  // rule 0: published, 1: strict (success %), 2: teacher-forced answer NLL (nats/token)
  auto value = [](const PasskeyCell& c, int rule) {
    if (rule == 2) return c.answer_nll;
    if (rule == 3) return c.control_nll - c.answer_nll;
    return 100.0 * static_cast<double>(rule == 0 ? c.published : c.strict) / static_cast<double>(c.samples);
  };
  const char* titles[] = {"published rule (success %", "strict rule (success %",
                          "answer NLL (teacher-forced nats/token of key + EOS",
                          "retrieval margin (control-key NLL - answer NLL, nats/token; > 0: prefers the shown key"};
  for (int rule = 0; rule < 4; ++rule) {
    fmt::print("\n{}, rows: needle depth, columns: context length)\n", titles[rule]);
    fmt::print("{:>7}", "depth");
    for (int64_t L : rep.options.lengths) fmt::print(" {:>7}", L);
    fmt::print(" {:>7}\n", "mean");
    auto row_mean = [&](auto keep) {
      double sum = 0;
      int64_t n = 0;
      for (const auto& c : rep.cells)
        if (keep(c)) {
          sum += value(c, rule) * static_cast<double>(c.samples);
          n += c.samples;
        }
      return n ? sum / static_cast<double>(n) : 0.0;
    };
    const std::string cell_fmt = rule >= 2 ? " {:>7.3f}" : " {:>6.0f}%", mean_fmt = rule >= 2 ? " {:>7.3f}" : " {:>6.1f}%";
    for (double d : rep.options.depths) {
      fmt::print("{:>7g}", d);
      for (int64_t L : rep.options.lengths)
        for (const auto& c : rep.cells)
          if (c.length == L && c.depth == d) fmt::print(fmt::runtime(cell_fmt), value(c, rule));
      fmt::print(fmt::runtime(mean_fmt), row_mean([&](const PasskeyCell& c) { return c.depth == d; }));
      fmt::print("\n");
    }
    fmt::print("{:>7}", "mean");
    for (int64_t L : rep.options.lengths)
      fmt::print(fmt::runtime(mean_fmt), row_mean([&](const PasskeyCell& c) { return c.length == L; }));
    fmt::print(fmt::runtime(mean_fmt), row_mean([](const PasskeyCell&) { return true; }));
    fmt::print("\n");
  }
  std::fflush(stdout);
}

void run_passkey(PasskeyArgs& a) {
  if (!a.config.empty()) apply_config_file(a.config, a.flags, "passkey");
  if (a.model.empty()) throw UsageError("passkey: --model DIR is required (or key \"model\" in --config)");
  if (a.lengths.empty()) throw UsageError("passkey: --lengths is required (or key \"lengths\" in --config)");
  PasskeyOptions opts;
  opts.lengths = parse_lengths(a.lengths);
  opts.depths = parse_depths(a.depths);
  opts.samples = a.samples;
  opts.seed = a.seed;
  if (a.data.empty())
    throw UsageError("passkey: --data is required: the haystack corpus (Gutenberg books, e.g. assets/books/test)");
  if (a.dtype != "fp32" && a.dtype != "bf16") throw UsageError("--dtype '" + a.dtype + "' is not one of fp32, bf16");
  if (a.segment_len < 0) throw UsageError(fmt::format("--segment-len {} must be positive (0: default)", a.segment_len));
  const c10::Device device = parse_device(a.device);
  opts.segment_len = a.segment_len > 0 ? a.segment_len : (device.is_cuda() ? 16384 : 4096);
  check_passkey_options(opts);
  check_out_dir("--out", a.out);
  check_out_dir("--heatmap", a.heatmap);
  fs::path tok_path = a.tokenizer;
  if (tok_path.empty()) {
    tok_path = fs::path(a.model) / "tokenizer.json";
    std::error_code ec;
    if (!fs::is_regular_file(tok_path, ec))
      throw UsageError(fmt::format("no tokenizer: {} does not exist; pass --tokenizer FILE (a Hugging Face "
                                   "tokenizer.json)", tok_path.string()));
  }

  const Tokenizer tok = Tokenizer::from_file(tok_path);
  const fs::path haystack = passkey_eval_corpus(a.data);  // D/test when D holds the splits
  const auto docs = read_corpus(haystack);
  const SentencePool pool = make_sentence_pool(docs, tok);
  log::info(fmt::format("haystack {}: {} documents, {} sentences of >= {} tokens, {} tokens", haystack.string(), docs.size(),
                        pool.sentences.size(), kPasskeyMinSentenceTokens, pool.tokens));
  const Checkpoint ckpt = load_checkpoint(a.model);
  const MambaLM model(ckpt, ModelOptions{a.dtype == "bf16" ? at::kBFloat16 : at::kFloat, device});
  const ModelConfig& cfg = model.config();
  DtScales scales;
  if (!a.factors.empty()) {
    scales = load_factors(a.factors, cfg, ckpt.config_sha256);
    log::info(fmt::format("Δ scales from {} (prefill and decode)", a.factors));
  }
  log::info(fmt::format("model {}: {} {} layers, {} {}; {} lengths x {} depths x {} samples", a.model, arch_name(cfg.arch),
                        cfg.n_layer, device.str(), a.dtype, opts.lengths.size(), opts.depths.size(), opts.samples));

  const PasskeyReport rep = evaluate_passkey(model, scales, tok, pool, opts, [](int64_t done, int64_t total,
                                                                                 const PasskeyResult& r) {
    std::string shown = r.output;
    for (auto& c : shown)
      if (c == '\n') c = ' ';
    log::info(fmt::format("[{}/{}] L={} depth={:g} key={} needle@{} -> \"{}\" published:{} strict:{} answer-NLL {:.3f} "
                          "(control {:.3f}) ({:.1f} s)", done, total, r.sample.length, r.sample.depth, r.sample.key,
                          r.sample.needle_offset, shown, r.success_published ? "yes" : "no",
                          r.success_strict ? "yes" : "no", r.answer_nll, r.control_nll, r.seconds));
  });
  const std::string model_name =
      fs::path(a.model).filename().string().empty() ? a.model : fs::path(a.model).filename().string();
  print_tables(rep, model_name);
  log::info(fmt::format("passkey grid done in {:.1f} s", rep.seconds));

  if (!a.out.empty()) {
    nlohmann::json j = passkey_report_json(rep);
    j["format"] = "mambaextend.passkey/v1";
    j["model"] = {{"path", a.model}, {"arch", arch_name(cfg.arch)}, {"n_layer", cfg.n_layer},
                  {"d_model", cfg.d_model}, {"config_sha256", ckpt.config_sha256}};
    j["factors"] = a.factors.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.factors);
    j["data"] = {{"path", a.data}, {"haystack", haystack.string()}, {"documents", docs.size()}, {"sentences", pool.sentences.size()},
                 {"tokens", pool.tokens}};
    j["tokenizer"] = {{"path", tok_path.string()}, {"sha256", tok.sha256()}};
    j["device"] = device.str();
    j["dtype"] = a.dtype;
    j["tool_version"] = MAMBAEXTEND_VERSION;
    j["created"] = utc_now();
    write_file_atomic(a.out, j.dump(2) + "\n");
    log::info("wrote " + a.out);
  }
  if (!a.heatmap.empty()) {
    const std::string title = fmt::format("passkey retrieval: {}{}", model_name,
                                          a.factors.empty() ? " (vanilla)" : " + " + fs::path(a.factors).filename().string());
    std::vector<report::PasskeyCount> cells;
    for (const auto& c : rep.cells) cells.push_back({c.length, c.depth, c.samples, c.published, c.strict});
    // --heatmap F.svg writes F.svg and, when built with cairo, F.png (the report command's figure code).
    fs::path stem = a.heatmap;
    if (stem.extension() == ".svg") stem.replace_extension();
    for (const auto& p : report::write_figure(report::passkey_rules_figure(cells, title), stem))
      log::info("wrote " + p.string());
  }
}

}  // namespace

void register_passkey(CLI::App& app) {
  auto a = std::make_shared<PasskeyArgs>();
  auto* cmd = app.add_subcommand("passkey", "passkey retrieval grid (depths x lengths), published and strict success rules");
  auto& f = a->flags;
  f["model"] = cmd->add_option("--model", a->model, "model directory (Hugging Face or state-spaces layout)");
  f["lengths"] = cmd->add_option("--lengths", a->lengths, "context lengths in tokens, comma-separated: 1024,2048,...");
  f["depths"] = cmd->add_option("--depths", a->depths, "needle depths in [0, 1], comma-separated")->capture_default_str();
  f["data"] = cmd->add_option("--data", a->data, "haystack corpus (required): a directory of .txt books, a .txt or a .jsonl; a directory with a test/ "
                  "split uses D/test (calibrate --objective passkey uses D/train)");
  f["factors"] = cmd->add_option("--factors", a->factors, "Δ-scale factors file (mambaextend.factors/v1 or a JSON array)");
  f["samples"] = cmd->add_option("--samples", a->samples, "samples per cell (the published protocol: 1)")->capture_default_str();
  f["seed"] = cmd->add_option("--seed", a->seed, "seed of the keys, haystacks and needle positions")->capture_default_str();
  f["out"] = cmd->add_option("--out", a->out, "JSON report (cells, every sample, the protocol), written atomically");
  f["heatmap"] = cmd->add_option("--heatmap", a->heatmap, "depth x length heatmap per success rule: FILE.svg (and FILE.png when built with cairo)");
  f["tokenizer"] = cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json (default: DIR/tokenizer.json)");
  f["device"] = cmd->add_option("--device", a->device, "cpu|cuda")->capture_default_str();
  f["dtype"] = cmd->add_option("--dtype", a->dtype, "fp32|bf16 (weights and activations; the state is fp32)")->capture_default_str();
  f["segment-len"] = cmd->add_option("--segment-len", a->segment_len, "prefill segment length (default 4096 on cpu, 16384 on cuda)");
  cmd->add_option("--config", a->config, "JSON file with the same keys as the flags (flags override it); see configs/");
  cmd->callback([a] { run_passkey(*a); });
}

}  // namespace mx::cli
