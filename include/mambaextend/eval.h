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
#include <string>
#include <vector>

#include "mambaextend/corpus.h"
#include "mambaextend/model.h"

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

// Windows of length L under a protocol. Throws UsageError for pred_len >= L or L < 2.
WindowPlan make_windows(const std::vector<TokenizedDocument>& docs, Protocol protocol, int64_t L,
                        int64_t windows_per_doc, int64_t pred_len, int64_t max_docs = -1);

// NLL (natural log, fp64) of each scored token of a batch of windows of equal length, computed with the
// segmented forward; returns one vector per window.
std::vector<std::vector<double>> windows_nll(const MambaLM& model, const DtScales& scales,
                                             const std::vector<const ScoredWindow*>& batch, int64_t segment_len);

}  // namespace mx
