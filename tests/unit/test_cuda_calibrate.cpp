// CFBP on the GPU (issues 8, 9, 10): the calibration loss and its gradient ∂loss/∂s computed with the model on
// CUDA in fp32 (CUDA forward and backward kernels of the selective scan, the SSD scan and the causal conv, segment
// checkpointing across three segments) equal the same quantities on the CPU in float64, for both organisms,
// layer and channel/head granularity.
// Without CUDA (CI) every test skips with the reason.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>

#include "mambaextend/calibrate.h"
#include "mambaextend/checkpoint.h"
#include "unit/calib_helpers.h"
#include "unit/cuda_skip.h"

namespace {

constexpr double kLossRel = 1e-5;  // fp32 GPU loss against the float64 CPU loss
constexpr double kGradRel = 1e-4;  // kernels.md §6: ds in fp32 to ~1e-4 relative

using mx::test::GradCase;

class CudaCalibGrad : public ::testing::TestWithParam<GradCase> {};

TEST_P(CudaCalibGrad, GpuFp32MatchesCpuFloat64) {
  MX_REQUIRE_CUDA();
  const auto c = GetParam();
  const auto ck = mx::load_checkpoint(mx::test::organism_dir(c.arch));
  const mx::MambaLM cpu(ck, mx::ModelOptions{at::kDouble, c10::Device(c10::kCPU)});
  const mx::MambaLM gpu(ck, mx::ModelOptions{at::kFloat, c10::Device(c10::kCUDA)});
  const auto& cfg = cpu.config();
  const int64_t L = 600, seg = 200;  // three checkpointed segments, chunked SSD kernels (chunk 128 < 200)
  const auto set = mx::sample_calibration_set(mx::test::train_docs(), mx::Protocol::ProofPile, L, 2, 0, 3);
  const mx::ScaleLayout lay{cfg.n_layer, c.channel ? cfg.scale_width() : 1};
  std::vector<double> s(static_cast<size_t>(lay.size()));
  for (size_t i = 0; i < s.size(); ++i) s[i] = 0.7 + 0.06 * static_cast<double>((i * 37) % 11);  // in [0.7, 1.3]

  std::vector<double> g_ref, g_gpu;
  const double f_ref = mx::nll_and_grad(cpu, s, lay, {}, set, {}, mx::GradOptions{seg, true}, g_ref);
  const double f_gpu = mx::nll_and_grad(gpu, s, lay, {}, set, {}, mx::GradOptions{seg, true}, g_gpu);
  ASSERT_EQ(g_ref.size(), g_gpu.size());
  double gmax = 0, err = 0;
  for (size_t i = 0; i < g_ref.size(); ++i) {
    gmax = std::max(gmax, std::abs(g_ref[i]));
    err = std::max(err, std::abs(g_gpu[i] - g_ref[i]));
  }
  ASSERT_GT(gmax, 1e-4) << "the loss must depend on the scales, or the check could not fail";
  const double lrel = std::abs(f_gpu / f_ref - 1), grel = err / gmax;
  std::cout << "[cuda calib] " << c.arch << (c.channel ? " channel" : " layer") << ": loss rel " << lrel
            << ", grad max rel " << grel << "\n";
  EXPECT_LE(lrel, kLossRel);
  EXPECT_LE(grel, kGradRel);
}

INSTANTIATE_TEST_SUITE_P(Organisms, CudaCalibGrad, mx::test::grad_cases(), mx::test::grad_case_name);

}  // namespace
