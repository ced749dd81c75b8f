// `mambaextend calibrate`: find the Δ scales of a model for one context length by SPSA (--method zo, CFZO) or
// by backpropagation with Adam (--method bp, CFBP) on calibration windows drawn from --data (the work is in
// src/calib/). Flags may also come from --config FILE, a JSON object whose keys are the flag names ("pred-len"
// or "pred_len"); a flag given on the command line wins. Output: logs on stderr (one line per iteration), a
// summary table on stdout, the factors file (--out, JSON, written atomically) and, while running, the resume
// state "<out>.state.json" (--resume continues a killed run with the same flags).
#include <fmt/format.h>
#include <sys/resource.h>

#include <cmath>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "cli/config_file.h"
#include "mambaextend/calibrate.h"
#include "mambaextend/error.h"
#include "mambaextend/log.h"
#ifdef MX_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace mx::cli {

namespace {

using nlohmann::json;

// SIGINT / SIGTERM: the handler only records the signal; run_calibration checks it between iterations, after
// the resume state is saved, and the command then exits 128 + signal. SA_RESETHAND: a second signal ends the
// process at once (the state file on disk, written atomically, is then the last finished iteration's).
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void record_stop_signal(int sig) { g_stop_signal = sig; }

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = record_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  for (int sig : {SIGINT, SIGTERM})
    if (sigaction(sig, &sa, nullptr) != 0) throw Error(fmt::format("calibrate: cannot install the handler of signal {}", sig));
}

struct CalibrateArgs {
  CalibrateOptions o;
  int64_t iterations = 50;
  std::string config;
  std::map<std::string, CLI::Option*> flags;  // flag name (no dashes) -> option
};

void print_summary(const json& f) {
  const auto& obj = f.at("objective");
  auto val = [](const json& x) { return x.is_null() ? std::string("n/a") : fmt::format("{:.6f}", x.get<double>()); };
  fmt::print("calibrate: method {}  granularity {}  L = {}  objective {} ({})\n", f.at("method").get<std::string>(),
             f.at("granularity").get<std::string>(), f.at("context_length").get<int64_t>(),
             obj.at("name").get<std::string>(), obj.at("protocol").get<std::string>());
  fmt::print("objective on the calibration windows: initial {}  final {}   (skipped iterations: {})\n",
             val(obj.at("initial")), val(obj.at("final")), f.at("skipped_iterations").get<int64_t>());
  fmt::print("{:>5}  {:>10}  {:>10}  {:>10}\n", "layer", "scale", "min", "max");
  const auto& scales = f.at("scales");
  for (size_t l = 0; l < scales.size(); ++l) {
    const auto v = scales[l].get<std::vector<double>>();
    double mean = 0, lo = v[0], hi = v[0];
    for (double x : v) mean += x, lo = std::min(lo, x), hi = std::max(hi, x);
    fmt::print("{:>5}  {:>10.5f}  {:>10.5f}  {:>10.5f}\n", l, mean / static_cast<double>(v.size()), lo, hi);
  }
  const auto& cd = f.at("calibration_data");
  fmt::print("calibration data: {} (sha256 {}), {} windows; calibration data only: evaluate on different files\n",
             cd.at("path").get<std::string>(), cd.at("sha256").get<std::string>(), cd.at("samples").get<int64_t>());
}

void run(CalibrateArgs& a) {
  if (!a.config.empty()) apply_config_file(a.config, a.flags, "calibrate");
  auto& o = a.o;
  if (o.model_dir.empty()) throw UsageError("calibrate: --model DIR is required");
  if (o.data.empty()) throw UsageError("calibrate: --data PATH is required (calibration data: not the evaluation split)");
  if (o.length == 0) throw UsageError("calibrate: --length L is required");
  o.spsa.iterations = a.iterations;
  o.adam.steps = a.iterations;
  install_stop_handlers();
  o.stop_signal = &g_stop_signal;
  const auto res = run_calibration(o);
  // Timing and peak memory of this process (stderr only: the factors file does not depend on the machine).
  double iter_sum = 0;
  for (double x : res.iteration_seconds) iter_sum += x;
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  double cuda_peak_mb = 0;
#ifdef MX_WITH_CUDA
  if (o.device == "cuda")
    cuda_peak_mb = c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].peak / 1048576.0;
#endif
  log::info(fmt::format("timing: total {:.3f} s, initial objective {:.3f} s, {} iteration(s) in {:.3f} s ({:.3f} s each); "
                        "peak RSS {:.0f} MB, peak CUDA memory {:.0f} MB",
                        res.seconds, res.initial_objective_seconds, res.iteration_seconds.size(), iter_sum,
                        res.iteration_seconds.empty() ? 0.0 : iter_sum / static_cast<double>(res.iteration_seconds.size()),
                        ru.ru_maxrss / 1024.0, cuda_peak_mb));
  if (res.stopped_by_signal != 0)
    throw Interrupted(res.stopped_by_signal,
                      fmt::format("calibrate: stopped by {} with the state saved in {}; continue with the same flags "
                                  "and --resume", res.stopped_by_signal == SIGINT ? "SIGINT" : "SIGTERM",
                                  resume_state_path(o.out).string()));
  if (!res.complete) return;
  print_summary(res.factors);
  log::info("factors written to " + o.out);
}

}  // namespace

void register_calibrate(CLI::App& app) {
  auto a = std::make_shared<CalibrateArgs>();
  auto& o = a->o;
  auto* sub = app.add_subcommand("calibrate", "Calibrate the Δ scales for a context length (CFZO or CFBP)");
  auto add = [&](const std::string& name, auto& var, const std::string& help) {
    auto* opt = sub->add_option("--" + name, var, help);
    a->flags[name] = opt;
    return opt;
  };
  add("model", o.model_dir, "model directory (HF or state-spaces layout)");
  add("data", o.data, "calibration data: a directory of .txt files, a .txt or a .jsonl (not the evaluation split)");
  add("length", o.length, "context length L of the calibration windows")->check(CLI::Range(int64_t{2}, int64_t{1} << 24));
  add("method", o.method, "zo (SPSA) | bp (backprop + Adam)")->capture_default_str()->check(CLI::IsMember({"zo", "bp"}));
  add("granularity", o.granularity, "layer (one scale per layer) | channel (d_inner per Mamba1 layer, nheads per Mamba2 layer)")
      ->capture_default_str()->check(CLI::IsMember({"layer", "channel"}));
  add("samples", o.samples, "calibration windows")->capture_default_str();
  add("iterations", a->iterations, "SPSA iterations K / Adam steps")->capture_default_str();
  add("objective", o.objective, "nll (mean NLL) | ppl (exp of it, the paper's choice) | passkey (CE on key + EOS of "
      "passkey samples of context --length; haystack: --data's train split minus its test split)")
      ->capture_default_str();
  add("seed", o.seed, "seed of the windows, the perturbations and the batches")->capture_default_str();
  add("init", o.init_factors, "start from the scales of a factors file (or a bare JSON list) instead of ones");
  add("out", o.out, "factors file to write (the resume state goes to <out>.state.json)")->capture_default_str();
  a->flags["resume"] = sub->add_flag("--resume", o.resume, "continue the run whose state is in <out>.state.json");
  add("tokenizer", o.tokenizer, "tokenizer.json (default: MODEL/tokenizer.json)");
  add("protocol", o.protocol, "pg19 (loss on the last --pred-len tokens) | proofpile (BOS + L-1 tokens, all scored)")
      ->capture_default_str()->check(CLI::IsMember({"pg19", "proofpile"}));
  add("pred-len", o.pred_len, "pg19: scored tokens per window")->capture_default_str();
  add("segment-len", o.segment_len, "tokens per segment of the forward / checkpointed backward")->capture_default_str();
  add("eval-batch", o.eval_batch, "windows per forward of the objective (0: CPU max(1, segment-len / L); GPU up to 131072 tokens per forward)")->capture_default_str();
  add("device", o.device, "cpu | cuda")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  add("dtype", o.dtype, "fp32 | bf16 | fp64 (reference)")->capture_default_str()->check(CLI::IsMember({"fp32", "bf16", "fp64"}));
  add("cache-dir", o.cache_dir, "token cache directory (default: $MAMBAEXTEND_CACHE or ~/.cache/mambaextend)");
  add("floor", o.spsa.floor, "positivity floor of the scales (both methods)")->capture_default_str()->each([a](const std::string&) {
    a->o.adam.floor = a->o.spsa.floor;
  });
  add("c0", o.spsa.c0, "SPSA: perturbation size c_k = c0 / (1 + k)^gamma")->capture_default_str()->group("SPSA (--method zo)");
  add("gamma", o.spsa.gamma, "SPSA: decay exponent of c_k")->capture_default_str()->group("SPSA (--method zo)");
  add("a0", o.spsa.a0, "SPSA: step size a_k = a0 * cos(k pi / a-period)")->capture_default_str()->group("SPSA (--method zo)");
  add("a-schedule", o.spsa.a_schedule, "SPSA: cosine | constant")->capture_default_str()
      ->check(CLI::IsMember({"cosine", "constant"}))->group("SPSA (--method zo)");
  add("a-period", o.spsa.a_period, "SPSA: period P of the cosine schedule (198: the Proof-Pile script's)")
      ->capture_default_str()->group("SPSA (--method zo)");
  add("lr", o.adam.lr, "Adam learning rate")->capture_default_str()->group("Adam (--method bp)");
  add("clip", o.adam.clip, "gradient-norm clipping (<= 0: off)")->capture_default_str()->group("Adam (--method bp)");
  add("batch", o.adam.batch, "windows per Adam step (0: all)")->capture_default_str()->group("Adam (--method bp)");
  add("epochs", o.adam.epochs, "epochs over the windows (> 0 overrides --iterations)")->capture_default_str()
      ->group("Adam (--method bp)");
  add("beta1", o.adam.beta1, "Adam beta1")->capture_default_str()->group("Adam (--method bp)");
  add("beta2", o.adam.beta2, "Adam beta2")->capture_default_str()->group("Adam (--method bp)");
  add("parametrization", o.adam.parametrization,
      "projection (s >= floor) | log (s = exp(theta): multiplicative steps and perturbations; both methods)")
      ->capture_default_str()->check(CLI::IsMember({"projection", "log"}))
      ->each([a](const std::string&) { a->o.spsa.parametrization = a->o.adam.parametrization; });
  add("max-iterations-this-run", o.max_iterations_this_run,
      "testing: stop after this many iterations with the state saved (then --resume)")->group("Testing");
  sub->add_option("--config", a->config, "JSON file with the same keys as the flags (flags override it)");
  sub->callback([a] { run(*a); });
}

}  // namespace mx::cli
