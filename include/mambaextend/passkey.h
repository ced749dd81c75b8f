// Passkey retrieval (method.md §4): the DeciMamba / MambaExtend generator (BABILong NoiseInjectionDataset) with
// Gutenberg text instead of WikiText-2 as the haystack, the evaluation grid (depths × lengths, greedy decoding of
// at most 10 new tokens, two success rules) and the training samples of the `passkey` calibration objective.
//
// One sample, in tokens (each piece tokenized on its own, as the published generator does):
//   prompt  = tok(kPasskeyQuestion) + context + tok(kPasskeyAnswerPrefix)
//   context = haystack sentences with the needle tok(needle(K)) inserted between two of them
//   answer  = tok(to_string(K)) + [EOS = 0]          (the training target; K is not zero-padded)
// "length" L counts the context only (haystack + needle), exactly as the published generator's sample_size:
// the model input is L + |question| + |answer prefix| tokens (+ |answer| when training).
// Haystack: a run of consecutive sentences of the pool (wrapping at the end), starting at a seeded random
// sentence; the last one is cut so that haystack + needle = L tokens exactly.
// Needle placement: at a sentence boundary whose token offset o in the context satisfies
//   floor(L·max(0, d−0.1)) <= o <= floor(L·min(1, d+0.1)) − needle_len,
// chosen uniformly among the boundaries in that band (training samples: the band is the whole context).
// If a haystack has no boundary in the band (very long sentences), the next seeded haystack is tried.
// Keys: the key space 0..99999 is split once and for all into two halves by a fixed hash of the key (the role of
// the published codes_test.txt / codes_train.txt): evaluation keys are uniform over the evaluation half,
// training keys over the training half, so no training key is ever an evaluation key, whatever the seeds.
// Every sample is drawn from its own std::mt19937_64 seeded by (seed, split, L, depth, sample index): a cell
// does not change when the grid around it changes.
// Sentences (a simple rule, documented at split_sentences) shorter than 10 tokens are dropped, as the published
// SentenceSampler drops sentences under 10 tokens.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include "mambaextend/calibrate.h"
#include "mambaextend/corpus.h"
#include "mambaextend/eval.h"
#include "mambaextend/model.h"
#include "mambaextend/tokenizer.h"

namespace mx {

inline constexpr const char* kPasskeyQuestion =
    "There is an important pass key hidden inside a lot of irrelevant text. Find it and memorize it:\n";
inline constexpr const char* kPasskeyAnswerPrefix = "\nAnswer: ";
inline constexpr int64_t kPasskeyMaxKey = 99999;
inline constexpr int64_t kPasskeyMinSentenceTokens = 10;
inline constexpr int64_t kPasskeyMaxNewTokens = 10;  // the published eval_max_len
// "The pass key is {K}. Remember it. {K} is the pass key. "
std::string passkey_needle(int64_t key);

// Splits a document into sentences. Rule: lines are joined into paragraphs at blank lines; whitespace runs
// become one space; a sentence ends at the end of a paragraph, or after '.', '!' or '?' (plus any closing
// quotes or brackets right after it) followed by a space, except after a common abbreviation (Mr. Mrs. Dr. St.
// ...) or a single capital letter (an initial). Returns trimmed, non-empty sentences in order.
std::vector<std::string> split_sentences(const std::string& text);

// The haystack: the tokenized sentences of a corpus (each tokenized as " " + sentence, so consecutive sentences
// decode with one space between them), those with fewer than kPasskeyMinSentenceTokens tokens dropped.
struct SentencePool {
  std::vector<std::vector<int64_t>> sentences;
  std::unordered_set<uint64_t> hashes;  // 64-bit FNV-1a of each kept sentence's text (overlap checks)
  int64_t tokens = 0;
  int64_t documents = 0;
  int64_t excluded = 0;  // sentences dropped because `exclude` holds them
};
// Throws DataError when no sentence is left. With `exclude`, every sentence whose text is in exclude->hashes is
// dropped: a training pool built with exclude = the evaluation pool shares no sentence with it.
SentencePool make_sentence_pool(const std::vector<Document>& docs, const Tokenizer& tok,
                                const SentencePool* exclude = nullptr);
uint64_t sentence_hash(const std::string& sentence);

enum class KeySplit { Eval, Train };
bool is_eval_key(int64_t key);  // the fixed split of 0..99999 (about half each)

struct PasskeySample {
  int64_t length = 0;       // L: context tokens
  double depth = 0;         // needle depth d (training: -1, anywhere)
  int64_t index = 0;        // sample index within its cell
  int64_t key = 0;
  int64_t control_key = 0;      // another key of the same half, as many tokens, absent from the prompt: a control
  std::vector<int64_t> prompt;  // question + context + answer prefix
  std::vector<int64_t> answer;  // key tokens + EOS
  int64_t context_begin = 0;    // = |question| tokens: prompt[context_begin, context_begin + L) is the context
  int64_t needle_offset = 0;    // token offset of the needle within the context
  int64_t needle_len = 0;
  int64_t band_lo = 0, band_hi = 0;  // allowed needle offsets [band_lo, band_hi] (inclusive)
  int64_t haystack_start = 0;        // index of the first haystack sentence in the pool
  int64_t attempts = 1;              // haystacks drawn until one had a boundary in the band
};

// One sample. depth in [0, 1] places the needle in its band; depth < 0 (training) anywhere in the context.
// Throws UsageError for L too small to hold the needle, DataError when no haystack of the pool has a sentence
// boundary in the band after 64 draws.
PasskeySample make_passkey_sample(const Tokenizer& tok, const SentencePool& pool, int64_t length, double depth,
                                  int64_t index, KeySplit split, uint64_t seed);

// The two success rules, applied to the decoded continuation (EOS decodes to "<|endoftext|>"):
//   published: to_string(key) is one of output.split("<|endoftext|>")[0].split(' ')  (so "57909." fails)
//   strict:    the first run of ASCII digits of output.split("<|endoftext|>")[0] equals to_string(key)
bool passkey_success_published(const std::string& output, int64_t key);
bool passkey_success_strict(const std::string& output, int64_t key);

// ---- the evaluation grid ---------------------------------------------------------------------------------

struct PasskeyOptions {
  std::vector<int64_t> lengths;                          // context lengths L
  std::vector<double> depths = {0, 0.25, 0.5, 0.75, 1};  // needle depths d
  int64_t samples = 1;                                   // samples per cell (published: 1)
  uint64_t seed = 0;
  int64_t max_new_tokens = kPasskeyMaxNewTokens;
  int64_t segment_len = 4096;  // prefill segment
};
void check_passkey_options(const PasskeyOptions& o);  // UsageError on bad values

struct PasskeyResult {
  PasskeySample sample;
  std::vector<int64_t> output_ids;
  std::string output;  // decoded continuation (special tokens included)
  bool success_published = false, success_strict = false;
  // Teacher-forced mean cross-entropy (nats per token) of the answer (key tokens + EOS) after the prompt: the
  // `passkey` calibration objective measured on this evaluation sample, a graded signal where greedy fails.
  double answer_nll = 0;
  // The same for the control key (not in the context). margin = control_nll − answer_nll > 0 when the model
  // prefers the key it was shown to one it was not: retrieval, as opposed to merely expecting digits.
  double control_nll = 0;
  double seconds = 0;
};
struct PasskeyCell {
  int64_t length = 0;
  double depth = 0;
  int64_t samples = 0, published = 0, strict = 0;  // counts of successes
  double answer_nll = 0, control_nll = 0;          // means over the cell's samples
  double seconds = 0;
};
struct PasskeyReport {
  PasskeyOptions options;
  std::vector<PasskeyCell> cells;      // lengths outer, depths inner
  std::vector<PasskeyResult> results;  // cell by cell, samples inner
  double seconds = 0;
};
// Called after every sample: (samples done, samples total, the result).
using PasskeyProgress = std::function<void(int64_t, int64_t, const PasskeyResult&)>;

// Every sample: one segmented prefill of the prompt, then from copies of that state the teacher-forced NLL of the
// answer and of the control answer, then greedy decoding (generate.h `decode`, Δ scales in every step).
PasskeyReport evaluate_passkey(const MambaLM& model, const DtScales& scales, const Tokenizer& tok,
                               const SentencePool& pool, const PasskeyOptions& opts,
                               const PasskeyProgress& progress = {});

// JSON of the report's cells, samples and the protocol description (the heatmap of `passkey --heatmap` is drawn
// by the report figures: report::passkey_rules_figure).
nlohmann::json passkey_report_json(const PasskeyReport& r);
nlohmann::json passkey_protocol_json();

// ---- the calibration objective `passkey` (method.md §3) ----------------------------------------------------

// Training windows: `n` samples of context length L, needle anywhere, keys from the training half, haystack from
// `train_pool` (build it with exclude = the evaluation pool). Each window is prompt + answer; the scored positions
// predict the answer tokens (key + EOS), i.e. score_from = |prompt| − 1, so windows_nll / the calibration
// objectives give the cross-entropy on the answer tokens. Sample i uses index i (seeded as above).
std::vector<ScoredWindow> passkey_train_windows(const Tokenizer& tok, const SentencePool& train_pool, int64_t length,
                                                int64_t n, uint64_t seed);

// Which corpus each use of a --data path reads (the "train split vs the eval's" rule):
//   evaluation (`passkey --data D`):    D/test when D has a test/ subdirectory, else D itself;
//   training (`calibrate --data D`):     D/train when D has a train/ subdirectory, else D itself;
//   excluded from training:              D/test when it exists, else the "test" directory next to D (D itself
//                                        when D is the test split, which then leaves nothing to train on: an
//                                        error); else nothing is known and only the key split separates the two
//                                        (logged as a warning).
std::filesystem::path passkey_eval_corpus(const std::filesystem::path& data);
struct PasskeyTrainCorpus {
  std::filesystem::path train;     // the haystack corpus
  std::filesystem::path excluded;  // the evaluation corpus whose sentences are removed ("" = none known)
};
PasskeyTrainCorpus passkey_train_corpus(const std::filesystem::path& data);

// The `passkey` calibration objective's set for calibrate: passkey_train_windows over the training haystack of
// `data` (passkey_train_corpus, evaluation sentences excluded; DataError when nothing is left, e.g. when the
// training and evaluation corpora are the same). protocol = ProofPile so that the calibration NLL is the mean
// over samples of each sample's mean cross-entropy on its answer tokens, as the published loss (each sample's
// CE over key + EOS, averaged over the batch). The windows are L + |question| + |answer prefix| + |answer|
// tokens long, which varies by a token or two with the key: score them one window per forward.
CalibrationSet passkey_calibration_set(const std::filesystem::path& data, const Tokenizer& tok, int64_t length,
                                       int64_t samples, uint64_t seed);

}  // namespace mx
