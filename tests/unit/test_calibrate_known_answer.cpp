// Known-answer test of calibration (issue 10): fixed "wrong" base factors c_l = 2 + 2·l/(n_layer − 1) ∈ [2, 4]
// are put under the Δ scales of the Mamba1 organism (effective scale c_l·s_l), and calibration on top of them,
// starting from s = 1, must undo them. The loss of the perturbed model is f(c ⊙ s), so its minimiser is s*/c,
// where s* is the unperturbed model's own optimum on the same calibration windows.
//   * CI budget (this file's enabled tests): 2 windows of 256 tokens (Proof-Pile style, every token scored,
//     assets/books/train). Checked on held-out data (4 pg19 windows of 1024 tokens, the last 100 scored,
//     assets/books/validation): CFBP (40 Adam steps) and CFZO (80 SPSA iterations in the log parametrisation)
//     each bring the NLL back to within 1% of the unperturbed model. CFZO measured over SPSA seeds 0, 2, 5, 6 at 80
//     iterations: 0.06-0.16% above; at 40 iterations seeds 0-4 ended 0.11, -0.23, 4.6, 0.18, 0.55% (seed 2 had
//     not converged on the calibration set). In the plain (projection) parametrisation CFZO reached 77% of the gap
//     in 40 iterations and 94.9% in 120: additive steps sized for s = 1 overshoot once s is near 1/c.
//   * The learned scales are NOT within 10% of 1/c_l at this budget, and cannot be: the loss is flat along several
//     layers' scales, so runs that differ only in the SPSA seed end with c_l·s_l anywhere in 0.46-2.8 at the same
//     held-out NLL (printed by these tests). 1/c_l is not identifiable from 2 x 256 tokens.
//   * Larger budget, on a GPU (CudaCalibKnownAnswer: 8 windows, 100 Adam steps; ~25 s on an H100, about 1 h on 2
//     CPU cores, so CI skips it with the reason): CFBP's scales against s*/c_l, s* being the unperturbed organism's
//     own optimum on the same windows, within 10% on every layer (measured: 0.0-4.4%); against 1/c_l on the layers
//     whose s* is within 5% of 1. 1/c_l is the known answer only where s* = 1: calibrating the unperturbed organism
//     moves layers 0, 1 and 7 to s* = 0.84, 0.66 and 1.17, and there the scales sit 16-33% from 1/c_l.
// Settings found by measurement (issue 10 report): both methods in the log parametrisation (multiplicative steps
// suit scales that must move by 2–4x); Adam lr 0.3; SPSA c0 = 0.2, a0 = 1 (the Proof-Pile a0 = 0.001 is sized for
// a PPL objective in the 10^1–10^4 range and barely moves on a mean NLL).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>

#include "mambaextend/calibrate.h"
#include "mambaextend/checkpoint.h"
#include "unit/calib_helpers.h"
#include "unit/cuda_skip.h"

namespace {

using mx::test::book_docs;
using mx::test::organism_dir;

constexpr double kNllRel = 0.01;    // issue 10: held-out NLL within 1% of the unperturbed model
constexpr double kScaleRel = 0.10;  // issue 10: scales within 10% of the known answer

struct Kat {
  mx::Checkpoint ck;
  std::unique_ptr<mx::MambaLM> model;
  mx::ScaleLayout lay;
  mx::DtScales base;
  std::vector<double> c;
  mx::CalibrationSet heldout;
  double nll_ref = 0, nll_perturbed = 0;

  explicit Kat(c10::Device device = c10::Device(c10::kCPU)) : ck(mx::load_checkpoint(organism_dir("mamba1"))) {
    model = std::make_unique<mx::MambaLM>(ck, mx::ModelOptions{at::kFloat, device});
    const int64_t n = model->config().n_layer;
    lay = {n, 1};
    for (int64_t l = 0; l < n; ++l) {
      c.push_back(2.0 + 2.0 * static_cast<double>(l) / static_cast<double>(n - 1));
      base.per_layer.push_back(at::full({1}, c.back(), at::kDouble));
    }
    heldout = mx::sample_calibration_set(book_docs("validation"), mx::Protocol::PG19, 1024, 4, 100, 7);
    nll_ref = heldout_nll(std::vector<double>(n, 1.0), {});
    nll_perturbed = heldout_nll(std::vector<double>(n, 1.0), base);
  }
  double heldout_nll(const std::vector<double>& s, const mx::DtScales& b) const {
    return mx::calibration_nll(*model, mx::to_dt_scales(s, lay, b), heldout, {}, 2048, 0);
  }
  mx::CalibrationSet calib(int64_t samples) const {
    return mx::sample_calibration_set(book_docs("train"), mx::Protocol::ProofPile, 256, samples, 0, 0);
  }
  std::vector<double> backprop(const mx::CalibrationSet& set, const mx::DtScales& b, int64_t steps, double lr) const {
    mx::AdamOptions o;
    o.steps = steps;
    o.lr = lr;
    o.parametrization = "log";
    const std::vector<double> ones(static_cast<size_t>(lay.size()), 1.0);
    auto st = mx::adam_init(ones, static_cast<int64_t>(set.windows.size()), 0, o);
    mx::adam_run([&](const std::vector<double>& s, const std::vector<int64_t>& idx, std::vector<double>& g) {
      return mx::nll_and_grad(*model, s, lay, b, set, idx, mx::GradOptions{2048, true}, g);
    }, o, st, nullptr);
    return mx::state_scales(st);
  }
  void print(const char* what, const std::vector<double>& s, double nll) const {
    std::cout << "[calib] known answer " << what << ": held-out NLL " << nll << " (unperturbed " << nll_ref
              << ", perturbed " << nll_perturbed << ", rel " << nll / nll_ref - 1 << "); c_l*s_l =";
    for (size_t l = 0; l < s.size(); ++l) std::cout << " " << c[l] * s[l];
    std::cout << "\n";
  }
};

TEST(CalibKnownAnswer, BackpropBringsHeldOutNllBackOnCiBudget) {
  const mx::test::OneThread one_thread;
  const Kat k;
  ASSERT_GT(k.nll_perturbed, k.nll_ref * 1.1) << "the base factors must hurt, or the test could not fail";
  const auto s = k.backprop(k.calib(2), k.base, 40, 0.3);
  const double nll = k.heldout_nll(s, k.base);
  k.print("CFBP (2 windows x 256, 40 steps)", s, nll);
  EXPECT_LE(std::abs(nll / k.nll_ref - 1), kNllRel);
  for (size_t l = 0; l < s.size(); ++l) EXPECT_LT(s[l], 1.0) << "layer " << l << " must move toward 1/c";
}

TEST(CalibKnownAnswer, ZerothOrderBringsHeldOutNllBackOnCiBudget) {
  const mx::test::OneThread one_thread;
  const Kat k;
  const auto set = k.calib(2);
  mx::SpsaOptions o;
  o.iterations = 80;
  o.c0 = 0.2;
  o.a0 = 1.0;
  o.parametrization = "log";
  const std::vector<double> ones(static_cast<size_t>(k.lay.size()), 1.0);
  const mx::ObjectiveFn f = [&](const std::vector<double>& s) {
    return mx::calibration_nll(*k.model, mx::to_dt_scales(s, k.lay, k.base), set, {}, 2048, 0);
  };
  auto st = mx::spsa_init(ones, f(ones), 0);
  mx::spsa_run(f, o, st, nullptr);
  const auto s = mx::state_scales(st);
  const double nll = k.heldout_nll(s, k.base);
  k.print("CFZO (2 windows x 256, 80 iterations, log)", s, nll);
  std::cout << "[calib] CFZO closed " << 100 * (k.nll_perturbed - nll) / (k.nll_perturbed - k.nll_ref)
            << "% of the held-out NLL gap\n";
  EXPECT_LE(std::abs(nll / k.nll_ref - 1), kNllRel);
}

// On a GPU (about 25 s on an H100; about 1 h on 2 CPU cores, so CI skips it with the reason).
TEST(CudaCalibKnownAnswer, BackpropRecoversScalesOnLargerBudget) {
  MX_REQUIRE_CUDA();
  const Kat k(c10::Device(c10::kCUDA));
  const auto set = k.calib(8);
  const auto s_self = k.backprop(set, {}, 100, 0.1);   // s*: the unperturbed organism's own optimum
  const auto s = k.backprop(set, k.base, 100, 0.1);    // on top of the base factors
  const double nll = k.heldout_nll(s, k.base);
  k.print("CFBP (8 windows x 256, 100 steps)", s, nll);
  EXPECT_LE(std::abs(nll / k.nll_ref - 1), kNllRel);
  int checked = 0;
  for (size_t l = 0; l < s.size(); ++l) {
    const double known = s_self[l] / k.c[l];
    std::cout << "[calib] layer " << l << ": s " << s[l] << "  s*/c " << known << "  1/c " << 1 / k.c[l]
              << "  s* " << s_self[l] << "\n";
    EXPECT_LE(std::abs(s[l] / known - 1), kScaleRel) << "layer " << l;
    // Where the organism's own optimum is 1 (within 5%), the known answer is 1/c_l itself.
    if (std::abs(s_self[l] - 1) <= 0.05) {
      EXPECT_LE(std::abs(s[l] * k.c[l] - 1), kScaleRel) << "layer " << l << " (s* = " << s_self[l] << ")";
      ++checked;
    }
  }
  std::cout << "[calib] layers with s* within 5% of 1 (checked against 1/c_l): " << checked << " of " << s.size() << "\n";
}

}  // namespace
