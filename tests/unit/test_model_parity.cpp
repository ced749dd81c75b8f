// Parity of mx::MambaLM with Hugging Face transformers, and agreement of its entry points with each other.
//   * ModelParity: every tiny random model of tests/oracle/oracle_model.py, loaded from both layouts (HF
//     safetensors and state-spaces pytorch_model.bin), gives HF's fp32 logits within 1e-5 relative
//     (max|ours − ref| / max|ref|) at L = 1, 7, 33 (batch 2), 130; with Δ scales (a random scalar per layer,
//     and a random vector per channel / head) it gives the logits of HF patched so that Δ = s ⊙ softplus(·).
//     For Mamba2 with n_groups > 1 the oracle's gated norm is the grouped one (HF 5.17 ignores groups; the
//     oracle patches it); ungrouped HF must differ from us, which shows the patch matters.
//   * OrganismParity: the two bundled organisms (bf16 weights run in fp32) on 512 tokens of a validation
//     book: per-position next-token NLL, logsumexp, max logit, 16 full logit rows (incl. the last 8), argmax.
//   * ModelParityDecode: MambaLM::step token by token (from initial_state, and after a forward() prefix)
//     equals the full forward at every position (≤ 1e-5 relative), with no, scalar and vector scales.
//   * ModelParitySegmented: hidden_segmented with segments of 1, 7, 64, 1000 over 1500 tokens equals
//     hidden() and leaves the same final state (≤ 1e-6 relative, fp32).
//   * ModelParityFloat64: the float64 reference mode agrees with fp32 and with HF to 1e-5.
// Measured errors are printed as "[parity] ... max_rel_err=..." and recorded as test properties.
// Fixtures: $MX_FIXTURES/model/ (manifest.json lists models and cases); organisms from $MX_SOURCE_DIR/assets.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "mambaextend/checkpoint.h"
#include "mambaextend/model.h"
#include "unit/fixtures.h"

namespace {

using mx::test::fixture_dir;
using mx::test::get;
using mx::test::max_rel_error;
using mx::test::read_tensors;

// design.md "Numerics": fp32 runs match transformers (fp32, TF32 off) to ~1e-5 relative in logits.
constexpr double kLogitsRel = 1e-5;
// issue 3: the segmented forward equals the monolithic one to 1e-6 relative (fp32), measured as
// ‖segmented − mono‖ / ‖mono‖. Elementwise (max|diff| / max|ref|) the two differ by up to ~1e-6 because
// LibTorch's fp32 GEMM accumulates in another order for 1-row and 1500-row inputs (measured 8.7e-7 here, just
// over 1e-6 on the GPU machine's CPU), so the elementwise check gets the logits tolerance.
constexpr double kSegmentRel = 1e-6;
constexpr double kSegmentMaxRel = 1e-5;

double norm_rel_error(const at::Tensor& a, const at::Tensor& ref) {
  const auto r = ref.to(at::kDouble);
  return (a.to(at::kDouble) - r).norm().item<double>() / std::max(r.norm().item<double>(), 1e-300);
}
// Step vs full forward: same math, different association of the scan (chunked vs recurrent): logits tolerance.
constexpr double kStepRel = 1e-5;
// Oracle sanity: scales and the ungrouped norm must move the logits by at least ten times the tolerance
// (measured: scales 1e-3 to 1e-1, the ungrouped norm ~0.5), or the tests could not fail.
constexpr double kMustDiffer = 10 * kLogitsRel;

const std::vector<std::string> kTinyModels = {
    "m1_n16_tied",    "m1_n64_untied",    "m1_n128_padvocab", "m1_n16_bf16",
    "m2_n16_g1",      "m2_n64_g2_untied", "m2_n128_g4_clamp", "m2_n64_g2_bf16"};

std::string sci(double v) {
  std::ostringstream o;
  o << std::scientific << std::setprecision(2) << v;
  return o.str();
}

void report(const std::string& what, double err) {
  std::cout << "[parity] " << what << " max_rel_err=" << sci(err) << "\n";
}

const nlohmann::json& manifest() {
  static const nlohmann::json m = mx::test::read_json(fixture_dir("model") / "manifest.json");
  return m;
}

const nlohmann::json& model_info(const std::string& name) {
  const auto& models = manifest().at("models");
  if (!models.contains(name)) throw std::runtime_error("fixture manifest has no model " + name);
  return models.at(name);
}

struct Loaded {
  mx::Checkpoint ckpt;
  std::unique_ptr<mx::MambaLM> lm;
};

Loaded load(const std::filesystem::path& dir, at::ScalarType dtype = at::kFloat) {
  Loaded m;
  m.ckpt = mx::load_checkpoint(dir);
  mx::ModelOptions opts;
  opts.dtype = dtype;
  m.lm = std::make_unique<mx::MambaLM>(m.ckpt, opts);
  return m;
}

Loaded load_tiny(const std::string& model, const std::string& layout, at::ScalarType dtype = at::kFloat) {
  const auto& info = model_info(model);
  return load(fixture_dir("model") / info.at(layout == "hf" ? "hf_dir" : "ss_dir").get<std::string>(), dtype);
}

// (n_layer, W) -> one tensor per layer of shape (W).
mx::DtScales to_scales(const at::Tensor& s, at::ScalarType dtype = at::kFloat) {
  mx::DtScales d;
  for (int64_t l = 0; l < s.size(0); ++l) d.per_layer.push_back(s[l].to(dtype).contiguous());
  return d;
}

// Step decoding and 1- or 7-token segments are latency-bound (thousands of tiny ops). With 2 OpenMP threads
// on 2 shared cores every op pays a barrier that can stall for a scheduler quantum: measured under load, the
// m1 segmented test took 132 s with 2 threads and 3.3 s with one. These tests compare our model with itself,
// so they run single-threaded; the previous thread count is restored afterwards.
class SingleThread {
 public:
  SingleThread() : saved_(at::get_num_threads()) { at::set_num_threads(1); }
  ~SingleThread() { at::set_num_threads(saved_); }
  SingleThread(const SingleThread&) = delete;
  SingleThread& operator=(const SingleThread&) = delete;

 private:
  int saved_;
};

std::map<std::string, at::Tensor> read_case(const nlohmann::json& c) {
  return read_tensors(fixture_dir("model") / c.at("file").get<std::string>());
}

// ---- tiny models, both layouts -------------------------------------------------------------------------
struct LayoutCase {
  std::string model, layout;
};

void PrintTo(const LayoutCase& c, std::ostream* os) { *os << c.model << "/" << c.layout; }

std::vector<LayoutCase> layout_cases() {
  std::vector<LayoutCase> v;
  for (const auto& m : kTinyModels)
    for (const char* layout : {"hf", "ss"}) v.push_back({m, layout});
  return v;
}

class ModelParity : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(ModelParity, ConfigMatchesOracle) {
  const auto& p = GetParam();
  const auto& info = model_info(p.model);
  const auto m = load_tiny(p.model, p.layout);
  const auto& cfg = m.lm->config();
  EXPECT_EQ(cfg.arch, info.at("arch") == "mamba1" ? mx::Arch::Mamba1 : mx::Arch::Mamba2);
  EXPECT_EQ(cfg.n_layer, info.at("layers").get<int64_t>());
  EXPECT_EQ(cfg.d_model, info.at("hidden").get<int64_t>());
  EXPECT_EQ(cfg.d_inner, 2 * info.at("hidden").get<int64_t>());
  EXPECT_EQ(cfg.d_state, info.at("state").get<int64_t>());
  EXPECT_EQ(cfg.vocab_size, info.at("vocab").get<int64_t>());  // padded: the embedding's rows
  EXPECT_EQ(cfg.tie_embeddings, info.at("tied").get<bool>());
  EXPECT_EQ(cfg.scale_width(), info.at("scale_width").get<int64_t>());
  if (p.layout == "ss") EXPECT_EQ(cfg.vocab_size_unpadded, info.at("ss_vocab").get<int64_t>());
  if (cfg.arch == mx::Arch::Mamba2) {
    EXPECT_EQ(cfg.n_groups, info.at("groups").get<int64_t>());
    EXPECT_EQ(cfg.head_dim, info.at("head_dim").get<int64_t>());
    if (info.contains("dt_limit")) {
      EXPECT_DOUBLE_EQ(cfg.dt_limit_min, info.at("dt_limit")[0].get<double>());
      EXPECT_DOUBLE_EQ(cfg.dt_limit_max, info.at("dt_limit")[1].get<double>());
    } else {
      EXPECT_EQ(cfg.dt_limit_min, 0.0);
      EXPECT_TRUE(std::isinf(cfg.dt_limit_max));
    }
  }
}

TEST_P(ModelParity, LogitsMatchTransformers) {
  const auto& p = GetParam();
  const auto m = load_tiny(p.model, p.layout);
  double worst = 0;
  for (const auto& c : model_info(p.model).at("cases")) {
    const auto fx = read_case(c);
    const auto& ref = get(fx, "logits");                       // (B, L, V_pad)
    const auto ours = m.lm->forward(get(fx, "ids"));           // (B, L, V_pad)
    ASSERT_EQ(ours.sizes(), ref.sizes()) << c.at("file");
    EXPECT_EQ(ours.scalar_type(), at::kFloat);
    const double e = max_rel_error(ours, ref);
    EXPECT_LE(e, kLogitsRel) << p.model << "/" << p.layout << " " << c.at("file");
    worst = std::max(worst, e);
  }
  RecordProperty("max_rel_err", sci(worst));
  report(p.model + "/" + p.layout + " logits vs HF", worst);
}

TEST_P(ModelParity, DtScalesMatchPatchedTransformers) {
  const auto& p = GetParam();
  const auto m = load_tiny(p.model, p.layout);
  double worst = 0, effect_scalar = 0, effect_vector = 0;
  for (const auto& c : model_info(p.model).at("cases")) {
    const auto fx = read_case(c);
    for (const char* kind : {"scalar", "vector"}) {
      const auto& ref = get(fx, std::string("logits_") + kind);
      double& effect = std::string(kind) == "scalar" ? effect_scalar : effect_vector;
      effect = std::max(effect, max_rel_error(get(fx, "logits"), ref));
      const auto ours = m.lm->forward(get(fx, "ids"), to_scales(get(fx, std::string("scales_") + kind)));
      ASSERT_EQ(ours.sizes(), ref.sizes());
      const double e = max_rel_error(ours, ref);
      EXPECT_LE(e, kLogitsRel) << p.model << "/" << p.layout << " " << kind << " scales " << c.at("file");
      worst = std::max(worst, e);
    }
  }
  // The scales must move the logits far more than the tolerance (at L = 1 and small Δ they barely do; the
  // longer cases carry the check), or this test could not fail.
  EXPECT_GT(effect_scalar, kMustDiffer) << "scalar scales hardly change HF's logits";
  EXPECT_GT(effect_vector, kMustDiffer) << "vector scales hardly change HF's logits";
  RecordProperty("max_rel_err", sci(worst));
  report(p.model + "/" + p.layout + " scaled logits vs patched HF", worst);
}

INSTANTIATE_TEST_SUITE_P(Tiny, ModelParity, ::testing::ValuesIn(layout_cases()),
                         [](const auto& info) { return info.param.model + "_" + info.param.layout; });

// transformers 5.17 normalises Mamba2's gated norm over all of d_inner; we (like mamba_ssm) normalise per
// group. The oracle's reference logits come from a grouped-norm patch; HF's own output must differ from ours.
TEST(ModelParityGroups, UngroupedTransformersNormDiffers) {
  int checked = 0;
  for (const auto& name : kTinyModels) {
    const auto& info = model_info(name);
    if (info.at("arch") != "mamba2" || info.at("groups").get<int64_t>() == 1) continue;
    const auto m = load_tiny(name, "hf");
    const auto fx = read_case(info.at("cases").back());
    const auto ours = m.lm->forward(get(fx, "ids"));
    const double to_grouped = max_rel_error(ours, get(fx, "logits"));
    const double to_ungrouped = max_rel_error(ours, get(fx, "logits_hf_ungrouped"));
    EXPECT_LE(to_grouped, kLogitsRel) << name;
    EXPECT_GT(to_ungrouped, kMustDiffer) << name;
    std::cout << "[parity] " << name << " vs HF unpatched (ungrouped) norm: rel diff " << sci(to_ungrouped) << "\n";
    ++checked;
  }
  EXPECT_GE(checked, 2);
}

// ---- organisms ------------------------------------------------------------------------------------------
class OrganismParity : public ::testing::TestWithParam<std::string> {};

TEST_P(OrganismParity, NllLogitsArgmaxMatchTransformers) {
  const auto& info = manifest().at("organisms").at(GetParam());
  const auto m = load(mx::test::source_dir() / info.at("model_dir").get<std::string>());
  const auto fx = read_tensors(fixture_dir("model") / info.at("file").get<std::string>());
  const auto& ids = get(fx, "ids");                                    // (1, L)
  const int64_t L = ids.size(1);
  const auto logits = m.lm->forward(ids)[0].to(at::kDouble);          // (L, V_pad)
  ASSERT_EQ(logits.size(1), info.at("vocab_padded").get<int64_t>());

  const auto logp = at::log_softmax(logits, -1);
  const auto nll = -logp.narrow(0, 0, L - 1).gather(1, ids[0].narrow(0, 1, L - 1).unsqueeze(1)).squeeze(1);  // (L-1)
  const auto rows = get(fx, "rows");
  const double e_nll = max_rel_error(nll, get(fx, "nll"));
  const double e_lse = max_rel_error(at::logsumexp(logits, -1), get(fx, "logsumexp"));
  const double e_max = max_rel_error(std::get<0>(logits.max(-1)), get(fx, "max_logit"));
  const double e_rows = max_rel_error(logits.index_select(0, rows), get(fx, "row_logits"));
  EXPECT_LE(e_nll, kLogitsRel);
  EXPECT_LE(e_lse, kLogitsRel);
  EXPECT_LE(e_max, kLogitsRel);
  EXPECT_LE(e_rows, kLogitsRel);

  // Argmax equal at every position, except where HF's top two are closer than the tolerance allows to decide.
  const auto ours_arg = logits.argmax(-1);
  const auto& ref_arg = get(fx, "argmax");
  const auto& gap = get(fx, "top2_gap");
  const double tie = kLogitsRel * get(fx, "row_logits").abs().max().item<double>();
  int64_t differ = 0, near_ties = 0;
  for (int64_t t = 0; t < L; ++t) {
    if (ours_arg[t].item<int64_t>() == ref_arg[t].item<int64_t>()) continue;
    if (gap[t].item<double>() < 2 * tie) ++near_ties;
    else ++differ;
  }
  EXPECT_EQ(differ, 0) << "positions whose argmax differs from HF's";
  std::cout << "[parity] organism " << GetParam() << ": nll " << sci(e_nll) << ", logsumexp " << sci(e_lse)
            << ", max logit " << sci(e_max) << ", full rows " << sci(e_rows) << ", argmax differs at " << differ
            << " (+" << near_ties << " near-ties) of " << L << "\n";
  RecordProperty("max_rel_err_nll", sci(e_nll));
  RecordProperty("max_rel_err_rows", sci(e_rows));
}

INSTANTIATE_TEST_SUITE_P(Organisms, OrganismParity, ::testing::Values("mamba1", "mamba2"),
                         [](const auto& info) { return info.param; });

// ---- step decoding vs the full forward ------------------------------------------------------------------
// Returns max rel error of step-by-step logits against `full` (B, L, V), starting at position `from` with
// `state` (the state after ids[:, :from]).
double step_error(const mx::MambaLM& lm, const at::Tensor& ids, const mx::DtScales& sc, const at::Tensor& full,
                  int64_t from, mx::State& state) {
  std::vector<at::Tensor> out;
  for (int64_t t = from; t < ids.size(1); ++t) out.push_back(lm.step(ids.select(1, t).contiguous(), state, sc));
  const auto stepped = at::stack(out, 1);  // (B, L - from, V)
  return max_rel_error(stepped, full.narrow(1, from, ids.size(1) - from));
}

void check_decode(const mx::MambaLM& lm, const at::Tensor& ids, const mx::DtScales& sc, const std::string& what,
                  double& worst) {
  const auto full = lm.forward(ids, sc);  // (B, L, V)
  auto st = lm.initial_state(ids.size(0));
  const double e0 = step_error(lm, ids, sc, full, 0, st);
  EXPECT_LE(e0, kStepRel) << what << " (step from the initial state)";
  // A forward() prefix that leaves its state, then steps: the generation path.
  const int64_t prefix = ids.size(1) / 2;
  mx::State st2;
  lm.forward(ids.narrow(1, 0, prefix), sc, &st2);
  const double e1 = step_error(lm, ids, sc, full, prefix, st2);
  EXPECT_LE(e1, kStepRel) << what << " (steps after a " << prefix << "-token forward)";
  worst = std::max({worst, e0, e1});
}

class ModelParityDecode : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelParityDecode, StepEqualsFullForward) {
  SingleThread one;
  const auto m = load_tiny(GetParam(), "hf");
  double worst = 0;
  for (const auto& c : model_info(GetParam()).at("cases")) {
    if (c.at("length").get<int64_t>() < 7) continue;
    const auto fx = read_case(c);
    const auto& ids = get(fx, "ids");
    const std::string what = GetParam() + " " + c.at("file").get<std::string>();
    check_decode(*m.lm, ids, {}, what + " no scales", worst);
    check_decode(*m.lm, ids, to_scales(get(fx, "scales_scalar")), what + " scalar scales", worst);
    check_decode(*m.lm, ids, to_scales(get(fx, "scales_vector")), what + " vector scales", worst);
  }
  RecordProperty("max_rel_err", sci(worst));
  report(GetParam() + " step vs forward", worst);
}

INSTANTIATE_TEST_SUITE_P(Tiny, ModelParityDecode, ::testing::ValuesIn(kTinyModels),
                         [](const auto& info) { return info.param; });

TEST(ModelParityDecodeOrganism, StepEqualsFullForward) {
  SingleThread one;
  for (const char* arch : {"mamba1", "mamba2"}) {
    const auto& info = manifest().at("organisms").at(arch);
    const auto m = load(mx::test::source_dir() / info.at("model_dir").get<std::string>());
    const auto fx = read_tensors(fixture_dir("model") / info.at("file").get<std::string>());
    const auto ids = get(fx, "ids").narrow(1, 0, 64).contiguous();  // (1, 64)
    at::manual_seed(7);
    const auto& cfg = m.lm->config();
    const double lo = std::log(0.3), hi = std::log(3.0);  // log-uniform scales in [0.3, 3]
    const auto sv = at::exp(at::rand({cfg.n_layer, cfg.scale_width()}) * (hi - lo) + lo);  // (n_layer, W)
    double worst = 0;
    check_decode(*m.lm, ids, {}, std::string("organism ") + arch, worst);
    check_decode(*m.lm, ids, to_scales(sv), std::string("organism ") + arch + " vector scales", worst);
    report(std::string("organism ") + arch + " step vs forward", worst);
  }
}

// ---- segmented forward vs monolithic --------------------------------------------------------------------
class ModelParitySegmented : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelParitySegmented, SegmentsEqualMonolithic) {
  SingleThread one;
  const auto& info = model_info(GetParam());
  const auto m = load_tiny(GetParam(), "hf");
  const int64_t L = 1500;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  const auto ids = at::randint(info.at("ss_vocab").get<int64_t>(), {1, L}, gen, at::TensorOptions().dtype(at::kLong));
  const auto fx = read_case(info.at("cases").back());
  double worst = 0;
  for (bool scaled : {false, true}) {
    const mx::DtScales sc = scaled ? to_scales(get(fx, "scales_vector")) : mx::DtScales{};
    mx::State mono_state;
    const auto mono = m.lm->hidden(ids, sc, &mono_state);  // (1, L, D)
    for (int64_t seg : {1, 7, 64, 1000}) {
      std::vector<at::Tensor> parts;
      int64_t next = 0;
      mx::State st;
      m.lm->hidden_segmented(ids, seg, sc, [&](int64_t start, const at::Tensor& h) {
        EXPECT_EQ(start, next);
        EXPECT_LE(h.size(1), seg);
        next = start + h.size(1);
        parts.push_back(h.clone());
      }, &st);
      ASSERT_EQ(next, L) << "segments must cover the sequence";
      const auto segmented = at::cat(parts, 1);
      const double e = norm_rel_error(segmented, mono);
      EXPECT_LE(e, kSegmentRel) << GetParam() << " segment " << seg << (scaled ? " scaled" : "");
      EXPECT_LE(max_rel_error(segmented, mono), kSegmentMaxRel) << GetParam() << " segment " << seg;
      ASSERT_EQ(st.layers.size(), mono_state.layers.size());
      double es = 0;
      for (size_t l = 0; l < st.layers.size(); ++l) {
        es = std::max(es, norm_rel_error(st.layers[l].ssm, mono_state.layers[l].ssm));
        es = std::max(es, norm_rel_error(st.layers[l].conv, mono_state.layers[l].conv));
      }
      EXPECT_LE(es, kSegmentRel) << GetParam() << " final state, segment " << seg;
      worst = std::max({worst, e, es});
    }
  }
  RecordProperty("max_rel_err", sci(worst));
  report(GetParam() + " segmented vs monolithic (1500 tokens)", worst);
}

INSTANTIATE_TEST_SUITE_P(Tiny, ModelParitySegmented,
                         ::testing::Values("m1_n64_untied", "m2_n64_g2_untied", "m2_n128_g4_clamp"),
                         [](const auto& info) { return info.param; });

// ---- float64 reference mode -----------------------------------------------------------------------------
class ModelParityFloat64 : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelParityFloat64, AgreesWithFloat32AndTransformers) {
  const auto m32 = load_tiny(GetParam(), "hf");
  const auto m64 = load_tiny(GetParam(), "hf", at::kDouble);
  double e32 = 0, ehf = 0;
  for (const auto& c : model_info(GetParam()).at("cases")) {
    const auto fx = read_case(c);
    const auto& ids = get(fx, "ids");
    const auto l64 = m64.lm->forward(ids);
    EXPECT_EQ(l64.scalar_type(), at::kDouble);
    const double a = max_rel_error(m32.lm->forward(ids), l64);
    const double b = max_rel_error(l64, get(fx, "logits"));
    const double s = max_rel_error(m64.lm->forward(ids, to_scales(get(fx, "scales_vector"), at::kDouble)),
                                   get(fx, "logits_vector"));
    EXPECT_LE(a, kLogitsRel) << "fp32 vs fp64 " << c.at("file");
    EXPECT_LE(b, kLogitsRel) << "fp64 vs HF " << c.at("file");
    EXPECT_LE(s, kLogitsRel) << "fp64 scaled vs patched HF " << c.at("file");
    e32 = std::max(e32, a);
    ehf = std::max({ehf, b, s});
  }
  RecordProperty("max_rel_err_fp32_vs_fp64", sci(e32));
  report(GetParam() + " fp32 vs fp64", e32);
  report(GetParam() + " fp64 vs HF", ehf);
}

INSTANTIATE_TEST_SUITE_P(Tiny, ModelParityFloat64, ::testing::ValuesIn(kTinyModels),
                         [](const auto& info) { return info.param; });

}  // namespace
