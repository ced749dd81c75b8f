// Text generation with a Mamba / Mamba2 LM and optional Δ scales (design.md `generate`, method.md §1):
//   prefill   the prompt runs through the full-sequence path (MambaLM::hidden_segmented, segments of at most
//             `segment_len` tokens with the state carried), and the LM head is applied to the last position only;
//   decode    then one MambaLM::step per new token, which applies the same Δ scales (the official MambaExtend
//             code forgets them in its decode step; we apply them on purpose, method.md §1 "Code-path caveats").
// Token choice: greedy (temperature 0: the first id of maximal logit) or sampling with temperature, top-k and
// top-p applied in that order (as Hugging Face's logits warpers), drawn with a std::mt19937_64 seeded by `seed`,
// so one seed gives one output on one build. Logits are read in fp64 on the CPU for the choice.
// Ids at or above `vocab_limit` (the tokenizer's vocabulary; the padding rows of the embedding have no text)
// are never chosen. Generation stops after an id in `stop_ids` (EOS, id 0, by default; the stop id is kept in
// the result) or after `max_new_tokens`.
// Limits: batch 1; the prompt must hold at least one token.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "mambaextend/model.h"

namespace mx {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy; > 0: sample from softmax(logits / temperature)
  int64_t top_k = 0;         // keep the k most likely ids (0: all)
  double top_p = 1.0;        // keep the smallest set of most likely ids whose probability reaches top_p (1: all)
  uint64_t seed = 0;
};
// Throws UsageError for a negative or non-finite temperature, top_k < 0, top_p outside (0, 1].
void check_sampling(const SamplingOptions& s);

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  SamplingOptions sampling;
  int64_t segment_len = 4096;           // prefill segment (tokens)
  std::vector<int64_t> stop_ids = {0};  // EOS = <|endoftext|> = id 0 for GPT-NeoX
  int64_t vocab_limit = 0;              // ids >= this are masked out; 0: no mask
};

struct GenerateResult {
  std::vector<int64_t> tokens;  // the new tokens, a final stop id included
  bool stopped = false;         // true when a stop id ended generation
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

// Runs the prompt (ids, each in [0, V_pad)) through the segmented forward from `state` (zero-initialised when
// empty), leaving `state` after the last prompt token. Returns the logits of the last position, (V_pad), in the
// model's logit dtype on its device.
at::Tensor prefill(const MambaLM& model, const DtScales& scales, const std::vector<int64_t>& prompt,
                   int64_t segment_len, State& state);

// Picks the next id from logits (V) (any dtype and device). Greedy when temperature == 0.
int64_t choose_token(const at::Tensor& logits, const SamplingOptions& s, int64_t vocab_limit, std::mt19937_64& rng);

// Decoding from a prefilled state: `logits` (V_pad) are those of the last token fed, `state` the state after it
// (advanced in place). `on_token` (optional) is called with each new id as soon as it is chosen.
GenerateResult decode(const MambaLM& model, const DtScales& scales, at::Tensor logits, State& state,
                      const GenerateOptions& opts, const std::function<void(int64_t)>& on_token = {});

// Prefill + decode.
GenerateResult generate(const MambaLM& model, const DtScales& scales, const std::vector<int64_t>& prompt,
                        const GenerateOptions& opts, const std::function<void(int64_t)>& on_token = {});

// Streams the bytes of consecutive tokens as text: push() returns the complete UTF-8 characters available so
// far and keeps an incomplete trailing sequence (a character split across tokens) for the next push; an invalid
// byte sequence is emitted as U+FFFD. finish() returns what is left (an incomplete tail becomes U+FFFD).
class Utf8Stream {
 public:
  std::string push(const std::string& bytes);
  std::string finish();

 private:
  std::string pending_;
};

}  // namespace mx
