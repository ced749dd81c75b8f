// Perplexity evaluation (eval.h, factors.h, `mambaextend eval-ppl`):
//   make_windows: pg19 stride and scored range, windows that do not fit, short / empty documents skipped and
//     counted, max_docs, bad arguments, proofpile BOS;
//   windows_nll: equal to a one-shot full forward (fp64 model) across segment boundaries, LM-head blocks and a
//     batch of windows with different scored ranges;
//   evaluate_perplexity: ppl, standard errors, bits per byte recomputed from windows_nll; a length no document
//     reaches gives empty values and a note;
//   parity: the organisms' fp32 per-window mean NLL vs Hugging Face transformers fp32 (oracle_eval.py) on the
//     pg19 windows at L = 256 and 1024 of the bundled validation books, <= 1e-4 relative;
//   load_factors: both file forms and every refusal;
//   the CLI: bad input gives one clear line and exit 1 (2 for usage errors) or a counted skip, never NaN.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "mambaextend/checkpoint.h"
#include "mambaextend/corpus.h"
#include "mambaextend/error.h"
#include "mambaextend/eval.h"
#include "mambaextend/factors.h"
#include "mambaextend/model.h"
#include "mambaextend/random_model.h"
#include "mambaextend/tokenizer.h"
#include "unit/fixtures.h"
#include "unit/temp_dir.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

mx::TokenizedDocument doc(const std::string& name, int64_t n, uint32_t first = 1) {
  mx::TokenizedDocument d{name, {}};
  for (int64_t i = 0; i < n; ++i) d.ids.push_back(first + static_cast<uint32_t>(i));
  return d;
}

std::vector<int64_t> slice(const mx::TokenizedDocument& d, int64_t from, int64_t n) {
  return std::vector<int64_t>(d.ids.begin() + from, d.ids.begin() + from + n);
}

// A small model of random weights (mamba_ssm initialisation), vocab 1000.
mx::ModelConfig tiny_config(mx::Arch arch) {
  mx::ModelConfig c = mx::preset_config(arch == mx::Arch::Mamba1 ? "mamba-130m" : "mamba2-130m");
  c.n_layer = 2;
  c.d_model = 32;
  c.d_inner = 64;
  c.vocab_size = c.vocab_size_unpadded = 1000;
  if (arch == mx::Arch::Mamba1) {
    c.dt_rank = 2;
  } else {
    c.d_state = 16;
    c.head_dim = 16;
    c.n_heads = 4;
  }
  return c;
}

std::vector<mx::TokenizedDocument> random_docs(const std::vector<int64_t>& sizes, int64_t vocab, uint64_t seed) {
  at::manual_seed(seed);
  std::vector<mx::TokenizedDocument> docs;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto t = at::randint(1, vocab, {sizes[i]}, at::TensorOptions().dtype(at::kLong));
    mx::TokenizedDocument d{"d" + std::to_string(i), {}};
    for (int64_t k = 0; k < sizes[i]; ++k) d.ids.push_back(static_cast<uint32_t>(t[k].item<int64_t>()));
    docs.push_back(std::move(d));
  }
  return docs;
}

// -log_softmax of the full, unsegmented forward at position t predicting ids[t+1].
std::vector<double> reference_nll(const mx::MambaLM& model, const mx::ScoredWindow& w) {
  const int64_t L = static_cast<int64_t>(w.ids.size());
  const auto ids = at::tensor(w.ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);  // (1, L)
  const auto logp = at::log_softmax(model.forward(ids)[0].to(at::kDouble), -1).contiguous();  // (L, V)
  const double* p = logp.data_ptr<double>();
  const int64_t V = logp.size(1);
  std::vector<double> out;
  for (int64_t t = w.score_from; t < L - 1; ++t) out.push_back(-p[t * V + w.ids[t + 1]]);
  return out;
}

fs::path tokenizer_path() { return mx::test::source_dir() / "assets" / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"; }

}  // namespace

// ---- make_windows ---------------------------------------------------------------------------------------

TEST(MakeWindows, Pg19StrideAndScoredRange) {
  const std::vector<mx::TokenizedDocument> docs = {doc("a", 1000)};
  const auto plan = mx::make_windows(docs, mx::Protocol::PG19, 100, 4, 30);
  ASSERT_EQ(plan.windows.size(), 4u);  // stride (1000 - 100) // 4 = 225: starts 0, 225, 450, 675
  for (int i = 0; i < 4; ++i) {
    const auto& w = plan.windows[i];
    EXPECT_EQ(w.start, 225 * i);
    EXPECT_EQ(w.ids, slice(docs[0], 225 * i, 100));
    EXPECT_EQ(w.score_from, 100 - 30 - 1);  // positions 69..98 predict the last 30 tokens
    EXPECT_EQ(w.doc, 0);
  }
  EXPECT_EQ(plan.docs_used, 1);
  EXPECT_EQ(plan.docs_skipped, 0);
  // W = 1 is "the first L tokens"; P = L - 1 scores every prediction.
  const auto one = mx::make_windows(docs, mx::Protocol::PG19, 100, 1, 99);
  ASSERT_EQ(one.windows.size(), 1u);
  EXPECT_EQ(one.windows[0].ids, slice(docs[0], 0, 100));
  EXPECT_EQ(one.windows[0].score_from, 0);
}

TEST(MakeWindows, WindowsThatDoNotFitAreDropped) {
  // n = 120, L = 100, W = 4: stride max(20 // 4, 10) = 10; starts 0, 10, 20 fit, 30 does not.
  const auto plan = mx::make_windows({doc("a", 120)}, mx::Protocol::PG19, 100, 4, 10);
  ASSERT_EQ(plan.windows.size(), 3u);
  EXPECT_EQ(plan.windows[2].start, 20);
  EXPECT_EQ(plan.windows[2].ids.back(), 120);  // the document's last token
  // n == L exactly: one window at 0 whatever W is.
  const auto exact = mx::make_windows({doc("a", 100)}, mx::Protocol::PG19, 100, 10, 10);
  ASSERT_EQ(exact.windows.size(), 1u);
  EXPECT_EQ(exact.windows[0].start, 0);
}

TEST(MakeWindows, ShortAndEmptyDocsAreSkippedAndCounted) {
  const std::vector<mx::TokenizedDocument> docs = {doc("short", 99), doc("empty", 0), doc("long", 300, 7)};
  for (auto p : {mx::Protocol::PG19, mx::Protocol::ProofPile}) {
    const auto plan = mx::make_windows(docs, p, 100, 2, 10);
    EXPECT_EQ(plan.docs_used, 1);
    EXPECT_EQ(plan.docs_skipped, 2);
    for (const auto& w : plan.windows) EXPECT_EQ(w.doc, 2);
  }
  const auto none = mx::make_windows(docs, mx::Protocol::PG19, 1000, 2, 10);
  EXPECT_TRUE(none.windows.empty());
  EXPECT_EQ(none.docs_skipped, 3);
}

TEST(MakeWindows, MaxDocsCountsUsedDocuments) {
  const std::vector<mx::TokenizedDocument> docs = {doc("a", 50), doc("b", 200, 1000), doc("c", 300, 2000),
                                                   doc("d", 400, 3000)};
  const auto plan = mx::make_windows(docs, mx::Protocol::PG19, 100, 1, 10, 2);
  EXPECT_EQ(plan.docs_used, 2);
  EXPECT_EQ(plan.docs_skipped, 1);  // "a"; "d" comes after the limit and is not counted
  ASSERT_EQ(plan.windows.size(), 2u);
  EXPECT_EQ(plan.windows[0].doc, 1);
  EXPECT_EQ(plan.windows[1].doc, 2);
  EXPECT_EQ(mx::make_windows(docs, mx::Protocol::PG19, 100, 1, 10, -1).docs_used, 3);
}

TEST(MakeWindows, BadArguments) {
  const std::vector<mx::TokenizedDocument> docs = {doc("a", 500)};
  EXPECT_THROW(mx::make_windows(docs, mx::Protocol::PG19, 100, 1, 100), mx::UsageError);  // pred_len == L
  EXPECT_THROW(mx::make_windows(docs, mx::Protocol::PG19, 100, 1, 150), mx::UsageError);  // pred_len > L
  EXPECT_THROW(mx::make_windows(docs, mx::Protocol::PG19, 100, 1, 0), mx::UsageError);
  EXPECT_THROW(mx::make_windows(docs, mx::Protocol::PG19, 1, 1, 1), mx::UsageError);      // L < 2
  EXPECT_THROW(mx::make_windows(docs, mx::Protocol::PG19, 100, 0, 10), mx::UsageError);   // W < 1
  EXPECT_THROW(mx::parse_protocol("pg-19"), mx::UsageError);
  try {
    mx::make_windows(docs, mx::Protocol::PG19, 64, 1, 100);
    FAIL() << "no error for pred_len >= L";
  } catch (const mx::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--pred-len 100"), std::string::npos) << e.what();
  }
}

TEST(MakeWindows, ProofPilePrependsBos) {
  const std::vector<mx::TokenizedDocument> docs = {doc("a", 100, 5), doc("b", 1000, 50)};
  // pred_len and windows_per_doc do not apply: one window per document, all L - 1 predictions scored.
  const auto plan = mx::make_windows(docs, mx::Protocol::ProofPile, 100, 10, 500);
  ASSERT_EQ(plan.windows.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const auto& w = plan.windows[i];
    ASSERT_EQ(w.ids.size(), 100u);
    EXPECT_EQ(w.ids[0], 0);  // BOS
    std::vector<int64_t> rest(w.ids.begin() + 1, w.ids.end());
    EXPECT_EQ(rest, slice(docs[i], 0, 99));
    EXPECT_EQ(w.score_from, 0);
    EXPECT_EQ(w.start, 0);
  }
  EXPECT_EQ(mx::parse_protocol("proofpile"), mx::Protocol::ProofPile);
  EXPECT_STREQ(mx::protocol_name(mx::Protocol::ProofPile), "proofpile");
}

// ---- windows_nll ----------------------------------------------------------------------------------------

TEST(WindowsNll, EqualsFullForwardAcrossSegmentsBlocksAndBatch) {
  for (auto arch : {mx::Arch::Mamba1, mx::Arch::Mamba2}) {
    const auto cfg = tiny_config(arch);
    const mx::MambaLM model(mx::random_checkpoint(cfg, 7), mx::ModelOptions{at::kDouble});
    const auto docs = random_docs({1100, 1100, 1100}, cfg.vocab_size, 3);
    std::vector<mx::ScoredWindow> ws(3);
    const int64_t from[] = {0, 500, 1098};  // differing scored ranges; 1098 = only the last prediction
    for (int i = 0; i < 3; ++i) {
      ws[i].ids = slice(docs[i], 0, 1100);
      ws[i].score_from = from[i];
    }
    const std::vector<const mx::ScoredWindow*> batch = {&ws[0], &ws[1], &ws[2]};
    // B = 3: LM-head blocks of 341 positions; segments of 300 tokens, not aligned with the blocks.
    const auto got = mx::windows_nll(model, {}, batch, 300);
    ASSERT_EQ(got.size(), 3u);
    for (int i = 0; i < 3; ++i) {
      const auto want = reference_nll(model, ws[i]);
      ASSERT_EQ(got[i].size(), want.size()) << "window " << i;
      double worst = 0;
      for (size_t k = 0; k < want.size(); ++k) worst = std::max(worst, std::abs(got[i][k] - want[k]) / want[k]);
      EXPECT_LT(worst, 1e-10) << mx::arch_name(arch) << " window " << i;
    }
    // One window alone gives the same numbers as inside the batch.
    const auto alone = mx::windows_nll(model, {}, {&ws[1]}, 1100);
    ASSERT_EQ(alone[0].size(), got[1].size());
    for (size_t k = 0; k < alone[0].size(); ++k) EXPECT_NEAR(alone[0][k], got[1][k], 1e-10 * got[1][k]);
    // Unequal lengths in one batch are refused.
    mx::ScoredWindow shorter{0, 0, slice(docs[0], 0, 50), 0};
    EXPECT_THROW(mx::windows_nll(model, {}, {&ws[0], &shorter}, 300), mx::ShapeError);
  }
}

// ---- evaluate_perplexity --------------------------------------------------------------------------------

TEST(EvaluatePerplexity, StatisticsFromWindowNll) {
  const auto cfg = tiny_config(mx::Arch::Mamba1);
  const mx::MambaLM model(mx::random_checkpoint(cfg, 11), mx::ModelOptions{at::kDouble});
  const mx::Tokenizer tok = mx::Tokenizer::from_file(tokenizer_path());
  const auto docs = random_docs({700, 0, 300, 90, 520}, cfg.vocab_size, 5);
  for (auto protocol : {mx::Protocol::PG19, mx::Protocol::ProofPile}) {
    mx::EvalOptions o;
    o.protocol = protocol;
    o.lengths = {128, 256, 5000};
    o.windows_per_doc = 3;
    o.pred_len = 40;
    o.segment_len = 100;
    const auto rep = mx::evaluate_perplexity(model, {}, docs, tok, o);
    ASSERT_EQ(rep.results.size(), 3u);
    for (size_t li = 0; li < 2; ++li) {
      const auto& r = rep.results[li];
      const auto plan = mx::make_windows(docs, protocol, o.lengths[li], 3, 40);
      std::vector<double> all, doc_means;
      int64_t bytes = 0;
      for (const auto& w : plan.windows) {
        const auto nll = mx::windows_nll(model, {}, {&w}, 100000)[0];
        double s = 0;
        for (size_t k = 0; k < nll.size(); ++k) {
          all.push_back(nll[k]);
          s += nll[k];
          bytes += static_cast<int64_t>(tok.token_bytes(static_cast<uint32_t>(w.ids[w.score_from + k + 1])).size());
        }
        doc_means.push_back(s / nll.size());
      }
      const auto& sample = protocol == mx::Protocol::PG19 ? all : doc_means;
      double mean = 0, sum = 0, ss = 0;
      for (double x : sample) mean += x / sample.size();
      for (double x : all) sum += x;
      for (double x : sample) ss += (x - mean) * (x - mean);
      const double se = std::sqrt(ss / (sample.size() - 1)) / std::sqrt(double(sample.size()));
      EXPECT_EQ(r.windows, static_cast<int64_t>(plan.windows.size()));
      EXPECT_EQ(r.tokens, static_cast<int64_t>(all.size()));
      EXPECT_EQ(r.docs_used, plan.docs_used);
      EXPECT_EQ(r.docs_skipped, plan.docs_skipped);
      EXPECT_EQ(r.bytes, bytes);
      ASSERT_TRUE(r.ppl && r.ppl_se && r.mean_nll && r.nll_se && r.bits_per_byte && r.byte_perplexity);
      EXPECT_NEAR(*r.mean_nll, mean, 1e-9 * mean);
      EXPECT_NEAR(*r.ppl, std::exp(mean), 1e-9 * std::exp(mean));
      EXPECT_NEAR(*r.nll_se, se, 1e-6 * se);
      EXPECT_NEAR(*r.ppl_se, std::exp(mean) * se, 1e-6 * std::exp(mean) * se);
      EXPECT_NEAR(*r.bits_per_byte, sum / (bytes * std::log(2.0)), 1e-9);
      EXPECT_NEAR(*r.byte_perplexity, std::exp(sum / bytes), 1e-9 * std::exp(sum / bytes));
      EXPECT_TRUE(r.note.empty()) << r.note;
    }
    const auto& none = rep.results[2];
    EXPECT_EQ(none.windows, 0);
    EXPECT_EQ(none.docs_skipped, 5);
    EXPECT_FALSE(none.ppl || none.mean_nll || none.ppl_se || none.bits_per_byte);
    EXPECT_NE(none.note.find("no document has >= 5000 tokens"), std::string::npos) << none.note;
    const auto j = mx::length_result_json(none);
    EXPECT_TRUE(j.at("ppl").is_null());
    EXPECT_EQ(j.at("note").get<std::string>(), none.note);
  }
  mx::EvalOptions dup;
  dup.lengths = {128, 128};
  EXPECT_THROW(mx::evaluate_perplexity(model, {}, docs, tok, dup), mx::UsageError);
}

// ---- parity with Hugging Face transformers ------------------------------------------------------------------

TEST(EvalParity, OrganismWindowsMatchTransformersFp32) {
  const json fx = mx::test::read_json(mx::test::fixture_dir("eval") / "windows.json");
  const fs::path src = mx::test::source_dir();
  const mx::Tokenizer tok = mx::Tokenizer::from_file(tokenizer_path());
  std::vector<mx::TokenizedDocument> docs;
  for (const auto& d : mx::read_corpus(src / "assets" / "books" / "validation"))
    docs.push_back({d.name, tok.encode(d.text)});
  for (const char* arch : {"mamba1", "mamba2"}) {
    const mx::MambaLM model(mx::load_checkpoint(src / "assets" / "models" / (std::string("organism-") + arch + "-7m")));
    for (int64_t L : {256, 1024}) {
      const auto plan = mx::make_windows(docs, mx::Protocol::PG19, L, 1, 100);
      std::vector<const mx::ScoredWindow*> batch;
      for (const auto& w : plan.windows) batch.push_back(&w);
      const auto got = mx::windows_nll(model, {}, batch, 200);  // L = 1024 runs in 6 segments
      size_t matched = 0;
      for (const auto& fw : fx.at("windows")) {
        if (fw.at("length").get<int64_t>() != L) continue;
        const std::string book = fw.at("book").get<std::string>();
        size_t i = 0;
        while (i < plan.windows.size() && docs[plan.windows[i].doc].name + ".txt" != book) ++i;
        ASSERT_LT(i, plan.windows.size()) << "no window of " << book << " at L = " << L;
        EXPECT_EQ(plan.windows[i].start, fw.at("start").get<int64_t>());
        ASSERT_EQ(plan.windows[i].ids, fw.at("ids").get<std::vector<int64_t>>()) << book << " L = " << L;
        const auto want = fw.at("nll").at(arch).get<std::vector<double>>();
        ASSERT_EQ(got[i].size(), want.size());
        double mean = 0, worst_tok = 0;
        for (size_t k = 0; k < want.size(); ++k) {
          mean += got[i][k] / want.size();
          worst_tok = std::max(worst_tok, std::abs(got[i][k] - want[k]));
        }
        const double ref = fw.at("mean_nll").at(arch).get<double>();
        const double rel = std::abs(mean - ref) / ref;
        std::printf("parity %s %s L=%lld: mean NLL ours %.9f transformers %.9f rel %.2e, max |Δnll| per token %.2e\n",
                    arch, book.c_str(), static_cast<long long>(L), mean, ref, rel, worst_tok);
        EXPECT_LE(rel, 1e-4) << arch << " " << book << " L = " << L;
        ++matched;
      }
      EXPECT_EQ(matched, plan.windows.size());
      EXPECT_EQ(matched, 2u);
    }
  }
}

// ---- factors files ------------------------------------------------------------------------------------------

TEST(Factors, LoadBothFormsAndRefuseMisfits) {
  mx::test::TempDir dir("eval_factors");
  mx::ModelConfig cfg;
  cfg.arch = mx::Arch::Mamba1;
  cfg.n_layer = 3;
  cfg.d_inner = 4;
  auto write = [&](const std::string& name, const std::string& text) {
    const auto p = dir.path() / name;
    std::ofstream(p) << text;
    return p;
  };
  const auto bare = mx::load_factors(write("bare.json", "[0.5, 1, 2.25]"), cfg);
  ASSERT_EQ(bare.per_layer.size(), 3u);
  EXPECT_EQ(bare.per_layer[2].sizes(), at::IntArrayRef({1}));
  EXPECT_FLOAT_EQ(bare.per_layer[2].item<float>(), 2.25f);
  const auto v1 = mx::load_factors(
      write("v1.json", R"({"format": "mambaextend.factors/v1", "model": {"arch": "mamba1", "n_layer": 3, "d_inner": 4,
        "nheads": null}, "granularity": "channel", "scales": [[1, 2, 3, 4], [0.5], [1, 1, 1, 1.5]]})"),
      cfg);
  EXPECT_EQ(v1.per_layer[0].sizes(), at::IntArrayRef({4}));
  EXPECT_FLOAT_EQ(v1.per_layer[0][3].item<float>(), 4.0f);
  EXPECT_EQ(v1.per_layer[1].sizes(), at::IntArrayRef({1}));

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"[1, 1]", "2 layers of scales"},
      {"[[1, 1], [1], [1]]", "layer 0: 2 values; expected 1"},
      {"[1, -1, 1]", "positive finite"},
      {"[1, \"x\", 1]", "expected a number"},
      {R"({"format": "other", "scales": [1, 1, 1]})", "expected \"mambaextend.factors/v1\""},
      {R"({"format": "mambaextend.factors/v1", "model": {"arch": "mamba2"}, "scales": [1, 1, 1]})", "arch"},
      {R"({"format": "mambaextend.factors/v1", "model": {"n_layer": 24}, "scales": [1, 1, 1]})", "n_layer = 24"},
      {R"({"format": "mambaextend.factors/v1"})", "no \"scales\""},
      {"{not json", "invalid JSON"},
      {"3", "expected a"},
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    try {
      mx::load_factors(write("bad" + std::to_string(i) + ".json", bad[i].first), cfg);
      ADD_FAILURE() << "accepted " << bad[i].first;
    } catch (const mx::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(bad[i].second), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("bad" + std::to_string(i) + ".json"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(mx::load_factors(dir.path() / "missing.json", cfg), mx::IoError);
}

// ---- the CLI ------------------------------------------------------------------------------------------------

namespace {

struct CliRun {
  int rc = -1;
  std::string out, err;
};

class EvalPplCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* cli = std::getenv("MX_CLI");
    if (cli == nullptr || *cli == '\0') GTEST_SKIP() << "MX_CLI is not set (run through ctest)";
    cli_ = cli;
    src_ = mx::test::source_dir();
    model_ = src_ / "assets" / "models" / "organism-mamba1-7m";
    // A ~2000-token document: the start of a bundled book, cut at a line end.
    std::ifstream in(src_ / "assets" / "books" / "validation" / "23.txt", std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    text = text.substr(0, text.find('\n', 9000) + 1);
    fs::create_directories(dir_.path() / "data");
    std::ofstream(dir_.path() / "data" / "a.txt", std::ios::binary) << text;
  }

  CliRun run(const std::string& args) {
    const auto o = dir_.path() / "stdout.txt", e = dir_.path() / "stderr.txt";
    const std::string cmd = "MAMBAEXTEND_CACHE='" + (dir_.path() / "cache").string() + "' '" + cli_ + "' " + args +
                            " > '" + o.string() + "' 2> '" + e.string() + "'";
    const int status = std::system(cmd.c_str());
    CliRun r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = mx::test::read_file(o);
    r.err = mx::test::read_file(e);
    return r;
  }

  std::string base(const fs::path& data) const {
    return "eval-ppl --model '" + model_.string() + "' --tokenizer '" + tokenizer_path().string() + "' --data '" +
           data.string() + "'";
  }

  static void expect_one_line_error(const CliRun& r, int rc, const std::string& needle) {
    EXPECT_EQ(r.rc, rc) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    size_t errors = 0;  // exactly one error line (info logs may precede it)
    for (size_t pos = r.err.find("[error]"); pos != std::string::npos; pos = r.err.find("[error]", pos + 1)) ++errors;
    EXPECT_EQ(errors, 1u) << r.err;
    EXPECT_EQ(r.err.find("terminate"), std::string::npos) << r.err;
  }

  static void expect_no_nan(const std::string& text) {
    for (const char* bad : {"NaN", "nan", "Infinity", "inf,"}) EXPECT_EQ(text.find(bad), std::string::npos) << text;
  }

  mx::test::TempDir dir_{"eval_cli"};
  std::string cli_;
  fs::path src_, model_;
};

}  // namespace

TEST_F(EvalPplCli, ResultsTableJsonAndLengthsNoDocumentReaches) {
  const auto out = dir_.path() / "r.json";
  std::ofstream(dir_.path() / "data" / "empty.txt");  // an empty document: skipped and counted
  const auto r = run(base(dir_.path() / "data") + " --lengths 128,256,100000 --pred-len 50 --windows-per-doc 2 --out '" +
                     out.string() + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("length"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("no document has >= 100000 tokens"), std::string::npos) << r.err;  // the warning
  const std::string text = mx::test::read_file(out);
  expect_no_nan(text);
  const json j = json::parse(text);
  EXPECT_EQ(j.at("protocol"), "pg19");
  EXPECT_GT(j.at("peak_rss_mb").get<double>(), 0);
  const auto& res = j.at("results");
  ASSERT_EQ(res.size(), 3u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(res[i].at("windows"), 2);
    EXPECT_EQ(res[i].at("tokens"), 100);
    EXPECT_EQ(res[i].at("docs_used"), 1);
    EXPECT_EQ(res[i].at("docs_skipped"), 1);  // empty.txt
    const double ppl = res[i].at("ppl").get<double>();
    EXPECT_TRUE(std::isfinite(ppl) && ppl > 1) << ppl;
    EXPECT_NEAR(ppl, std::exp(res[i].at("mean_nll").get<double>()), 1e-9 * ppl);
    EXPECT_GT(res[i].at("bits_per_byte").get<double>(), 0);
  }
  EXPECT_TRUE(res[2].at("ppl").is_null());
  EXPECT_TRUE(res[2].at("ppl_se").is_null());
  EXPECT_EQ(res[2].at("windows"), 0);
  EXPECT_EQ(res[2].at("docs_skipped"), 2);
  EXPECT_NE(res[2].at("note").get<std::string>().find("no document has >= 100000 tokens"), std::string::npos);

  // Factors of all ones change nothing; factors of the wrong shape are refused.
  std::ofstream(dir_.path() / "ones.json") << "[1, 1, 1, 1, 1, 1, 1, 1]";
  const auto out2 = dir_.path() / "r2.json";
  const auto r2 = run(base(dir_.path() / "data") + " --lengths 128 --pred-len 50 --windows-per-doc 2 --factors '" +
                      (dir_.path() / "ones.json").string() + "' --out '" + out2.string() + "'");
  ASSERT_EQ(r2.rc, 0) << r2.err;
  const json j2 = json::parse(mx::test::read_file(out2));
  EXPECT_EQ(j2.at("results")[0].at("ppl").get<double>(), res[0].at("ppl").get<double>());
  EXPECT_FALSE(j2.at("factors").is_null());
  std::ofstream(dir_.path() / "short.json") << "[1, 1, 1]";
  expect_one_line_error(run(base(dir_.path() / "data") + " --lengths 128 --factors '" +
                            (dir_.path() / "short.json").string() + "'"),
                        1, "3 layers of scales, but the model (mamba1) has 8 layers");
}

// Factors calibrated on one corpus: eval-ppl on that corpus warns and records it; on other data it does not.
TEST_F(EvalPplCli, FlagsEvaluationOnTheCalibrationData) {
  const auto other = dir_.path() / "other";
  fs::create_directories(other);
  std::ofstream(other / "b.txt", std::ios::binary) << mx::test::read_file(dir_.path() / "data" / "a.txt").substr(0, 6000)
                                                   << "\nA different ending.\n";
  const auto factors = dir_.path() / "f.json";
  const auto cal = run("calibrate --model '" + model_.string() + "' --tokenizer '" + tokenizer_path().string() +
                       "' --data '" + (dir_.path() / "data").string() + "' --length 64 --samples 1 --iterations 1 " +
                       "--pred-len 10 --out '" + factors.string() + "'");
  ASSERT_EQ(cal.rc, 0) << cal.err;
  for (const auto& [data, same] : {std::pair{dir_.path() / "data", true}, std::pair{other, false}}) {
    const auto out = dir_.path() / "held.json";
    const auto r = run(base(data) + " --lengths 64 --pred-len 10 --windows-per-doc 1 --factors '" + factors.string() +
                       "' --out '" + out.string() + "'");
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.err.find("is the calibration data of") != std::string::npos, same) << r.err;
    const json j = json::parse(mx::test::read_file(out));
    EXPECT_EQ(j.at("factors").at("evaluated_on_calibration_data"), same) << data;
  }
}

TEST_F(EvalPplCli, ConfigFileWithFlagsOverriding) {
  const auto cfg = dir_.path() / "cfg.json";
  const auto out = dir_.path() / "c.json";
  std::ofstream(cfg) << json{{"model", model_.string()}, {"tokenizer", tokenizer_path().string()},
                             {"data", (dir_.path() / "data").string()}, {"lengths", {256, 512}},
                             {"pred_len", 20}, {"windows-per-doc", 1}, {"out", out.string()}}
                            .dump();
  const auto r = run("eval-ppl --config '" + cfg.string() + "' --lengths 128");
  ASSERT_EQ(r.rc, 0) << r.err;
  const json j = json::parse(mx::test::read_file(out));
  ASSERT_EQ(j.at("results").size(), 1u);
  EXPECT_EQ(j.at("results")[0].at("length"), 128);
  EXPECT_EQ(j.at("results")[0].at("tokens"), 20);
  EXPECT_EQ(j.at("settings").at("pred_len"), 20);
  std::ofstream(cfg) << R"({"model": "x", "bogus": 1})";
  expect_one_line_error(run("eval-ppl --config '" + cfg.string() + "'"), 1, "unknown key \"bogus\"");
}

TEST_F(EvalPplCli, BadInputGivesOneClearLine) {
  const fs::path data = dir_.path() / "data";
  fs::create_directories(dir_.path() / "emptydir");
  expect_one_line_error(run(base(dir_.path() / "emptydir") + " --lengths 128"), 1, "contains no .txt files");
  fs::create_directories(dir_.path() / "latin1");
  std::ofstream(dir_.path() / "latin1" / "x.txt", std::ios::binary) << "caf\xe9 au lait\n";
  expect_one_line_error(run(base(dir_.path() / "latin1") + " --lengths 128"), 1, "not valid UTF-8");
  expect_one_line_error(run(base(data) + " --lengths 128 --pred-len 128"), 2, "--pred-len 128");
  expect_one_line_error(run(base(data) + " --lengths 128,abc"), 2, "'abc' is not a context length");
  expect_one_line_error(run(base(data) + " --lengths 128 --protocol pg-19"), 2, "unknown protocol 'pg-19'");
  expect_one_line_error(run("eval-ppl --model '" + model_.string() + "' --data '" + data.string() + "' --lengths 128"),
                        2, "no tokenizer");
  expect_one_line_error(run("eval-ppl --model '" + model_.string() + "' --tokenizer '" +
                            (dir_.path() / "nope.json").string() + "' --data '" + data.string() + "' --lengths 128"),
                        1, "nope.json");
  std::ofstream(dir_.path() / "broken.json") << "{\"model\": {\"type\": \"BPE\", ";
  expect_one_line_error(run("eval-ppl --model '" + model_.string() + "' --tokenizer '" +
                            (dir_.path() / "broken.json").string() + "' --data '" + data.string() + "' --lengths 128"),
                        1, "broken.json");
  expect_one_line_error(run("eval-ppl --data '" + data.string() + "' --lengths 128"), 2, "--model is required");
#ifdef MX_WITH_CUDA
  const bool cuda = at::hasCUDA();
#else
  const bool cuda = false;
#endif
  if (!cuda) expect_one_line_error(run(base(data) + " --lengths 128 --device cuda"), 2, "--device cuda");

  // Every document shorter than L: a counted skip, ppl null, exit 0.
  const auto out = dir_.path() / "short.json";
  const auto r = run(base(data) + " --lengths 100000 --protocol proofpile --out '" + out.string() + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::string text = mx::test::read_file(out);
  expect_no_nan(text);
  const json j = json::parse(text);
  EXPECT_TRUE(j.at("results")[0].at("ppl").is_null());
  EXPECT_EQ(j.at("results")[0].at("docs_skipped"), 1);
  EXPECT_NE(r.out.find("n/a"), std::string::npos) << r.out;
}
