// conv1d and add+RMSNorm checks of the standalone kernel program, against the float64 references
// (kernels/conv1d/conv1d_ref.h, kernels/norm/norm_ref.h) on fresh random inputs rounded to the I/O type.
// Tolerances: fp32 outputs max|err| <= 1e-5 x max|ref| (these are a few fp32 operations per element; the
// weight gradients sum over L); bf16 outputs within 1 bf16 ulp after 1e-5 x RMS of fp32 slack.
#pragma once
#include <string>
#include <vector>

#include "conv1d/conv1d.h"
#include "conv1d/conv1d_ref.h"
#include "dev/harness.h"
#include "norm/norm.h"
#include "norm/norm_ref.h"

namespace mx::dev {

struct SimpleResult {
  std::string json, worst;
  bool pass = true;
};

namespace cnt {
struct Checker {
  Json metrics;
  SimpleResult res;
  double worst_ratio = -1;
  void check(const char* name, const std::vector<double>& got, const std::vector<double>& ref, bool bf16_out) {
    const Err e = compare(got, ref, 1e-5);
    const double v = bf16_out ? e.max_ulps : e.rel_max(), tol = bf16_out ? 1.0 : 1e-5;
    metrics.num(name, v);
    if (!(v <= tol)) res.pass = false;
    const double ratio = std::isfinite(v) ? v / tol : INFINITY;
    if (ratio >= worst_ratio) {
      worst_ratio = ratio;
      char buf[96];
      std::snprintf(buf, sizeof(buf), "%s=%.2e", name, v);
      res.worst = buf;
    }
  }
};
}  // namespace cnt

struct ConvCase {
  int64_t B = 1, L = 1, C = 100, K = 4;
  IoType io = IoType::F32;
  bool bias = true, strided = false;
};

inline SimpleResult run_conv_case(const ConvCase& c, uint64_t seed) {
  Rng rng(seed);
  kern::ref::Conv1dProblem p;
  p.B = c.B, p.L = c.L, p.C = c.C, p.K = c.K;
  p.x = rng.normals(c.B * c.L * c.C);
  p.weight = rng.normals(c.C * c.K, 0.5);
  if (c.bias) p.bias = rng.normals(c.C);
  p.state = rng.normals(c.B * c.C * (c.K - 1));
  for (auto* v : {&p.x, &p.weight, &p.bias, &p.state}) round_all(*v, c.io);
  std::vector<double> dy = rng.normals(c.B * c.L * c.C), dso = rng.normals(c.B * c.C * (c.K - 1));
  round_all(dy, c.io);
  round_all(dso, IoType::F32);
  std::vector<double> new_state;
  const auto y_ref = kern::ref::conv1d_ref_fwd(p, new_state);
  const auto g_ref = kern::ref::conv1d_ref_bwd(p, dy, dso);

  const int64_t rows = c.B * c.L, xsl = c.strided ? 2 * c.C : c.C;
  std::vector<double> xbuf(rows * xsl, std::nan(""));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < c.C; ++i) xbuf[r * xsl + i] = p.x[r * c.C + i];
  DevBuf d_x = upload(xbuf, c.io), d_w = upload(p.weight, c.io), d_b = c.bias ? upload(p.bias, c.io) : DevBuf();
  DevBuf d_st = upload(p.state, c.io), d_st0 = upload(p.state, c.io);
  const size_t es = io_size(c.io);
  DevBuf d_y(rows * c.C * es);
  kern::Conv1dArgs a;
  a.batch = c.B, a.len = c.L, a.channels = c.C, a.width = c.K, a.io = c.io;
  a.x = d_x.get(), a.x_sb = c.L * xsl, a.x_sl = xsl, a.weight = d_w.get(), a.bias = d_b.get(), a.state_in = d_st.get();
  DEV_CHECK(kern::conv1d_fwd(a, d_y.get(), c.L * c.C, c.C, d_st.get(), nullptr));  // state updated in place
  DEV_CHECK(cudaDeviceSynchronize());

  DevBuf d_dy = upload(dy, c.io), d_dso = upload(dso, IoType::F32), d_dx(rows * c.C * es);
  DevBuf d_dw(c.C * c.K * 4), d_db(c.C * 4), d_dsi(c.B * c.C * (c.K - 1) * 4);
  kern::Conv1dArgs ab = a;
  ab.state_in = d_st0.get();
  kern::Conv1dBwdArgs g;
  g.dy = d_dy.get(), g.dy_sb = c.L * c.C, g.dy_sl = c.C, g.dstate_out = d_dso.as<float>();
  g.dx = d_dx.get(), g.dx_sb = c.L * c.C, g.dx_sl = c.C;
  g.dweight = d_dw.as<float>(), g.dbias = d_db.as<float>(), g.dstate_in = d_dsi.as<float>();
  DEV_CHECK(kern::conv1d_bwd(ab, g, nullptr));
  DEV_CHECK(cudaDeviceSynchronize());

  const bool bf = c.io == IoType::BF16;
  cnt::Checker ck;
  ck.check("y", download(d_y, rows * c.C, c.io), y_ref, bf);
  ck.check("state_out", download(d_st, c.B * c.C * (c.K - 1), c.io), new_state, false);
  ck.check("dx", download(d_dx, rows * c.C, c.io), g_ref.dx, bf);
  ck.check("dweight", download(d_dw, c.C * c.K, IoType::F32), g_ref.dweight, false);
  if (c.bias) ck.check("dbias", download(d_db, c.C, IoType::F32), g_ref.dbias, false);
  ck.check("dstate_in", download(d_dsi, c.B * c.C * (c.K - 1), IoType::F32), g_ref.dstate_in, false);
  Json j;
  j.str("kind", "conv1d").num("B", c.B).num("L", c.L).num("C", c.C).num("K", c.K).str("io", io_name(c.io));
  j.boolean("bias", c.bias).boolean("strided", c.strided).raw("metrics", ck.metrics.dump()).boolean("pass", ck.res.pass);
  ck.res.json = j.dump();
  return ck.res;
}

struct NormCase {
  int64_t rows = 1, D = 768;
  IoType x_io = IoType::F32, y_io = IoType::F32;
  bool residual = true;
};

inline SimpleResult run_norm_case(const NormCase& c, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> x = rng.normals(c.rows * c.D), res, w = rng.normals(c.D);
  if (c.residual) res = rng.normals(c.rows * c.D, 3.0);
  round_all(x, c.x_io);
  round_all(res, IoType::F32);
  round_all(w, IoType::F32);
  std::vector<double> rout_ref;
  const auto y_ref = kern::ref::add_rmsnorm_ref(c.rows, c.D, x, res, w, 1e-5, rout_ref);
  DevBuf d_x = upload(x, c.x_io), d_res = c.residual ? upload(res, IoType::F32) : DevBuf();
  DevBuf d_w = upload(w, IoType::F32), d_y(c.rows * c.D * io_size(c.y_io)), d_rout(c.rows * c.D * 4);
  kern::AddNormArgs a;
  a.rows = c.rows, a.dim = c.D, a.x_io = c.x_io, a.x = d_x.get(), a.x_srow = c.D;
  a.residual_in = d_res.as<float>();
  a.residual_out = c.residual ? d_res.as<float>() : d_rout.as<float>();  // in place when there is one
  a.weight = d_w.as<float>(), a.y_io = c.y_io, a.y = d_y.get(), a.eps = 1e-5f;
  DEV_CHECK(kern::add_rmsnorm_fwd(a, nullptr));
  DEV_CHECK(cudaDeviceSynchronize());
  cnt::Checker ck;
  ck.check("y", download(d_y, c.rows * c.D, c.y_io), y_ref, c.y_io == IoType::BF16);
  ck.check("residual_out", download(c.residual ? d_res : d_rout, c.rows * c.D, IoType::F32), rout_ref, false);
  Json j;
  j.str("kind", "add_rmsnorm").num("rows", c.rows).num("D", c.D).str("x_io", io_name(c.x_io));
  j.str("y_io", io_name(c.y_io)).boolean("residual", c.residual).raw("metrics", ck.metrics.dump());
  j.boolean("pass", ck.res.pass);
  ck.res.json = j.dump();
  return ck.res;
}

}  // namespace mx::dev
