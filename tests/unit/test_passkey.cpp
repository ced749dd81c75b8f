// Passkey retrieval (passkey.h, `mambaextend passkey`), with the real GPT-NeoX tokenizer and the bundled
// Gutenberg books (assets/books/{test,train}) as haystacks:
//   split_sentences on crafted text (paragraphs, abbreviations, initials, closing quotes);
//   the generator: context exactly L tokens, question / needle / answer prefix where they belong, the needle at a
//     sentence boundary inside its depth band, the haystack = consecutive pool sentences, reproducible for a seed
//     and different across seeds, keys not zero-padded;
//   the key split and the haystack exclusion: no training key is an evaluation key, no training sentence is an
//     evaluation sentence, and the same corpus for both is refused; the training windows score key + EOS;
//   the success rules on crafted outputs;
//   evaluate_passkey on a tiny random model: cells, counts, JSON and heatmap agree with the per-sample results;
//   the CLI end to end on the Mamba1 organism (JSON + SVG written; usage errors exit 2).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "mambaextend/calibrate.h"
#include "mambaextend/corpus.h"
#include "mambaextend/error.h"
#include "mambaextend/passkey.h"
#include "report/figures.h"
#include "mambaextend/random_model.h"
#include "mambaextend/tokenizer.h"
#include "unit/fixtures.h"
#include "unit/temp_dir.h"

namespace fs = std::filesystem;

namespace {

fs::path assets() { return mx::test::source_dir() / "assets"; }

const mx::Tokenizer& tokenizer() {
  static const mx::Tokenizer tok =
      mx::Tokenizer::from_file(assets() / "tokenizers" / "gpt-neox-20b" / "tokenizer.json");
  return tok;
}

// Pools are built once (tokenizing two books sentence by sentence takes a few seconds).
const mx::SentencePool& eval_pool() {
  static const mx::SentencePool p = mx::make_sentence_pool(mx::read_corpus(assets() / "books" / "test"), tokenizer());
  return p;
}
const mx::SentencePool& train_pool() {
  static const mx::SentencePool p =
      mx::make_sentence_pool(mx::read_corpus(assets() / "books" / "train"), tokenizer(), &eval_pool());
  return p;
}

std::vector<int64_t> enc(const std::string& s) {
  const auto ids = tokenizer().encode(s);
  return std::vector<int64_t>(ids.begin(), ids.end());
}

template <class V>
bool has_at(const std::vector<int64_t>& v, size_t at, const V& part) {
  return at + part.size() <= v.size() && std::equal(part.begin(), part.end(), v.begin() + static_cast<long>(at));
}

// Checks every structural promise of one sample against the pool it came from.
void check_sample(const mx::PasskeySample& s, const mx::SentencePool& pool) {
  const auto q = enc(mx::kPasskeyQuestion), a = enc(mx::kPasskeyAnswerPrefix), needle = enc(mx::passkey_needle(s.key));
  const int64_t L = s.length;
  ASSERT_EQ(static_cast<int64_t>(s.prompt.size()), static_cast<int64_t>(q.size()) + L + static_cast<int64_t>(a.size()));
  EXPECT_EQ(s.context_begin, static_cast<int64_t>(q.size()));
  EXPECT_TRUE(has_at(s.prompt, 0, q));
  EXPECT_TRUE(has_at(s.prompt, s.prompt.size() - a.size(), a));
  EXPECT_EQ(s.needle_len, static_cast<int64_t>(needle.size()));
  EXPECT_TRUE(has_at(s.prompt, static_cast<size_t>(s.context_begin + s.needle_offset), needle));
  // Band: floor(L·max(0, d−0.1)) <= offset <= floor(L·min(1, d+0.1)) − needle_len.
  if (s.depth >= 0) {
    EXPECT_EQ(s.band_lo, static_cast<int64_t>(std::floor(L * std::max(0.0, s.depth - 0.1))));
    EXPECT_EQ(s.band_hi, static_cast<int64_t>(std::floor(L * std::min(1.0, s.depth + 0.1))) - s.needle_len);
  }
  EXPECT_GE(s.needle_offset, s.band_lo);
  EXPECT_LE(s.needle_offset, s.band_hi);
  // The context without the needle is the pool's sentences from haystack_start on, cut at L − needle_len, and the
  // needle sits where one of those sentences starts.
  std::vector<int64_t> hay(s.prompt.begin() + s.context_begin, s.prompt.begin() + s.context_begin + s.needle_offset);
  hay.insert(hay.end(), s.prompt.begin() + s.context_begin + s.needle_offset + s.needle_len,
             s.prompt.begin() + s.context_begin + L);
  std::vector<int64_t> expect;
  std::set<int64_t> starts;
  for (size_t k = static_cast<size_t>(s.haystack_start); static_cast<int64_t>(expect.size()) < L - s.needle_len;
       k = (k + 1) % pool.sentences.size()) {
    starts.insert(static_cast<int64_t>(expect.size()));
    expect.insert(expect.end(), pool.sentences[k].begin(), pool.sentences[k].end());
  }
  expect.resize(static_cast<size_t>(L - s.needle_len));
  EXPECT_EQ(hay, expect);
  EXPECT_TRUE(starts.count(s.needle_offset)) << "needle at " << s.needle_offset << " is not a sentence boundary";
  EXPECT_EQ(s.answer, [&] {
    auto v = enc(std::to_string(s.key));
    v.push_back(0);
    return v;
  }());
}

}  // namespace

TEST(PasskeySentences, SplitRule) {
  const std::string text =
      "Produced by Someone\n\n\n"
      "It was late. Mr. Smith and Dr. Watson met G. K. Chesterton at St. Paul's!\n"
      "\"Who is there?\" she asked.  Nobody\n"
      "answered; the door\tclosed\n\n"
      "   \n"
      "Chapter 1\n"
      "“Is it you?” “Yes.” Then 3.5 miles away... the end";
  const std::vector<std::string> expect = {
      "Produced by Someone",
      "It was late.",
      "Mr. Smith and Dr. Watson met G. K. Chesterton at St. Paul's!",
      "\"Who is there?\"",
      "she asked.",
      "Nobody answered; the door closed",
      "Chapter 1 “Is it you?”",
      "“Yes.”",
      "Then 3.5 miles away...",
      "the end"};
  EXPECT_EQ(mx::split_sentences(text), expect);
  EXPECT_TRUE(mx::split_sentences("").empty());
  EXPECT_TRUE(mx::split_sentences("\n\n  \n").empty());
}

TEST(PasskeyGenerator, ContextLengthBandAndHaystack) {
  for (int64_t L : {256, 1000, 1024, 4096})
    for (double d : {0.0, 0.25, 0.5, 0.75, 1.0})
      for (int64_t i = 0; i < 2; ++i) {
        SCOPED_TRACE(testing::Message() << "L=" << L << " d=" << d << " i=" << i);
        const auto s = mx::make_passkey_sample(tokenizer(), eval_pool(), L, d, i, mx::KeySplit::Eval, 3);
        EXPECT_EQ(s.length, L);
        EXPECT_EQ(s.depth, d);
        check_sample(s, eval_pool());
        EXPECT_TRUE(mx::is_eval_key(s.key));
      }
  // Training samples: anywhere in the context.
  const auto t = mx::make_passkey_sample(tokenizer(), train_pool(), 2048, -1, 0, mx::KeySplit::Train, 3);
  EXPECT_EQ(t.band_lo, 0);
  EXPECT_EQ(t.band_hi, 2048 - t.needle_len);
  check_sample(t, train_pool());
  EXPECT_FALSE(mx::is_eval_key(t.key));
  EXPECT_THROW(mx::make_passkey_sample(tokenizer(), eval_pool(), 20, 0.5, 0, mx::KeySplit::Eval, 0), mx::UsageError);
  EXPECT_THROW(mx::make_passkey_sample(tokenizer(), eval_pool(), 64, 1.5, 0, mx::KeySplit::Eval, 0), mx::UsageError);
}

TEST(PasskeyGenerator, ReproducibleForASeed) {
  auto key_of = [](uint64_t seed, int64_t L, double d, int64_t i) {
    return mx::make_passkey_sample(tokenizer(), eval_pool(), L, d, i, mx::KeySplit::Eval, seed);
  };
  const auto a = key_of(7, 1024, 0.5, 0), b = key_of(7, 1024, 0.5, 0);
  EXPECT_EQ(a.prompt, b.prompt);
  EXPECT_EQ(a.key, b.key);
  EXPECT_EQ(a.needle_offset, b.needle_offset);
  std::set<int64_t> keys;
  std::set<int64_t> starts;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    const auto s = key_of(seed, 1024, 0.5, 0);
    keys.insert(s.key);
    starts.insert(s.haystack_start);
  }
  EXPECT_GE(keys.size(), 7u);
  EXPECT_GE(starts.size(), 7u);
  EXPECT_NE(key_of(7, 1024, 0.5, 1).key, a.key);  // another sample of the same cell
}

TEST(PasskeyKeys, SplitIsHalfAndKeysAreNotPadded) {
  int64_t eval = 0, short_keys = 0;
  for (int64_t k = 0; k <= mx::kPasskeyMaxKey; ++k) eval += mx::is_eval_key(k) ? 1 : 0;
  EXPECT_GT(eval, 49000);
  EXPECT_LT(eval, 51000);
  std::set<int64_t> eval_keys, train_keys;
  for (int64_t i = 0; i < 300; ++i) {
    const auto e = mx::make_passkey_sample(tokenizer(), eval_pool(), 256, 0, i, mx::KeySplit::Eval, 1);
    const auto t = mx::make_passkey_sample(tokenizer(), train_pool(), 256, -1, i, mx::KeySplit::Train, 1);
    eval_keys.insert(e.key);
    train_keys.insert(t.key);
    short_keys += e.key < 10000 ? 1 : 0;
    const std::string needle = tokenizer().decode(std::vector<uint32_t>(
        e.prompt.begin() + e.context_begin + e.needle_offset,
        e.prompt.begin() + e.context_begin + e.needle_offset + e.needle_len));
    EXPECT_EQ(needle, mx::passkey_needle(e.key));  // "The pass key is 734. ..." for key 734: no zero padding
  }
  for (int64_t k : train_keys) EXPECT_EQ(eval_keys.count(k), 0u) << "key " << k << " is in both splits";
  EXPECT_GT(short_keys, 10);  // about 10% of uniform keys have fewer than 5 digits
  EXPECT_LT(short_keys, 60);
}

TEST(PasskeyTraining, HaystackNeverOverlapsTheEvaluationHaystack) {
  EXPECT_GT(train_pool().sentences.size(), 1000u);
  for (uint64_t h : train_pool().hashes) EXPECT_EQ(eval_pool().hashes.count(h), 0u);
  // The same corpus for training and evaluation leaves nothing to train on.
  EXPECT_THROW(mx::make_sentence_pool(mx::read_corpus(assets() / "books" / "test"), tokenizer(), &eval_pool()),
               mx::DataError);
  // Split resolution: the books root trains on train/ minus test/, and evaluates on test/.
  const fs::path books = assets() / "books";
  EXPECT_EQ(mx::passkey_eval_corpus(books), books / "test");
  EXPECT_EQ(mx::passkey_train_corpus(books).train, books / "train");
  EXPECT_EQ(mx::passkey_train_corpus(books).excluded, books / "test");
  EXPECT_EQ(mx::passkey_train_corpus(books / "train").excluded, books / "test");
  EXPECT_EQ(mx::passkey_train_corpus(books / "train/").excluded, books / "test");
  EXPECT_EQ(mx::passkey_eval_corpus(books / "test"), books / "test");
  EXPECT_THROW(mx::passkey_calibration_set(books / "test", tokenizer(), 256, 2, 0), mx::DataError);
}

TEST(PasskeyTraining, WindowsScoreTheKeyAndEos) {
  const auto set = mx::passkey_calibration_set(assets() / "books", tokenizer(), 512, 6, 4);
  ASSERT_EQ(set.windows.size(), 6u);
  EXPECT_EQ(set.protocol, mx::Protocol::ProofPile);
  EXPECT_EQ(set.length, 512);
  std::set<int64_t> keys;
  for (const auto& w : set.windows) {
    const auto s = mx::make_passkey_sample(tokenizer(), train_pool(), 512, -1, w.doc, mx::KeySplit::Train, 4);
    auto expect = s.prompt;
    expect.insert(expect.end(), s.answer.begin(), s.answer.end());
    EXPECT_EQ(w.ids, expect);
    EXPECT_EQ(w.score_from, static_cast<int64_t>(s.prompt.size()) - 1);
    // The scored targets ids[score_from+1 ..] are exactly the key tokens and EOS.
    EXPECT_EQ(std::vector<int64_t>(w.ids.begin() + w.score_from + 1, w.ids.end()), s.answer);
    EXPECT_EQ(w.ids.back(), 0);
    EXPECT_FALSE(mx::is_eval_key(s.key));
    keys.insert(s.key);
  }
  EXPECT_EQ(keys.size(), 6u);
}

TEST(PasskeySuccess, PublishedAndStrictRules) {
  struct Case { const char* out; int64_t key; bool pub, strict; };
  const Case cases[] = {
      {"57909", 57909, true, true},
      {" 57909", 57909, true, true},                     // " 57909".split(' ') = ['', '57909']
      {"57909.", 57909, false, true},                    // the published rule fails on punctuation
      {"57909<|endoftext|>", 57909, true, true},
      {"<|endoftext|>57909", 57909, false, false},       // nothing before EOS
      {"The pass key is 57909 ok", 57909, true, true},
      {"579090", 57909, false, false},
      {"12 57909", 57909, true, false},                  // strict: the first digits are 12
      {"00734", 734, false, false},                      // keys are not zero-padded
      {"734\n", 734, false, true},
      {"", 5, false, false},
      {"5", 5, true, true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(mx::passkey_success_published(c.out, c.key), c.pub) << "'" << c.out << "'";
    EXPECT_EQ(mx::passkey_success_strict(c.out, c.key), c.strict) << "'" << c.out << "'";
  }
}

TEST(PasskeyEval, GridOnATinyRandomModel) {
  mx::ModelConfig c = mx::preset_config("mamba-130m");
  c.n_layer = 1;
  c.d_model = 16;
  c.d_inner = 32;
  c.dt_rank = 1;
  const mx::MambaLM model(mx::random_checkpoint(c, 1, at::kFloat));
  mx::PasskeyOptions o;
  o.lengths = {256, 320};
  o.depths = {0, 1};
  o.samples = 2;
  o.max_new_tokens = 3;
  int64_t calls = 0;
  const auto rep = mx::evaluate_passkey(model, {}, tokenizer(), eval_pool(), o,
                                        [&](int64_t done, int64_t total, const mx::PasskeyResult&) {
                                          EXPECT_EQ(done, ++calls);
                                          EXPECT_EQ(total, 8);
                                        });
  ASSERT_EQ(rep.cells.size(), 4u);
  ASSERT_EQ(rep.results.size(), 8u);
  for (size_t i = 0; i < rep.results.size(); ++i) {
    const auto& r = rep.results[i];
    const auto& cell = rep.cells[i / 2];
    EXPECT_EQ(r.sample.length, cell.length);
    EXPECT_EQ(r.sample.depth, cell.depth);
    EXPECT_EQ(r.sample.prompt,
              mx::make_passkey_sample(tokenizer(), eval_pool(), cell.length, cell.depth, r.sample.index,
                                      mx::KeySplit::Eval, 0).prompt);
    EXPECT_GE(r.output_ids.size(), 1u);
    EXPECT_LE(r.output_ids.size(), 3u);
    EXPECT_EQ(r.output, tokenizer().decode(std::vector<uint32_t>(r.output_ids.begin(), r.output_ids.end())));
    EXPECT_EQ(r.success_published, mx::passkey_success_published(r.output, r.sample.key));
    // The answer NLL is the calibration objective's loss on this sample: windows_nll over prompt + answer.
    mx::ScoredWindow w;
    w.ids = r.sample.prompt;
    w.ids.insert(w.ids.end(), r.sample.answer.begin(), r.sample.answer.end());
    w.score_from = static_cast<int64_t>(r.sample.prompt.size()) - 1;
    const auto nll = mx::windows_nll(model, {}, {&w}, 128);
    ASSERT_EQ(nll[0].size(), r.sample.answer.size());
    double mean = 0;
    for (double x : nll[0]) mean += x / static_cast<double>(nll[0].size());
    EXPECT_NEAR(r.answer_nll, mean, 1e-5 * mean);
    EXPECT_NE(r.sample.control_key, r.sample.key);
    EXPECT_TRUE(mx::is_eval_key(r.sample.control_key));
    EXPECT_EQ(enc(std::to_string(r.sample.control_key)).size() + 1, r.sample.answer.size());
    EXPECT_TRUE(std::isfinite(r.control_nll));
    EXPECT_NE(r.control_nll, r.answer_nll);
  }
  EXPECT_NEAR(rep.cells[0].answer_nll, (rep.results[0].answer_nll + rep.results[1].answer_nll) / 2, 1e-12);
  EXPECT_EQ(rep.cells[0].length, 256);
  EXPECT_EQ(rep.cells[1].depth, 1.0);
  const auto j = mx::passkey_report_json(rep);
  EXPECT_EQ(j["cells"].size(), 4u);
  EXPECT_EQ(j["results"].size(), 8u);
  EXPECT_EQ(j["results"][3]["key"].get<int64_t>(), rep.results[3].sample.key);
  EXPECT_EQ(j["results"][3]["needle_offset"].get<int64_t>(), rep.results[3].sample.needle_offset);
  std::vector<mx::report::PasskeyCount> cells;
  for (const auto& c : rep.cells) cells.push_back({c.length, c.depth, c.samples, c.published, c.strict});
  const std::string svg = mx::report::figure_svg_plain(mx::report::passkey_rules_figure(cells, "t<1>"));
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find(">published rule<"), std::string::npos);
  EXPECT_NE(svg.find(">strict rule (exact digits)<"), std::string::npos);
  EXPECT_NE(svg.find("t&lt;1&gt;"), std::string::npos);
  EXPECT_NE(svg.find(">needle depth<"), std::string::npos);
  EXPECT_NE(svg.find(">context length (tokens)<"), std::string::npos);
  EXPECT_EQ(svg.find("n/a"), std::string::npos);
  o.depths = {0.5, 0.5};
  EXPECT_THROW(mx::evaluate_passkey(model, {}, tokenizer(), eval_pool(), o), mx::UsageError);
}

TEST(PasskeyCli, GridJsonAndHeatmapOnTheOrganism) {
  const char* cli = std::getenv("MX_CLI");
  if (cli == nullptr || *cli == '\0') GTEST_SKIP() << "MX_CLI is not set (run through ctest)";
  mx::test::TempDir tmp("passkey_cli");
  const std::string base = std::string(cli) + " passkey --model " + (assets() / "models" / "organism-mamba1-7m").string() +
                           " --tokenizer " + (assets() / "tokenizers" / "gpt-neox-20b" / "tokenizer.json").string();
  const std::string out = (tmp.path() / "pk.json").string(), svg = (tmp.path() / "pk.svg").string();
  const std::string cmd = base + " --data " + (assets() / "books").string() + " --lengths 256,384 --depths 0,1 --out " +
                          out + " --heatmap " + svg + " > " + (tmp.path() / "stdout").string() + " 2>&1";
  ASSERT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 0) << mx::test::read_file(tmp.path() / "stdout");
  const auto j = mx::test::read_json(out);
  EXPECT_EQ(j["format"], "mambaextend.passkey/v1");
  EXPECT_EQ(j["data"]["haystack"].get<std::string>(), (assets() / "books" / "test").string());
  EXPECT_EQ(j["cells"].size(), 4u);
  EXPECT_EQ(j["results"].size(), 4u);
  EXPECT_NE(mx::test::read_file(svg).find("</svg>"), std::string::npos);
  EXPECT_NE(mx::test::read_file(tmp.path() / "stdout").find("published rule"), std::string::npos);
  // Usage errors exit 2 and write nothing.
  const std::string bad = (tmp.path() / "bad.json").string();
  EXPECT_EQ(WEXITSTATUS(std::system((base + " --data " + (assets() / "books").string() +
                                     " --lengths 256 --depths 0,2 --out " + bad + " 2>/dev/null").c_str())), 2);
  EXPECT_EQ(WEXITSTATUS(std::system((base + " --lengths 256 --out " + bad + " 2>/dev/null").c_str())), 2);
  EXPECT_FALSE(fs::exists(bad));
}
