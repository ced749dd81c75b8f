// Generation (generate.h) on tiny random Mamba1 / Mamba2 models (CPU, fp64 reference mode so that the
// comparisons are tight):
//   prefill + step-by-step decoding gives the logits of one full forward over the same tokens, with no factors,
//     per-layer factors and per-channel factors, across prefill segment boundaries; the factors change the step
//     logits (they are applied in the step, not only in the prefill);
//   greedy generate() equals re-running the full forward and taking the argmax at every step;
//   sampling is deterministic for a seed and varies with it; top-k = 1 and a tiny top-p are greedy; the
//     sampler's frequencies follow softmax(l / T) and top-k / top-p / vocab_limit exclude what they must;
//   stop ids end generation; bad sampling options are usage errors;
//   Utf8Stream prints whole characters only (2-, 3-, 4-byte characters split across tokens, invalid bytes).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "mambaextend/error.h"
#include "mambaextend/generate.h"
#include "mambaextend/model.h"
#include "mambaextend/random_model.h"

namespace {

constexpr int64_t kVocab = 96;

mx::ModelConfig tiny_config(mx::Arch arch) {
  mx::ModelConfig c = mx::preset_config(arch == mx::Arch::Mamba1 ? "mamba-130m" : "mamba2-130m");
  c.n_layer = 2;
  c.d_model = 32;
  c.d_inner = 64;
  c.vocab_size = c.vocab_size_unpadded = kVocab;
  if (arch == mx::Arch::Mamba1) {
    c.dt_rank = 2;
  } else {
    c.d_state = 16;
    c.head_dim = 16;
    c.n_heads = 4;
  }
  return c;
}

mx::MambaLM tiny_model(mx::Arch arch, uint64_t seed = 1) {
  return mx::MambaLM(mx::random_checkpoint(tiny_config(arch), seed, at::kFloat), mx::ModelOptions{at::kDouble});
}

// Factors far from 1 so that they change the logits visibly: per layer (one value) or per channel / head.
mx::DtScales factors(const mx::ModelConfig& cfg, bool per_channel) {
  at::manual_seed(7);
  mx::DtScales s;
  for (int64_t l = 0; l < cfg.n_layer; ++l)
    s.per_layer.push_back(at::rand({per_channel ? cfg.scale_width() : 1}, at::kFloat) * 3 + 0.2);
  return s;
}

std::vector<int64_t> random_ids(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(static_cast<int64_t>(rng() % kVocab));
  return ids;
}

double max_rel(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() /
         b.to(at::kDouble).abs().max().item<double>();
}

struct Case {
  mx::Arch arch;
  int scales;  // 0 none, 1 per layer, 2 per channel / head
};

class StepParity : public ::testing::TestWithParam<Case> {};

TEST_P(StepParity, PrefillThenStepsEqualFullForward) {
  const auto [arch, kind] = GetParam();
  const mx::MambaLM model = tiny_model(arch);
  const mx::DtScales s = kind == 0 ? mx::DtScales{} : factors(model.config(), kind == 2);
  const auto ids = random_ids(23, 3);
  const int64_t P = 9;  // prompt tokens; positions P..22 are decoded one by one
  const auto full = model.forward(at::tensor(ids, at::kLong).unsqueeze(0), s)[0];  // (23, V)

  mx::State st;
  const auto last = mx::prefill(model, s, std::vector<int64_t>(ids.begin(), ids.begin() + P), 4, st);  // segments 4+4+1
  EXPECT_LT(max_rel(last, full[P - 1]), 1e-12);
  for (int64_t t = P; t < static_cast<int64_t>(ids.size()); ++t) {
    const auto lt = model.step(at::full({1}, ids[t], at::kLong), st, s)[0];  // (V)
    EXPECT_LT(max_rel(lt, full[t]), 1e-12) << "position " << t;
  }
  if (kind != 0) {  // the factors matter far beyond the parity tolerance, and they reach the step's state
    const auto plain = model.forward(at::tensor(ids, at::kLong).unsqueeze(0))[0];  // (23, V)
    EXPECT_GT(max_rel(full, plain), 1e-8);  // random weights: small mixer outputs, but 10^4 x the parity bound
    mx::State a, b;
    mx::prefill(model, s, ids, 8, a);
    mx::prefill(model, s, ids, 8, b);
    model.step(at::full({1}, 5, at::kLong), a, s);
    model.step(at::full({1}, 5, at::kLong), b, {});
    for (int64_t l = 0; l < model.config().n_layer; ++l) EXPECT_GT(max_rel(a.layers[l].ssm, b.layers[l].ssm), 1e-3);
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, StepParity,
                         ::testing::Values(Case{mx::Arch::Mamba1, 0}, Case{mx::Arch::Mamba1, 1},
                                           Case{mx::Arch::Mamba1, 2}, Case{mx::Arch::Mamba2, 0},
                                           Case{mx::Arch::Mamba2, 1}, Case{mx::Arch::Mamba2, 2}),
                         [](const auto& info) {
                           return std::string(info.param.arch == mx::Arch::Mamba1 ? "mamba1" : "mamba2") +
                                  (info.param.scales == 0 ? "_vanilla" : info.param.scales == 1 ? "_layer" : "_channel");
                         });

TEST(Generate, GreedyEqualsArgmaxOfFullForward) {
  for (auto arch : {mx::Arch::Mamba1, mx::Arch::Mamba2}) {
    const mx::MambaLM model = tiny_model(arch, 5);
    const mx::DtScales s = factors(model.config(), true);
    auto seq = random_ids(7, 11);
    mx::GenerateOptions g;
    g.max_new_tokens = 12;
    g.stop_ids = {};
    g.segment_len = 3;
    const auto r = mx::generate(model, s, seq, g);
    ASSERT_EQ(r.tokens.size(), 12u);
    EXPECT_FALSE(r.stopped);
    for (int64_t id : r.tokens) {
      const auto logits = model.forward(at::tensor(seq, at::kLong).unsqueeze(0), s)[0];  // (L, V)
      EXPECT_EQ(id, logits[-1].argmax().item<int64_t>());
      seq.push_back(id);
    }
  }
}

TEST(Generate, SamplingIsDeterministicForASeed) {
  const mx::MambaLM model = tiny_model(mx::Arch::Mamba1, 2);
  const auto prompt = random_ids(5, 1);
  mx::GenerateOptions g;
  g.max_new_tokens = 20;
  g.stop_ids = {};
  g.sampling = {1.0, 0, 1.0, 42};
  const auto a = mx::generate(model, {}, prompt, g).tokens;
  const auto b = mx::generate(model, {}, prompt, g).tokens;
  EXPECT_EQ(a, b);
  std::set<std::vector<int64_t>> outputs = {a};
  for (uint64_t seed : {1, 2, 3}) {
    g.sampling.seed = seed;
    outputs.insert(mx::generate(model, {}, prompt, g).tokens);
  }
  EXPECT_GE(outputs.size(), 3u);  // random weights: near-uniform next-token distributions
  g.sampling = {1.0, 1, 1.0, 9};  // top-k 1 is greedy
  const auto k1 = mx::generate(model, {}, prompt, g).tokens;
  g.sampling = {0.7, 0, 1e-9, 9};  // a tiny nucleus keeps only the most likely id
  const auto p0 = mx::generate(model, {}, prompt, g).tokens;
  g.sampling = {};
  const auto greedy = mx::generate(model, {}, prompt, g).tokens;
  EXPECT_EQ(k1, greedy);
  EXPECT_EQ(p0, greedy);
}

TEST(Generate, StopsAtAStopId) {
  const mx::MambaLM model = tiny_model(mx::Arch::Mamba2, 3);
  const auto prompt = random_ids(6, 2);
  mx::GenerateOptions g;
  g.max_new_tokens = 8;
  g.stop_ids = {};
  const auto free_run = mx::generate(model, {}, prompt, g).tokens;
  g.stop_ids = {free_run[2]};
  const auto r = mx::generate(model, {}, prompt, g);
  EXPECT_TRUE(r.stopped);
  const auto first = std::find(free_run.begin(), free_run.end(), free_run[2]) - free_run.begin();
  EXPECT_EQ(r.tokens, std::vector<int64_t>(free_run.begin(), free_run.begin() + first + 1));
  g.max_new_tokens = 0;
  EXPECT_TRUE(mx::generate(model, {}, prompt, g).tokens.empty());
  EXPECT_THROW(mx::generate(model, {}, {}, g), mx::UsageError);
}

TEST(ChooseToken, FrequenciesFollowTheWarpedSoftmax) {
  const auto logits = at::tensor(std::vector<double>{2.0, 1.0, 0.5, 0.0, -1.0, 3.0});  // (6)
  std::mt19937_64 rng(123);
  const int n = 40000;
  auto freq = [&](const mx::SamplingOptions& s, int64_t limit) {
    std::vector<double> f(6, 0);
    for (int i = 0; i < n; ++i) f[mx::choose_token(logits, s, limit, rng)] += 1.0 / n;
    return f;
  };
  auto softmax = [&](double T, const std::vector<int>& keep) {
    std::vector<double> p(6, 0);
    double z = 0;
    for (int i : keep) z += (p[i] = std::exp(logits[i].item<double>() / T));
    for (auto& x : p) x /= z;
    return p;
  };
  const auto check = [&](const std::vector<double>& f, const std::vector<double>& p) {
    for (int i = 0; i < 6; ++i) {
      const double sd = std::sqrt(p[i] * (1 - p[i]) / n);
      EXPECT_NEAR(f[i], p[i], 5 * sd + 1e-12) << "id " << i;
    }
  };
  check(freq({0.8, 0, 1.0, 0}, 0), softmax(0.8, {0, 1, 2, 3, 4, 5}));
  check(freq({1.0, 3, 1.0, 0}, 0), softmax(1.0, {5, 0, 1}));    // top-3 by logit: ids 5, 0, 1
  check(freq({1.0, 0, 0.9, 0}, 0), softmax(1.0, {5, 0, 1}));    // p(5)=.60, +p(0)=.83, +p(1)=.91 >= .9
  check(freq({1.0, 0, 1.0, 0}, 5), softmax(1.0, {0, 1, 2, 3, 4}));  // id 5 is past the vocabulary limit
  EXPECT_EQ(mx::choose_token(logits, {}, 0, rng), 5);
  EXPECT_EQ(mx::choose_token(logits, {}, 5, rng), 0);
  EXPECT_THROW(mx::choose_token(logits, {-1.0, 0, 1.0, 0}, 0, rng), mx::UsageError);
  EXPECT_THROW(mx::choose_token(logits, {1.0, -2, 1.0, 0}, 0, rng), mx::UsageError);
  EXPECT_THROW(mx::choose_token(logits, {1.0, 0, 0.0, 0}, 0, rng), mx::UsageError);
  EXPECT_THROW(mx::choose_token(logits, {1.0, 0, 1.5, 0}, 0, rng), mx::UsageError);
}

TEST(Utf8Stream, PrintsWholeCharactersOnly) {
  mx::Utf8Stream s;
  EXPECT_EQ(s.push("ab"), "ab");
  EXPECT_EQ(s.push("\xC3"), "");          // first byte of é
  EXPECT_EQ(s.push("\xA9" "c"), "\xC3\xA9" "c");
  EXPECT_EQ(s.push("\xE2\x82"), "");      // € in two pieces
  EXPECT_EQ(s.push("\xAC"), "\xE2\x82\xAC");
  EXPECT_EQ(s.push("\xF0"), "");          // 🙂 = F0 9F 99 82, split 1 + 2 + 1
  EXPECT_EQ(s.push("\x9F\x99"), "");
  EXPECT_EQ(s.push("\x82!"), "\xF0\x9F\x99\x82!");
  EXPECT_EQ(s.push("\xFF" "x"), "\xEF\xBF\xBD" "x");        // an invalid byte becomes U+FFFD
  EXPECT_EQ(s.push("\xC3" "d"), "\xEF\xBF\xBD" "d");        // a lead byte followed by a non-continuation
  EXPECT_EQ(s.push("\xE2\x82"), "");
  EXPECT_EQ(s.finish(), "\xEF\xBF\xBD");                    // an incomplete tail at the end
  EXPECT_EQ(s.finish(), "");
}

}  // namespace
