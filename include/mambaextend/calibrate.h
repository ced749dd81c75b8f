// Calibration of the Δ scales (MambaExtend, method.md §2–§3): the pieces behind `mambaextend calibrate`.
//   * sample_calibration_set   N windows of L tokens drawn reproducibly (seeded) from a corpus, scored by a
//                              protocol (pg19: the last pred_len tokens; proofpile: BOS + L−1 tokens, all scored)
//   * calibration_nll          the objective: mean NLL of the set under the protocol (no grad, segmented)
//   * nll_and_grad             CFBP's loss and ∂loss/∂s by segment checkpointing (kernels.md §6): peak memory
//                              independent of L; gradients only for the scales (weights never require grad)
//   * spsa_run / adam_run      CFZO (seeded SPSA, method.md "Recommended clean CFZO") and CFBP (Adam with
//                              gradient-norm clipping and positivity), on a flat vector of scales, resumable:
//                              their whole state (RNG included) is a JSON value written after every iteration
//   * run_calibration          the whole command: set, init, optimiser, resume file, factors file
// Scales are handled as doubles in a flat vector laid out layer after layer (1 or W values per layer); the
// model sees base ⊙ s as float tensors, where `base` are optional fixed factors under the calibrated ones.
#pragma once
#include <csignal>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "mambaextend/corpus.h"
#include "mambaextend/eval.h"
#include "mambaextend/model.h"

namespace mx {

// ---- calibration windows -------------------------------------------------------------------------------
struct CalibrationSet {
  Protocol protocol = Protocol::PG19;
  int64_t length = 0;    // L
  int64_t pred_len = 0;  // pg19: scored tokens per window
  uint64_t seed = 0;
  std::vector<ScoredWindow> windows;   // all of length L
  std::vector<std::string> doc_names;  // name of windows[i].doc's document, by document index
};

// Draws `samples` distinct windows uniformly over all (document, start) pairs of documents with n >= L tokens,
// with a seeded generator (same corpus + arguments -> same windows on any machine). pg19: window = ids[start,
// start+L), scored from L−pred_len−1; proofpile: BOS + ids[start, start+L−1), all scored. Throws UsageError
// for samples < 1, L < 2 or a bad pred_len, DataError when no document reaches L tokens or when there are
// fewer distinct windows than samples.
CalibrationSet sample_calibration_set(const std::vector<TokenizedDocument>& docs, Protocol protocol, int64_t L,
                                      int64_t samples, int64_t pred_len, uint64_t seed);

// ---- scales as a flat vector ---------------------------------------------------------------------------
struct ScaleLayout {
  int64_t n_layer = 0;
  int64_t width = 1;  // values per layer: 1 (granularity "layer") or scale_width ("channel")
  int64_t size() const { return n_layer * width; }
};
// s (flat) -> per-layer tensors of `dtype`, multiplied by `base` (empty = ones) where given.
DtScales to_dt_scales(const std::vector<double>& s, const ScaleLayout& layout, const DtScales& base,
                      at::ScalarType dtype = at::kFloat);

// ---- objective and gradient ----------------------------------------------------------------------------
// Mean NLL of windows[idx] (all windows when idx is empty) under the set's protocol: pg19 = mean over all
// scored tokens, proofpile = mean over windows of each window's mean. `batch` windows per forward (0: auto_eval_batch).
// Returns NaN/inf as computed (the caller decides what a non-finite objective means).
double calibration_nll(const MambaLM& model, const DtScales& scales, const CalibrationSet& set,
                       const std::vector<int64_t>& idx, int64_t segment_len, int64_t batch);
// The automatic windows per forward (backprop.cpp has the rule: segment-filling on the CPU, a token budget on a GPU).
int64_t auto_eval_batch(const MambaLM& model, int64_t n_windows, int64_t length, int64_t segment_len);

struct GradOptions {
  int64_t segment_len = 2048;  // tokens per checkpointed segment
  bool checkpointed = true;    // false: one graph over the whole window (reference for tests; memory grows with L)
};
// The loss calibration_nll(windows[idx]) at s and its gradient ∂loss/∂s (flat, same layout), computed one
// window at a time by segment checkpointing. Non-finite values are returned as computed.
double nll_and_grad(const MambaLM& model, const std::vector<double>& s, const ScaleLayout& layout,
                    const DtScales& base, const CalibrationSet& set, const std::vector<int64_t>& idx,
                    const GradOptions& opts, std::vector<double>& grad);

// ---- optimisers ----------------------------------------------------------------------------------------
// Objective on a flat scale vector (ZO) and loss + gradient on a subset of windows (BP).
using ObjectiveFn = std::function<double(const std::vector<double>& s)>;
using LossGradFn = std::function<double(const std::vector<double>& s, const std::vector<int64_t>& idx,
                                        std::vector<double>& grad)>;
// Called after every iteration with the optimiser's full state (JSON); return false to stop early.
using CheckpointFn = std::function<bool(const nlohmann::json& state)>;

struct SpsaOptions {
  int64_t iterations = 50;          // K
  double c0 = 0.1, gamma = 0.1;     // c_k = c0 / (1 + k)^gamma
  double a0 = 0.001;                // a_k = a0 · cos(k·π / a_period) ("cosine") or a0 ("constant")
  std::string a_schedule = "cosine";
  double a_period = 198;            // the Proof-Pile script's 198 (= 2·99: designed for 100 iterations)
  double floor = 0.01;              // positivity floor on every point evaluated
  std::string parametrization = "projection";  // θ = s (projection on the floor) | log: θ = log s
  nlohmann::json to_json() const;
};
// SPSA (CFZO), method.md "Recommended clean CFZO": per iteration k a Rademacher δ, t± = max(t ± c_k·δ, floor),
// ĝ = (f(t+) − f(t−)) / (2c_k) · δ, t_new = max(t − a_k·ĝ, floor); the next point is the best of t_new, t+, t−
// (all on the calibration set); the result is the best point accepted over the run (initial point included).
// A non-finite f(t+) or f(t−) makes a recorded, skipped iteration (t unchanged); a non-finite f(t_new) is
// never accepted. `state` is created by spsa_init and advanced in place.
nlohmann::json spsa_init(const std::vector<double>& s0, double f0, uint64_t seed);
void spsa_run(const ObjectiveFn& f, const SpsaOptions& opts, nlohmann::json& state, const CheckpointFn& checkpoint);

struct AdamOptions {
  int64_t steps = 50;         // optimiser steps (epochs > 0 overrides: epochs · ceil(samples / batch))
  int64_t epochs = 0;
  int64_t batch = 0;          // windows per step; 0 = all
  double lr = 0.1, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double clip = 1.0;          // global gradient-norm clipping (≤ 0: off)
  double floor = 0.01;        // projection s ≥ floor ("projection"), or the floor of exp(θ) ("log")
  std::string parametrization = "projection";  // "projection" | "log" (s = exp(θ), Adam on θ)
  bool ppl_objective = false;  // minimise exp(mean NLL) instead of the mean NLL
  nlohmann::json to_json() const;
  int64_t total_steps(int64_t samples) const;
};
// Adam (CFBP), method.md §3 without its defects: each step draws the next `batch` windows of a seeded
// per-epoch permutation, computes the loss and gradient, clips the global norm, and updates; a non-finite loss
// or gradient is a recorded, skipped step. The result is the last point.
nlohmann::json adam_init(const std::vector<double>& s0, int64_t samples, uint64_t seed, const AdamOptions& opts);
void adam_run(const LossGradFn& fg, const AdamOptions& opts, nlohmann::json& state, const CheckpointFn& checkpoint);
// The current scales of an optimiser state (SPSA: the best accepted point; Adam: the current point).
std::vector<double> state_scales(const nlohmann::json& state);

// ---- the calibrate command -----------------------------------------------------------------------------
struct CalibrateOptions {
  std::string model_dir, data, tokenizer, cache_dir, init_factors, out = "factors.json";
  std::string method = "zo";          // "zo" | "bp"
  std::string granularity = "layer";  // "layer" | "channel"
  std::string objective = "nll";      // "nll" | "ppl"
  std::string protocol = "pg19";
  std::string device = "cpu", dtype = "fp32";
  int64_t length = 0, samples = 20, pred_len = 100, segment_len = 2048, eval_batch = 0;
  uint64_t seed = 0;
  SpsaOptions spsa;
  AdamOptions adam;
  bool resume = false;
  int64_t max_iterations_this_run = -1;  // testing: stop (state saved) after this many iterations; < 0 = off
  // Set (by a signal handler) to the signal number to stop: checked between iterations, after the state is
  // saved, so that --resume continues exactly; nullptr = never. No factors file is written when it stops a run.
  const volatile std::sig_atomic_t* stop_signal = nullptr;
  DtScales base;                         // fixed factors under the calibrated ones (tests); empty = none
};

struct CalibrateResult {
  nlohmann::json factors;  // the mambaextend.factors/v1 object written to `out`
  bool complete = false;   // false when stopped by max_iterations_this_run or a signal (no factors file written)
  int stopped_by_signal = 0;  // the signal number that stopped the run (0: none)
  // Wall times of this process's run (not in the factors file, which must not depend on the machine):
  double seconds = 0;                      // the whole call
  double initial_objective_seconds = 0;    // evaluating the objective at the initial scales (0 on resume)
  std::vector<double> iteration_seconds;   // each iteration run in this process (optimiser step + state write)
};

// Path of the resume state file kept next to the factors file: "<out>.state.json".
std::filesystem::path resume_state_path(const std::filesystem::path& out);

// Runs the whole calibration. Writes the resume state atomically after every iteration and the factors file
// atomically at the end (then removes the state file). Throws UsageError / DataError / ConfigError.
CalibrateResult run_calibration(const CalibrateOptions& opts);

}  // namespace mx
