// Perplexity of windows (eval.h): windows_nll runs the segmented forward (MambaLM::hidden_segmented, state
// carried from segment to segment) over a batch of equal-length windows and applies the LM head only at the
// scored positions, in blocks of at most kMaxLogitRows (batch x positions) rows, so the logits never exceed
// ~1024 x V_pad x 4 bytes (~200 MB for the 50k GPT-NeoX vocab) whatever L is. The NLL of a target is
// logsumexp(logits) − logit[target], i.e. −log_softmax at the target, with both terms computed in the model's
// logit dtype (fp32; fp64 in reference mode; the logsumexp in place in the logits buffer, so no second buffer of
// that size) and the difference and every sum taken in fp64.
// On CUDA (fp32 / bf16 models) the LM head runs in blocks of up to 8192 rows or 1 GiB of logits in the
// activation dtype (bf16 logits are read as the GEMM wrote them, with no fp32 copy: the same values the fp32
// conversion held), and the fused kernel of kernels/loss (ops::lm_nll_cuda) computes logsumexp − logit[target]
// per row in one pass (exponential sums in fp32, the rest in fp64) into a device buffer of the whole batch,
// copied to the host once per call: no host synchronisation per block.
// evaluate_perplexity runs many lengths in one pass and reduces the NLLs to ppl, its standard error, bits per
// byte and byte perplexity (statistics_json writes the definitions into the output).
// Limits: every window of a batch has the same length; a batch's memory is about B x segment_len tokens of
// activations plus one logit block, independent of L.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <set>

#include "mambaextend/error.h"
#include "mambaextend/eval.h"
#ifdef MX_WITH_CUDA
#include "ops/cuda_ops.h"
#endif

namespace mx {

namespace {

constexpr int64_t kMaxLogitRows = 1024;  // batch x positions per LM-head block
#ifdef MX_WITH_CUDA
constexpr int64_t kCudaMaxLogitRows = 8192;               // per LM-head block on the GPU (fused path) ...
constexpr int64_t kCudaMaxLogitBytes = int64_t(1) << 30;  // ... and at most this many bytes of logits
#endif

double peak_rss_mb() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// Running mean and sum of squared deviations (Welford / Chan), in fp64.
struct Moments {
  int64_t n = 0;
  double mean = 0, m2 = 0;
  void add(double x) {
    ++n;
    const double d = x - mean;
    mean += d / static_cast<double>(n);
    m2 += d * (x - mean);
  }
  // Standard error of the mean: sd / sqrt(n) with the n−1 sample sd; empty below two samples.
  std::optional<double> se() const {
    if (n < 2) return std::nullopt;
    return std::sqrt(m2 / static_cast<double>(n - 1)) / std::sqrt(static_cast<double>(n));
  }
};

std::optional<double> finite_or_empty(double x) {
  if (!std::isfinite(x)) return std::nullopt;
  return x;
}

nlohmann::json opt_json(const std::optional<double>& x) {
  if (!x || !std::isfinite(*x)) return nullptr;
  return *x;
}

void check_options(const EvalOptions& o) {
  if (o.lengths.empty()) throw UsageError("--lengths: give at least one context length");
  std::set<int64_t> seen;
  for (int64_t L : o.lengths)
    if (!seen.insert(L).second) throw UsageError(fmt::format("--lengths: length {} is given twice", L));
  if (o.segment_len < 1) throw UsageError(fmt::format("--segment-len {} must be at least 1", o.segment_len));
  if (o.batch < 0) throw UsageError(fmt::format("--batch {} must be 0 (auto) or positive", o.batch));
}

int64_t batch_size(const EvalOptions& o, int64_t L) {
  return o.batch > 0 ? o.batch : std::max<int64_t>(1, o.segment_len / L);
}

// The segmented forward over ids (B, L) (state carried from segment to segment), calling block(a, n, h) for each
// block of at most `rows` scored positions [a, a + n) from `from` on, h (B, n, D) being the hidden states that
// predict tokens a + 1 .. a + n, and on_segment_done (if any) after each segment.
void for_each_scored_block(const MambaLM& model, const DtScales& scales, const at::Tensor& ids, int64_t from,
                           int64_t segment_len, int64_t rows, const std::function<void(int64_t)>& on_segment_done,
                           const std::function<void(int64_t, int64_t, const at::Tensor&)>& block) {
  const int64_t L = ids.size(1);
  State state;
  model.hidden_segmented(
      ids, segment_len, scales,
      [&](int64_t start, const at::Tensor& h) {  // h (B, len, D)
        const int64_t end = std::min(start + h.size(1), L - 1);  // position L-1 has no target
        for (int64_t a = std::max(start, from); a < end; a += rows) {
          const int64_t n = std::min(rows, end - a);
          block(a, n, h.narrow(1, a - start, n));
        }
        if (on_segment_done) on_segment_done(start + h.size(1));
      },
      &state);
}

#ifdef MX_WITH_CUDA
// The CUDA path of windows_nll_impl (the file comment): ids (B, L) on the host, `from` the first scored position
// of any window; appends each window's NLLs from its own score_from to `out`.
void windows_nll_fused_cuda(const MambaLM& model, const DtScales& scales,
                            const std::vector<const ScoredWindow*>& batch, const at::Tensor& ids, int64_t from,
                            int64_t segment_len, const std::function<void(int64_t)>& on_segment_done,
                            std::vector<std::vector<double>>& out) {
  const int64_t B = ids.size(0), P = ids.size(1) - 1 - from;  // P scored positions per window, at most
  const auto dev = model.options().device;
  const int64_t V = model.weight("lm_head.weight").size(0);  // V_pad
  const int64_t row_bytes = V * static_cast<int64_t>(c10::elementSize(model.options().dtype));
  const int64_t block = std::clamp<int64_t>(kCudaMaxLogitBytes / std::max<int64_t>(row_bytes, 1), 1, kCudaMaxLogitRows);
  const int64_t rows = std::max<int64_t>(1, block / B);  // positions per window and block
  const auto targets_all = ids.to(dev);                                                     // (B, L)
  const auto nll = at::empty({B, P}, at::TensorOptions().dtype(at::kDouble).device(dev));  // (B, P)
  for_each_scored_block(model, scales, ids, from, segment_len, rows, on_segment_done,
                        [&](int64_t a, int64_t n, const at::Tensor& h) {
                          const auto logits = model.head_logits(h);  // (B, n, V_pad), activation dtype
                          ops::lm_nll_cuda(logits, targets_all.narrow(1, a + 1, n), nll.narrow(1, a - from, n));
                        });
  const auto host = nll.cpu();  // the one synchronisation of the call
  const double* p = host.data_ptr<double>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = batch[b]->score_from - from; k < P; ++k) out[b].push_back(p[b * P + k]);
}
#endif

// windows_nll with a hook called after each segment with the number of positions done so far (per window).
std::vector<std::vector<double>> windows_nll_impl(const MambaLM& model, const DtScales& scales,
                                                  const std::vector<const ScoredWindow*>& batch, int64_t segment_len,
                                                  const std::function<void(int64_t)>& on_segment_done) {
  if (batch.empty()) return {};
  const int64_t B = static_cast<int64_t>(batch.size());
  const int64_t L = static_cast<int64_t>(batch[0]->ids.size());
  if (L < 2) throw ShapeError(fmt::format("windows_nll: window length {} is below 2", L));
  int64_t from = L;  // first scored position of any window
  auto ids = at::empty({B, L}, at::TensorOptions().dtype(at::kLong));  // (B, L)
  for (int64_t b = 0; b < B; ++b) {
    const ScoredWindow& w = *batch[b];
    if (static_cast<int64_t>(w.ids.size()) != L)
      throw ShapeError(fmt::format("windows_nll: window {} has {} tokens, window 0 has {}: a batch needs equal "
                                   "lengths", b, w.ids.size(), L));
    if (w.score_from < 0 || w.score_from > L - 2)
      throw ShapeError(fmt::format("windows_nll: window {} scores from position {}, expected 0..{}", b,
                                   w.score_from, L - 2));
    from = std::min(from, w.score_from);
    std::memcpy(ids.data_ptr<int64_t>() + b * L, w.ids.data(), sizeof(int64_t) * static_cast<size_t>(L));
  }
  std::vector<std::vector<double>> out(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) out[b].reserve(static_cast<size_t>(L - 1 - batch[b]->score_from));

  at::NoGradGuard no_grad;
#ifdef MX_WITH_CUDA
  if (model.options().device.is_cuda() && model.options().dtype != at::kDouble) {
    windows_nll_fused_cuda(model, scales, batch, ids, from, segment_len, on_segment_done, out);
    return out;
  }
#endif
  const auto targets_all = ids.to(model.options().device);  // (B, L)
  const int64_t rows = std::max<int64_t>(1, kMaxLogitRows / B);
  for_each_scored_block(model, scales, ids, from, segment_len, rows, on_segment_done,
                        [&](int64_t a, int64_t n, const at::Tensor& h) {
                          auto logits = model.logits(h);                                       // (B, n, V_pad) fp32, fresh
                          const auto tgt = targets_all.narrow(1, a + 1, n).unsqueeze(-1);      // (B, n, 1)
                          const auto picked = logits.gather(-1, tgt).squeeze(-1).to(at::kDouble);  // (B, n)
                          // logsumexp in place (no second logits-sized buffer): max + log Σ exp(x − max).
                          const auto row_max = std::get<0>(logits.max(-1, /*keepdim=*/true));  // (B, n, 1)
                          logits.sub_(row_max).exp_();
                          const auto lse = logits.sum(-1).log_().add_(row_max.squeeze(-1));    // (B, n)
                          const auto nll = (lse.to(at::kDouble) - picked).cpu().contiguous();  // (B, n)
                          const double* p = nll.data_ptr<double>();
                          for (int64_t b = 0; b < B; ++b)
                            for (int64_t j = std::max<int64_t>(0, batch[b]->score_from - a); j < n; ++j)
                              out[b].push_back(p[b * n + j]);
                        });
  return out;
}

}  // namespace

std::vector<std::vector<double>> windows_nll(const MambaLM& model, const DtScales& scales,
                                             const std::vector<const ScoredWindow*>& batch, int64_t segment_len) {
  return windows_nll_impl(model, scales, batch, segment_len, {});
}

PerplexityReport evaluate_perplexity(const MambaLM& model, const DtScales& scales,
                                     const std::vector<TokenizedDocument>& docs, const Tokenizer& tok,
                                     const EvalOptions& opts, const ProgressFn& progress) {
  check_options(opts);
  // Plan every length first: bad options fail before any forward, and the total work is known for the
  // progress report. The windows are rebuilt per length below so that only one length's are held at a time.
  int64_t total_tokens = 0;
  for (int64_t L : opts.lengths) {
    const auto plan = make_windows(docs, opts.protocol, L, opts.windows_per_doc, opts.pred_len, opts.max_docs);
    total_tokens += static_cast<int64_t>(plan.windows.size()) * L;
  }
  if (!scales.empty()) check_scales(model.config(), scales, "dt scales");

  // UTF-8 byte length of every token, for bits per byte.
  std::vector<int64_t> token_len(static_cast<size_t>(std::max<int64_t>(tok.vocab_size(), 0)));
  for (size_t i = 0; i < token_len.size(); ++i)
    token_len[i] = static_cast<int64_t>(tok.token_bytes(static_cast<uint32_t>(i)).size());

  PerplexityReport report;
  report.options = opts;
  report.documents = static_cast<int64_t>(docs.size());
  const auto t_all = std::chrono::steady_clock::now();
  int64_t done_tokens = 0;
  if (progress) progress(0, total_tokens, opts.lengths.front());

  for (int64_t L : opts.lengths) {
    const auto t0 = std::chrono::steady_clock::now();
    const WindowPlan plan = make_windows(docs, opts.protocol, L, opts.windows_per_doc, opts.pred_len,
                                         opts.max_docs);
    LengthResult r;
    r.length = L;
    r.windows = static_cast<int64_t>(plan.windows.size());
    r.docs_used = plan.docs_used;
    r.docs_skipped = plan.docs_skipped;
    r.batch = batch_size(opts, L);
    Moments per_token, per_doc;
    for (size_t i = 0; i < plan.windows.size(); i += static_cast<size_t>(r.batch)) {
      std::vector<const ScoredWindow*> batch;
      for (size_t j = i; j < std::min(plan.windows.size(), i + static_cast<size_t>(r.batch)); ++j)
        batch.push_back(&plan.windows[j]);
      const int64_t batch_tokens = static_cast<int64_t>(batch.size());
      const auto nll = windows_nll_impl(model, scales, batch, opts.segment_len, [&](int64_t positions) {
        if (progress && positions < L) progress(done_tokens + batch_tokens * positions, total_tokens, L);
      });
      for (size_t b = 0; b < batch.size(); ++b) {
        const ScoredWindow& w = *batch[b];
        double window_sum = 0;
        for (size_t k = 0; k < nll[b].size(); ++k) {
          const double x = nll[b][k];
          const uint32_t target = static_cast<uint32_t>(w.ids[static_cast<size_t>(w.score_from) + k + 1]);
          r.bytes += target < token_len.size() ? token_len[target] : 0;
          if (!std::isfinite(x)) {
            ++r.nonfinite;
            continue;
          }
          per_token.add(x);
          r.sum_nll += x;
          window_sum += x;
        }
        r.tokens += static_cast<int64_t>(nll[b].size());
        if (!nll[b].empty()) per_doc.add(window_sum / static_cast<double>(nll[b].size()));
      }
      done_tokens += batch_tokens * L;
      if (progress) progress(done_tokens, total_tokens, L);
    }

    if (r.windows == 0) {
      r.note = fmt::format("no document has >= {} tokens ({} of {} documents skipped as shorter)", L,
                           r.docs_skipped, docs.size());
    } else if (r.nonfinite > 0) {
      r.note = fmt::format("{} of {} scored tokens have a non-finite NLL (the model overflowed): no perplexity",
                           r.nonfinite, r.tokens);
    } else {
      // One window per document in proofpile: its per-window means are the per-document means.
      const Moments& m = opts.protocol == Protocol::PG19 ? per_token : per_doc;
      r.mean_nll = m.mean;
      r.nll_se = m.se();
      r.ppl = finite_or_empty(std::exp(m.mean));
      if (r.ppl && r.nll_se) r.ppl_se = finite_or_empty(*r.ppl * *r.nll_se);
      if (r.bytes > 0) {
        r.bits_per_byte = r.sum_nll / (static_cast<double>(r.bytes) * std::log(2.0));
        r.byte_perplexity = finite_or_empty(std::exp(r.sum_nll / static_cast<double>(r.bytes)));
      }
      if (!r.ppl) r.note = fmt::format("perplexity exp({}) overflows a double", m.mean);
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.peak_rss_mb = peak_rss_mb();
    report.results.push_back(std::move(r));
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();
  return report;
}

nlohmann::json length_result_json(const LengthResult& r) {
  return nlohmann::json{{"length", r.length},
                        {"ppl", opt_json(r.ppl)},
                        {"ppl_se", opt_json(r.ppl_se)},
                        {"mean_nll", opt_json(r.mean_nll)},
                        {"nll_se", opt_json(r.nll_se)},
                        {"bits_per_byte", opt_json(r.bits_per_byte)},
                        {"byte_perplexity", opt_json(r.byte_perplexity)},
                        {"tokens", r.tokens},
                        {"bytes", r.bytes},
                        {"sum_nll", opt_json(r.sum_nll)},
                        {"nonfinite_tokens", r.nonfinite},
                        {"windows", r.windows},
                        {"docs_used", r.docs_used},
                        {"docs_skipped", r.docs_skipped},
                        {"batch", r.batch},
                        {"seconds", r.seconds},
                        {"peak_rss_mb", r.peak_rss_mb},
                        {"note", r.note.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.note)}};
}

nlohmann::json statistics_json(Protocol p) {
  nlohmann::json j;
  if (p == Protocol::PG19) {
    j["ppl"] = "exp(mean_nll), mean_nll = mean NLL (nats) over all scored tokens of all windows";
    j["se"] = "delta method: nll_se = sd(per-token NLL) / sqrt(tokens) (sample sd, n-1), ppl_se = ppl * nll_se; "
              "tokens of one window are correlated, so this understates the spread across documents";
  } else {
    j["ppl"] = "exp(mean_nll), mean_nll = mean over documents of each document's mean NLL (nats)";
    j["se"] = "delta method over documents: nll_se = sd(per-document mean NLL) / sqrt(documents) (sample sd, "
              "n-1), ppl_se = ppl * nll_se; null with a single document";
  }
  j["bits_per_byte"] = "lm-evaluation-harness: sum_nll / (bytes * ln 2), bytes = UTF-8 bytes of the scored target "
                       "tokens (Tokenizer::token_bytes), summed over all scored tokens";
  j["byte_perplexity"] = "lm-evaluation-harness: exp(sum_nll / bytes)";
  j["nll"] = "-log_softmax(logits)[target] = logsumexp(logits) - logits[target], logits in fp32 (bf16 "
             "models on CUDA: the bf16 LM-head output, read directly), logsumexp accumulated in fp32, the difference "
             "and every sum in fp64";
  return j;
}

}  // namespace mx
