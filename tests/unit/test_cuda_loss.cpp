// The fused LM-head cross entropy on CUDA (kernels/loss, ops::lm_nll_cuda) and the CUDA path of windows_nll:
//   * CudaLmNll.MatchesFloat64Reference: the kernel against the float64 loops of kernels/loss/lm_nll_ref.h on
//     random logits rounded to the I/O type (fp32, bf16, and fp16 through the ATen fallback): V = 1, 7, 1003 (not
//     a multiple of the vector width), 50280; one row; rows with a stride larger than V and starts that are not
//     16-byte aligned; logits around ±2·10^4; strided targets and output; NaN, −inf, a −inf target and targets
//     outside [0, V) (NaN, no stray writes). |nll − ref| <= 1e-5 (absolute: the max and the target logit enter
//     exactly, so the error is that of the fp32 sum of exponentials, whatever the logits' magnitude).
//   * CudaLmNll.RefusesBadArguments: wrong dtypes / shapes / devices throw ShapeError.
//   * CudaWindowsNll.OrganismGpuMatchesCpu: windows_nll of both organisms in fp32 on the GPU (fused path: two
//     segments, several LM-head blocks per segment, windows with different scored ranges) against the CPU
//     (per token <= 1e-3 absolute, mean NLL <= 2e-5 relative); the float64 model on the GPU (ATen path) against
//     the CPU float64 model (1e-9 relative).
//   * CudaHidden.NoGradFusedAddNormMatchesAten: MambaLM::hidden on CUDA without gradients (the fused residual
//     add + RMSNorm of kernels/norm) equals the ATen path taken with grad mode on (fp32: 1e-5 of max|h|; bf16:
//     2 bf16 ulps of max|h|), both organisms.
//   * CudaWindowsNll.Bf16ReadsTheGemmOutput: on the bf16 organism, the kernel on the bf16 LM-head output equals
//     the former path (fp32 copy of the logits, then gather / max / exp / sum / log in fp32) within 2e-5, and
//     windows_nll in bf16 gives the same mean NLL within 1e-3 relative.
// Without CUDA (CI) every test skips with the reason.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <vector>

#include "mambaextend/calibrate.h"
#include "mambaextend/checkpoint.h"
#include "mambaextend/error.h"
#include "mambaextend/eval.h"
#include "mambaextend/model.h"
#include "unit/calib_helpers.h"
#include "unit/cuda_skip.h"
#ifdef MX_WITH_CUDA
#include "loss/lm_nll_ref.h"
#include "ops/cuda_ops.h"
#endif

namespace {

[[maybe_unused]] void report(const std::string& what, double v) { std::cout << "[cuda] " << what << " = " << v << "\n"; }

#ifdef MX_WITH_CUDA
std::vector<double> to_vec(const at::Tensor& t) {
  auto c = t.to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

struct NllCase {
  int64_t G, n, V, pad, offset;  // logits (G, n, V) inside rows of V + pad elements, starting `offset` elements in
  at::ScalarType io;
  double scale, shift;
  bool special;  // NaN / -inf entries and bad targets
};

// Runs one case; returns the largest |got − ref| over the finite references (NaN / inf must match exactly).
double run_case(const NllCase& c, uint64_t seed) {
  at::manual_seed(seed);
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  const int64_t W = c.V + c.pad, rows = c.G * c.n;
  auto base = (at::randn({c.offset + rows * W}, at::TensorOptions().dtype(at::kDouble)) * c.scale + c.shift).to(c.io);
  auto t_all = at::randint(0, c.V, {c.G, c.n + 3}, at::TensorOptions().dtype(at::kLong));
  if (c.special) {
    auto v = base.narrow(0, c.offset, rows * W).view({rows, W});
    auto t2 = t_all.narrow(1, 0, c.n).reshape({rows});
    const auto tv = t2.data_ptr<int64_t>();
    if (rows >= 4 && c.V >= 2) {
      v[0][(tv[0] + 1) % c.V] = NAN;        // row 0: a NaN -> NaN
      v[1][(tv[1] + 1) % c.V] = -INFINITY;  // row 1: a -inf elsewhere -> finite
      v[2][tv[2]] = -INFINITY;              // row 2: -inf target -> +inf
    }
    t_all.view({-1})[0] = -1;  // (0, 0): below the range -> NaN  (overrides row 0's target)
    t_all[c.G - 1][c.n - 1] = c.V;  // the last row: above the range -> NaN
  }
  const auto dev_base = base.to(cuda);
  const auto logits = dev_base.as_strided({c.G, c.n, c.V}, {c.n * W, W, 1}, c.offset);  // (G, n, V)
  const auto targets = t_all.to(cuda).narrow(1, 0, c.n);                                 // (G, n), strided
  auto out_all = at::full({c.G, c.n + 2}, -7.0, cuda.dtype(at::kDouble));
  mx::ops::lm_nll_cuda(logits, targets, out_all.narrow(1, 1, c.n));

  const auto vals = to_vec(logits.reshape({rows, c.V}));  // the values the kernel saw, in float64
  const auto tc = t_all.narrow(1, 0, c.n).contiguous();
  const std::vector<int64_t> tg(tc.data_ptr<int64_t>(), tc.data_ptr<int64_t>() + rows);
  const auto ref = mx::kern::ref::lm_nll_ref(rows, c.V, vals, tg);
  const auto got_all = to_vec(out_all);
  double worst = 0;
  for (int64_t g = 0; g < c.G; ++g) {
    EXPECT_EQ(got_all[g * (c.n + 2)], -7.0) << "stray write before group " << g;
    EXPECT_EQ(got_all[g * (c.n + 2) + c.n + 1], -7.0) << "stray write after group " << g;
    for (int64_t j = 0; j < c.n; ++j) {
      const double got = got_all[g * (c.n + 2) + 1 + j], want = ref[g * c.n + j];
      if (std::isnan(want) || std::isinf(want)) {
        EXPECT_TRUE(std::isnan(want) ? std::isnan(got) : got == want) << "row " << g * c.n + j << ": " << got
                                                                      << " vs " << want;
      } else {
        EXPECT_TRUE(std::isfinite(got)) << "row " << g * c.n + j << ": " << got << " vs " << want;
        worst = std::max(worst, std::abs(got - want));
      }
    }
  }
  if (c.special && rows >= 4 && c.V >= 2) {  // the special rows really are special
    EXPECT_TRUE(std::isnan(ref[0]));
    EXPECT_TRUE(std::isfinite(ref[1]));
    EXPECT_EQ(ref[2], INFINITY);
    EXPECT_TRUE(std::isnan(ref[rows - 1]));
  }
  return worst;
}
#endif

TEST(CudaLmNll, MatchesFloat64Reference) {
  MX_REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  const std::vector<NllCase> cases = {
      {1, 1, 1, 0, 0, at::kFloat, 1, 0, false},       {1, 1, 1, 0, 0, at::kBFloat16, 1, 0, false},
      {1, 1, 7, 0, 0, at::kBFloat16, 3, 0, false},    {2, 3, 7, 2, 1, at::kFloat, 3, 0, false},
      {2, 5, 1003, 5, 3, at::kBFloat16, 3, 0, true},  {2, 5, 1003, 5, 1, at::kFloat, 3, 0, true},
      {1, 1, 50280, 0, 0, at::kBFloat16, 4, 0, false}, {3, 4, 50280, 0, 0, at::kBFloat16, 4, 0, true},
      {1, 6, 50280, 13, 2, at::kFloat, 4, 0, false},   {1, 3, 5001, 11, 2, at::kFloat, 300, 2e4, false},
      {1, 3, 5001, 11, 5, at::kBFloat16, 300, -2e4, true}, {2, 2, 4099, 0, 0, at::kFloat, 1e-3, 5, false},
      {2, 4, 1003, 3, 1, at::kHalf, 3, 0, true},  // fp16: the ATen fallback, same contract
  };
  uint64_t seed = 100;
  for (const auto& c : cases) {
    const double e = run_case(c, seed++);
    const std::string name = fmt::format("G={} n={} V={} pad={} off={} {} scale={} shift={}{}", c.G, c.n, c.V, c.pad,
                                         c.offset, c10::toString(c.io), c.scale, c.shift, c.special ? " special" : "");
    report("lm_nll max|err| " + name, e);
    EXPECT_LE(e, 1e-5) << name;
  }
#endif
}

TEST(CudaLmNll, RefusesBadArguments) {
  MX_REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  const auto logits = at::randn({2, 3, 10}, cuda);
  const auto t = at::zeros({2, 3}, cuda.dtype(at::kLong));
  const auto out = at::empty({2, 3}, cuda.dtype(at::kDouble));
  EXPECT_THROW(mx::ops::lm_nll_cuda(logits, t.to(at::kInt), out), mx::ShapeError);
  EXPECT_THROW(mx::ops::lm_nll_cuda(logits, t, out.to(at::kFloat)), mx::ShapeError);
  EXPECT_THROW(mx::ops::lm_nll_cuda(logits, t.narrow(1, 0, 2), out), mx::ShapeError);
  EXPECT_THROW(mx::ops::lm_nll_cuda(logits.cpu(), t.cpu(), out.cpu()), mx::ShapeError);
  EXPECT_THROW(mx::ops::lm_nll_cuda(logits, t.cpu(), out), mx::ShapeError);
  EXPECT_THROW(mx::ops::lm_nll_cuda(logits.narrow(2, 0, 0), t, out), mx::ShapeError);
  EXPECT_NO_THROW(mx::ops::lm_nll_cuda(logits.narrow(1, 0, 0), t.narrow(1, 0, 0), out.narrow(1, 0, 0)));
  mx::ops::lm_nll_cuda(logits[0], t[0], out[0]);  // the (rows, V) form
  EXPECT_TRUE(at::isfinite(out[0]).all().item<bool>());
#endif
}

#ifdef MX_WITH_CUDA
// Two windows of length L from the train books, the second scored from `from1` on.
std::vector<mx::ScoredWindow> two_windows(int64_t L, int64_t from1) {
  const auto set = mx::sample_calibration_set(mx::test::train_docs(), mx::Protocol::ProofPile, L, 2, 0, 5);
  std::vector<mx::ScoredWindow> ws(set.windows.begin(), set.windows.begin() + 2);
  ws[0].score_from = 0;
  ws[1].score_from = from1;
  return ws;
}

double mean_of(const std::vector<std::vector<double>>& v) {
  double s = 0;
  size_t n = 0;
  for (const auto& w : v)
    for (double x : w) s += x, ++n;
  return s / static_cast<double>(n);
}
#endif

TEST(CudaWindowsNll, OrganismGpuMatchesCpu) {
  MX_REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  const int64_t L = 6000, seg = 3000;  // fp32, V_pad 50280, B = 2: blocks of 2669 positions, two per segment
  const auto ws = two_windows(L, 2500);
  const std::vector<const mx::ScoredWindow*> batch = {&ws[0], &ws[1]};
  for (const char* arch : {"mamba1", "mamba2"}) {
    const auto ck = mx::load_checkpoint(mx::test::organism_dir(arch));
    const mx::MambaLM cpu(ck, mx::ModelOptions{at::kFloat, c10::Device(c10::kCPU)});
    const mx::MambaLM gpu(ck, mx::ModelOptions{at::kFloat, c10::Device(c10::kCUDA)});
    const auto want = mx::windows_nll(cpu, {}, batch, seg);
    const auto got = mx::windows_nll(gpu, {}, batch, seg);
    ASSERT_EQ(got.size(), 2u);
    double worst = 0;
    for (size_t b = 0; b < 2; ++b) {
      ASSERT_EQ(got[b].size(), want[b].size()) << arch << " window " << b;
      ASSERT_EQ(got[b].size(), static_cast<size_t>(L - 1 - ws[b].score_from));
      for (size_t k = 0; k < want[b].size(); ++k) worst = std::max(worst, std::abs(got[b][k] - want[b][k]));
    }
    const double mrel = std::abs(mean_of(got) / mean_of(want) - 1);
    report(std::string(arch) + " windows_nll fp32 GPU vs CPU max|dnll|", worst);
    report(std::string(arch) + " windows_nll fp32 GPU vs CPU mean rel", mrel);
    EXPECT_LE(worst, 1e-3) << arch;
    EXPECT_LE(mrel, 2e-5) << arch;
  }
  // The float64 model on the GPU keeps the ATen path: it equals the CPU float64 model.
  const auto ck = mx::load_checkpoint(mx::test::organism_dir("mamba1"));
  const auto short_ws = two_windows(700, 300);
  const std::vector<const mx::ScoredWindow*> sb = {&short_ws[0], &short_ws[1]};
  const auto want = mx::windows_nll(mx::MambaLM(ck, {at::kDouble, c10::Device(c10::kCPU)}), {}, sb, 300);
  const auto got = mx::windows_nll(mx::MambaLM(ck, {at::kDouble, c10::Device(c10::kCUDA)}), {}, sb, 300);
  for (size_t b = 0; b < 2; ++b) {
    ASSERT_EQ(got[b].size(), want[b].size());
    for (size_t k = 0; k < want[b].size(); ++k) EXPECT_NEAR(got[b][k], want[b][k], 1e-9 * want[b][k]);
  }
#endif
}

TEST(CudaHidden, NoGradFusedAddNormMatchesAten) {
  MX_REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  for (const char* arch : {"mamba1", "mamba2"}) {
    const auto ck = mx::load_checkpoint(mx::test::organism_dir(arch));
    at::manual_seed(77);
    const auto ids = at::randint(0, ck.config.vocab_size, {2, 500}, at::TensorOptions().dtype(at::kLong));
    auto scales = mx::DtScales::ones(ck.config, true);
    for (auto& t : scales.per_layer) t.uniform_(0.5, 1.5);
    for (auto dt : {at::kFloat, at::kBFloat16}) {
      const mx::MambaLM gpu(ck, mx::ModelOptions{dt, c10::Device(c10::kCUDA)});
      at::Tensor fused, aten;
      {
        at::NoGradGuard no_grad;
        fused = gpu.hidden(ids, scales).to(at::kDouble);
      }
      {
        at::AutoGradMode grad_on(true);
        aten = gpu.hidden(ids, scales).detach().to(at::kDouble);
      }
      const double scale = aten.abs().max().item<double>();
      const double e = (fused - aten).abs().max().item<double>() / scale;
      report(std::string(arch) + " hidden no-grad fused vs ATen, max|err|/max|h| (" + c10::toString(dt) + ")", e);
      EXPECT_LE(e, dt == at::kFloat ? 1e-5 : 2.0 / 128) << arch << " " << c10::toString(dt);
    }
  }
#endif
}

TEST(CudaWindowsNll, Bf16ReadsTheGemmOutput) {
  MX_REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  const int64_t L = 3000;
  const auto ws = two_windows(L, 0);
  const auto ck = mx::load_checkpoint(mx::test::organism_dir("mamba1"));
  const mx::MambaLM gpu(ck, mx::ModelOptions{at::kBFloat16, c10::Device(c10::kCUDA)});
  auto ids = at::empty({2, L}, at::TensorOptions().dtype(at::kLong));
  for (int64_t b = 0; b < 2; ++b)
    std::copy(ws[b].ids.begin(), ws[b].ids.end(), ids.data_ptr<int64_t>() + b * L);
  const auto h = gpu.hidden(ids).narrow(1, 0, L - 1);  // (2, L-1, D) bf16
  const auto tgt = ids.narrow(1, 1, L - 1).to(at::kCUDA);  // (2, L-1)
  // The former path: fp32 copy of the logits, logsumexp in fp32 in place, difference in fp64.
  auto logits = gpu.logits(h);  // (2, L-1, V) fp32
  ASSERT_EQ(logits.scalar_type(), at::kFloat);
  const auto picked = logits.gather(-1, tgt.unsqueeze(-1)).squeeze(-1).to(at::kDouble);
  const auto row_max = std::get<0>(logits.max(-1, true));
  logits.sub_(row_max).exp_();
  const auto lse = logits.sum(-1).log_().add_(row_max.squeeze(-1));
  const auto want = to_vec(lse.to(at::kDouble) - picked);
  logits = at::Tensor();
  // The fused kernel on the bf16 GEMM output.
  const auto raw = gpu.head_logits(h);
  ASSERT_EQ(raw.scalar_type(), at::kBFloat16);
  auto out = at::empty({2, L - 1}, at::TensorOptions().dtype(at::kDouble).device(at::kCUDA));
  mx::ops::lm_nll_cuda(raw, tgt, out);
  const auto got = to_vec(out);
  double worst = 0;
  for (size_t k = 0; k < want.size(); ++k) worst = std::max(worst, std::abs(got[k] - want[k]));
  report("organism-mamba1 bf16: fused kernel vs fp32 ATen path on the same logits, max|dnll|", worst);
  EXPECT_LE(worst, 2e-5);
  // windows_nll in bf16 (the fused path end to end) gives the same NLLs up to the forward's own run-to-run
  // differences (the scan's time-segment sums use atomics).
  const auto nll = mx::windows_nll(gpu, {}, {&ws[0], &ws[1]}, L);
  ASSERT_EQ(nll.size(), 2u);
  ASSERT_EQ(nll[0].size(), static_cast<size_t>(L - 1));
  double mean_want = 0;
  for (double x : want) mean_want += x / static_cast<double>(want.size());
  const double mrel = std::abs(mean_of(nll) / mean_want - 1);
  report("organism-mamba1 bf16 windows_nll vs the former path, mean rel", mrel);
  EXPECT_LE(mrel, 1e-3);
#endif
}

}  // namespace
