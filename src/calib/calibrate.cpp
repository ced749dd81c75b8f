// `mambaextend calibrate` as a library call (calibrate.h): calibration windows, initial scales, the optimiser
// (spsa.cpp / adam.cpp) on the objective of backprop.cpp, the resume state file and the factors file.
//   * Windows: `samples` distinct (document, start) pairs drawn uniformly with a seeded mt19937_64 over every
//     start of every document with n >= L tokens; pg19 scores the last pred_len tokens, proofpile is BOS +
//     L−1 tokens with all L−1 predictions scored. The corpus is the calibration data only: the factors file
//     records its path, its sha256 and the windows, and says that evaluation must use different files.
//   * Resume: after every iteration the optimiser's whole state (scales, objective, best point, Adam moments,
//     permutation, RNG state, history) and a fingerprint of every setting that changes the result are written
//     atomically to "<out>.state.json". `resume` continues from it (refusing a file whose fingerprint differs)
//     and, the arithmetic being deterministic, ends with the factors of an uninterrupted run, bit for bit.
//     The state file is removed once the factors file is written.
//   * Factors file: design.md's mambaextend.factors/v1, written atomically; scales never contain NaN.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>

#include "calib/rng.h"
#include "mambaextend/calibrate.h"
#include "mambaextend/checkpoint.h"
#include "mambaextend/error.h"
#include "mambaextend/factors.h"
#include "mambaextend/io.h"
#include "mambaextend/log.h"
#include "mambaextend/passkey.h"
#include "mambaextend/tokenizer.h"

namespace mx {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int64_t kBos = 0;  // GPT-NeoX <|endoftext|>
constexpr const char* kStateFormat = "mambaextend.calibrate-state/v1";

json num(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }

std::string read_text(const fs::path& p, const char* what) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw IoError(fmt::format("cannot open {} {}", what, p.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<double> layer_values(const std::vector<double>& s, const ScaleLayout& lay, int64_t l) {
  return {s.begin() + l * lay.width, s.begin() + (l + 1) * lay.width};
}

// Initial scales: all ones, or a factors file (bare list accepted), checked against the model by load_factors.
std::vector<double> initial_scales(const CalibrateOptions& o, const ModelConfig& cfg, const std::string& cfg_sha,
                                   const ScaleLayout& lay) {
  std::vector<double> s(static_cast<size_t>(lay.size()), 1.0);
  if (o.init_factors.empty()) return s;
  const DtScales init = load_factors(o.init_factors, cfg, cfg_sha);
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    const auto t = init.per_layer[l].to(at::kDouble).contiguous();
    const int64_t n = t.numel();
    if (n != 1 && lay.width == 1)
      throw UsageError(fmt::format("--init {}: layer {} has {} values (per channel/head), but --granularity layer "
                                   "calibrates one value per layer; use --granularity channel",
                                   o.init_factors, l, n));
    for (int64_t i = 0; i < lay.width; ++i) s[l * lay.width + i] = t.data_ptr<double>()[n == 1 ? 0 : i];
  }
  return s;
}

void check_options(const CalibrateOptions& o) {
  if (o.method != "zo" && o.method != "bp") throw UsageError("--method '" + o.method + "' must be zo or bp");
  if (o.granularity != "layer" && o.granularity != "channel")
    throw UsageError("--granularity '" + o.granularity + "' must be layer or channel");
  if (o.objective != "nll" && o.objective != "ppl" && o.objective != "passkey")
    throw UsageError("--objective '" + o.objective + "' must be nll, ppl or passkey");
  if (o.length < 2) throw UsageError(fmt::format("--length {} must be at least 2 tokens", o.length));
  if (o.samples < 1) throw UsageError(fmt::format("--samples {} must be at least 1 (the number of calibration windows)", o.samples));
  if (o.segment_len < 1) throw UsageError(fmt::format("--segment-len {} must be at least 1", o.segment_len));
  if (o.eval_batch < 0) throw UsageError(fmt::format("--eval-batch {} must be 0 (auto) or positive", o.eval_batch));
  if (o.dtype != "fp32" && o.dtype != "bf16" && o.dtype != "fp64")
    throw UsageError("--dtype '" + o.dtype + "' must be fp32, bf16 or fp64");
  if (o.method == "zo" && o.spsa.iterations < 0) throw UsageError("--iterations must be >= 0");
  if (o.method == "bp" && (o.adam.steps < 0 || o.adam.epochs < 0 || o.adam.batch < 0))
    throw UsageError("--iterations, --epochs and --batch must be >= 0");
}

}  // namespace

fs::path resume_state_path(const fs::path& out) { return fs::path(out.string() + ".state.json"); }

CalibrationSet sample_calibration_set(const std::vector<TokenizedDocument>& docs, Protocol protocol, int64_t L,
                                      int64_t samples, int64_t pred_len, uint64_t seed) {
  if (samples < 1) throw UsageError(fmt::format("--samples {} must be at least 1", samples));
  if (L < 2) throw UsageError(fmt::format("--length {} must be at least 2 tokens", L));
  if (protocol == Protocol::PG19 && (pred_len < 1 || pred_len >= L))
    throw UsageError(fmt::format("--pred-len {} must be between 1 and L - 1 = {}", pred_len, L - 1));
  std::vector<uint64_t> cum;  // cum[d] = starts in documents before d
  uint64_t total = 0;
  size_t longest = 0;
  for (const auto& d : docs) {
    cum.push_back(total);
    longest = std::max(longest, d.ids.size());
    if (static_cast<int64_t>(d.ids.size()) >= L) total += static_cast<uint64_t>(static_cast<int64_t>(d.ids.size()) - L + 1);
  }
  if (total == 0)
    throw DataError(fmt::format("no calibration document has --length {} tokens: the longest of the {} documents has "
                                "{} tokens", L, docs.size(), longest));
  if (total < static_cast<uint64_t>(samples))
    throw DataError(fmt::format("--samples {}: the calibration data has only {} distinct windows of {} tokens",
                                samples, total, L));
  CalibrationSet set;
  set.protocol = protocol;
  set.length = L;
  set.pred_len = pred_len;
  set.seed = seed;
  for (const auto& d : docs) set.doc_names.push_back(d.name);
  calib::Rng rng(seed);
  std::set<uint64_t> seen;
  while (static_cast<int64_t>(set.windows.size()) < samples) {
    const uint64_t r = calib::uniform_below(rng, total);
    if (!seen.insert(r).second) continue;
    // The document holding start number r: the last d with cum[d] <= r and a window in it.
    size_t d = static_cast<size_t>(std::upper_bound(cum.begin(), cum.end(), r) - cum.begin()) - 1;
    while (static_cast<int64_t>(docs[d].ids.size()) < L) --d;  // documents without windows share their cum
    const int64_t start = static_cast<int64_t>(r - cum[d]);
    const auto& ids = docs[d].ids;
    ScoredWindow w;
    w.doc = static_cast<int64_t>(d);
    w.start = start;
    if (protocol == Protocol::PG19) {
      w.ids.assign(ids.begin() + start, ids.begin() + start + L);
      w.score_from = L - pred_len - 1;
    } else {
      w.ids.push_back(kBos);
      w.ids.insert(w.ids.end(), ids.begin() + start, ids.begin() + start + L - 1);
      w.score_from = 0;
    }
    set.windows.push_back(std::move(w));
  }
  return set;
}

CalibrateResult run_calibration(const CalibrateOptions& o) {
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  CalibrateResult res;
  check_options(o);
  const Protocol protocol = parse_protocol(o.protocol);
  const Checkpoint ck = load_checkpoint(o.model_dir);
  const c10::Device dev(o.device);
  if (dev.is_cuda() && !at::hasCUDA()) throw UsageError("--device cuda but no CUDA device is available");
  const auto dtype = o.dtype == "bf16" ? at::kBFloat16 : o.dtype == "fp64" ? at::kDouble : at::kFloat;
  const MambaLM model(ck, ModelOptions{dtype, dev});
  const auto& cfg = model.config();
  if (!o.base.empty()) check_scales(cfg, o.base, "base factors");

  // Calibration data.
  const fs::path tok_path = o.tokenizer.empty() ? fs::path(o.model_dir) / "tokenizer.json" : fs::path(o.tokenizer);
  if (!fs::is_regular_file(tok_path))
    throw UsageError(fmt::format("no tokenizer: {} does not exist; pass --tokenizer FILE", tok_path.string()));
  const Tokenizer tok = Tokenizer::from_file(tok_path);
  const auto texts = read_corpus(o.data);
  const std::string data_sha = corpus_sha256(o.data, texts);
  const auto docs = tokenize_corpus(texts, tok, o.cache_dir);
  // passkey (passkey.h): CE on key + EOS of generated samples with context L, haystack = --data's train split
  // minus the evaluation split's sentences; windows differ in length by a token or two, so one per forward.
  const bool passkey = o.objective == "passkey";
  const CalibrationSet set = passkey ? passkey_calibration_set(o.data, tok, o.length, o.samples, o.seed)
                                     : sample_calibration_set(docs, protocol, o.length, o.samples, o.pred_len, o.seed);
  const int64_t eval_batch = passkey ? 1 : o.eval_batch;
  std::set<std::string> used_docs;
  json windows = json::array();
  for (const auto& w : set.windows) {
    used_docs.insert(set.doc_names[w.doc]);
    windows.push_back({{"doc", set.doc_names[w.doc]}, {"start", w.start}});
  }
  log::info(fmt::format("calibration data: {} windows of {} tokens from {} of the {} documents of {} (sha256 {}); "
                        "these are calibration data only: evaluate on different files",
                        set.windows.size(), o.length, used_docs.size(), docs.size(), o.data, data_sha));

  const ScaleLayout lay{cfg.n_layer, o.granularity == "channel" ? cfg.scale_width() : 1};
  const std::vector<double> s0 = initial_scales(o, cfg, ck.config_sha256, lay);
  const bool ppl = o.objective == "ppl";
  const auto sd = model.state_dtype();
  auto objective = [&](const std::vector<double>& s) {
    const double nll = calibration_nll(model, to_dt_scales(s, lay, o.base, sd), set, {}, o.segment_len, eval_batch);
    return ppl ? std::exp(nll) : nll;
  };

  // Everything that changes the result goes into the fingerprint the resume file must match.
  json base_json = nullptr;
  if (!o.base.empty()) {
    base_json = json::array();
    for (const auto& t : o.base.per_layer) {
      const auto td = t.to(at::kDouble).contiguous();
      base_json.push_back(std::vector<double>(td.data_ptr<double>(), td.data_ptr<double>() + td.numel()));
    }
  }
  json hyper = {{"objective", o.objective}, {"protocol", o.protocol}, {"length", o.length}, {"samples", o.samples},
                {"pred_len", protocol == Protocol::PG19 ? json(o.pred_len) : json(nullptr)}, {"seed", o.seed},
                {"segment_len", o.segment_len}, {"eval_batch", o.eval_batch}, {"dtype", o.dtype},
                {"device", o.device}, {"init", o.init_factors.empty() ? json("ones") : json(o.init_factors)}};
  if (o.method == "zo") {
    hyper["spsa"] = o.spsa.to_json();
  } else {
    hyper["adam"] = o.adam.to_json();
    hyper["adam"]["total_steps"] = o.adam.total_steps(o.samples);
  }
  if (!base_json.is_null()) hyper["base_factors"] = base_json;
  const json fingerprint = {{"model_config_sha256", ck.config_sha256}, {"arch", arch_name(cfg.arch)},
                            {"n_layer", cfg.n_layer}, {"method", o.method}, {"granularity", o.granularity},
                            {"data_sha256", data_sha}, {"tokenizer_sha256", tok.sha256()},
                            {"initial_scales", s0}, {"hyperparameters", hyper}};

  // Start or resume.
  const fs::path state_path = resume_state_path(o.out);
  json state;
  if (o.resume && fs::exists(state_path)) {
    try {
      state = json::parse(read_text(state_path, "resume state file"));
    } catch (const json::exception& e) {
      throw ConfigError(fmt::format("resume state file {}: invalid JSON: {}", state_path.string(), e.what()));
    }
    if (!state.is_object() || state.value("format", "") != kStateFormat)
      throw ConfigError(fmt::format("resume state file {}: not a {} file", state_path.string(), kStateFormat));
    if (state.at("fingerprint") != fingerprint) {
      std::string diff;
      for (const auto& [k, v] : fingerprint.items())
        if (!state["fingerprint"].contains(k) || state["fingerprint"][k] != v) diff += (diff.empty() ? "" : ", ") + k;
      throw UsageError(fmt::format("--resume: {} was written by a run with different settings ({} differ); rerun "
                                   "with the same flags, or without --resume to start over", state_path.string(), diff));
    }
    log::info(fmt::format("resuming from {} after iteration {}", state_path.string(),
                          state.at("optimizer").at("iter").get<int64_t>()));
  } else {
    if (o.resume) log::warn(fmt::format("--resume: no state file {}; starting from the beginning", state_path.string()));
    else if (fs::exists(state_path)) log::warn(fmt::format("replacing the state file {} of an earlier run", state_path.string()));
    const auto t0 = Clock::now();
    const double f0 = objective(s0);
    res.initial_objective_seconds = since(t0);
    log::info(fmt::format("initial objective ({}) on the calibration set: {:.6f}", o.objective, f0));
    if (!std::isfinite(f0))
      throw Error(fmt::format("calibrate: the objective ({}) of model {} at the initial scales is {} on the calibration "
                              "windows of {}: the model's outputs are not finite (NaN / Inf weights?); refusing to "
                              "calibrate", o.objective, o.model_dir, f0, o.data));
    state = {{"format", kStateFormat}, {"fingerprint", fingerprint}, {"initial_objective", num(f0)},
             {"optimizer", o.method == "zo" ? spsa_init(s0, f0, o.seed) : adam_init(s0, o.samples, o.seed, o.adam)}};
    write_file_atomic(state_path, state.dump() + "\n");
  }

  int64_t done_this_run = 0;
  bool stopped = false;
  auto t_iter = Clock::now();
  const CheckpointFn checkpoint = [&](const json& opt) {
    state["optimizer"] = opt;
    write_file_atomic(state_path, state.dump() + "\n");
    res.iteration_seconds.push_back(since(t_iter));
    t_iter = Clock::now();
    ++done_this_run;
    if (o.max_iterations_this_run >= 0 && done_this_run >= o.max_iterations_this_run) {
      stopped = true;
      return false;
    }
    if (o.stop_signal != nullptr && *o.stop_signal != 0) {  // SIGINT / SIGTERM: stop with the state just saved
      res.stopped_by_signal = *o.stop_signal;
      stopped = true;
      return false;
    }
    return true;
  };
  json& opt = state["optimizer"];
  const int64_t total_iters = o.method == "zo" ? o.spsa.iterations : o.adam.total_steps(o.samples);
  if (o.max_iterations_this_run == 0 && opt.at("iter").get<int64_t>() < total_iters) stopped = true;
  if (o.stop_signal != nullptr && *o.stop_signal != 0 && opt.at("iter").get<int64_t>() < total_iters) {
    res.stopped_by_signal = *o.stop_signal;  // arrived while loading or evaluating the initial objective
    stopped = true;
  }
  if (!stopped) {
    if (o.method == "zo") {
      spsa_run(objective, o.spsa, opt, checkpoint);
    } else {
      const GradOptions gopt{o.segment_len, true};
      AdamOptions aopt = o.adam;
      aopt.ppl_objective = ppl;
      adam_run([&](const std::vector<double>& s, const std::vector<int64_t>& idx, std::vector<double>& g) {
        return nll_and_grad(model, s, lay, o.base, set, idx, gopt, g);
      }, aopt, opt, checkpoint);
    }
  }
  if (stopped && opt.at("iter").get<int64_t>() < total_iters) {
    res.seconds = since(t_start);
    log::info(fmt::format("stopped after iteration {} of {} (state in {}; continue with --resume)",
                          opt.at("iter").get<int64_t>(), total_iters, state_path.string()));
    return res;
  }

  // Final scales and objective (SPSA: the best accepted point, whose objective is known; Adam: the last point).
  const std::vector<double> s = state_scales(opt);
  for (double x : s)
    if (!std::isfinite(x) || x <= 0) throw Error("calibration produced a scale that is not a positive finite number");
  const double f_final = o.method == "zo" ? (opt.at("best_f").is_null() ? NAN : opt.at("best_f").get<double>())
                                          : objective(s);
  json scales = json::array();
  for (int64_t l = 0; l < cfg.n_layer; ++l) scales.push_back(layer_values(s, lay, l));
  json f = {{"format", kFactorsFormat},
            {"model", {{"arch", arch_name(cfg.arch)}, {"n_layer", cfg.n_layer}, {"d_inner", cfg.d_inner},
                       {"nheads", cfg.arch == Arch::Mamba2 ? json(cfg.n_heads) : json(nullptr)},
                       {"config_sha256", ck.config_sha256}, {"path", o.model_dir}}},
            {"method", o.method},
            {"granularity", o.granularity},
            {"context_length", o.length},
            {"scales", scales},
            {"objective", {{"name", o.objective}, {"initial", state.at("initial_objective")}, {"final", num(f_final)},
                           {"evaluated_on", "calibration windows"}, {"protocol", o.protocol}}},
            {"hyperparameters", hyper},
            {"calibration_data", {{"path", o.data}, {"sha256", data_sha}, {"samples", o.samples},
                                  {"tokenizer_sha256", tok.sha256()}, {"documents", used_docs}, {"windows", windows},
                                  {"note", "calibration data only: evaluate on different files (design.md)"}}},
            {"history", opt.at("history")},
            {"skipped_iterations", opt.at("skipped")},
            {"tool_version", MAMBAEXTEND_VERSION},
            {"created", utc_now()}};
  write_file_atomic(o.out, f.dump(1) + "\n");
  std::error_code ec;
  fs::remove(state_path, ec);
  res.factors = std::move(f);
  res.complete = true;
  res.seconds = since(t_start);
  return res;
}

}  // namespace mx
