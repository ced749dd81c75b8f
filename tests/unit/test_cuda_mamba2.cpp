// GPU tests of the Mamba2 CUDA path (kernels/ssd, src/ops/ssd_scan_cuda.cpp, src/ops/gated_norm_cuda.cpp). Each
// test skips without a GPU (or without MAMBAEXTEND_CUDA).
//   * CudaSsdForward: ops::ssd_scan on CUDA (fp32 and bf16) against the float64 sequential recurrence and the float64
//     chunked reference, L ∈ {1, 255, 256, 257, 4096, 65536, 262144}, n_groups 1 / 8, d_state 64 / 128 / 256;
//     errors as max|err| / rms(ref): fp32 ≤ 5e-5; bf16 ≤ 2·(error of rounding the reference to bf16) + 1e-2
//     (final state: 6e-2).
//   * CudaSsdBackward: ssd_scan_bwd_cuda against ref::ssd_scan_bwd (float64): dx, d(dt), dB, dC, dh0, d(scale);
//     fp32 max ≤ 2e-4, mean ≤ 1e-5; bf16 max ≤ 0.15, mean ≤ 5e-3 (relative to rms(ref); d(scale), a sum with
//     cancellation over every token, only the max); and from the forward's kept intermediates the same gradients.
//   * CudaSsdPaths: the recurrent (short) and chunked kernels agree; segmented calls chain like one call.
//   * CudaGatedNorm: the fused kernel against the ATen reference, groups 1 and 8, z a strided view.
//   * CudaMamba2Organism: organism-mamba2-7m logits on CUDA equal the CPU's (fp32, TF32 off: ≤ 1e-5 relative to max|logit|;
//     bf16 within bf16 rounding), and recurrent steps / segments on CUDA match the full forward.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <string>

#include "fixtures.h"
#include "mambaextend/checkpoint.h"
#include "mambaextend/model.h"
#include "mambaextend/ops.h"
#include "ref/ref.h"
#include "ref/ref_bwd.h"
#include "ref/ssd_chunked_ref.h"
#ifdef MX_WITH_CUDA
#include "ops/cuda_ops_ssd.h"
#endif

namespace {

bool cuda_ok() {
#ifdef MX_WITH_CUDA
  return at::hasCUDA();
#else
  return false;
#endif
}
#define REQUIRE_CUDA() \
  if (!cuda_ok()) GTEST_SKIP() << "CUDA not available"

struct In {
  at::Tensor x, dt, bias, scale, A, Bm, Cm, D, h0;  // float64, CPU
  double lo = 0.0, hi = INFINITY;
};

// Random inputs already rounded to `dt` (so the float64 references see exactly what the GPU sees).
In make_inputs(int64_t B, int64_t L, int64_t H, int64_t G, int64_t N, at::ScalarType dtype, int scale_mode,
               bool clamp, uint64_t seed) {
  at::manual_seed(seed);
  const auto o = at::TensorOptions().dtype(at::kDouble);
  auto rnd = [&](at::Tensor t) { return t.to(dtype).to(at::kDouble); };
  In in;
  in.x = rnd(at::randn({B, L, H, 64}, o));
  in.dt = rnd(0.5 * at::randn({B, L, H}, o));
  auto dt0 = at::exp(at::empty({H}, o).uniform_(std::log(1e-3), std::log(1e-1)));
  in.bias = (dt0 + at::log(-at::expm1(-dt0))).to(at::kFloat).to(at::kDouble);
  in.A = (-at::exp(at::empty({H}, o).uniform_(0.0, std::log(16.0)))).to(at::kFloat).to(at::kDouble);
  in.Bm = rnd(0.5 * at::randn({B, L, G, N}, o));
  in.Cm = rnd(0.5 * at::randn({B, L, G, N}, o));
  in.D = at::empty({H}, o).uniform_(-1, 1).to(at::kFloat).to(at::kDouble);
  if (scale_mode == 1) in.scale = at::empty({1}, o).uniform_(0.5, 2.0).to(at::kFloat).to(at::kDouble);
  if (scale_mode == 2) in.scale = at::empty({H}, o).uniform_(0.5, 2.0).to(at::kFloat).to(at::kDouble);
  if (clamp) in.lo = 2e-3, in.hi = 0.05;
  in.h0 = (0.5 * at::randn({B, H, 64, N}, o)).to(at::kFloat).to(at::kDouble);
  return in;
}

// max|got − ref| / rms(ref), in float64.
double err_rms(const at::Tensor& got, const at::Tensor& ref) {
  auto r = ref.to(at::kDouble).cpu();
  const double rms = std::sqrt(r.pow(2).mean().item<double>());
  return (got.to(at::kDouble).cpu() - r).abs().max().item<double>() / (rms > 0 ? rms : 1.0);
}
// mean|got − ref| / rms(ref).
double err_mean(const at::Tensor& got, const at::Tensor& ref) {
  auto r = ref.to(at::kDouble).cpu();
  const double rms = std::sqrt(r.pow(2).mean().item<double>());
  return (got.to(at::kDouble).cpu() - r).abs().mean().item<double>() / (rms > 0 ? rms : 1.0);
}
// The same metric for the reference rounded to bf16: the floor of any bf16 output.
double bf16_floor(const at::Tensor& ref) { return err_rms(ref.to(at::kBFloat16), ref); }

std::string sci(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2e", v);
  return b;
}

#ifdef MX_WITH_CUDA
const c10::Device kCuda(c10::kCUDA, 0);

struct Dev {
  at::Tensor x, dt, bias, scale, A, Bm, Cm, D, h;
};
Dev to_dev(const In& in, at::ScalarType dtype) {
  Dev d;
  auto act = [&](const at::Tensor& t) { return t.to(kCuda, dtype); };
  auto f32 = [&](const at::Tensor& t) { return t.defined() ? t.to(kCuda, at::kFloat) : t; };
  d.x = act(in.x), d.dt = act(in.dt), d.Bm = act(in.Bm), d.Cm = act(in.Cm);
  d.bias = f32(in.bias), d.scale = f32(in.scale), d.A = f32(in.A), d.D = f32(in.D), d.h = f32(in.h0);
  return d;
}
#endif

struct FwdCase {
  int64_t L, H, G, N;
  bool bf16;
};

class CudaSsdForward : public ::testing::TestWithParam<FwdCase> {};

TEST_P(CudaSsdForward, MatchesFloat64References) {
  REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  const FwdCase c = GetParam();
  const auto dtype = c.bf16 ? at::kBFloat16 : at::kFloat;
  const In in = make_inputs(1, c.L, c.H, c.G, c.N, dtype, int(c.L % 3), c.L % 2 == 1, 11 + c.L);
  Dev d = to_dev(in, dtype);
  auto y = mx::ops::ssd_scan(d.x, d.dt, d.bias, d.scale, in.lo, in.hi, d.A, d.Bm, d.Cm, d.D, d.h);
  at::Tensor h_seq = in.h0.clone();
  const auto y_seq = mx::ref::ssd_scan(in.x, in.dt, in.bias, in.scale, in.lo, in.hi, in.A, in.Bm, in.Cm, in.D, h_seq);
  const double ey = err_rms(y, y_seq), eh = err_rms(d.h, h_seq);
  const double tol_y = c.bf16 ? 2 * bf16_floor(y_seq) + 1e-2 : 5e-5, tol_h = c.bf16 ? 6e-2 : 5e-5;
  EXPECT_LE(ey, tol_y) << "y against the sequential recurrence";
  EXPECT_LE(eh, tol_h) << "final state against the sequential recurrence";
  std::string chunked;
  if (c.L <= 65536) {
    at::Tensor h_chk = in.h0.clone();
    const auto y_chk = mx::ref::ssd_scan_chunked(in.x, in.dt, in.bias, in.scale, in.lo, in.hi, in.A, in.Bm, in.Cm,
                                                 in.D, h_chk, 64);
    const double ec = err_rms(y, y_chk);
    EXPECT_LE(ec, tol_y) << "y against the chunked reference";
    chunked = " chunked-ref " + sci(ec);
  }
  std::cout << "[ssd fwd] " << (c.bf16 ? "bf16" : "fp32") << " L=" << c.L << " H=" << c.H << " G=" << c.G
            << " N=" << c.N << ": y " << sci(ey) << " (tol " << sci(tol_y) << ") hT " << sci(eh) << chunked << "\n";
#endif
}

std::vector<FwdCase> fwd_cases() {
  std::vector<FwdCase> cs;
  for (bool bf : {false, true}) {
    cs.push_back({1, 8, 8, 64, bf});
    cs.push_back({255, 8, 1, 128, bf});
    cs.push_back({256, 8, 8, 256, bf});
    cs.push_back({257, 8, 1, 64, bf});
    cs.push_back({4096, 8, 8, 128, bf});
    cs.push_back({4096, 4, 1, 256, bf});
    cs.push_back({65536, 2, 1, 128, bf});
    cs.push_back({262144, 1, 1, 64, bf});
  }
  return cs;
}
INSTANTIATE_TEST_SUITE_P(Cases, CudaSsdForward, ::testing::ValuesIn(fwd_cases()), [](const auto& i) {
  const FwdCase& c = i.param;
  return std::string(c.bf16 ? "bf16" : "fp32") + "_L" + std::to_string(c.L) + "_H" + std::to_string(c.H) + "_G" +
         std::to_string(c.G) + "_N" + std::to_string(c.N);
});

class CudaSsdBackward : public ::testing::TestWithParam<FwdCase> {};

TEST_P(CudaSsdBackward, MatchesFloat64Backward) {
  REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  const FwdCase c = GetParam();
  const auto dtype = c.bf16 ? at::kBFloat16 : at::kFloat;
  const In in = make_inputs(1, c.L, c.H, c.G, c.N, dtype, 1 + int(c.L % 2), c.L % 3 == 1, 51 + c.L);
  const auto dy = (at::randn({1, c.L, c.H, 64}, at::kDouble)).to(dtype).to(at::kDouble);
  const auto dhT = 0.5 * at::randn_like(in.h0);
  const auto g = mx::ref::ssd_scan_bwd(in.x, in.dt, in.bias, in.scale, in.lo, in.hi, in.A, in.Bm, in.Cm, in.D, in.h0,
                                       dy, dhT);
  const Dev d = to_dev(in, dtype);
  const auto gd = mx::ops::ssd_scan_bwd_cuda(d.x, d.dt, d.bias, d.scale, in.lo, in.hi, d.A, d.Bm, d.Cm, d.D, d.h,
                                             dy.to(kCuda, dtype), dhT.to(kCuda, at::kFloat));
  // bf16: the max error is heavy-tailed (operands rounded to bf16 in sums with cancellation), so the mean is
  // bounded tightly and the max loosely.
  const double tol = c.bf16 ? 0.15 : 2e-4, tol_mean = c.bf16 ? 5e-3 : 1e-5;
  std::string line;
  auto chk = [&](const char* what, const at::Tensor& got, const at::Tensor& ref) {
    const double e = err_rms(got, ref), m = err_mean(got, ref);
    EXPECT_LE(e, tol) << what;
    if (ref.numel() > 64) EXPECT_LE(m, tol_mean) << what << " (mean)";  // not for d(scale): H values
    line += std::string(" ") + what + " " + sci(e) + "/" + sci(m);
  };
  chk("dx", gd.dx, g.dx);
  chk("ddt", gd.ddt_raw, g.ddt_raw);
  chk("dB", gd.dB, g.dB);
  chk("dC", gd.dC, g.dC);
  chk("dh0", gd.dh0, g.dh0);
  chk("dscale", gd.dscale, g.dscale);

  // The same backward from the intermediates that the forward kept (what the autograd path runs) instead of
  // recomputing them: dx, dB, dC and dh0 bit for bit. d(dt) and d(scale) are summed by fp32 atomics whose order
  // differs from run to run (max|Δ| / RMS between the two runs measured up to 1.4e-6 in fp32 on an H100; in bf16 an
  // order difference can flip an output's rounding): they meet the float64 check above as the recomputing run does,
  // and in fp32 agree with it to the gradient tolerance of kernels.md (1e-5).
  at::Tensor saved, h = d.h.clone();
  mx::ops::ssd_scan_cuda(d.x, d.dt, d.bias, d.scale, in.lo, in.hi, d.A, d.Bm, d.Cm, d.D, h, false, &saved);
  ASSERT_TRUE(saved.defined());
  const auto gs = mx::ops::ssd_scan_bwd_cuda(d.x, d.dt, d.bias, d.scale, in.lo, in.hi, d.A, d.Bm, d.Cm, d.D, d.h,
                                             dy.to(kCuda, dtype), dhT.to(kCuda, at::kFloat), saved);
  EXPECT_TRUE(at::equal(gs.dx, gd.dx));
  EXPECT_TRUE(at::equal(gs.dB, gd.dB));
  EXPECT_TRUE(at::equal(gs.dC, gd.dC));
  EXPECT_TRUE(at::equal(gs.dh0, gd.dh0));
  chk("ddt(saved)", gs.ddt_raw, g.ddt_raw);
  chk("dscale(saved)", gs.dscale, g.dscale);
  if (!c.bf16) {
    EXPECT_LE(err_rms(gs.ddt_raw, gd.ddt_raw), 1e-5);
    EXPECT_LE(err_rms(gs.dscale, gd.dscale), 1e-5);
  }
  std::cout << "[ssd bwd] " << (c.bf16 ? "bf16" : "fp32") << " L=" << c.L << " H=" << c.H << " G=" << c.G
            << " N=" << c.N << ": max/mean" << line << " (tol " << sci(tol) << " / " << sci(tol_mean) << ")\n";
#endif
}

std::vector<FwdCase> bwd_cases() {
  std::vector<FwdCase> cs;
  for (bool bf : {false, true}) {
    cs.push_back({1, 8, 8, 64, bf});
    cs.push_back({255, 8, 1, 128, bf});
    cs.push_back({256, 8, 8, 256, bf});
    cs.push_back({257, 8, 1, 64, bf});
    cs.push_back({4096, 8, 8, 128, bf});
    cs.push_back({65536, 2, 1, 64, bf});
  }
  return cs;
}
INSTANTIATE_TEST_SUITE_P(Cases, CudaSsdBackward, ::testing::ValuesIn(bwd_cases()), [](const auto& i) {
  const FwdCase& c = i.param;
  return std::string(c.bf16 ? "bf16" : "fp32") + "_L" + std::to_string(c.L) + "_H" + std::to_string(c.H) + "_G" +
         std::to_string(c.G) + "_N" + std::to_string(c.N);
});

TEST(CudaSsdPaths, RecurrentChunkedAndSegmentsAgree) {
  REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  for (int64_t L : {1, 7, 32}) {
    const In in = make_inputs(2, L, 4, 2, 128, at::kFloat, 2, false, 3 + L);
    Dev a = to_dev(in, at::kFloat), b = to_dev(in, at::kFloat);
    auto y_rec = mx::ops::ssd_scan_cuda(a.x, a.dt, a.bias, a.scale, 0.0, INFINITY, a.A, a.Bm, a.Cm, a.D, a.h, false);
    auto y_chk = mx::ops::ssd_scan_cuda(b.x, b.dt, b.bias, b.scale, 0.0, INFINITY, b.A, b.Bm, b.Cm, b.D, b.h, true);
    EXPECT_LE(err_rms(y_rec, y_chk), 1e-5) << "L=" << L;
    EXPECT_LE(err_rms(a.h, b.h), 1e-5) << "L=" << L;
  }
  // 1000 tokens in one call against segments of 300, 1, 299, 400 tokens chained through h.
  const In in = make_inputs(1, 1000, 4, 1, 64, at::kFloat, 1, false, 99);
  Dev full = to_dev(in, at::kFloat), seg = to_dev(in, at::kFloat);
  auto y_full = mx::ops::ssd_scan(full.x, full.dt, full.bias, full.scale, 0.0, INFINITY, full.A, full.Bm, full.Cm,
                                  full.D, full.h);
  std::vector<at::Tensor> parts;
  int64_t t0 = 0;
  for (int64_t n : {300, 1, 299, 400}) {
    auto s = [&](const at::Tensor& t) { return t.narrow(1, t0, n); };
    parts.push_back(mx::ops::ssd_scan(s(seg.x), s(seg.dt), seg.bias, seg.scale, 0.0, INFINITY, seg.A, s(seg.Bm),
                                      s(seg.Cm), seg.D, seg.h));
    t0 += n;
  }
  EXPECT_LE(err_rms(at::cat(parts, 1), y_full), 1e-5);
  EXPECT_LE(err_rms(seg.h, full.h), 1e-5);
#endif
}

TEST(CudaGatedNorm, KernelMatchesReference) {
  REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  at::manual_seed(5);
  for (auto dtype : {at::kFloat, at::kBFloat16})
    for (int64_t G : {1, 8}) {
      const int64_t E = 512;
      auto y = at::randn({2, 37, E}).to(kCuda, dtype);
      auto zw = at::randn({2, 37, E + 100}).to(kCuda, dtype);
      auto z = zw.narrow(-1, 30, E);  // strided, as the model's z
      auto w = at::randn({E}).to(kCuda, dtype);
      auto got = mx::ops::gated_group_rmsnorm(y, z, w, G, 1e-5);
      auto ref = mx::ref::gated_group_rmsnorm(y.cpu().to(at::kDouble), z.cpu().to(at::kDouble),
                                              w.cpu().to(at::kDouble), G, 1e-5);
      ASSERT_EQ(got.scalar_type(), dtype);
      const double e = err_rms(got, ref);
      EXPECT_LE(e, dtype == at::kFloat ? 1e-5 : 2 * bf16_floor(ref) + 1e-3) << "G=" << G;
    }
#endif
}

// ---- organism-mamba2-7m on CUDA -------------------------------------------------------------------------
std::filesystem::path organism_dir() { return mx::test::source_dir() / "assets" / "models" / "organism-mamba2-7m"; }

double max_rel(const at::Tensor& a, const at::Tensor& b) {
  auto bd = b.to(at::kDouble).cpu();
  return (a.to(at::kDouble).cpu() - bd).abs().max().item<double>() / bd.abs().max().item<double>();
}

TEST(CudaMamba2Organism, LogitsMatchCpu) {
  REQUIRE_CUDA();
#ifdef MX_WITH_CUDA
  at::globalContext().setAllowTF32CuBLAS(false);
  const auto ckpt = mx::load_checkpoint(organism_dir());
  mx::ModelOptions cpu_opts, gpu_opts, bf_opts;
  gpu_opts.device = kCuda;
  bf_opts.device = kCuda, bf_opts.dtype = at::kBFloat16;
  const mx::MambaLM cpu(ckpt, cpu_opts), gpu(ckpt, gpu_opts), gbf(ckpt, bf_opts);
  at::manual_seed(3);
  const auto ids = at::randint(0, ckpt.config.vocab_size, {2, 700}, at::kLong);
  const auto ref = cpu.forward(ids);                          // (2, 700, V) fp32
  const auto got = gpu.forward(ids.to(kCuda));
  const double e32 = max_rel(got, ref);
  EXPECT_LE(e32, 1e-5) << "fp32 CUDA logits against CPU";
  const double ebf = max_rel(gbf.forward(ids.to(kCuda)), ref);
  EXPECT_LE(ebf, 5e-2) << "bf16 CUDA logits against CPU fp32";
  // Recurrent steps after a 300-token prefix, and segments of 250 / 450 tokens, against the full forward.
  mx::State st;
  gpu.forward(ids.narrow(1, 0, 300).to(kCuda), {}, &st);
  double estep = 0;
  for (int64_t t = 300; t < 316; ++t)
    estep = std::max(estep, max_rel(gpu.step(ids.select(1, t).to(kCuda), st), got.select(1, t)));
  EXPECT_LE(estep, 1e-5) << "steps against the full forward";
  mx::State st2;
  auto a = gpu.forward(ids.narrow(1, 0, 250).to(kCuda), {}, &st2);
  auto b = gpu.forward(ids.narrow(1, 250, 450).to(kCuda), {}, &st2);
  const double eseg = max_rel(at::cat({a, b}, 1), got);
  EXPECT_LE(eseg, 1e-5) << "segments against the full forward";
  std::cout << "[organism-mamba2-7m] CUDA fp32 vs CPU " << sci(e32) << ", CUDA bf16 vs CPU fp32 " << sci(ebf)
            << ", steps " << sci(estep) << ", segments " << sci(eseg) << "\n";
#endif
}

}  // namespace
