// Calibration (issue 10, include/mambaextend/calibrate.h) on the two bundled organisms, CPU, small L:
//   * CalibGrad: CFBP's ∂loss/∂s (segment checkpointing, three segments) equals a float64 central finite
//     difference of the same loss to <= 1e-4 relative, for layer and channel/head granularity, in float64 and
//     in float32; checkpointed and non-checkpointed gradients agree.
//   * CalibWindows: seeded, distinct, protocol-shaped calibration windows; clear errors for zero samples and
//     a length beyond every document.
//   * CalibResume: a run stopped after k iterations and resumed ends with the factors of an uninterrupted run,
//     bit for bit (ZO and BP; library flag and a real SIGTERM to the CLI).
//   * CalibNonFinite: a NaN/inf objective is a recorded, skipped iteration and never gives NaN scales (an
//     injected objective, and a real diverging perturbation through the model via the CLI).
//   * CalibFactors: the factors file has design.md's fields, load_factors reads it, a bare list is accepted
//     as --init, and a file for another model is refused (library and CLI: exit status 1; zero samples: 2).
//   * CalibCli: --config takes the flag names as keys, flags override it, an unknown key is refused.
// The known-answer test (perturbed base factors) is in test_calibrate_known_answer.cpp.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <thread>

#include "mambaextend/calibrate.h"
#include "mambaextend/checkpoint.h"
#include "mambaextend/error.h"
#include "mambaextend/factors.h"
#include "mambaextend/tokenizer.h"
#include "unit/calib_helpers.h"
#include "unit/fixtures.h"
#include "unit/temp_dir.h"

namespace {

using mx::test::calib_cache_dir;
using mx::test::organism_dir;
using mx::test::tokenizer_path;
using mx::test::GradCase;
using mx::test::train_docs;

// kernels.md §6 tolerances: ds against float64 finite differences to ~1e-4 relative in fp32.
constexpr double kGradRel = 1e-4;

class CalibGrad : public ::testing::TestWithParam<GradCase> {};

TEST_P(CalibGrad, MatchesFloat64FiniteDifference) {
  const mx::test::OneThread one_thread;
  const auto c = GetParam();
  const auto ck = mx::load_checkpoint(organism_dir(c.arch));
  const mx::MambaLM m64(ck, mx::ModelOptions{at::kDouble, c10::Device("cpu")});
  const mx::MambaLM m32(ck, mx::ModelOptions{at::kFloat, c10::Device("cpu")});
  const auto& cfg = m64.config();
  // Proof-Pile windows score every position, so the loss spans all three 16-token segments.
  const int64_t L = 48, seg = 16;
  const auto set = mx::sample_calibration_set(train_docs(), mx::Protocol::ProofPile, L, 2, 0, 11);
  const mx::ScaleLayout lay{cfg.n_layer, c.channel ? cfg.scale_width() : 1};
  std::vector<double> s(static_cast<size_t>(lay.size()));
  for (size_t i = 0; i < s.size(); ++i) s[i] = 0.7 + 0.06 * static_cast<double>((i * 37) % 11);  // in [0.7, 1.3]

  std::vector<double> g64, g64_plain, g32, g32_plain;
  mx::nll_and_grad(m64, s, lay, {}, set, {}, mx::GradOptions{seg, true}, g64);
  mx::nll_and_grad(m64, s, lay, {}, set, {}, mx::GradOptions{seg, false}, g64_plain);
  mx::nll_and_grad(m32, s, lay, {}, set, {}, mx::GradOptions{seg, true}, g32);
  mx::nll_and_grad(m32, s, lay, {}, set, {}, mx::GradOptions{seg, false}, g32_plain);

  // Central differences in float64 on every layer scale, or on ~16 spread-out channel/head scales.
  const size_t stride = c.channel ? std::max<size_t>(1, s.size() / 16) : 1;
  const double h = 1e-5;
  double max_fd = 0, err64 = 0, err32 = 0, ck64 = 0, ck32 = 0;
  for (size_t i = 0; i < s.size(); i += stride) {
    auto sp = s, sm = s;
    sp[i] += h;
    sm[i] -= h;
    const double fp = mx::calibration_nll(m64, mx::to_dt_scales(sp, lay, {}, at::kDouble), set, {}, seg, 1);
    const double fm = mx::calibration_nll(m64, mx::to_dt_scales(sm, lay, {}, at::kDouble), set, {}, seg, 1);
    const double fd = (fp - fm) / (2 * h);
    max_fd = std::max(max_fd, std::abs(fd));
    err64 = std::max(err64, std::abs(g64[i] - fd));
    err32 = std::max(err32, std::abs(g32[i] - fd));
  }
  for (size_t i = 0; i < s.size(); ++i) {
    ck64 = std::max(ck64, std::abs(g64[i] - g64_plain[i]));
    ck32 = std::max(ck32, std::abs(g32[i] - g32_plain[i]));
  }
  ASSERT_GT(max_fd, 1e-4) << "the loss must depend on the scales, or the check could not fail";
  const double r64 = err64 / max_fd, r32 = err32 / max_fd;
  std::cout << "[calib] grad check " << c.arch << (c.channel ? " channel" : " layer") << ": fp64 rel " << r64
            << ", fp32 rel " << r32 << ", checkpointed vs not: fp64 " << ck64 / max_fd << ", fp32 " << ck32 / max_fd
            << "\n";
  EXPECT_LE(r64, kGradRel);
  EXPECT_LE(r32, kGradRel);
  EXPECT_LE(ck64 / max_fd, 1e-12);  // same arithmetic up to segment boundaries
  EXPECT_LE(ck32 / max_fd, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Organisms, CalibGrad, mx::test::grad_cases(), mx::test::grad_case_name);

// ---- windows ---------------------------------------------------------------------------------------------

TEST(CalibWindows, SeededDistinctAndProtocolShaped) {
  const mx::test::OneThread one_thread;
  const auto& docs = train_docs();
  const auto a = mx::sample_calibration_set(docs, mx::Protocol::PG19, 300, 6, 100, 3);
  const auto b = mx::sample_calibration_set(docs, mx::Protocol::PG19, 300, 6, 100, 3);
  const auto c = mx::sample_calibration_set(docs, mx::Protocol::PG19, 300, 6, 100, 4);
  ASSERT_EQ(a.windows.size(), 6u);
  bool differs = false;
  std::set<std::pair<int64_t, int64_t>> starts;
  for (size_t i = 0; i < a.windows.size(); ++i) {
    EXPECT_EQ(a.windows[i].ids, b.windows[i].ids);
    differs = differs || a.windows[i].start != c.windows[i].start || a.windows[i].doc != c.windows[i].doc;
    EXPECT_EQ(a.windows[i].ids.size(), 300u);
    EXPECT_EQ(a.windows[i].score_from, 300 - 100 - 1);
    const auto& src = docs[a.windows[i].doc].ids;
    EXPECT_EQ(a.windows[i].ids[0], static_cast<int64_t>(src[a.windows[i].start]));
    starts.insert({a.windows[i].doc, a.windows[i].start});
  }
  EXPECT_TRUE(differs) << "another seed must draw other windows";
  EXPECT_EQ(starts.size(), 6u) << "windows must be distinct";
  const auto p = mx::sample_calibration_set(docs, mx::Protocol::ProofPile, 300, 2, 0, 3);
  for (const auto& w : p.windows) {
    EXPECT_EQ(w.ids.size(), 300u);
    EXPECT_EQ(w.ids[0], 0) << "proofpile windows start with BOS";
    EXPECT_EQ(w.score_from, 0);
    EXPECT_EQ(w.ids[1], static_cast<int64_t>(docs[w.doc].ids[w.start]));
  }
}

TEST(CalibWindows, ZeroSamplesAndTooLongAreClearErrors) {
  const mx::test::OneThread one_thread;
  const auto& docs = train_docs();
  EXPECT_THROW(mx::sample_calibration_set(docs, mx::Protocol::PG19, 300, 0, 100, 0), mx::UsageError);
  size_t longest = 0;
  for (const auto& d : docs) longest = std::max(longest, d.ids.size());
  try {
    mx::sample_calibration_set(docs, mx::Protocol::PG19, static_cast<int64_t>(longest) + 1, 2, 100, 0);
    FAIL() << "a length beyond every document must throw";
  } catch (const mx::DataError& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(longest)), std::string::npos) << e.what();
  }
}

// ---- resume ----------------------------------------------------------------------------------------------

mx::CalibrateOptions small_run(const std::string& method, const std::filesystem::path& out) {
  mx::CalibrateOptions o;
  o.model_dir = organism_dir("mamba1").string();
  o.data = (mx::test::source_dir() / "assets/books/train").string();
  o.tokenizer = tokenizer_path().string();
  o.cache_dir = calib_cache_dir().string();
  o.method = method;
  o.length = 64;
  o.samples = 3;
  o.pred_len = 20;
  o.segment_len = 32;
  o.seed = 5;
  o.out = out.string();
  o.spsa.iterations = 5;
  o.spsa.a0 = 0.05;
  o.adam.steps = 5;
  o.adam.batch = 2;  // partial batches: the permutation and its RNG state must survive the restart
  return o;
}

nlohmann::json without_created(nlohmann::json f) {
  f.erase("created");
  return f;
}

class CalibResume : public ::testing::TestWithParam<std::string> {};

TEST_P(CalibResume, StoppedAndResumedEqualsUninterruptedBitForBit) {
  const mx::test::OneThread one_thread;
  const mx::test::TempDir dir("calib_resume_" + GetParam());
  auto full = small_run(GetParam(), dir.path() / "full.json");
  const auto a = mx::run_calibration(full);
  ASSERT_TRUE(a.complete);
  EXPECT_FALSE(std::filesystem::exists(mx::resume_state_path(full.out))) << "the state file is removed at the end";

  auto part = small_run(GetParam(), dir.path() / "part.json");
  part.max_iterations_this_run = 2;
  EXPECT_FALSE(mx::run_calibration(part).complete);
  EXPECT_FALSE(std::filesystem::exists(part.out));
  ASSERT_TRUE(std::filesystem::exists(mx::resume_state_path(part.out)));
  part.max_iterations_this_run = 1;  // a second interruption
  part.resume = true;
  EXPECT_FALSE(mx::run_calibration(part).complete);
  part.max_iterations_this_run = -1;
  const auto b = mx::run_calibration(part);
  ASSERT_TRUE(b.complete);
  EXPECT_EQ(without_created(a.factors).dump(), without_created(b.factors).dump());
  EXPECT_EQ(b.factors.at("history").size(), 5u);

  // A resume with other settings is refused, naming what differs.
  auto other = small_run(GetParam(), dir.path() / "other.json");
  other.max_iterations_this_run = 1;
  EXPECT_FALSE(mx::run_calibration(other).complete);
  other.seed = 6;
  other.resume = true;
  EXPECT_THROW(mx::run_calibration(other), mx::UsageError);
}

INSTANTIATE_TEST_SUITE_P(Methods, CalibResume, ::testing::Values("zo", "bp"));

// Runs the CLI with `args`; returns its pid (the child's stdout/stderr go to `log`).
pid_t spawn_cli(const std::vector<std::string>& args, const std::filesystem::path& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    if (std::freopen("/dev/null", "w", stdout) == nullptr) _exit(127);
    std::vector<char*> argv;
    const std::string cli = mx::test::env_dir("MX_CLI").string();
    argv.push_back(const_cast<char*>(cli.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(cli.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::vector<std::string> cli_args(const std::filesystem::path& out, int64_t iterations, int64_t length = 64) {
  return {"--log-level", "warn", "calibrate", "--model", organism_dir("mamba2").string(), "--data",
          (mx::test::source_dir() / "assets/books/train").string(), "--tokenizer", tokenizer_path().string(),
          "--cache-dir", calib_cache_dir().string(), "--length", std::to_string(length), "--samples", "2", "--pred-len", "20",
          "--iterations", std::to_string(iterations), "--seed", "9", "--a0", "0.05", "--out", out.string()};
}

// SIGINT and SIGTERM during a real `mambaextend calibrate`: the handler only records the signal; the run stops
// after the iteration in progress, with its state saved, and exits 130 / 143 (a normal exit, not a death by the
// signal); --resume then ends with the factors of the uninterrupted run, bit for bit.
TEST(CalibResumeCli, SigintAndSigtermSaveStateExit130And143AndResumeExactly) {
  const mx::test::OneThread one_thread;
  const mx::test::TempDir dir("calib_sigterm");
  const int64_t K = 8;
  ASSERT_EQ(wait_exit(spawn_cli(cli_args(dir.path() / "full.json", K), dir.path() / "full.log")), 0)
      << mx::test::read_file(dir.path() / "full.log");
  const auto a = mx::test::read_json(dir.path() / "full.json");
  for (const int sig : {SIGINT, SIGTERM}) {
    SCOPED_TRACE(sig == SIGINT ? "SIGINT" : "SIGTERM");
    const auto part = dir.path() / (sig == SIGINT ? "part_int.json" : "part_term.json");
    const auto log = dir.path() / (sig == SIGINT ? "int.log" : "term.log");
    const pid_t pid = spawn_cli(cli_args(part, K), log);
    // Signal it once the state file shows two finished iterations (the state is written after each one).
    const auto state = mx::resume_state_path(part);
    bool sent = false;
    for (int i = 0; i < 6000 && !sent; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      std::ifstream in(state);
      if (!in) continue;
      try {
        const auto j = nlohmann::json::parse(in);
        if (j.at("optimizer").at("iter").get<int64_t>() >= 2) {
          kill(pid, sig);
          sent = true;
        }
      } catch (const std::exception&) {
        // never half-written (atomic rename); a parse error would be a real failure below
      }
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(sent) << "the run finished before the signal could be sent";
    ASSERT_TRUE(WIFEXITED(status)) << "died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0)
                                   << " instead of exiting: " << mx::test::read_file(log);
    EXPECT_EQ(WEXITSTATUS(status), 128 + sig) << mx::test::read_file(log);
    EXPECT_NE(mx::test::read_file(log).find("--resume"), std::string::npos) << mx::test::read_file(log);
    EXPECT_FALSE(std::filesystem::exists(part)) << "no factors file from a stopped run";
    const auto saved = mx::test::read_json(state);
    EXPECT_GE(saved.at("optimizer").at("iter").get<int64_t>(), 2);
    EXPECT_LT(saved.at("optimizer").at("iter").get<int64_t>(), K);
    auto args = cli_args(part, K);
    args.push_back("--resume");
    ASSERT_EQ(wait_exit(spawn_cli(args, log.string() + ".resume")), 0) << mx::test::read_file(log.string() + ".resume");
    EXPECT_EQ(without_created(a).dump(), without_created(mx::test::read_json(part)).dump());
  }
}

// ---- non-finite objectives ---------------------------------------------------------------------------------

TEST(CalibNonFinite, SpsaSkipsNaNAndKeepsFiniteScales) {
  const mx::test::OneThread one_thread;
  // A bowl around 0.8 whose evaluation diverges on some calls: NaN on calls 3, 10, 17, … and inf on calls
  // 5, 12, 19, … (each iteration makes three calls: f(t+), f(t-), f(t_new)).
  int calls = 0;
  const mx::ObjectiveFn f = [&](const std::vector<double>& s) {
    ++calls;
    if (calls % 7 == 3) return std::nan("");
    if (calls % 7 == 5) return double(INFINITY);
    double v = 0;
    for (double x : s) v += (x - 0.8) * (x - 0.8);
    return v;
  };
  const std::vector<double> s0(4, 1.0);
  auto st = mx::spsa_init(s0, 0.16, 1);
  mx::SpsaOptions o;
  o.iterations = 30;
  o.a0 = 0.1;
  mx::spsa_run(f, o, st, nullptr);
  int64_t skipped = 0, rejected_new = 0;
  for (const auto& h : st.at("history")) {
    skipped += h.at("skipped").get<bool>() ? 1 : 0;
    if (!h.at("skipped").get<bool>() && h.at("f_new").is_null()) {
      ++rejected_new;
      EXPECT_NE(h.at("accepted"), "new") << "a non-finite f(t_new) must not be accepted";
    }
  }
  EXPECT_GT(skipped, 0) << "a NaN at t+ or t- must skip the iteration";
  EXPECT_GT(rejected_new, 0) << "a NaN at t_new must have happened too";
  EXPECT_EQ(st.at("skipped").get<int64_t>(), skipped);
  for (double x : mx::state_scales(st)) {
    EXPECT_TRUE(std::isfinite(x));
    EXPECT_GE(x, o.floor);
  }
  EXPECT_LT(st.at("best_f").get<double>(), 0.16 / 4) << "and it still converges";
}

TEST(CalibNonFinite, AdamSkipsNonFiniteSteps) {
  const mx::test::OneThread one_thread;
  int calls = 0;
  const mx::LossGradFn fg = [&](const std::vector<double>& s, const std::vector<int64_t>&, std::vector<double>& g) {
    ++calls;
    g.assign(s.size(), 0.0);
    for (size_t i = 0; i < s.size(); ++i) g[i] = 2 * (s[i] - 0.5);
    if (calls == 2) g[1] = std::nan("");  // a NaN gradient
    return calls == 3 ? double(INFINITY) : 0.0;  // an infinite loss
  };
  mx::AdamOptions o;
  o.steps = 6;
  auto st = mx::adam_init(std::vector<double>(3, 1.0), 4, 0, o);
  mx::adam_run(fg, o, st, nullptr);
  EXPECT_EQ(st.at("skipped").get<int64_t>(), 2);
  EXPECT_TRUE(st.at("history")[1].at("skipped").get<bool>());
  EXPECT_TRUE(st.at("history")[2].at("skipped").get<bool>());
  for (double x : mx::state_scales(st)) EXPECT_TRUE(std::isfinite(x) && x < 1.0);
}

TEST(CalibNonFinite, DivergingPerturbationThroughTheModelIsSkipped) {
  const mx::test::OneThread one_thread;
  // c0 = 1e39: t+ overflows float32, the model's scale dtype, so f(t+) cannot be computed (NaN). (Finite huge
  // scales do not give NaN on these models: the RMS norms absorb any magnitude; measured up to 1e37.)
  const mx::test::TempDir dir("calib_nan");
  auto args = cli_args(dir.path() / "f.json", 2);
  for (const char* a : {"--c0", "1e39"}) args.push_back(a);
  ASSERT_EQ(wait_exit(spawn_cli(args, dir.path() / "log")), 0) << mx::test::read_file(dir.path() / "log");
  const auto f = mx::test::read_json(dir.path() / "f.json");
  EXPECT_EQ(f.at("skipped_iterations").get<int64_t>(), 2) << f.at("history").dump();
  for (const auto& h : f.at("history")) EXPECT_TRUE(h.at("skipped").get<bool>());
  for (const auto& layer : f.at("scales"))
    for (const auto& v : layer) EXPECT_TRUE(v.is_number() && std::isfinite(v.get<double>()));
  EXPECT_NE(mx::test::read_file(dir.path() / "log").find("not finite"), std::string::npos);
}

// ---- factors files ---------------------------------------------------------------------------------------

TEST(CalibFactors, FileHasDesignFieldsAndLoadsBack) {
  const mx::test::OneThread one_thread;
  const mx::test::TempDir dir("calib_factors");
  auto o = small_run("zo", dir.path() / "f.json");
  o.granularity = "channel";
  o.spsa.iterations = 2;
  ASSERT_TRUE(mx::run_calibration(o).complete);
  const auto f = mx::test::read_json(o.out);
  for (const char* k : {"format", "model", "method", "granularity", "context_length", "scales", "objective",
                        "hyperparameters", "calibration_data", "history", "tool_version", "created"})
    EXPECT_TRUE(f.contains(k)) << k;
  EXPECT_EQ(f.at("format"), mx::kFactorsFormat);
  EXPECT_EQ(f.at("calibration_data").at("sha256").get<std::string>().size(), 64u);
  EXPECT_EQ(f.at("history").size(), 2u);
  const auto ck = mx::load_checkpoint(organism_dir("mamba1"));
  const auto s = mx::load_factors(o.out, ck.config, ck.config_sha256);
  ASSERT_EQ(static_cast<int64_t>(s.per_layer.size()), ck.config.n_layer);
  EXPECT_EQ(s.per_layer[0].numel(), ck.config.d_inner);
  EXPECT_FLOAT_EQ(s.per_layer[3][5].item<float>(), static_cast<float>(f.at("scales")[3][5].get<double>()));
}

TEST(CalibFactors, BareListInitAndForeignModelRefused) {
  const mx::test::OneThread one_thread;
  const mx::test::TempDir dir("calib_init");
  // The official bare list: one number per layer.
  const auto bare = dir.path() / "bare.json";
  std::ofstream(bare) << "[0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8]";
  auto o = small_run("zo", dir.path() / "f.json");
  o.init_factors = bare.string();
  o.spsa.iterations = 0;
  const auto r = mx::run_calibration(o);
  ASSERT_TRUE(r.complete);
  EXPECT_NEAR(r.factors.at("scales")[5][0].get<double>(), 0.8, 1e-7);  // read as float32

  // A factors file made for the Mamba2 organism (4 heads per layer) does not fit the Mamba1 one.
  const auto foreign = dir.path() / "m2.json";
  std::ofstream(foreign) << R"({"format": "mambaextend.factors/v1", "model": {"arch": "mamba2", "n_layer": 8,
      "d_inner": 256, "nheads": 4}, "scales": [[1,1,1,1],[1,1,1,1],[1,1,1,1],[1,1,1,1],[1,1,1,1],[1,1,1,1],[1,1,1,1],[1,1,1,1]]})";
  o.init_factors = foreign.string();
  EXPECT_THROW(mx::run_calibration(o), mx::ConfigError);
  std::ofstream(bare) << "[0.9, 0.9, 0.9]";  // 3 layers for an 8-layer model
  o.init_factors = bare.string();
  EXPECT_THROW(mx::run_calibration(o), mx::ConfigError);

  // The CLI: the same refusal is one line on stderr and exit status 1; zero samples is a usage error (2).
  // (cli_args runs the Mamba2 organism: give it a file made for the Mamba1 one.)
  const auto foreign1 = dir.path() / "m1.json";
  std::ofstream(foreign1) << R"({"format": "mambaextend.factors/v1", "model": {"arch": "mamba1", "n_layer": 8,
      "d_inner": 256, "nheads": null}, "scales": [[1],[1],[1],[1],[1],[1],[1],[1]]})";
  auto args = cli_args(dir.path() / "g.json", 1);
  args.push_back("--init");
  args.push_back(foreign1.string());
  EXPECT_EQ(wait_exit(spawn_cli(args, dir.path() / "log1")), 1);
  EXPECT_NE(mx::test::read_file(dir.path() / "log1").find("m1.json"), std::string::npos)
      << mx::test::read_file(dir.path() / "log1");
  args = cli_args(dir.path() / "g.json", 1);
  for (const char* a : {"--samples", "0"}) args.push_back(a);
  EXPECT_EQ(wait_exit(spawn_cli(args, dir.path() / "log2")), 2);
  args = cli_args(dir.path() / "g.json", 1, 10000000);
  EXPECT_EQ(wait_exit(spawn_cli(args, dir.path() / "log3")), 1);
  EXPECT_NE(mx::test::read_file(dir.path() / "log3").find("longest"), std::string::npos)
      << mx::test::read_file(dir.path() / "log3");
}

TEST(CalibCli, ConfigFileTakesFlagNamesAndFlagsOverride) {
  const mx::test::OneThread one_thread;
  const mx::test::TempDir dir("calib_config");
  const auto cfg = dir.path() / "cfg.json";
  std::ofstream(cfg) << nlohmann::json{{"model", organism_dir("mamba1").string()},
                                       {"data", (mx::test::source_dir() / "assets/books/train").string()},
                                       {"tokenizer", tokenizer_path().string()},
                                       {"cache_dir", calib_cache_dir().string()},
                                       {"length", 64}, {"samples", 2}, {"pred-len", 20}, {"method", "bp"},
                                       {"iterations", 5}, {"lr", 0.05}, {"parametrization", "log"}}
                            .dump();
  const auto out = dir.path() / "f.json";
  ASSERT_EQ(wait_exit(spawn_cli({"calibrate", "--config", cfg.string(), "--iterations", "1", "--out", out.string()},
                                dir.path() / "log")), 0)
      << mx::test::read_file(dir.path() / "log");
  const auto f = mx::test::read_json(out);
  EXPECT_EQ(f.at("context_length").get<int64_t>(), 64);
  EXPECT_EQ(f.at("method"), "bp");
  EXPECT_EQ(f.at("hyperparameters").at("adam").at("steps").get<int64_t>(), 1) << "the flag overrides the config";
  EXPECT_DOUBLE_EQ(f.at("hyperparameters").at("adam").at("lr").get<double>(), 0.05);
  EXPECT_EQ(f.at("hyperparameters").at("adam").at("parametrization"), "log");
  std::ofstream(cfg) << R"({"lenght": 64})";
  EXPECT_EQ(wait_exit(spawn_cli({"calibrate", "--config", cfg.string()}, dir.path() / "log2")), 1);
  EXPECT_NE(mx::test::read_file(dir.path() / "log2").find("lenght"), std::string::npos);
}

}  // namespace

// ---- SPSA parametrisations ------------------------------------------------------------------------------------

TEST(CalibSpsa, LogParametrisationMovesMultiplicativelyAndConverges) {
  // A bowl in log s around s = 0.25 (a scale that must shrink 4x, like undoing c_l = 4).
  const mx::ObjectiveFn f = [](const std::vector<double>& s) {
    double v = 0;
    for (double x : s) v += std::pow(std::log(x / 0.25), 2);
    return v;
  };
  const std::vector<double> s0(3, 1.0);
  mx::SpsaOptions o;
  o.iterations = 60;
  o.c0 = 0.2;
  o.a0 = 0.3;
  o.parametrization = "log";
  auto st = mx::spsa_init(s0, f(s0), 3);
  mx::spsa_run(f, o, st, nullptr);
  // The first perturbation is s = exp(±c0) per coordinate (not 1 ± c0), so t+ and t- together hold each of
  // log(s / 0.25) = log 4 ± 0.2 once per coordinate.
  const auto& h0 = st.at("history").at(0);
  const double pair = h0.at("f_plus").get<double>() + h0.at("f_minus").get<double>();
  EXPECT_NEAR(pair, 3 * (std::pow(std::log(4.0) + 0.2, 2) + std::pow(std::log(4.0) - 0.2, 2)), 1e-12);
  for (double x : mx::state_scales(st)) EXPECT_NEAR(std::log(x / 0.25), 0.0, 0.1) << "s = " << x;
  EXPECT_EQ(o.to_json().at("parametrization"), "log");
  o.parametrization = "exp";
  auto st2 = mx::spsa_init(s0, f(s0), 3);
  EXPECT_THROW(mx::spsa_run(f, o, st2, nullptr), mx::UsageError);
}
