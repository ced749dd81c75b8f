// The Mamba1 CUDA path (issue 8) against the CPU reference, through the library's entry points:
//   * CudaSelectiveScan.Forward: ops::selective_scan on CUDA (fp32 and bf16 I/O, strided views like the model's,
//     scale none / scalar / per channel, h0 on / off) against ops::selective_scan on CPU in float64, at
//     L = 1, 7, 128, 2048, 4097 (kernels.md §6: fp32 max|err| <= 1e-5 x RMS(out), or 3x the CPU fp32 path's
//     own error where that is larger; bf16 within 1 bf16 ulp).
//   * CudaSelectiveScan.Backward: selective_scan_bwd_cuda against the float64 loops of kernels/s6/s6_ref.h
//     (every gradient, <= 1e-5 relative to its largest value), and d(scale) against a central finite
//     difference of the float64 CPU forward (1e-4 relative, kernels.md §6).
//   * ForwardManyChannels / BackwardManyChannels: the same at 2 x 2560 channels (as many (channel, state) chains as
//     the 2.8b shape at batch 1: every channel block of a full GPU, and the launcher's time-split plan for them).
//   * CudaConv1d / CudaNorm: forward and backward against the float64 references.
//   * CudaModel.OrganismLogits: organism-mamba1-7m on the GPU in fp32 gives the CPU logits within 1e-5
//     relative, and the GPU recurrent step equals the GPU full forward.
// Without CUDA (CI) every test skips with the reason.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <vector>

#include "mambaextend/checkpoint.h"
#include "mambaextend/model.h"
#include "mambaextend/ops.h"
#include "unit/fixtures.h"
#include "unit/cuda_skip.h"
#ifdef MX_WITH_CUDA
#include "conv1d/conv1d_ref.h"
#include "ops/cuda_ops.h"
#include "s6/s6_ref.h"
#endif

namespace {

// fp32 scan: output max|err| / RMS(ref) and gradients max|err| / max|ref| (kernels.md §6).
constexpr double kScanOutRms = 1e-5;
constexpr double kGradRel = 1e-5;
constexpr double kDscaleFd = 1e-4;    // kernels.md §6: ds against float64 finite differences
constexpr double kLogitsRel = 1e-5;   // issue 8: GPU logits against CPU logits in fp32

[[maybe_unused]] double max_abs(const at::Tensor& t) { return t.abs().max().item<double>(); }
[[maybe_unused]] double rms(const at::Tensor& t) { return t.pow(2).mean().sqrt().item<double>(); }
[[maybe_unused]] double err_rel_max(const at::Tensor& got, const at::Tensor& ref) {
  const auto g = got.to(at::kCPU, at::kDouble), r = ref.to(at::kCPU, at::kDouble);
  return (g - r).abs().max().item<double>() / std::max(max_abs(r), 1e-300);
}
// Largest error in units of the bf16 spacing at the reference value, after `slack` absolute error.
[[maybe_unused]] double bf16_ulps(const at::Tensor& got, const at::Tensor& ref, double slack) {
  const auto g = got.to(at::kCPU, at::kDouble), r = ref.to(at::kCPU, at::kDouble);
  const auto ulp = at::pow(2.0, at::floor(at::log2(r.abs().clamp_min(1e-30))) - 7);
  return ((g - r).abs() - slack).clamp_min(0).div(ulp).max().item<double>();
}
[[maybe_unused]] void report(const std::string& what, double v) { std::cout << "[cuda] " << what << " = " << v << "\n"; }

#ifdef MX_WITH_CUDA
[[maybe_unused]] std::vector<double> to_vec(const at::Tensor& t) {
  if (!t.defined()) return {};
  auto c = t.to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// Random scan inputs in float64 on the CPU, Δ log-uniform in [1e-4, 10]; the activations are views of wider
// tensors as in the model (z from [x | z], B and C from [dt_low | B | C]).
struct ScanInputs {
  at::Tensor u, draw, bias, scale, A, Bm, Cm, D, z, h0;
};
ScanInputs make_scan(int64_t B, int64_t L, int64_t E, int64_t N, int scale_kind, bool with_h0, uint64_t seed) {
  at::manual_seed(seed);
  auto o = at::TensorOptions().dtype(at::kDouble);
  ScanInputs s;
  s.u = at::randn({B, L, E}, o);
  s.z = at::randn({B, L, 2 * E}, o).narrow(2, E, E);
  auto xdbl = at::randn({B, L, 5 + 2 * N}, o);
  s.Bm = xdbl.narrow(2, 5, N);
  s.Cm = xdbl.narrow(2, 5 + N, N);
  s.A = -at::exp(at::empty({E, N}, o).uniform_(std::log(0.5), std::log(16.0)));
  s.D = at::randn({E}, o);
  s.bias = at::empty({E}, o).uniform_(-1, 1);
  if (scale_kind == 1) s.scale = at::empty({1}, o).uniform_(0.5, 2);
  if (scale_kind == 2) s.scale = at::empty({E}, o).uniform_(0.5, 2);
  auto dt = at::exp(at::empty({B, L, E}, o).uniform_(std::log(1e-4), std::log(10.0)));
  if (s.scale.defined()) dt = dt / s.scale;
  s.draw = at::where(dt > 20, dt, at::log(at::expm1(dt))) - s.bias;
  s.h0 = with_h0 ? at::randn({B, E, N}, o) : at::zeros({B, E, N}, o);
  return s;
}
// Rounds the activations to `io` (kept as float64 views), the parameters to fp32.
void round_scan(ScanInputs& s, at::ScalarType io) {
  for (auto* t : {&s.u, &s.draw, &s.z, &s.Bm, &s.Cm}) *t = t->to(io).to(at::kDouble);
  for (auto* t : {&s.bias, &s.scale, &s.A, &s.D, &s.h0})
    if (t->defined()) *t = t->to(at::kFloat).to(at::kDouble);
}
#endif

#ifdef MX_WITH_CUDA
// The forward at (B, L, E, N = 16) for each io type and L against the float64 CPU path; `seed` advances per case.
void check_scan_forward(int64_t B, int64_t E, const std::vector<int64_t>& lens, uint64_t seed) {
  constexpr int64_t N = 16;
  int k = 0;
  for (auto io : {at::kFloat, at::kBFloat16})
    for (int64_t L : lens) {
      const int scale_kind = k % 3;
      const bool with_h0 = k % 2 == 0;
      auto s = make_scan(B, L, E, N, scale_kind, with_h0, seed + k++);
      round_scan(s, io);
      auto h_ref = s.h0.clone();
      const auto y_ref = mx::ops::selective_scan(s.u, s.draw, s.bias, s.scale, s.A, s.Bm, s.Cm, s.D, s.z, h_ref);
      // On the GPU: activations in `io` with the same strided layout, parameters and the state in fp32.
      auto dev = [&](const at::Tensor& t, at::ScalarType d) { return t.defined() ? t.to(at::kCUDA, d) : t; };
      auto zg = at::empty({B, L, 2 * E}, at::TensorOptions().dtype(io).device(at::kCUDA)).narrow(2, E, E);
      zg.copy_(s.z);
      auto xg = at::empty({B, L, 5 + 2 * N}, at::TensorOptions().dtype(io).device(at::kCUDA));
      auto Bg = xg.narrow(2, 5, N), Cg = xg.narrow(2, 5 + N, N);
      Bg.copy_(s.Bm);
      Cg.copy_(s.Cm);
      auto h = dev(s.h0, at::kFloat);
      const auto y = mx::ops::selective_scan(dev(s.u, io), dev(s.draw, io), dev(s.bias, at::kFloat),
                                             dev(s.scale, at::kFloat), dev(s.A, at::kFloat), Bg, Cg,
                                             dev(s.D, at::kFloat), zg, h);
      ASSERT_EQ(y.scalar_type(), io);
      const std::string what = std::string(io == at::kFloat ? "fp32" : "bf16") + " B=" + std::to_string(B) +
                               " E=" + std::to_string(E) + " L=" + std::to_string(L);
      const double eh = err_rel_max(h, h_ref);
      report("scan fwd " + what + " hT rel", eh);
      EXPECT_LE(eh, kGradRel) << what;
      if (io == at::kFloat) {
        // kernels.md asks 1e-5 x RMS; with Δ down to 1e-4 the state integrates over ~10^4 tokens and plain
        // fp32 arithmetic errs about as much (heavy-tailed outputs: max|err| / RMS >> max|err| / max|ref|),
        // so the bound is the larger of 1e-5 and 3x the CPU path's own fp32 error on the same inputs.
        auto h32 = s.h0.to(at::kFloat);
        auto f32 = [](const at::Tensor& t) { return t.defined() ? t.to(at::kFloat) : t; };
        const auto y32 = mx::ops::selective_scan(f32(s.u), f32(s.draw), f32(s.bias), f32(s.scale), f32(s.A),
                                                 f32(s.Bm), f32(s.Cm), f32(s.D), f32(s.z), h32);
        const double e_cpu = (y32.to(at::kDouble) - y_ref).abs().max().item<double>() / rms(y_ref);
        const double e = (y.to(at::kCPU, at::kDouble) - y_ref).abs().max().item<double>() / rms(y_ref);
        report("scan fwd " + what + " out max|err|/rms (cpu fp32: " + std::to_string(e_cpu) + ")", e);
        EXPECT_LE(e, std::max(kScanOutRms, 3 * e_cpu)) << what;
      } else {
        const double u = bf16_ulps(y, y_ref, 1e-5 * rms(y_ref));
        report("scan fwd " + what + " out bf16 ulps", u);
        EXPECT_LE(u, 1.0) << what;
      }
    }
}
#endif

TEST(CudaSelectiveScan, Forward) {
  MX_REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  check_scan_forward(2, 40, {1, 7, 128, 2048, 4097}, 1000);
#endif
}

// 2 x 2560 channels: as many (channel, state) chains as the 2.8b shape at batch 1.
TEST(CudaSelectiveScan, ForwardManyChannels) {
  MX_REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  check_scan_forward(2, 2560, {1, 45, 2049}, 1100);
#endif
}

#ifdef MX_WITH_CUDA
// Every gradient of the scan at (B, L, E, N = 16) for each L against the float64 loops; d(scale) also against a
// finite difference where the scale is a scalar.
void check_scan_backward(int64_t B, int64_t E, const std::vector<int64_t>& lens, uint64_t seed) {
  constexpr int64_t N = 16;
  int k = 0;
  for (int64_t L : lens) {
    const int scale_kind = k % 2 ? 2 : 1;
    auto s = make_scan(B, L, E, N, scale_kind, true, seed + k++);
    round_scan(s, at::kFloat);
    auto dy = at::randn({B, L, E}, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat).to(at::kDouble);
    auto dhT = at::randn({B, E, N}, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat).to(at::kDouble);
    auto g32 = [](const at::Tensor& t) { return t.defined() ? t.to(at::kCUDA, at::kFloat) : t; };
    mx::ops::SelectiveScanWeightGrads wg;
    const auto g = mx::ops::selective_scan_bwd_cuda(g32(s.u), g32(s.draw), g32(s.bias), g32(s.scale), g32(s.A),
                                                    g32(s.Bm), g32(s.Cm), g32(s.D), g32(s.z), g32(s.h0), g32(dy),
                                                    g32(dhT), &wg);
    mx::kern::ref::S6Problem p;
    p.B = B, p.L = L, p.E = E, p.N = N;
    p.u = to_vec(s.u), p.delta = to_vec(s.draw), p.z = to_vec(s.z), p.Bm = to_vec(s.Bm), p.Cm = to_vec(s.Cm);
    p.A = to_vec(s.A), p.D = to_vec(s.D), p.dt_bias = to_vec(s.bias), p.dt_scale = to_vec(s.scale), p.h0 = to_vec(s.h0);
    const auto r = mx::kern::ref::s6_ref_bwd(p, to_vec(dy), to_vec(dhT));
    auto T = [](const std::vector<double>& v, at::IntArrayRef shape) {
      return at::from_blob(const_cast<double*>(v.data()), shape, at::TensorOptions().dtype(at::kDouble)).clone();
    };
    std::vector<std::pair<std::string, std::pair<at::Tensor, at::Tensor>>> cmp = {
        {"du", {g.du, T(r.du, {B, L, E})}},          {"ddelta", {g.ddelta_raw, T(r.ddelta, {B, L, E})}},
        {"dz", {g.dz, T(r.dz, {B, L, E})}},          {"dB", {g.dB, T(r.dB, {B, L, N})}},
        {"dC", {g.dC, T(r.dC, {B, L, N})}},          {"dh0", {g.dh0, T(r.dh0, {B, E, N})}},
        {"dA", {wg.dA, T(r.dA, {E, N})}},            {"dD", {wg.dD, T(r.dD, {E})}},
        {"ddt_bias", {wg.ddt_bias, T(r.ddt_bias, {E})}}};
    auto ds_ref = T(r.ddt_scale, {E});
    cmp.push_back({"dscale", {g.dscale, scale_kind == 1 ? ds_ref.sum().reshape({1}) : ds_ref}});
    const std::string what = "B=" + std::to_string(B) + " E=" + std::to_string(E) + " L=" + std::to_string(L);
    for (const auto& [name, pr] : cmp) {
      const double e = err_rel_max(pr.first, pr.second);
      report("scan bwd " + what + " " + name + " rel", e);
      EXPECT_LE(e, kGradRel) << name << " " << what;
    }
    // d(scale) against a central difference of the float64 CPU forward, loss = Σ y·dy + Σ hT·dhT.
    if (scale_kind == 1) {
      const double eps = 1e-6 * s.scale.item<double>();
      auto loss = [&](double ds) {
        auto h = s.h0.clone();
        auto y = mx::ops::selective_scan(s.u, s.draw, s.bias, s.scale + ds, s.A, s.Bm, s.Cm, s.D, s.z, h);
        return (y * dy).sum().item<double>() + (h * dhT).sum().item<double>();
      };
      const double fd = (loss(eps) - loss(-eps)) / (2 * eps);
      const double e = std::fabs(g.dscale.item<double>() - fd) / std::fabs(fd);
      report("scan bwd " + what + " dscale vs finite difference rel", e);
      EXPECT_LE(e, kDscaleFd) << what;
    }
  }
}
#endif

TEST(CudaSelectiveScan, Backward) {
  MX_REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  check_scan_backward(2, 40, {7, 4097}, 2000);
#endif
}

// The backward at the same scale (see ForwardManyChannels).
TEST(CudaSelectiveScan, BackwardManyChannels) {
  MX_REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  check_scan_backward(2, 2560, {7, 1100}, 2100);
#endif
}

TEST(CudaConv1d, ForwardBackward) {
  MX_REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  for (int64_t L : {1, 7, 2048, 4097}) {
    at::manual_seed(3000 + L);
    auto o = at::TensorOptions().dtype(at::kDouble);
    const int64_t B = 2, C = 100, K = 4;
    auto xz = at::randn({B, L, 2 * C}, o).to(at::kFloat).to(at::kDouble);
    auto x = xz.narrow(2, 0, C);
    auto w = at::randn({C, K}, o).to(at::kFloat).to(at::kDouble), b = at::randn({C}, o).to(at::kFloat).to(at::kDouble);
    auto st0 = at::randn({B, C, K - 1}, o).to(at::kFloat).to(at::kDouble);
    auto st_ref = st0.clone();
    const auto y_ref = mx::ops::causal_conv1d(x, w, b, st_ref);
    auto xg = xz.to(at::kCUDA, at::kFloat).narrow(2, 0, C);
    auto st = st0.to(at::kCUDA, at::kFloat);
    const auto y = mx::ops::causal_conv1d(xg, w.to(at::kCUDA, at::kFloat), b.to(at::kCUDA, at::kFloat), st);
    EXPECT_LE(err_rel_max(y, y_ref), 1e-6) << "L=" << L;
    EXPECT_LE(err_rel_max(st, st_ref), 0.0) << "L=" << L;
    // The mixers' fused activation: silu(conv) in one kernel, against silu of the float64 result.
    auto st_s = st0.to(at::kCUDA, at::kFloat);
    const auto ys = mx::ops::causal_conv1d(xg, w.to(at::kCUDA, at::kFloat), b.to(at::kCUDA, at::kFloat), st_s, true);
    EXPECT_LE(err_rel_max(ys, at::silu(y_ref)), 1e-6) << "L=" << L;
    EXPECT_LE(err_rel_max(st_s, st_ref), 0.0) << "L=" << L;
    // Backward against the float64 loops.
    auto dy = at::randn({B, L, C}, o).to(at::kFloat).to(at::kDouble), dso = at::randn({B, C, K - 1}, o).to(at::kFloat).to(at::kDouble);
    mx::ops::CausalConv1dWeightGrads wg;
    const auto g = mx::ops::causal_conv1d_bwd_cuda(xg, w.to(at::kCUDA, at::kFloat), st0.to(at::kCUDA, at::kFloat),
                                                   dy.to(at::kCUDA, at::kFloat), dso.to(at::kCUDA, at::kFloat), &wg);
    mx::kern::ref::Conv1dProblem p;
    p.B = B, p.L = L, p.C = C, p.K = K, p.x = to_vec(x), p.weight = to_vec(w), p.bias = to_vec(b), p.state = to_vec(st0);
    const auto r = mx::kern::ref::conv1d_ref_bwd(p, to_vec(dy), to_vec(dso));
    auto T = [](const std::vector<double>& v, at::IntArrayRef shape) {
      return at::from_blob(const_cast<double*>(v.data()), shape, at::TensorOptions().dtype(at::kDouble)).clone();
    };
    EXPECT_LE(err_rel_max(g.dx, T(r.dx, {B, L, C})), kGradRel) << "L=" << L;
    EXPECT_LE(err_rel_max(g.dstate, T(r.dstate_in, {B, C, K - 1})), kGradRel) << "L=" << L;
    EXPECT_LE(err_rel_max(wg.dweight, T(r.dweight, {C, K})), kGradRel) << "L=" << L;
    EXPECT_LE(err_rel_max(wg.dbias, T(r.dbias, {C})), kGradRel) << "L=" << L;
  }
#endif
}

TEST(CudaNorm, RmsNormAndFusedAdd) {
  MX_REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  at::manual_seed(4000);
  auto o = at::TensorOptions().dtype(at::kDouble);
  auto x = at::randn({3, 7, 768}, o).to(at::kFloat).to(at::kDouble), w = at::randn({768}, o).to(at::kFloat).to(at::kDouble);
  const auto ref = mx::ops::rmsnorm(x, w, 1e-5);
  const auto got = mx::ops::rmsnorm(x.to(at::kCUDA, at::kFloat), w.to(at::kCUDA, at::kFloat), 1e-5);
  EXPECT_LE(err_rel_max(got, ref), 1e-6);
  auto res = at::randn({3, 7, 768}, o).to(at::kFloat).to(at::kDouble);
  auto resg = res.to(at::kCUDA, at::kFloat);
  const auto y = mx::ops::add_rmsnorm_cuda(x.to(at::kCUDA, at::kBFloat16), resg, w.to(at::kCUDA, at::kFloat), 1e-5,
                                           at::kBFloat16);
  const auto sum_ref = res + x.to(at::kBFloat16).to(at::kDouble);
  EXPECT_LE(err_rel_max(resg, sum_ref), 1e-7);
  EXPECT_LE(bf16_ulps(y, mx::ops::rmsnorm(sum_ref, w, 1e-5), 1e-6), 1.0);
#endif
}

TEST(CudaModel, OrganismLogits) {
  MX_REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  const auto ckpt = mx::load_checkpoint(mx::test::source_dir() / "assets" / "models" / "organism-mamba1-7m");
  const mx::MambaLM cpu(ckpt, {at::kFloat, c10::Device(c10::kCPU)});
  const mx::MambaLM gpu(ckpt, {at::kFloat, c10::Device(c10::kCUDA)});
  at::manual_seed(5000);
  const auto ids = at::randint(0, ckpt.config.vocab_size, {2, 300}, at::TensorOptions().dtype(at::kLong));
  auto scales = mx::DtScales::ones(ckpt.config, true);
  for (auto& s : scales.per_layer) s.uniform_(0.5, 1.5);
  const auto ref = cpu.forward(ids, scales);
  const auto got = gpu.forward(ids, scales);
  const double e = err_rel_max(got, ref);
  report("organism-mamba1-7m fp32 GPU vs CPU logits max rel", e);
  EXPECT_LE(e, kLogitsRel);
  // Recurrent steps on the GPU continue a GPU prefix exactly like the full forward.
  mx::State st;
  gpu.forward(ids.narrow(1, 0, 290), scales, &st);
  for (int64_t t = 290; t < 300; ++t) {
    const auto step = gpu.step(ids.select(1, t), st, scales);
    const double es = err_rel_max(step, got.select(1, t));
    EXPECT_LE(es, kLogitsRel) << "step t=" << t;
  }
#endif
}

}  // namespace
