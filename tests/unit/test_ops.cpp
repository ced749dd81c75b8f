// CPU ops against independent ATen formulations (float64) and chaining: running an op over [0, L) equals
// running it over [0, a) then [a, L) with the carried state.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "mambaextend/error.h"
#include "mambaextend/ops.h"

namespace {

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() /
         std::max(b.to(at::kDouble).abs().max().item<double>(), 1e-300);
}

// Selective scan written with whole-tensor ATen ops over time (the HF slow path's formulation).
at::Tensor scan_naive(const at::Tensor& u, const at::Tensor& draw, const at::Tensor& bias, const at::Tensor& s,
                      const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const at::Tensor& D,
                      const at::Tensor& z, at::Tensor& h) {
  auto delta = at::softplus(draw + bias);
  if (s.defined()) delta = delta * s;
  std::vector<at::Tensor> ys;
  for (int64_t t = 0; t < u.size(1); ++t) {
    auto dt = delta.select(1, t).unsqueeze(-1);                                  // (B, E, 1)
    h = at::exp(dt * A) * h + dt * B.select(1, t).unsqueeze(1) * u.select(1, t).unsqueeze(-1);
    ys.push_back((h * C.select(1, t).unsqueeze(1)).sum(-1) + D * u.select(1, t));
  }
  auto y = at::stack(ys, 1);
  return z.defined() ? y * at::silu(z) : y;
}

struct ScanCase { int64_t B, L, E, N; bool scale_vec, gate; };

class SelectiveScanRef : public ::testing::TestWithParam<ScanCase> {};

TEST_P(SelectiveScanRef, MatchesNaiveAndChains) {
  const auto c = GetParam();
  at::manual_seed(c.L * 131 + c.E);
  auto o = at::TensorOptions().dtype(at::kDouble);
  auto u = at::randn({c.B, c.L, c.E}, o), draw = at::randn({c.B, c.L, c.E}, o) * 2 - 3;
  auto bias = at::randn({c.E}, o) * 0.5, A = -at::rand({c.E, c.N}, o) * 4 - 0.1;
  auto Bm = at::randn({c.B, c.L, c.N}, o), Cm = at::randn({c.B, c.L, c.N}, o), D = at::randn({c.E}, o);
  auto z = c.gate ? at::randn({c.B, c.L, c.E}, o) : at::Tensor();
  auto s = c.scale_vec ? at::rand({c.E}, o) * 3 + 0.1 : at::full({1}, 0.7, o);
  auto h0 = at::randn({c.B, c.E, c.N}, o);

  auto h_naive = h0.clone();
  auto ref = scan_naive(u, draw, bias, s, A, Bm, Cm, D, z, h_naive);
  auto h = h0.clone();
  auto y = mx::ops::selective_scan(u, draw, bias, s, A, Bm, Cm, D, z, h);
  EXPECT_LT(rel_err(y, ref), 1e-12);
  EXPECT_LT(rel_err(h, h_naive), 1e-12);

  // Two segments with the carried state equal one pass.
  const int64_t a = c.L / 3;
  if (a > 0) {
    auto h2 = h0.clone();
    auto sl = [&](const at::Tensor& t, int64_t st, int64_t len) { return t.defined() ? t.narrow(1, st, len) : t; };
    auto y1 = mx::ops::selective_scan(sl(u, 0, a), sl(draw, 0, a), bias, s, A, sl(Bm, 0, a), sl(Cm, 0, a), D, sl(z, 0, a), h2);
    auto y2 = mx::ops::selective_scan(sl(u, a, c.L - a), sl(draw, a, c.L - a), bias, s, A, sl(Bm, a, c.L - a),
                                      sl(Cm, a, c.L - a), D, sl(z, a, c.L - a), h2);
    EXPECT_LT(rel_err(at::cat({y1, y2}, 1), y), 1e-13);
    EXPECT_LT(rel_err(h2, h), 1e-13);
  }
  // float32 inputs agree with the float64 run to float32 accuracy.
  auto f = [](const at::Tensor& t) { return t.defined() ? t.to(at::kFloat) : t; };
  auto h32 = h0.to(at::kFloat);
  auto y32 = mx::ops::selective_scan(f(u), f(draw), f(bias), f(s), f(A), f(Bm), f(Cm), f(D), f(z), h32);
  EXPECT_EQ(y32.scalar_type(), at::kFloat);
  EXPECT_LT(rel_err(y32, y), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, SelectiveScanRef,
                         ::testing::Values(ScanCase{1, 1, 5, 16, false, true}, ScanCase{2, 7, 33, 16, true, true},
                                           ScanCase{1, 130, 40, 64, true, false}, ScanCase{2, 64, 17, 128, false, true}));

TEST(CausalConv1dRef, MatchesConv1dAndChains) {
  at::manual_seed(3);
  auto o = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = 2, L = 19, C = 11, K = 4;
  auto x = at::randn({B, L, C}, o), w = at::randn({C, K}, o), b = at::randn({C}, o);
  auto st = at::zeros({B, C, K - 1}, o);
  auto y = mx::ops::causal_conv1d(x, w, b, st);
  // PyTorch's Conv1d with padding K-1, cut to the first L outputs (the HF / mamba_ssm formulation).
  auto ref = at::conv1d(x.transpose(1, 2), w.unsqueeze(1), b, 1, K - 1, 1, C).narrow(2, 0, L).transpose(1, 2);
  EXPECT_LT(rel_err(y, ref), 1e-14);
  EXPECT_LT(rel_err(st, x.narrow(1, L - (K - 1), K - 1).transpose(1, 2)), 1e-15);
  // Token by token with the carried state.
  auto st2 = at::zeros({B, C, K - 1}, o);
  std::vector<at::Tensor> ys;
  for (int64_t t = 0; t < L; ++t) ys.push_back(mx::ops::causal_conv1d(x.narrow(1, t, 1), w, b, st2));
  EXPECT_LT(rel_err(at::cat(ys, 1), y), 1e-14);
  // The fused activation: silu of the same output, same state.
  auto st3 = at::zeros({B, C, K - 1}, o);
  EXPECT_LT(rel_err(mx::ops::causal_conv1d(x, w, b, st3, /*silu=*/true), at::silu(y)), 1e-15);
  EXPECT_LT(rel_err(st3, st), 1e-15);
}

TEST(SsdScanRef, GroupsAndChaining) {
  at::manual_seed(5);
  auto o = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = 2, L = 23, H = 4, P = 3, G = 2, N = 5;
  auto x = at::randn({B, L, H, P}, o), dt = at::randn({B, L, H}, o) - 2, bias = at::randn({H}, o);
  auto A = -at::rand({H}, o) * 3, Bm = at::randn({B, L, G, N}, o), Cm = at::randn({B, L, G, N}, o);
  auto D = at::randn({H}, o), s = at::rand({H}, o) + 0.5;
  auto h = at::randn({B, H, P, N}, o);
  // Naive form: expand groups to heads, recurrence with ATen ops.
  auto delta = at::softplus(dt + bias).clamp(0.01, 0.5) * s;                  // (B, L, H)
  auto Bh = Bm.repeat_interleave(H / G, 2), Ch = Cm.repeat_interleave(H / G, 2);  // (B, L, H, N)
  auto hn = h.clone();
  std::vector<at::Tensor> ys;
  for (int64_t t = 0; t < L; ++t) {
    auto d = delta.select(1, t);                                                // (B, H)
    hn = at::exp(d * A).view({B, H, 1, 1}) * hn +
         (d.unsqueeze(-1) * x.select(1, t)).unsqueeze(-1) * Bh.select(1, t).unsqueeze(2);
    ys.push_back((hn * Ch.select(1, t).unsqueeze(2)).sum(-1) + D.view({1, H, 1}) * x.select(1, t));
  }
  auto ref = at::stack(ys, 1);
  auto h1 = h.clone();
  auto y = mx::ops::ssd_scan(x, dt, bias, s, 0.01, 0.5, A, Bm, Cm, D, h1);
  EXPECT_LT(rel_err(y, ref), 1e-12);
  EXPECT_LT(rel_err(h1, hn), 1e-12);
  auto h2 = h.clone();
  auto ya = mx::ops::ssd_scan(x.narrow(1, 0, 10), dt.narrow(1, 0, 10), bias, s, 0.01, 0.5, A, Bm.narrow(1, 0, 10),
                              Cm.narrow(1, 0, 10), D, h2);
  auto yb = mx::ops::ssd_scan(x.narrow(1, 10, L - 10), dt.narrow(1, 10, L - 10), bias, s, 0.01, 0.5, A,
                              Bm.narrow(1, 10, L - 10), Cm.narrow(1, 10, L - 10), D, h2);
  EXPECT_LT(rel_err(at::cat({ya, yb}, 1), y), 1e-13);
}

TEST(GatedGroupRmsNorm, NormalisesEachGroup) {
  auto o = at::TensorOptions().dtype(at::kDouble);
  auto y = at::randn({3, 8}, o), z = at::randn({3, 8}, o), w = at::rand({8}, o) + 0.5;
  auto out = mx::ops::gated_group_rmsnorm(y, z, w, 2, 1e-5);
  auto g = (y * at::silu(z)).view({3, 2, 4});
  auto ref = (g / at::sqrt(g.pow(2).mean(-1, true) + 1e-5)).view({3, 8}) * w;
  EXPECT_LT(rel_err(out, ref), 1e-14);
  // One group differs from two groups: the grouping is real.
  EXPECT_GT(rel_err(mx::ops::gated_group_rmsnorm(y, z, w, 1, 1e-5), out), 1e-3);
}

TEST(OpsValidation, WrongShapesThrowNamingTheArgument) {
  auto o = at::TensorOptions().dtype(at::kFloat);
  auto u = at::randn({1, 4, 6}, o);
  auto h = at::zeros({1, 6, 3}, o);
  try {
    mx::ops::selective_scan(u, u, at::zeros({6}, o), at::Tensor(), at::zeros({6, 3}, o), at::zeros({1, 4, 2}, o),
                            at::zeros({1, 4, 3}, o), at::zeros({6}, o), at::Tensor(), h);
    FAIL() << "expected ShapeError";
  } catch (const mx::ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("argument B"), std::string::npos) << e.what();
  }
  EXPECT_THROW(mx::ops::selective_scan(u, u, at::zeros({6}, o), at::ones({5}, o), at::zeros({6, 3}, o),
                                       at::zeros({1, 4, 3}, o), at::zeros({1, 4, 3}, o), at::zeros({6}, o),
                                       at::Tensor(), h),
               mx::ShapeError);
}

}  // namespace
