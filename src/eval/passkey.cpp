// Passkey retrieval (passkey.h, method.md §4): sentence splitting, the haystack pool, the seeded sample
// generator (needle band, exact context length, key split), the two success rules, the evaluation grid with
// greedy decoding and teacher-forced answer / control-key NLLs, its JSON, and the training windows and data-split
// rule of the `passkey` calibration objective.
// Reference: BABILong's SentenceSampler / NoiseInjectionDataset as used by DeciMamba and MambaExtend
// (PasskeyRetrieval/finetune_ssm.py, get_data_loaders_babilong, pct_delta = 0.1, run_niah_evaluator).
// Limits: batch 1 (every sample has its own prompt); the haystack may repeat sentences when the pool holds
// fewer tokens than L (it wraps around).
#include "mambaextend/passkey.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <set>

#include "mambaextend/error.h"
#include "mambaextend/generate.h"
#include "mambaextend/log.h"

namespace mx {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// The seed of one sample's generator: a hash chain over everything that identifies the sample.
uint64_t sample_seed(uint64_t seed, KeySplit split, int64_t length, double depth, int64_t index) {
  uint64_t depth_bits = 0;
  static_assert(sizeof depth_bits == sizeof depth, "double is 64-bit");
  std::memcpy(&depth_bits, &depth, sizeof depth);
  uint64_t h = splitmix64(seed);
  for (uint64_t v : {split == KeySplit::Eval ? uint64_t{0x4556414C} : uint64_t{0x545241494E},
                     static_cast<uint64_t>(length), depth_bits, static_cast<uint64_t>(index)})
    h = splitmix64(h ^ v);
  return h;
}

// Uniform integer in [0, n) without modulo bias.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = rng();
  while (x >= limit);
  return x % n;
}

int64_t draw_key(std::mt19937_64& rng, KeySplit split) {
  for (;;) {
    const auto k = static_cast<int64_t>(uniform_below(rng, kPasskeyMaxKey + 1));
    if (is_eval_key(k) == (split == KeySplit::Eval)) return k;
  }
}

std::vector<int64_t> encode64(const Tokenizer& tok, const std::string& text) {
  const auto ids = tok.encode(text);
  return std::vector<int64_t>(ids.begin(), ids.end());
}

bool is_abbreviation(const std::string& word) {
  static const std::set<std::string> kAbbrev = {"Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Mt", "Messrs", "Mme",
                                                "Prof", "Rev", "Capt", "Col", "Gen", "Lt", "Sgt", "vs", "etc",
                                                "viz", "cf", "No", "Vol", "Ch", "pp", "i.e", "e.g"};
  std::string w = word;
  while (!w.empty() && w.front() != '\0' && std::strchr("\"'([", w.front()) != nullptr) w.erase(0, 1);
  if (w.size() == 1 && w[0] >= 'A' && w[0] <= 'Z') return true;  // an initial: "G. K. Chesterton"
  return kAbbrev.count(w) > 0;
}

// Length of a closing quote or bracket at s[i] (ASCII or the UTF-8 ” ’ »), 0 if none.
size_t closer_len(const std::string& s, size_t i) {
  if (s[i] != '\0' && std::strchr("\"')]", s[i]) != nullptr) return 1;
  for (const char* c : {"\xE2\x80\x9D", "\xE2\x80\x99", "\xC2\xBB"})
    if (s.compare(i, std::strlen(c), c) == 0) return std::strlen(c);
  return 0;
}

void split_paragraph(const std::string& p, std::vector<std::string>& out) {
  size_t start = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] != '.' && p[i] != '!' && p[i] != '?') continue;
    size_t j = i + 1;
    while (j < p.size()) {
      const size_t c = closer_len(p, j);
      if (c == 0) break;
      j += c;
    }
    if (j < p.size() && p[j] != ' ') continue;
    if (p[i] == '.') {
      const size_t w = p.rfind(' ', i);
      const size_t wb = w == std::string::npos || w < start ? start : w + 1;
      if (is_abbreviation(p.substr(wb, i - wb))) continue;
    }
    out.push_back(p.substr(start, j - start));
    start = j + 1;
    i = j;
  }
  if (start < p.size()) out.push_back(p.substr(start));
}

std::string json_depth_key(double d) { return fmt::format("{:g}", d); }

// Mean −log p of `answer` fed after the prompt (teacher forcing) from a copy of the prefilled state; `logits` (V)
// are the prompt's last. In fp64 over all V_pad logits, as windows_nll.
double answer_nll(const MambaLM& model, const DtScales& scales, at::Tensor logits, const State& prefilled,
                  const std::vector<int64_t>& answer) {
  at::NoGradGuard no_grad;
  State st;
  for (const auto& l : prefilled.layers) st.layers.push_back({l.conv.clone(), l.ssm.clone()});
  const auto id_opts = at::TensorOptions().dtype(at::kLong).device(model.options().device);
  double sum = 0;
  for (size_t k = 0; k < answer.size(); ++k) {
    const auto l = logits.to(at::kDouble);  // (V)
    sum += at::logsumexp(l, 0).item<double>() - l[answer[k]].item<double>();
    if (k + 1 < answer.size()) logits = model.step(at::full({1}, answer[k], id_opts), st, scales).reshape({-1});
  }
  return sum / static_cast<double>(answer.size());
}

}  // namespace

std::string passkey_needle(int64_t key) {
  return fmt::format("The pass key is {}. Remember it. {} is the pass key. ", key, key);
}

bool is_eval_key(int64_t key) { return (splitmix64(static_cast<uint64_t>(key) ^ 0x50415353u) >> 63) == 0; }

uint64_t sentence_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a 64
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

std::vector<std::string> split_sentences(const std::string& text) {
  std::vector<std::string> out;
  std::string para;
  auto flush = [&] {
    if (!para.empty()) split_paragraph(para, out);
    para.clear();
  };
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    bool blank = true;
    for (size_t i = pos; i < nl; ++i) {
      char c = text[i];
      if (c == '\t' || c == '\r' || c == '\f' || c == '\v') c = ' ';
      if (c == ' ') {
        if (!para.empty() && para.back() != ' ') para += ' ';
        continue;
      }
      if (blank && !para.empty() && para.back() != ' ') para += ' ';  // the line break inside a paragraph
      blank = false;
      para += c;
    }
    if (blank) flush();
    pos = nl + 1;
  }
  flush();
  for (auto& s : out)
    while (!s.empty() && s.back() == ' ') s.pop_back();
  out.erase(std::remove_if(out.begin(), out.end(), [](const std::string& s) { return s.empty(); }), out.end());
  return out;
}

SentencePool make_sentence_pool(const std::vector<Document>& docs, const Tokenizer& tok, const SentencePool* exclude) {
  SentencePool pool;
  int64_t seen = 0;
  for (const auto& d : docs) {
    bool used = false;
    for (const auto& s : split_sentences(d.text)) {
      ++seen;
      const uint64_t h = sentence_hash(s);
      if (exclude && exclude->hashes.count(h)) {
        ++pool.excluded;
        continue;
      }
      auto ids = encode64(tok, " " + s);
      if (static_cast<int64_t>(ids.size()) < kPasskeyMinSentenceTokens) continue;
      pool.tokens += static_cast<int64_t>(ids.size());
      pool.sentences.push_back(std::move(ids));
      pool.hashes.insert(h);
      used = true;
    }
    pool.documents += used ? 1 : 0;
  }
  if (pool.sentences.empty())
    throw DataError(fmt::format("passkey haystack: no sentence of >= {} tokens in {} documents ({} sentences, {} "
                                "excluded as part of the evaluation haystack)", kPasskeyMinSentenceTokens,
                                docs.size(), seen, pool.excluded));
  return pool;
}

PasskeySample make_passkey_sample(const Tokenizer& tok, const SentencePool& pool, int64_t length, double depth,
                                  int64_t index, KeySplit split, uint64_t seed) {
  if (pool.sentences.empty()) throw DataError("passkey: the haystack pool is empty");
  if (std::isnan(depth) || depth > 1)
    throw UsageError(fmt::format("passkey depth {} must be in [0, 1] (or negative: anywhere)", depth));
  std::mt19937_64 rng(sample_seed(seed, split, length, depth, index));
  PasskeySample s;
  s.length = length;
  s.depth = depth < 0 ? -1 : depth;
  s.index = index;
  s.key = draw_key(rng, split);
  const auto needle = encode64(tok, passkey_needle(s.key));
  s.needle_len = static_cast<int64_t>(needle.size());
  const int64_t bg_len = length - s.needle_len;  // haystack tokens
  if (bg_len < 1)
    throw UsageError(fmt::format("passkey length {} cannot hold the {}-token needle and any haystack", length,
                                 s.needle_len));
  if (depth >= 0) {
    s.band_lo = static_cast<int64_t>(std::floor(static_cast<double>(length) * std::max(0.0, depth - 0.1)));
    s.band_hi = static_cast<int64_t>(std::floor(static_cast<double>(length) * std::min(1.0, depth + 0.1))) -
                s.needle_len;
  } else {
    s.band_lo = 0;
    s.band_hi = bg_len;
  }
  if (s.band_hi < s.band_lo)
    throw UsageError(fmt::format("passkey length {} is too short for depth {}: the band [{}, {}] cannot hold the "
                                 "{}-token needle", length, depth, s.band_lo, s.band_hi + s.needle_len, s.needle_len));

  const auto n_pool = static_cast<uint64_t>(pool.sentences.size());
  constexpr int64_t kMaxAttempts = 64;
  for (s.attempts = 1; s.attempts <= kMaxAttempts; ++s.attempts) {
    const auto start = uniform_below(rng, n_pool);
    std::vector<const std::vector<int64_t>*> sents;  // the haystack's sentences, the last one cut below
    std::vector<int64_t> valid;                      // indices i whose start offset lies in the band
    int64_t total = 0;
    for (uint64_t k = start; total < bg_len; k = (k + 1) % n_pool) {
      if (total >= s.band_lo && total <= s.band_hi) valid.push_back(static_cast<int64_t>(sents.size()));
      sents.push_back(&pool.sentences[k]);
      total += static_cast<int64_t>(pool.sentences[k].size());
    }
    if (valid.empty()) continue;
    const int64_t at = valid[uniform_below(rng, valid.size())];
    s.haystack_start = static_cast<int64_t>(start);
    const auto q = encode64(tok, kPasskeyQuestion);
    s.context_begin = static_cast<int64_t>(q.size());
    s.prompt = q;
    int64_t offset = 0;
    for (size_t i = 0; i < sents.size(); ++i) {
      if (static_cast<int64_t>(i) == at) {
        s.needle_offset = offset;
        s.prompt.insert(s.prompt.end(), needle.begin(), needle.end());
      }
      const int64_t take = std::min<int64_t>(static_cast<int64_t>(sents[i]->size()), bg_len - offset);
      s.prompt.insert(s.prompt.end(), sents[i]->begin(), sents[i]->begin() + take);
      offset += take;
    }
    const auto a = encode64(tok, kPasskeyAnswerPrefix);
    s.prompt.insert(s.prompt.end(), a.begin(), a.end());
    s.answer = encode64(tok, std::to_string(s.key));
    s.answer.push_back(0);  // EOS
    // The control key is drawn last (the sample above does not depend on it) and has as many tokens as the key,
    // so that the two answers' mean NLLs compare like with like.
    for (int tries = 0;; ++tries) {
      s.control_key = draw_key(rng, split);
      if (s.control_key == s.key) continue;
      if (tries >= 1000 || encode64(tok, std::to_string(s.control_key)).size() + 1 == s.answer.size()) break;
    }
    return s;
  }
  throw DataError(fmt::format("passkey: {} haystacks of {} tokens had no sentence boundary in the needle band "
                              "[{}, {}] (depth {}): the haystack sentences are too long for this length", kMaxAttempts,
                              bg_len, s.band_lo, s.band_hi, depth));
}

bool passkey_success_published(const std::string& output, int64_t key) {
  const std::string head = output.substr(0, output.find("<|endoftext|>"));
  const std::string k = std::to_string(key);
  size_t start = 0;
  for (;;) {
    const size_t sp = head.find(' ', start);
    if (head.compare(start, sp == std::string::npos ? std::string::npos : sp - start, k) == 0) return true;
    if (sp == std::string::npos) return false;
    start = sp + 1;
  }
}

bool passkey_success_strict(const std::string& output, int64_t key) {
  const std::string head = output.substr(0, output.find("<|endoftext|>"));
  const size_t b = head.find_first_of("0123456789");
  if (b == std::string::npos) return false;
  const size_t e = head.find_first_not_of("0123456789", b);
  return head.substr(b, e == std::string::npos ? std::string::npos : e - b) == std::to_string(key);
}

void check_passkey_options(const PasskeyOptions& o) {
  if (o.lengths.empty()) throw UsageError("passkey: give at least one context length (--lengths)");
  std::set<int64_t> seen_l;
  for (int64_t L : o.lengths) {
    if (L < 64) throw UsageError(fmt::format("--lengths: {} is too short for a passkey sample (at least 64)", L));
    if (!seen_l.insert(L).second) throw UsageError(fmt::format("--lengths: {} is given twice", L));
  }
  if (o.depths.empty()) throw UsageError("passkey: give at least one needle depth (--depths)");
  std::set<double> seen_d;
  for (double d : o.depths) {
    if (!(d >= 0 && d <= 1)) throw UsageError(fmt::format("--depths: {} is not in [0, 1]", d));
    if (!seen_d.insert(d).second) throw UsageError(fmt::format("--depths: {} is given twice", d));
  }
  if (o.samples < 1) throw UsageError(fmt::format("--samples {} must be at least 1", o.samples));
  if (o.max_new_tokens < 1) throw UsageError(fmt::format("max new tokens {} must be at least 1", o.max_new_tokens));
  if (o.segment_len < 1) throw UsageError(fmt::format("--segment-len {} must be at least 1", o.segment_len));
}

PasskeyReport evaluate_passkey(const MambaLM& model, const DtScales& scales, const Tokenizer& tok,
                               const SentencePool& pool, const PasskeyOptions& opts, const PasskeyProgress& progress) {
  check_passkey_options(opts);
  // Build every sample first: a length or depth that cannot be generated fails before any forward runs.
  std::vector<PasskeySample> samples;
  for (int64_t L : opts.lengths)
    for (double d : opts.depths)
      for (int64_t i = 0; i < opts.samples; ++i)
        samples.push_back(make_passkey_sample(tok, pool, L, d, i, KeySplit::Eval, opts.seed));
  PasskeyReport rep;
  rep.options = opts;
  GenerateOptions g;
  g.max_new_tokens = opts.max_new_tokens;
  g.segment_len = opts.segment_len;
  g.vocab_limit = std::min<int64_t>(tok.vocab_size(), model.config().vocab_size);  // greedy, stop at EOS
  const auto t_all = std::chrono::steady_clock::now();
  const auto total = static_cast<int64_t>(samples.size());
  for (size_t n = 0; n < samples.size(); ++n) {
    PasskeyResult r;
    r.sample = std::move(samples[n]);
    const auto t0 = std::chrono::steady_clock::now();
    State state;
    const at::Tensor logits = prefill(model, scales, r.sample.prompt, g.segment_len, state);  // (V_pad)
    r.answer_nll = answer_nll(model, scales, logits, state, r.sample.answer);
    auto control = encode64(tok, std::to_string(r.sample.control_key));
    control.push_back(0);
    r.control_nll = answer_nll(model, scales, logits, state, control);
    r.output_ids = decode(model, scales, logits, state, g).tokens;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.output = tok.decode(std::vector<uint32_t>(r.output_ids.begin(), r.output_ids.end()));
    r.success_published = passkey_success_published(r.output, r.sample.key);
    r.success_strict = passkey_success_strict(r.output, r.sample.key);
    if (rep.cells.empty() || rep.cells.back().length != r.sample.length || rep.cells.back().depth != r.sample.depth)
      rep.cells.push_back(PasskeyCell{r.sample.length, r.sample.depth});
    PasskeyCell& c = rep.cells.back();
    ++c.samples;
    c.published += r.success_published ? 1 : 0;
    c.strict += r.success_strict ? 1 : 0;
    c.answer_nll += (r.answer_nll - c.answer_nll) / static_cast<double>(c.samples);  // running means
    c.control_nll += (r.control_nll - c.control_nll) / static_cast<double>(c.samples);
    c.seconds += r.seconds;
    rep.results.push_back(std::move(r));
    if (progress) progress(static_cast<int64_t>(n) + 1, total, rep.results.back());
  }
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();
  return rep;
}

nlohmann::json passkey_protocol_json() {
  return {
      {"question", kPasskeyQuestion},
      {"needle", "The pass key is {K}. Remember it. {K} is the pass key. "},
      {"answer_prefix", kPasskeyAnswerPrefix},
      {"prompt", "tok(question) + context + tok(answer_prefix); each piece tokenized on its own, no BOS"},
      {"length", "L counts the context tokens only (haystack + needle), as the published sample_size; the model "
                 "input is L + |question| + |answer_prefix| tokens"},
      {"haystack", "consecutive sentences of --data from a seeded random start (wrapping), each tokenized as ' ' + "
                   "sentence, sentences under 10 tokens dropped, the last one cut so haystack + needle = L"},
      {"sentences", "paragraphs at blank lines; a sentence ends at a paragraph end or after . ! ? (+ closing quotes) "
                    "followed by a space, except after common abbreviations and single capital initials"},
      {"needle_band", "the needle goes at a sentence boundary with token offset o, floor(L*max(0,d-0.1)) <= o <= "
                      "floor(L*min(1,d+0.1)) - needle_len, uniform among such boundaries"},
      {"keys", "uniform over the evaluation half of 0..99999 (a fixed hash splits the keys into evaluation and "
               "calibration halves), not zero-padded; one std::mt19937_64 per sample seeded by (seed, L, d, index)"},
      {"decoding", "greedy, at most 10 new tokens, stop at EOS (id 0); the Δ scales apply in prefill and decode"},
      {"success_published", "str(K) in output.split('<|endoftext|>')[0].split(' ')"},
      {"success_strict", "the first run of digits of output.split('<|endoftext|>')[0] equals str(K)"},
      {"answer_nll", "teacher-forced mean cross-entropy (nats/token) of tok(str(K)) + EOS after the prompt, over "
                     "all V_pad logits: the passkey calibration objective on the evaluation sample"},
      {"control_nll", "the same for a control key of the same half that is not in the context; margin = "
                      "control_nll - answer_nll > 0 means the model prefers the key it was shown"},
  };
}

nlohmann::json passkey_report_json(const PasskeyReport& r) {
  nlohmann::json cells = nlohmann::json::array(), samples = nlohmann::json::array();
  int64_t n = 0, pub = 0, strict = 0;
  double nll_sum = 0, control_sum = 0;
  for (const auto& c : r.cells) {
    cells.push_back({{"length", c.length}, {"depth", c.depth}, {"samples", c.samples},
                     {"success_published", static_cast<double>(c.published) / static_cast<double>(c.samples)},
                     {"success_strict", static_cast<double>(c.strict) / static_cast<double>(c.samples)},
                     {"answer_nll", c.answer_nll}, {"control_nll", c.control_nll},
                     {"margin", c.control_nll - c.answer_nll}, {"seconds", c.seconds}});
    nll_sum += c.answer_nll * static_cast<double>(c.samples);
    control_sum += c.control_nll * static_cast<double>(c.samples);
    n += c.samples;
    pub += c.published;
    strict += c.strict;
  }
  for (const auto& x : r.results) {
    const auto& s = x.sample;
    samples.push_back({{"length", s.length}, {"depth", s.depth}, {"sample", s.index}, {"key", s.key},
                       {"needle_offset", s.needle_offset}, {"needle_tokens", s.needle_len},
                       {"band", {s.band_lo, s.band_hi}}, {"prompt_tokens", s.prompt.size()},
                       {"haystack_start_sentence", s.haystack_start}, {"haystack_attempts", s.attempts},
                       {"output", x.output}, {"output_ids", x.output_ids},
                       {"success_published", x.success_published}, {"success_strict", x.success_strict},
                       {"answer_nll", x.answer_nll}, {"control_key", s.control_key},
                       {"control_nll", x.control_nll}, {"seconds", x.seconds}});
  }
  std::vector<std::string> depths;
  for (double d : r.options.depths) depths.push_back(json_depth_key(d));
  return {{"lengths", r.options.lengths},
          {"depths", r.options.depths},
          {"samples_per_cell", r.options.samples},
          {"seed", r.options.seed},
          {"max_new_tokens", r.options.max_new_tokens},
          {"segment_len", r.options.segment_len},
          {"score", {{"samples", n},
                     {"published", n ? static_cast<double>(pub) / static_cast<double>(n) : 0.0},
                     {"strict", n ? static_cast<double>(strict) / static_cast<double>(n) : 0.0},
                     {"answer_nll", n ? nll_sum / static_cast<double>(n) : 0.0},
                     {"control_nll", n ? control_sum / static_cast<double>(n) : 0.0},
                     {"margin", n ? (control_sum - nll_sum) / static_cast<double>(n) : 0.0}}},
          {"cells", cells},
          {"results", samples},
          {"seconds", r.seconds},
          {"protocol", passkey_protocol_json()}};
}

std::vector<ScoredWindow> passkey_train_windows(const Tokenizer& tok, const SentencePool& train_pool, int64_t length,
                                                int64_t n, uint64_t seed) {
  if (n < 1) throw UsageError(fmt::format("passkey objective: {} samples, expected at least 1", n));
  std::vector<ScoredWindow> out;
  for (int64_t i = 0; i < n; ++i) {
    const PasskeySample s = make_passkey_sample(tok, train_pool, length, -1, i, KeySplit::Train, seed);
    ScoredWindow w;
    w.doc = i;
    w.ids = s.prompt;
    w.ids.insert(w.ids.end(), s.answer.begin(), s.answer.end());
    w.score_from = static_cast<int64_t>(s.prompt.size()) - 1;  // predicts answer[0] .. EOS
    out.push_back(std::move(w));
  }
  return out;
}

namespace {
bool is_dir(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_directory(p, ec);
}
}  // namespace

std::filesystem::path passkey_eval_corpus(const std::filesystem::path& data) {
  return is_dir(data / "test") ? data / "test" : data;
}

PasskeyTrainCorpus passkey_train_corpus(const std::filesystem::path& data) {
  PasskeyTrainCorpus c;
  c.train = is_dir(data / "train") ? data / "train" : data;
  const auto norm = data.lexically_normal();
  const auto dir = norm.has_filename() ? norm : norm.parent_path();  // "books/train/" -> "books/train"
  if (is_dir(data / "test"))
    c.excluded = data / "test";
  else if (dir.has_parent_path() && is_dir(dir.parent_path() / "test"))
    c.excluded = dir.parent_path() / "test";  // a sibling split; D itself when D is the test split
  return c;
}

CalibrationSet passkey_calibration_set(const std::filesystem::path& data, const Tokenizer& tok, int64_t length,
                                       int64_t samples, uint64_t seed) {
  const PasskeyTrainCorpus c = passkey_train_corpus(data);
  SentencePool eval_pool;
  if (!c.excluded.empty()) {
    eval_pool = make_sentence_pool(read_corpus(c.excluded), tok);
  } else {
    log::warn(fmt::format("passkey objective: no evaluation split found next to {} (no test/ directory): the "
                          "training haystack cannot be checked against the evaluation haystack; only the keys are "
                          "kept apart. Pass the books root or its train/ split as --data", data.string()));
  }
  const auto train_docs = read_corpus(c.train);
  const SentencePool pool = make_sentence_pool(train_docs, tok, c.excluded.empty() ? nullptr : &eval_pool);
  log::info(fmt::format("passkey objective: {} samples of context length {}, haystack {} ({} sentences, {} tokens; "
                        "{} sentences dropped as part of the evaluation haystack {})", samples, length,
                        c.train.string(), pool.sentences.size(), pool.tokens, pool.excluded,
                        c.excluded.empty() ? std::string("-") : c.excluded.string()));
  CalibrationSet set;
  set.protocol = Protocol::ProofPile;  // mean over samples of the per-sample mean NLL
  set.length = length;
  set.pred_len = 0;
  set.seed = seed;
  set.windows = passkey_train_windows(tok, pool, length, samples, seed);
  for (int64_t i = 0; i < samples; ++i) set.doc_names.push_back(fmt::format("passkey-train-{}", i));
  return set;
}

}  // namespace mx
