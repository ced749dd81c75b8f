// `mambaextend eval-ppl`: perplexity of a model over a corpus at many context lengths in one run
// (design.md "Evaluation protocols"; the work is src/eval/). Flags may also come from --config FILE, a JSON
// object with the flags' names as keys ("max-docs" or "max_docs"); a flag on the command line wins.
// Output: a table on stdout, logs and a progress bar with an ETA on stderr (redrawn in place on a terminal,
// one line per ~10% otherwise), and with --out a JSON report written atomically, including the process's
// peak RSS. A length that no document reaches is reported with ppl null and a note, and warned about.
#include <ATen/Context.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "cli/device.h"
#include "cli/config_file.h"
#include "mambaextend/checkpoint.h"
#include "mambaextend/corpus.h"
#include "mambaextend/error.h"
#include "mambaextend/eval.h"
#include "mambaextend/factors.h"
#include "mambaextend/io.h"
#include "mambaextend/log.h"
#include "mambaextend/model.h"
#include "mambaextend/tokenizer.h"

namespace mx::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct EvalPplArgs {
  std::string model, data, lengths, protocol = "pg19", factors, tokenizer, device = "cpu", dtype = "fp32", out,
      cache_dir, config;
  int64_t max_docs = 0, windows_per_doc = 10, pred_len = 100, segment_len = 0, batch = 0;
  std::map<std::string, CLI::Option*> flags;  // flag name (no dashes) -> option, to see what the command line set
};

// ---- argument checks ------------------------------------------------------------------------------------

std::vector<int64_t> parse_lengths(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    const std::string t = b == std::string::npos ? "" : item.substr(b, e - b + 1);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(t, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (t.empty() || used != t.size() || v < 2)
      throw UsageError(fmt::format("--lengths: '{}' is not a context length (an integer >= 2)", t));
    out.push_back(v);
  }
  if (out.empty()) throw UsageError("--lengths: give at least one context length, e.g. --lengths 2048,4096");
  return out;
}

fs::path resolve_tokenizer(const EvalPplArgs& a) {
  if (!a.tokenizer.empty()) return a.tokenizer;
  const fs::path p = fs::path(a.model) / "tokenizer.json";
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) return p;
  throw UsageError(fmt::format("no tokenizer: {} does not exist; pass --tokenizer FILE (a Hugging Face "
                               "tokenizer.json)", p.string()));
}

double peak_rss_mb() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

std::string hms(double seconds) {
  const auto s = static_cast<long long>(std::max(0.0, seconds) + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
                   : fmt::format("{}:{:02}", s / 60, s % 60);
}

// ---- progress bar on stderr -----------------------------------------------------------------------------

class Progress {
 public:
  Progress() : tty_(::isatty(STDERR_FILENO) == 1), t0_(std::chrono::steady_clock::now()) {}

  void update(int64_t done, int64_t total, int64_t length) {
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - t0_).count();
    const double frac = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
    const std::string eta = done > 0 ? hms(elapsed * (1.0 - frac) / frac) : "?";
    const std::string rate = elapsed > 0 ? fmt::format("{:.0f} tok/s", static_cast<double>(done) / elapsed) : "";
    if (tty_) {
      if (done < total && std::chrono::duration<double>(now - last_draw_).count() < 0.2) return;
      last_draw_ = now;
      const int width = 30, filled = static_cast<int>(frac * width);
      std::fprintf(stderr, "\r[%s%s] %3.0f%%  L=%lld  %lld/%lld tokens  %s  ETA %s   ",
                   std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(), 100 * frac,
                   static_cast<long long>(length), static_cast<long long>(done), static_cast<long long>(total),
                   rate.c_str(), eta.c_str());
      if (done >= total) std::fputc('\n', stderr);
      std::fflush(stderr);
    } else {
      const int decile = static_cast<int>(frac * 10);
      if (decile <= last_decile_) return;
      last_decile_ = decile;
      log::info(fmt::format("progress {:3.0f}%  L={}  {}/{} tokens  {}  elapsed {}  ETA {}", 100 * frac, length, done,
                            total, rate, hms(elapsed), eta));
    }
  }

 private:
  bool tty_;
  std::chrono::steady_clock::time_point t0_, last_draw_{};
  int last_decile_ = 0;
};

// ---- output -------------------------------------------------------------------------------------------------

void print_table(const PerplexityReport& rep, const std::string& model_name) {
  fmt::print("eval-ppl  model {}  protocol {}  {} documents\n", model_name, protocol_name(rep.options.protocol),
             rep.documents);
  fmt::print("{:>8} {:>8} {:>10} {:>12} {:>10} {:>8} {:>8} {:>8}\n", "length", "windows", "tokens", "ppl", "± se",
             "bpb", "docs", "skipped");
  for (const auto& r : rep.results) {
    const std::string ppl = r.ppl ? fmt::format("{:.3f}", *r.ppl) : "n/a";
    const std::string se = r.ppl_se ? fmt::format("{:.3f}", *r.ppl_se) : "n/a";
    const std::string bpb = r.bits_per_byte ? fmt::format("{:.4f}", *r.bits_per_byte) : "n/a";
    fmt::print("{:>8} {:>8} {:>10} {:>12} {:>10} {:>8} {:>8} {:>8}{}\n", r.length, r.windows, r.tokens, ppl, se, bpb,
               r.docs_used, r.docs_skipped, r.note.empty() ? "" : "  (" + r.note + ")");
  }
  std::fflush(stdout);
}

void run_eval_ppl(EvalPplArgs& a) {
  if (!a.config.empty()) apply_config_file(a.config, a.flags, "eval-ppl");
  for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"model", &a.model},
                                    {"data", &a.data}, {"lengths", &a.lengths}})
    if (value->empty()) throw UsageError(fmt::format("eval-ppl: --{} is required (or key \"{}\" in --config)", name, name));
  EvalOptions opts;
  opts.protocol = parse_protocol(a.protocol);
  opts.lengths = parse_lengths(a.lengths);
  if (a.dtype != "fp32" && a.dtype != "bf16") throw UsageError("--dtype '" + a.dtype + "' is not one of fp32, bf16");
  if (a.max_docs < 0) throw UsageError(fmt::format("--max-docs {} must be at least 1 (0: all documents)", a.max_docs));
  if (a.segment_len < 0) throw UsageError(fmt::format("--segment-len {} must be positive (0: default)", a.segment_len));
  opts.windows_per_doc = a.windows_per_doc;
  opts.pred_len = a.pred_len;
  opts.max_docs = a.max_docs > 0 ? a.max_docs : -1;
  opts.segment_len = a.segment_len > 0 ? a.segment_len : (a.device == "cuda" ? 16384 : 4096);
  opts.batch = a.batch;
  for (int64_t L : opts.lengths)  // pred-len / windows-per-doc against every length, before any heavy work
    make_windows({}, opts.protocol, L, opts.windows_per_doc, opts.pred_len, opts.max_docs);
  if (opts.batch < 0) throw UsageError(fmt::format("--batch {} must be 0 (auto) or positive", opts.batch));
  if (!a.out.empty()) {
    const fs::path dir = fs::path(a.out).has_parent_path() ? fs::path(a.out).parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
      throw IoError(fmt::format("--out {}: directory {} does not exist", a.out, dir.string()));
  }
  const c10::Device device = parse_device(a.device);
  const fs::path tok_path = resolve_tokenizer(a);

  const Tokenizer tok = Tokenizer::from_file(tok_path);
  const Checkpoint ckpt = load_checkpoint(a.model);
  const MambaLM model(ckpt, ModelOptions{a.dtype == "bf16" ? at::kBFloat16 : at::kFloat, device});
  const ModelConfig& cfg = model.config();
  log::info(fmt::format("model {}: {} {} layers, d_model {}, {} parameters ({}), {} {}", a.model, arch_name(cfg.arch),
                        cfg.n_layer, cfg.d_model, ckpt.n_params, dtype_name(ckpt.dtype), device.str(), a.dtype));
  DtScales scales;
  std::string factors_text;
  if (!a.factors.empty()) {
    factors_text = read_factors_text(a.factors);
    scales = parse_factors(factors_text, cfg, "factors file " + a.factors, ckpt.config_sha256);
    log::info(fmt::format("Δ scales from {}", a.factors));
  }
  const auto texts = read_corpus(a.data);
  // Held-out check: a factors file records the fingerprint of its calibration data; evaluating on the same
  // data is allowed (a user may want it) but never silent.
  json calib_overlap = nullptr;
  if (!a.factors.empty()) {
    const std::string calib_sha = factors_calibration_sha256(factors_text);
    if (!calib_sha.empty()) {
      calib_overlap = corpus_sha256(a.data, texts) == calib_sha;
      if (calib_overlap.get<bool>())
        log::warn(fmt::format("--data {} is the calibration data of {} (same sha256): this perplexity is not held out",
                              a.data, a.factors));
      else
        log::info(fmt::format("evaluation data {} differs from the calibration data of {}", a.data, a.factors));
    }
  }
  const auto docs = tokenize_corpus(texts, tok, a.cache_dir);
  int64_t corpus_tokens = 0, longest = 0, empty_docs = 0;
  for (const auto& d : docs) {
    corpus_tokens += static_cast<int64_t>(d.ids.size());
    longest = std::max<int64_t>(longest, static_cast<int64_t>(d.ids.size()));
    empty_docs += d.ids.empty() ? 1 : 0;
  }
  log::info(fmt::format("data {}: {} documents ({} empty), {} tokens, longest {}", a.data, docs.size(), empty_docs,
                        corpus_tokens, longest));
  for (int64_t L : opts.lengths)
    if (L > longest) log::warn(fmt::format("no document has >= {} tokens (longest: {}): L = {} is reported as n/a", L, longest, L));

  Progress bar;
  const PerplexityReport rep = evaluate_perplexity(
      model, scales, docs, tok, opts, [&](int64_t done, int64_t total, int64_t L) { bar.update(done, total, L); });
  for (const auto& r : rep.results)
    if (r.windows > 0 && !r.ppl) log::warn(fmt::format("L = {}: {}", r.length, r.note));
  print_table(rep, fs::path(a.model).filename().string().empty() ? a.model : fs::path(a.model).filename().string());

  if (a.out.empty()) return;
  json results = json::array();
  for (const auto& r : rep.results) results.push_back(length_result_json(r));
  json factors = nullptr;
  if (!a.factors.empty()) {
    factors = {{"path", a.factors}, {"sha256", sha256_hex(factors_text)}, {"evaluated_on_calibration_data", calib_overlap}};
  }
  const json j = {
      {"format", "mambaextend.eval-ppl/v1"},
      {"tool_version", MAMBAEXTEND_VERSION},
      {"created", utc_now()},
      {"model",
       {{"dir", a.model}, {"arch", arch_name(cfg.arch)}, {"n_layer", cfg.n_layer}, {"d_model", cfg.d_model},
        {"vocab_size", cfg.vocab_size}, {"n_params", ckpt.n_params}, {"format", ckpt.format},
        {"weights_dtype", dtype_name(ckpt.dtype)}, {"config_sha256", ckpt.config_sha256}}},
      {"tokenizer", {{"path", tok_path.string()}, {"sha256", tok.sha256()}}},
      {"data", {{"path", a.data}, {"documents", docs.size()}, {"empty_documents", empty_docs},
                {"tokens", corpus_tokens}, {"longest_document_tokens", longest}}},
      {"factors", factors},
      {"protocol", protocol_name(opts.protocol)},
      {"settings",
       {{"lengths", opts.lengths},
        {"windows_per_doc", opts.protocol == Protocol::PG19 ? json(opts.windows_per_doc) : json(nullptr)},
        {"pred_len", opts.protocol == Protocol::PG19 ? json(opts.pred_len) : json(nullptr)},
        {"max_docs", opts.max_docs > 0 ? json(opts.max_docs) : json(nullptr)},
        {"segment_len", opts.segment_len}, {"batch", opts.batch > 0 ? json(opts.batch) : json("auto")},
        {"device", device.str()}, {"dtype", a.dtype}}},
      {"statistics", statistics_json(opts.protocol)},
      {"results", results},
      {"seconds", rep.seconds},
      {"peak_rss_mb", peak_rss_mb()}};
  write_file_atomic(a.out, j.dump(2) + "\n");
  log::info("wrote " + a.out);
}

}  // namespace

void register_eval_ppl(CLI::App& app) {
  auto a = std::make_shared<EvalPplArgs>();
  CLI::App* cmd = app.add_subcommand("eval-ppl", "Perplexity at many context lengths (pg19 or proofpile protocol)");
  auto& f = a->flags;
  f["model"] = cmd->add_option("--model", a->model, "model directory (Hugging Face or state-spaces layout)");
  f["data"] = cmd->add_option("--data", a->data, "directory of UTF-8 .txt files, one .txt file, or a .jsonl with \"text\"");
  f["lengths"] = cmd->add_option("--lengths", a->lengths, "context lengths, comma-separated: 2048,4096,...");
  f["protocol"] = cmd->add_option("--protocol", a->protocol, "pg19|proofpile")->capture_default_str();
  f["factors"] = cmd->add_option("--factors", a->factors, "Δ-scale factors file (mambaextend.factors/v1 or a JSON array)");
  f["tokenizer"] = cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json (default: DIR/tokenizer.json)");
  f["device"] = cmd->add_option("--device", a->device, "cpu|cuda")->capture_default_str();
  f["dtype"] = cmd->add_option("--dtype", a->dtype, "fp32|bf16 (weights and activations; the state is fp32)")
                   ->capture_default_str();
  f["max-docs"] = cmd->add_option("--max-docs", a->max_docs, "use at most N documents (those with >= L tokens) per length; 0: all")
                       ->capture_default_str();
  f["windows-per-doc"] = cmd->add_option("--windows-per-doc", a->windows_per_doc, "pg19: windows per document")
                             ->capture_default_str();
  f["pred-len"] = cmd->add_option("--pred-len", a->pred_len, "pg19: scored tokens at the end of each window")
                      ->capture_default_str();
  f["segment-len"] = cmd->add_option("--segment-len", a->segment_len,
                                     "tokens per forward segment, state carried between them (default 4096 on "
                                     "cpu, 16384 on cuda)");
  f["batch"] = cmd->add_option("--batch", a->batch, "windows per forward (0: auto, max(1, segment-len / L))")
                   ->capture_default_str();
  f["cache-dir"] = cmd->add_option("--cache-dir", a->cache_dir, "token cache directory (default $MAMBAEXTEND_CACHE, "
                                                                "else ~/.cache/mambaextend)");
  f["out"] = cmd->add_option("--out", a->out, "JSON report, written atomically");
  f["config"] = cmd->add_option("--config", a->config, "JSON file with the same keys as the flags (flags override)");
  cmd->callback([a] { run_eval_ppl(*a); });
}

}  // namespace mx::cli
