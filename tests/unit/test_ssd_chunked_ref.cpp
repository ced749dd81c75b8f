// The two float64 references of the Mamba2 SSD scan agree (CPU only, runs on CI): the chunked ssd_minimal form
// (src/ref/ssd_chunked_ref.cpp) against the sequential recurrence (src/ref/ssd_scan_ref.cpp) in the output and
// the final state, over lengths around the chunk size, groups, Δ scales, the dt clamp and initial states; and the
// chunked form's autograd gradients against the hand-written sequential backward (src/ref/ssd_scan_bwd_ref.cpp).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "ref/ref.h"
#include "ref/ref_bwd.h"
#include "ref/ssd_chunked_ref.h"

namespace {

struct Inputs {
  at::Tensor x, dt, bias, scale, A, Bm, Cm, D, h0;
  double lo = 0.0, hi = INFINITY;
};

// Shapes (B, L, H, P, G, N); scale_mode 0 none, 1 scalar, 2 per head.
Inputs make(int64_t B, int64_t L, int64_t H, int64_t P, int64_t G, int64_t N, int scale_mode, bool clamp,
            bool h0, uint64_t seed) {
  at::manual_seed(seed);
  const auto o = at::TensorOptions().dtype(at::kDouble);
  Inputs in;
  in.x = at::randn({B, L, H, P}, o);
  in.dt = 0.5 * at::randn({B, L, H}, o);
  auto dt0 = at::exp(at::empty({H}, o).uniform_(std::log(1e-3), std::log(1e-1)));
  in.bias = dt0 + at::log(-at::expm1(-dt0));  // softplus⁻¹
  in.A = -at::exp(at::empty({H}, o).uniform_(0.0, std::log(16.0)));
  in.Bm = 0.5 * at::randn({B, L, G, N}, o);
  in.Cm = 0.5 * at::randn({B, L, G, N}, o);
  in.D = at::empty({H}, o).uniform_(-1, 1);
  if (scale_mode == 1) in.scale = at::empty({1}, o).uniform_(0.5, 2.0);
  if (scale_mode == 2) in.scale = at::empty({H}, o).uniform_(0.5, 2.0);
  if (clamp) in.lo = 2e-3, in.hi = 0.05;
  in.h0 = h0 ? 0.5 * at::randn({B, H, P, N}, o) : at::zeros({B, H, P, N}, o);
  return in;
}

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  const double den = b.abs().max().item<double>();
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() / (den > 0 ? den : 1.0);
}

struct Shape {
  int64_t L, G;
  int scale;
  bool clamp, h0;
};

class SsdChunkedRef : public ::testing::TestWithParam<Shape> {};

TEST_P(SsdChunkedRef, MatchesSequentialForward) {
  const Shape s = GetParam();
  const Inputs in = make(2, s.L, 4, 6, s.G, 8, s.scale, s.clamp, s.h0, 7 + s.L);
  at::Tensor h_seq = in.h0.clone(), h_chk = in.h0.clone(), h_chk16 = in.h0.clone();
  auto y_seq = mx::ref::ssd_scan(in.x, in.dt, in.bias, in.scale, in.lo, in.hi, in.A, in.Bm, in.Cm, in.D, h_seq);
  auto y_chk = mx::ref::ssd_scan_chunked(in.x, in.dt, in.bias, in.scale, in.lo, in.hi, in.A, in.Bm, in.Cm, in.D,
                                         h_chk, 64);
  auto y_16 = mx::ref::ssd_scan_chunked(in.x, in.dt, in.bias, in.scale, in.lo, in.hi, in.A, in.Bm, in.Cm, in.D,
                                        h_chk16, 16);
  EXPECT_LT(rel_err(y_chk, y_seq), 1e-12);
  EXPECT_LT(rel_err(h_chk, h_seq), 1e-12);
  EXPECT_LT(rel_err(y_16, y_seq), 1e-12);
  EXPECT_LT(rel_err(h_chk16, h_seq), 1e-12);
}

TEST_P(SsdChunkedRef, AutogradMatchesSequentialBackward) {
  const Shape s = GetParam();
  Inputs in = make(1, s.L, 4, 6, s.G, 8, s.scale, s.clamp, s.h0, 100 + s.L);
  const auto dy = at::randn_like(in.x), dhT = at::randn_like(in.h0);
  auto g = mx::ref::ssd_scan_bwd(in.x, in.dt, in.bias, in.scale, in.lo, in.hi, in.A, in.Bm, in.Cm, in.D, in.h0, dy,
                                 dhT);
  for (at::Tensor* t : {&in.x, &in.dt, &in.Bm, &in.Cm, &in.h0, &in.scale})
    if (t->defined()) t->requires_grad_(true);
  at::Tensor h = in.h0;
  auto y = mx::ref::ssd_scan_chunked(in.x, in.dt, in.bias, in.scale, in.lo, in.hi, in.A, in.Bm, in.Cm, in.D, h, 32);
  ((y * dy).sum() + (h * dhT).sum()).backward();
  EXPECT_LT(rel_err(in.x.grad(), g.dx), 1e-10);
  EXPECT_LT(rel_err(in.dt.grad(), g.ddt_raw), 1e-10);
  EXPECT_LT(rel_err(in.Bm.grad(), g.dB), 1e-10);
  EXPECT_LT(rel_err(in.Cm.grad(), g.dC), 1e-10);
  EXPECT_LT(rel_err(in.h0.grad(), g.dh0), 1e-10);
  if (in.scale.defined()) EXPECT_LT(rel_err(in.scale.grad(), g.dscale), 1e-10);
}

INSTANTIATE_TEST_SUITE_P(Shapes, SsdChunkedRef,
                         ::testing::Values(Shape{1, 1, 0, false, false}, Shape{63, 2, 1, false, true},
                                           Shape{64, 1, 2, true, true}, Shape{65, 2, 0, true, false},
                                           Shape{200, 1, 2, false, true}),
                         [](const ::testing::TestParamInfo<Shape>& i) {
                           return "L" + std::to_string(i.param.L) + "_G" + std::to_string(i.param.G) + "_s" +
                                  std::to_string(i.param.scale) + (i.param.clamp ? "_clamp" : "") +
                                  (i.param.h0 ? "_h0" : "");
                         });

}  // namespace
