// Perplexity evaluation (design.md "Evaluation protocols") shared by `eval-ppl` and the calibration objective.
//   pg19:      per document with n >= L tokens, up to W windows of L tokens starting at i*stride,
//              stride = max((n-L)//W, 10), kept if they fit; loss on the last P tokens; no BOS.
//              PPL = exp(mean NLL over all scored tokens).
//   proofpile: per document with n >= L tokens, BOS (id 0) + its first L-1 tokens; loss on all L-1
//              predictions; PPL = exp(mean over documents of each document's mean NLL).
// The forward runs in segments with carried state and the LM head only at scored positions, so memory does
// not grow with L.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mambaextend/corpus.h"
#include "mambaextend/model.h"
#include "mambaextend/tokenizer.h"

namespace mx {

enum class Protocol { PG19, ProofPile };
Protocol parse_protocol(const std::string& name);  // "pg19" | "proofpile"; UsageError otherwise
const char* protocol_name(Protocol p);

// One window: L input ids; positions t in [score_from, L-1) are scored on predicting ids[t+1].
struct ScoredWindow {
  int64_t doc = 0;      // index into the document list
  int64_t start = 0;    // token offset of the window in the document (proofpile: 0, before the BOS)
  std::vector<int64_t> ids;
  int64_t score_from = 0;
};

struct WindowPlan {
  std::vector<ScoredWindow> windows;
  int64_t docs_used = 0;
  int64_t docs_skipped = 0;  // shorter than L (or empty)
};

// Windows of length L under a protocol. Throws UsageError for L < 2, windows_per_doc < 1, and (pg19, where
// it is used) pred_len < 1 or pred_len >= L; proofpile ignores windows_per_doc and pred_len.
// max_docs >= 0: at most that many documents are used (the first ones, in corpus order, with n >= L); the
// documents after the last used one are neither used nor counted as skipped. Windows are in document order.
WindowPlan make_windows(const std::vector<TokenizedDocument>& docs, Protocol protocol, int64_t L,
                        int64_t windows_per_doc, int64_t pred_len, int64_t max_docs = -1);

// NLL (natural log, fp64) of each scored token of a batch of windows of equal length, computed with the
// segmented forward; returns one vector per window.
std::vector<std::vector<double>> windows_nll(const MambaLM& model, const DtScales& scales,
                                             const std::vector<const ScoredWindow*>& batch, int64_t segment_len);

// ---- evaluation over many lengths (eval-ppl) ------------------------------------------------------------

struct EvalOptions {
  Protocol protocol = Protocol::PG19;
  std::vector<int64_t> lengths;   // each >= 2, no duplicates; evaluated in this order
  int64_t windows_per_doc = 10;   // pg19 only
  int64_t pred_len = 100;         // pg19 only: scored tokens per window
  int64_t max_docs = -1;          // < 0: no limit (see make_windows)
  int64_t segment_len = 4096;     // tokens per segment of the forward
  int64_t batch = 0;              // windows per forward; 0: auto, max(1, segment_len / L)
};

// Results at one length. Optional fields are empty (JSON null) when there is nothing to compute them from:
// no window (ppl and all statistics empty, `note` says why), or a standard error from a single sample.
struct LengthResult {
  int64_t length = 0;
  int64_t windows = 0;
  int64_t tokens = 0;        // scored tokens
  int64_t bytes = 0;         // UTF-8 bytes of the scored target tokens (Tokenizer::token_bytes)
  int64_t docs_used = 0;
  int64_t docs_skipped = 0;  // shorter than L (or empty)
  int64_t batch = 0;         // windows per forward used
  double sum_nll = 0;        // Σ NLL over scored tokens (nats)
  std::optional<double> mean_nll;         // pg19: over tokens; proofpile: mean of per-document means
  std::optional<double> nll_se;           // standard error of mean_nll
  std::optional<double> ppl;              // exp(mean_nll)
  std::optional<double> ppl_se;           // delta method: ppl · nll_se
  std::optional<double> bits_per_byte;    // Σnll / (bytes · ln 2)
  std::optional<double> byte_perplexity;  // exp(Σnll / bytes)
  int64_t nonfinite = 0;                  // scored tokens whose NLL was not finite (then ppl is empty)
  double seconds = 0;
  double peak_rss_mb = 0;    // process peak RSS after this length (monotone over lengths)
  std::string note;          // why a value is empty, "" otherwise
};

struct PerplexityReport {
  EvalOptions options;
  std::vector<LengthResult> results;  // one per options.lengths, same order
  int64_t documents = 0;              // documents in the corpus
  double seconds = 0;
};

// Progress of evaluate_perplexity in tokens forwarded (window length x windows, over all lengths).
using ProgressFn = std::function<void(int64_t done_tokens, int64_t total_tokens, int64_t length)>;

// Evaluates every length of `opts` on `docs` under one protocol. Bytes per scored token come from `tok`.
// Throws UsageError for bad options (checked for every length before any forward runs).
PerplexityReport evaluate_perplexity(const MambaLM& model, const DtScales& scales,
                                     const std::vector<TokenizedDocument>& docs, const Tokenizer& tok,
                                     const EvalOptions& opts, const ProgressFn& progress = {});

// The "results" of the eval-ppl JSON (one object per length) and the protocol/statistics description.
nlohmann::json length_result_json(const LengthResult& r);
nlohmann::json statistics_json(Protocol p);

}  // namespace mx
