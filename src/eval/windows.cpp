// Evaluation windows of the two protocols (eval.h, design.md "Evaluation protocols"):
//   pg19:      a document of n >= L tokens gives up to W windows ids[i·stride, i·stride + L), i = 0..W-1,
//              stride = max((n − L) // W, 10), those that fit (i·stride + L <= n); the last P tokens of each
//              window are the targets, i.e. positions t = L−P−1 .. L−2 are scored (no BOS).
//   proofpile: a document of n >= L tokens gives one window [BOS = 0] + ids[0, L−1); all L−1 predictions
//              are scored (score_from = 0).
// Documents shorter than L (empty ones included) are skipped and counted. Pure bookkeeping: no tensors.
#include <fmt/format.h>

#include <algorithm>

#include "mambaextend/error.h"
#include "mambaextend/eval.h"

namespace mx {

namespace {
constexpr int64_t kBos = 0;          // GPT-NeoX <|endoftext|>, the BOS of Mamba / Mamba2
constexpr int64_t kMinStride = 10;   // DeciMamba's floor on the window stride
}  // namespace

Protocol parse_protocol(const std::string& name) {
  if (name == "pg19") return Protocol::PG19;
  if (name == "proofpile") return Protocol::ProofPile;
  throw UsageError("unknown protocol '" + name + "' (expected pg19 or proofpile)");
}

const char* protocol_name(Protocol p) { return p == Protocol::PG19 ? "pg19" : "proofpile"; }

WindowPlan make_windows(const std::vector<TokenizedDocument>& docs, Protocol protocol, int64_t L,
                        int64_t windows_per_doc, int64_t pred_len, int64_t max_docs) {
  if (L < 2) throw UsageError(fmt::format("context length {} is too short: it must be at least 2 tokens", L));
  if (windows_per_doc < 1) throw UsageError(fmt::format("--windows-per-doc {} must be at least 1", windows_per_doc));
  if (protocol == Protocol::PG19 && (pred_len < 1 || pred_len >= L))
    throw UsageError(fmt::format("--pred-len {} must be between 1 and L - 1 = {} for context length {}", pred_len,
                                 L - 1, L));
  WindowPlan plan;
  for (size_t d = 0; d < docs.size(); ++d) {
    if (max_docs >= 0 && plan.docs_used >= max_docs) break;
    const auto& ids = docs[d].ids;
    const int64_t n = static_cast<int64_t>(ids.size());
    if (n < L) {
      ++plan.docs_skipped;
      continue;
    }
    ++plan.docs_used;
    if (protocol == Protocol::ProofPile) {
      ScoredWindow w;
      w.doc = static_cast<int64_t>(d);
      w.start = 0;
      w.ids.reserve(static_cast<size_t>(L));
      w.ids.push_back(kBos);
      w.ids.insert(w.ids.end(), ids.begin(), ids.begin() + (L - 1));
      w.score_from = 0;
      plan.windows.push_back(std::move(w));
      continue;
    }
    const int64_t stride = std::max((n - L) / windows_per_doc, kMinStride);
    for (int64_t i = 0; i < windows_per_doc; ++i) {
      const int64_t start = i * stride;
      if (start + L > n) break;  // starts only grow: no later window fits either
      ScoredWindow w;
      w.doc = static_cast<int64_t>(d);
      w.start = start;
      w.ids.assign(ids.begin() + start, ids.begin() + start + L);
      w.score_from = L - pred_len - 1;
      plan.windows.push_back(std::move(w));
    }
  }
  return plan;
}

}  // namespace mx
