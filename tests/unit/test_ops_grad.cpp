// Backward of the scan and conv ops (src/ref/*_bwd_ref.cpp through src/ops/autograd.cpp) against ATen's own
// autograd of independent whole-tensor formulations, in float64: gradients with respect to every activation,
// the initial state and the Δ scale (scalar and per channel / head), with gradients on both outputs (y and
// the final state). Also: the no-grad path is untouched (no graph, same values), a chained two-segment run
// gives the one-segment gradients, and float32 gradients agree with float64 to float32 accuracy.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <vector>

#include "mambaextend/ops.h"

namespace {

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() /
         std::max(b.to(at::kDouble).abs().max().item<double>(), 1e-300);
}

at::Tensor leaf(const at::Tensor& t) { return t.detach().clone().requires_grad_(true); }

// Selective scan as whole-tensor ATen ops over time (differentiable by ATen).
at::Tensor scan_naive(const at::Tensor& u, const at::Tensor& draw, const at::Tensor& bias, const at::Tensor& s,
                      const at::Tensor& A, const at::Tensor& B, const at::Tensor& C, const at::Tensor& D,
                      const at::Tensor& z, at::Tensor& h) {
  auto delta = at::softplus(draw + bias) * s;  // (B, L, E)
  std::vector<at::Tensor> ys;
  for (int64_t t = 0; t < u.size(1); ++t) {
    auto dt = delta.select(1, t).unsqueeze(-1);  // (B, E, 1)
    h = at::exp(dt * A) * h + dt * B.select(1, t).unsqueeze(1) * u.select(1, t).unsqueeze(-1);
    ys.push_back((h * C.select(1, t).unsqueeze(1)).sum(-1) + D * u.select(1, t));
  }
  return at::stack(ys, 1) * at::silu(z);
}

at::Tensor ssd_naive(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& bias, const at::Tensor& s,
                     double lo, double hi, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                     const at::Tensor& D, at::Tensor& h) {
  const int64_t H = x.size(2), G = B.size(2);
  auto delta = at::clamp(at::softplus(dt + bias), lo, hi) * s;  // (B, L, H)
  auto Bh = B.repeat_interleave(H / G, 2), Ch = C.repeat_interleave(H / G, 2);  // (B, L, H, N)
  std::vector<at::Tensor> ys;
  for (int64_t t = 0; t < x.size(1); ++t) {
    auto d = delta.select(1, t);                                          // (B, H)
    auto a = at::exp(d * A).unsqueeze(-1).unsqueeze(-1);                  // (B, H, 1, 1)
    auto xt = x.select(1, t);                                             // (B, H, P)
    h = a * h + (d.unsqueeze(-1) * xt).unsqueeze(-1) * Bh.select(1, t).unsqueeze(2);
    ys.push_back((h * Ch.select(1, t).unsqueeze(2)).sum(-1) + D.unsqueeze(-1) * xt);
  }
  return at::stack(ys, 1);
}

struct Case { int64_t B, L, E, N; bool per_channel; };
class ScanGrad : public ::testing::TestWithParam<Case> {};

TEST_P(ScanGrad, SelectiveScanMatchesAtenAutograd) {
  const auto c = GetParam();
  at::manual_seed(c.L + 17 * c.E);
  auto o = at::TensorOptions().dtype(at::kDouble);
  auto u = at::randn({c.B, c.L, c.E}, o), draw = at::randn({c.B, c.L, c.E}, o) * 2 - 2;
  auto bias = at::randn({c.E}, o) * 0.5, A = -at::rand({c.E, c.N}, o) * 2 - 0.1, D = at::randn({c.E}, o);
  auto Bm = at::randn({c.B, c.L, c.N}, o), Cm = at::randn({c.B, c.L, c.N}, o), z = at::randn({c.B, c.L, c.E}, o);
  auto s = c.per_channel ? at::rand({c.E}, o) + 0.5 : at::full({1}, 0.8, o);
  auto h0 = at::randn({c.B, c.E, c.N}, o);
  auto wy = at::randn({c.B, c.L, c.E}, o), wh = at::randn({c.B, c.E, c.N}, o);  // upstream gradients

  std::vector<at::Tensor> ours, ref;
  for (int pass = 0; pass < 2; ++pass) {
    auto lu = leaf(u), ld = leaf(draw), ls = leaf(s), lb = leaf(Bm), lc = leaf(Cm), lz = leaf(z), lh = leaf(h0);
    at::Tensor h = lh;
    auto y = pass == 0 ? mx::ops::selective_scan(lu, ld, bias, ls, A, lb, lc, D, lz, h)
                       : scan_naive(lu, ld, bias, ls, A, lb, lc, D, lz, h);
    ((y * wy).sum() + (h * wh).sum()).backward();
    auto& out = pass == 0 ? ours : ref;
    for (auto* t : {&lu, &ld, &ls, &lb, &lc, &lz, &lh}) out.push_back(t->grad());
  }
  const char* names[] = {"du", "ddelta_raw", "dscale", "dB", "dC", "dz", "dh0"};
  for (size_t i = 0; i < ours.size(); ++i) {
    ASSERT_TRUE(ours[i].defined()) << names[i];
    EXPECT_LT(rel_err(ours[i], ref[i]), 1e-11) << names[i];
  }
  // float32 inputs: gradients to float32 accuracy.
  auto f = [](const at::Tensor& t) { return t.to(at::kFloat).detach().requires_grad_(true); };
  auto ls = f(s), lu = f(u);
  at::Tensor h = f(h0);
  auto y = mx::ops::selective_scan(lu, draw.to(at::kFloat), bias.to(at::kFloat), ls, A.to(at::kFloat),
                                   Bm.to(at::kFloat), Cm.to(at::kFloat), D.to(at::kFloat), z.to(at::kFloat), h);
  ((y * wy.to(at::kFloat)).sum() + (h * wh.to(at::kFloat)).sum()).backward();
  EXPECT_LT(rel_err(ls.grad(), ref[2]), 1e-5);
  EXPECT_LT(rel_err(lu.grad(), ref[0]), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, ScanGrad,
                         ::testing::Values(Case{1, 1, 3, 4, false}, Case{2, 70, 37, 16, true}, Case{1, 130, 9, 8, false}),
                         [](const auto& info) {
                           const Case& c = info.param;
                           return "B" + std::to_string(c.B) + "_L" + std::to_string(c.L) + "_E" + std::to_string(c.E) +
                                  "_N" + std::to_string(c.N) + (c.per_channel ? "_channel" : "_scalar");
                         });

TEST(SsdScanGrad, MatchesAtenAutogradWithGroupsAndClamp) {
  at::manual_seed(5);
  auto o = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = 2, L = 75, H = 4, P = 3, G = 2, N = 5;
  auto x = at::randn({B, L, H, P}, o), dt = at::randn({B, L, H}, o) * 2 - 1.5, bias = at::randn({H}, o) * 0.3;
  auto A = -at::rand({H}, o) * 2 - 0.1, D = at::randn({H}, o);
  auto Bm = at::randn({B, L, G, N}, o), Cm = at::randn({B, L, G, N}, o), h0 = at::randn({B, H, P, N}, o);
  auto wy = at::randn({B, L, H, P}, o), wh = at::randn({B, H, P, N}, o);
  for (bool per_head : {false, true}) {
    for (double hi : {double(INFINITY), 0.4}) {  // 0.4: a clamp that binds for part of the tokens
      auto s = per_head ? at::rand({H}, o) + 0.5 : at::full({1}, 1.3, o);
      std::vector<at::Tensor> ours, ref;
      for (int pass = 0; pass < 2; ++pass) {
        auto lx = leaf(x), ld = leaf(dt), ls = leaf(s), lb = leaf(Bm), lc = leaf(Cm), lh = leaf(h0);
        at::Tensor h = lh;
        auto y = pass == 0 ? mx::ops::ssd_scan(lx, ld, bias, ls, 0.01, hi, A, lb, lc, D, h)
                           : ssd_naive(lx, ld, bias, ls, 0.01, hi, A, lb, lc, D, h);
        ((y * wy).sum() + (h * wh).sum()).backward();
        for (auto* t : {&lx, &ld, &ls, &lb, &lc, &lh}) (pass == 0 ? ours : ref).push_back(t->grad());
      }
      const char* names[] = {"dx", "ddt_raw", "dscale", "dB", "dC", "dh0"};
      for (size_t i = 0; i < ours.size(); ++i)
        EXPECT_LT(rel_err(ours[i], ref[i]), 1e-11) << names[i] << " per_head=" << per_head << " hi=" << hi;
    }
  }
}

TEST(CausalConv1dGrad, MatchesAtenAutogradIncludingState) {
  at::manual_seed(9);
  auto o = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = 2, C = 5, K = 4;
  for (int64_t L : {1, 2, 13}) {  // L < K-1: the new state keeps part of the old one
    auto x = at::randn({B, L, C}, o), w = at::randn({C, K}, o), b = at::randn({C}, o), st0 = at::randn({B, C, K - 1}, o);
    auto wy = at::randn({B, L, C}, o), ws = at::randn({B, C, K - 1}, o);
    auto lx = leaf(x), ls = leaf(st0);
    at::Tensor st = ls;
    auto y = mx::ops::causal_conv1d(lx, w, b, st);
    ((y * wy).sum() + (st * ws).sum()).backward();
    // Reference: the convolution written with ATen ops over concat(state, x).
    auto rx = leaf(x), rs = leaf(st0);
    auto xx = at::cat({rs, rx.transpose(1, 2)}, 2);  // (B, C, K-1+L)
    std::vector<at::Tensor> ys;
    for (int64_t t = 0; t < L; ++t) ys.push_back((xx.narrow(2, t, K) * w).sum(-1) + b);  // (B, C)
    auto yr = at::stack(ys, 1);
    auto str = xx.narrow(2, L, K - 1);
    ((yr * wy).sum() + (str * ws).sum()).backward();
    EXPECT_LT(rel_err(y, yr), 1e-13) << "L=" << L;
    EXPECT_LT(rel_err(lx.grad(), rx.grad()), 1e-13) << "L=" << L;
    EXPECT_LT(rel_err(ls.grad(), rs.grad()), 1e-13) << "L=" << L;
  }
}

TEST(OpsGrad, NoGradPathBuildsNoGraphAndGivesSameValues) {
  at::manual_seed(2);
  auto o = at::TensorOptions().dtype(at::kFloat);
  const int64_t B = 1, L = 20, E = 6, N = 4;
  auto u = at::randn({B, L, E}, o), dr = at::randn({B, L, E}, o), bias = at::zeros({E}, o), A = -at::rand({E, N}, o) - 0.1;
  auto Bm = at::randn({B, L, N}, o), Cm = at::randn({B, L, N}, o), D = at::ones({E}, o), z = at::randn({B, L, E}, o);
  auto s = at::full({1}, 0.7, o).requires_grad_(true);
  at::Tensor h1 = at::zeros({B, E, N}, o), h2 = h1.clone();
  at::Tensor y1;
  {
    c10::NoGradGuard ng;
    y1 = mx::ops::selective_scan(u, dr, bias, s, A, Bm, Cm, D, z, h1);
  }
  EXPECT_FALSE(y1.requires_grad());
  auto y2 = mx::ops::selective_scan(u, dr, bias, s, A, Bm, Cm, D, z, h2);
  EXPECT_TRUE(y2.requires_grad());
  EXPECT_TRUE(h2.requires_grad());
  EXPECT_EQ((y1 - y2.detach()).abs().max().item<float>(), 0.0f);
  EXPECT_EQ((h1 - h2.detach()).abs().max().item<float>(), 0.0f);
}

TEST(OpsGrad, ChainedSegmentsGiveOneSegmentGradient) {
  at::manual_seed(4);
  auto o = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = 1, L = 150, E = 7, N = 6, a = 61;
  auto u = at::randn({B, L, E}, o), dr = at::randn({B, L, E}, o) - 1, bias = at::zeros({E}, o);
  auto A = -at::rand({E, N}, o) - 0.1, Bm = at::randn({B, L, N}, o), Cm = at::randn({B, L, N}, o);
  auto D = at::ones({E}, o), z = at::randn({B, L, E}, o), wy = at::randn({B, L, E}, o);
  auto s1 = at::full({E}, 0.9, o).requires_grad_(true);
  at::Tensor h = at::zeros({B, E, N}, o);
  (mx::ops::selective_scan(u, dr, bias, s1, A, Bm, Cm, D, z, h) * wy).sum().backward();
  auto s2 = at::full({E}, 0.9, o).requires_grad_(true);
  at::Tensor h2 = at::zeros({B, E, N}, o);
  auto sl = [&](const at::Tensor& t, int64_t st, int64_t len) { return t.narrow(1, st, len); };
  auto ya = mx::ops::selective_scan(sl(u, 0, a), sl(dr, 0, a), bias, s2, A, sl(Bm, 0, a), sl(Cm, 0, a), D, sl(z, 0, a), h2);
  auto yb = mx::ops::selective_scan(sl(u, a, L - a), sl(dr, a, L - a), bias, s2, A, sl(Bm, a, L - a), sl(Cm, a, L - a), D,
                                    sl(z, a, L - a), h2);
  ((ya * sl(wy, 0, a)).sum() + (yb * sl(wy, a, L - a)).sum()).backward();
  EXPECT_LT(rel_err(s2.grad(), s1.grad()), 1e-12);
}

}  // namespace
