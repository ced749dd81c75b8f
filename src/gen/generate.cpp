// Generation (generate.h): segmented prefill, recurrent decode with the Δ scales in every step, greedy or
// sampled token choice from a seeded std::mt19937_64, and a UTF-8 streamer that prints whole characters only.
// Sampling follows Hugging Face's warpers in order (temperature, top-k, top-p), in fp64 on the CPU:
//   p_i ∝ exp((l_i − max l) / T);  top-k keeps ids whose logit is ≥ the k-th largest (ties kept, as HF);
//   top-p keeps the most likely ids, in order of decreasing p, up to and including the first whose cumulative
//   probability reaches top_p (at least one id). The draw is u = 53 random bits / 2^53 in [0, 1), then the first
//   id (in decreasing-probability order, ties by id) whose cumulative kept probability exceeds u·Σkept.
#include "mambaextend/generate.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "mambaextend/error.h"

namespace mx {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

const char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence starting at s[i], 0 when s[i..] is a valid but incomplete prefix that
// ends the buffer, or -k when the k bytes at s[i..] are an invalid sequence (k >= 1) to replace by U+FFFD.
int utf8_sequence(const std::string& s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  int len;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) len = 2;
  else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // <= U+10FFFF
  } else {
    return -1;
  }
  for (int k = 1; k < len; ++k) {
    if (i + k >= s.size()) return 0;
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return -k;
  }
  return len;
}

}  // namespace

// ---- UTF-8 streaming ---------------------------------------------------------------------------------------

std::string Utf8Stream::push(const std::string& bytes) {
  pending_ += bytes;
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const int n = utf8_sequence(pending_, i);
    if (n == 0) break;  // an incomplete character at the end: wait for the next token
    if (n < 0) {
      out += kReplacement;
      i += static_cast<size_t>(-n);
    } else {
      out.append(pending_, i, static_cast<size_t>(n));
      i += static_cast<size_t>(n);
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string Utf8Stream::finish() {
  std::string out = push("");
  if (!pending_.empty()) out += kReplacement;
  pending_.clear();
  return out;
}

// ---- token choice ------------------------------------------------------------------------------------------

void check_sampling(const SamplingOptions& s) {
  if (!std::isfinite(s.temperature) || s.temperature < 0)
    throw UsageError(fmt::format("--temperature {} must be a finite number >= 0 (0: greedy)", s.temperature));
  if (s.top_k < 0) throw UsageError(fmt::format("--top-k {} must be >= 0 (0: off)", s.top_k));
  if (!(s.top_p > 0 && s.top_p <= 1)) throw UsageError(fmt::format("--top-p {} must be in (0, 1]", s.top_p));
}

int64_t choose_token(const at::Tensor& logits, const SamplingOptions& s, int64_t vocab_limit, std::mt19937_64& rng) {
  check_sampling(s);
  if (logits.dim() != 1 || logits.size(0) == 0)
    throw ShapeError(fmt::format("choose_token: logits must be (V) with V > 0, got {} dims", logits.dim()));
  const auto l = logits.detach().to(at::kCPU, at::kDouble).contiguous();  // (V)
  const double* p = l.data_ptr<double>();
  const int64_t V = vocab_limit > 0 ? std::min<int64_t>(vocab_limit, l.size(0)) : l.size(0);

  int64_t best = -1;
  for (int64_t i = 0; i < V; ++i)
    if (!std::isnan(p[i]) && (best < 0 || p[i] > p[best])) best = i;
  if (best < 0) throw Error("choose_token: every logit is NaN (the model overflowed)");
  if (s.temperature == 0 || std::isinf(p[best])) return best;

  // Candidates in decreasing logit order (ties: lower id first), NaN excluded.
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i)
    if (!std::isnan(p[i])) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[a] > p[b]; });
  size_t keep = order.size();
  if (s.top_k > 0 && static_cast<size_t>(s.top_k) < keep) {
    const double kth = p[order[static_cast<size_t>(s.top_k) - 1]];
    keep = static_cast<size_t>(s.top_k);
    while (keep < order.size() && p[order[keep]] == kth) ++keep;
  }
  std::vector<double> w(keep);
  double total = 0;
  for (size_t j = 0; j < keep; ++j) total += (w[j] = std::exp((p[order[j]] - p[best]) / s.temperature));
  if (s.top_p < 1) {
    double cum = 0;
    size_t n = 0;
    while (n < keep) {
      cum += w[n++] / total;
      if (cum >= s.top_p) break;
    }
    keep = std::max<size_t>(n, 1);
    total = std::accumulate(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(keep), 0.0);
  }
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53 * total;
  double cum = 0;
  for (size_t j = 0; j < keep; ++j) {
    cum += w[j];
    if (u < cum) return order[j];
  }
  return order[keep - 1];
}

// ---- prefill and decode ------------------------------------------------------------------------------------

at::Tensor prefill(const MambaLM& model, const DtScales& scales, const std::vector<int64_t>& prompt,
                   int64_t segment_len, State& state) {
  if (prompt.empty()) throw UsageError("generate: the prompt is empty (it must hold at least one token)");
  const int64_t L = static_cast<int64_t>(prompt.size());
  const auto ids = at::from_blob(const_cast<int64_t*>(prompt.data()), {1, L}, at::kLong).clone();  // (1, L)
  at::NoGradGuard no_grad;
  at::Tensor last;  // (1, 1, D) hidden state of the last prompt token
  model.hidden_segmented(
      ids, segment_len, scales,
      [&](int64_t start, const at::Tensor& h) {  // h (1, len, D)
        if (start + h.size(1) == L) last = h.narrow(1, h.size(1) - 1, 1);
      },
      &state);
  return model.logits(last).reshape({-1});  // (V_pad)
}

GenerateResult decode(const MambaLM& model, const DtScales& scales, at::Tensor logits, State& state,
                      const GenerateOptions& opts, const std::function<void(int64_t)>& on_token) {
  check_sampling(opts.sampling);
  if (opts.max_new_tokens < 0)
    throw UsageError(fmt::format("--max-new-tokens {} must be >= 0", opts.max_new_tokens));
  GenerateResult r;
  std::mt19937_64 rng(opts.sampling.seed);
  at::NoGradGuard no_grad;
  const auto t0 = std::chrono::steady_clock::now();
  const auto id_opts = at::TensorOptions().dtype(at::kLong).device(model.options().device);
  for (int64_t n = 0; n < opts.max_new_tokens; ++n) {
    const int64_t id = choose_token(logits, opts.sampling, opts.vocab_limit, rng);
    r.tokens.push_back(id);
    if (on_token) on_token(id);
    if (std::find(opts.stop_ids.begin(), opts.stop_ids.end(), id) != opts.stop_ids.end()) {
      r.stopped = true;
      break;
    }
    if (n + 1 == opts.max_new_tokens) break;  // no step for a token that will not be used
    logits = model.step(at::full({1}, id, id_opts), state, scales).reshape({-1});  // (V_pad)
  }
  r.decode_seconds = seconds_since(t0);
  return r;
}

GenerateResult generate(const MambaLM& model, const DtScales& scales, const std::vector<int64_t>& prompt,
                        const GenerateOptions& opts, const std::function<void(int64_t)>& on_token) {
  check_sampling(opts.sampling);
  if (opts.max_new_tokens < 0)
    throw UsageError(fmt::format("--max-new-tokens {} must be >= 0", opts.max_new_tokens));
  if (opts.segment_len < 1) throw UsageError(fmt::format("segment length {} must be >= 1", opts.segment_len));
  if (!scales.empty()) check_scales(model.config(), scales, "generate: dt scales");
  const auto t0 = std::chrono::steady_clock::now();
  State state;
  at::Tensor logits = prefill(model, scales, prompt, opts.segment_len, state);  // (V_pad)
  const double prefill_seconds = seconds_since(t0);
  GenerateResult r = decode(model, scales, logits, state, opts, on_token);
  r.prefill_seconds = prefill_seconds;
  return r;
}

}  // namespace mx
