// S6 (selective scan) checks of the standalone kernel program: fresh random inputs per case, the forward and
// every gradient against the float64 reference (kernels/s6/s6_ref.h), tolerances of kernels.md §5/§6:
//   fp32 I/O: out max|err| <= 1e-5 x RMS(out), or 3x the error of a plain sequential fp32 evaluation of the
//             same inputs where that is larger (out_fp32_sequential in the JSON: with Δ down to 1e-4 the state
//             integrates ~10^4 tokens and fp32 itself errs ~1e-5 x RMS on heavy-tailed outputs);
//             hT and every gradient max|err| <= 1e-5 x max|ref|
//   bf16 I/O: out, du, d(delta), dz within 1 bf16 ulp of the exact value (after 1e-5 x RMS of fp32 slack);
//             fp32 / fp64 outputs (hT, dB, dC, dA, dD, d(dt_bias), d(s), dh0) as in fp32
// Inputs are rounded to the I/O type first, so the reference sees exactly what the kernel sees. Δ is drawn
// log-uniform in [1e-4, 10] (delta_raw is the inverse softplus minus the bias). With `strided`, u / delta /
// z / out live in rows of E + 3 and B, C in rows [5 pad | B | C] of a shared buffer, as the model's views do;
// the padding holds NaNs, so a wrong read shows.
#pragma once
#include <string>
#include <vector>

#include "dev/harness.h"
#include "s6/s6.h"
#include "s6/s6_ref.h"

namespace mx::dev {

struct S6Case {
  int64_t B = 1, L = 1, E = 40, N = 16;
  IoType io = IoType::F32;
  bool z = true;
  int scale = 0;  // 0 none, 1 scalar, 2 per channel
  bool h0 = false, dhT = false;
  int segments = 0;  // 0 = automatic
  bool strided = false;
};

struct S6Result {
  std::string json;
  bool pass = true;
  std::string worst;  // "name=value" of the metric closest to its tolerance
  double worst_ratio = 0;
};

namespace s6t {

// A (rows, width) row-major host array placed in a buffer of `total` elements at offset + r * stride.
inline std::vector<double> scatter(const std::vector<double>& v, int64_t rows, int64_t width, int64_t stride,
                                   int64_t offset, std::vector<double>& buf) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < width; ++i) buf[offset + r * stride + i] = v[r * width + i];
  return buf;
}
inline std::vector<double> gather(const std::vector<double>& buf, int64_t rows, int64_t width, int64_t stride,
                                  int64_t offset) {
  std::vector<double> v(rows * width);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < width; ++i) v[r * width + i] = buf[offset + r * stride + i];
  return v;
}

inline kern::ref::S6Problem make_problem(const S6Case& c, Rng& rng) {
  kern::ref::S6Problem p;
  p.B = c.B, p.L = c.L, p.E = c.E, p.N = c.N;
  const int64_t BLE = c.B * c.L * c.E, BLN = c.B * c.L * c.N;
  p.u = rng.normals(BLE);
  if (c.z) p.z = rng.normals(BLE, 1.5);
  p.Bm = rng.normals(BLN);
  p.Cm = rng.normals(BLN);
  p.A.resize(c.E * c.N);
  for (auto& a : p.A) a = -std::exp(rng.uniform(std::log(0.5), std::log(16.0)));
  p.D = rng.normals(c.E);
  p.dt_bias.resize(c.E);
  for (auto& b : p.dt_bias) b = rng.uniform(-1.0, 1.0);
  if (c.scale == 1) p.dt_scale = {rng.uniform(0.5, 2.0)};
  if (c.scale == 2) {
    p.dt_scale.resize(c.E);
    for (auto& s : p.dt_scale) s = rng.uniform(0.5, 2.0);
  }
  if (c.h0) p.h0 = rng.normals(c.B * c.E * c.N);
  for (auto* v : {&p.A, &p.D, &p.dt_bias, &p.dt_scale, &p.h0}) round_all(*v, IoType::F32);
  p.delta.resize(BLE);
  for (int64_t i = 0; i < BLE; ++i) {
    const int64_t e = i % c.E;
    const double s = p.dt_scale.empty() ? 1.0 : p.dt_scale[p.dt_scale.size() == 1 ? 0 : e];
    const double sp = std::exp(rng.uniform(std::log(1e-4), std::log(10.0))) / s;
    const double x = sp > 20.0 ? sp : std::log(std::expm1(sp));
    p.delta[i] = x - p.dt_bias[e];
  }
  for (auto* v : {&p.u, &p.z, &p.Bm, &p.Cm, &p.delta}) round_all(*v, c.io);
  return p;
}

}  // namespace s6t

inline S6Result run_s6_case(const S6Case& c, uint64_t seed) {
  using namespace s6t;
  Rng rng(seed);
  const auto p = make_problem(c, rng);
  const int64_t B = c.B, L = c.L, E = c.E, N = c.N, rows = B * L;
  const double nan = std::nan("");
  // Activation layout: rows of `asl` elements; B / C: rows of `bsl` = [pad | B | C].
  const int64_t asl = c.strided ? E + 3 : E, pad = c.strided ? 5 : 0, bsl = c.strided ? pad + 2 * N : N;
  auto act_buf = [&](const std::vector<double>& v) {
    std::vector<double> buf(rows * asl, nan);
    scatter(v, rows, E, asl, 0, buf);
    return upload(buf, c.io);
  };
  std::vector<double> bc(c.strided ? rows * bsl : 0, nan);
  DevBuf d_u = act_buf(p.u), d_dl = act_buf(p.delta), d_z = c.z ? act_buf(p.z) : DevBuf();
  DevBuf d_bc, d_B, d_C;
  if (c.strided) {
    scatter(p.Bm, rows, N, bsl, pad, bc);
    scatter(p.Cm, rows, N, bsl, pad + N, bc);
    d_bc = upload(bc, c.io);
  } else {
    d_B = upload(p.Bm, c.io);
    d_C = upload(p.Cm, c.io);
  }
  DevBuf d_A = upload(p.A, IoType::F32), d_D = upload(p.D, IoType::F32), d_bias = upload(p.dt_bias, IoType::F32);
  DevBuf d_s = p.dt_scale.empty() ? DevBuf() : upload(p.dt_scale, IoType::F32);
  DevBuf d_h0 = p.h0.empty() ? DevBuf() : upload(p.h0, IoType::F32);

  kern::S6Inputs in;
  in.batch = B, in.len = L, in.dim = E, in.dstate = N, in.io = c.io;
  in.u = d_u.get(), in.u_sb = L * asl, in.u_sl = asl;
  in.delta = d_dl.get(), in.delta_sb = L * asl, in.delta_sl = asl;
  if (c.z) in.z = d_z.get(), in.z_sb = L * asl, in.z_sl = asl;
  const size_t es = io_size(c.io);
  in.B = c.strided ? static_cast<const void*>(d_bc.as<char>() + pad * es) : d_B.get();
  in.C = c.strided ? static_cast<const void*>(d_bc.as<char>() + (pad + N) * es) : d_C.get();
  in.B_sb = in.C_sb = L * bsl;
  in.B_sl = in.C_sl = bsl;
  in.A = d_A.as<float>(), in.D = d_D.as<float>(), in.dt_bias = d_bias.as<float>();
  in.dt_scale = d_s.as<float>();
  in.dt_scale_stride = c.scale == 2 ? 1 : 0;
  in.num_segments = c.segments;

  const size_t ws_bytes = std::max(kern::s6_fwd_workspace_bytes(in), kern::s6_bwd_workspace_bytes(in));
  DevBuf ws(ws_bytes);
  const int64_t nchunks = kern::s6_num_chunks(L);
  DevBuf d_out(rows * asl * es), d_hT(B * E * N * 4), d_ckpt(B * nchunks * E * N * 4);
  kern::S6FwdArgs fa;
  fa.h0 = d_h0.as<float>(), fa.hT = d_hT.as<float>(), fa.out = d_out.get(), fa.out_sb = L * asl, fa.out_sl = asl;
  fa.ckpt = d_ckpt.as<float>();
  DEV_CHECK(kern::s6_fwd(in, fa, ws.get(), nullptr));
  DEV_CHECK(cudaDeviceSynchronize());

  // Inference form: no checkpoints, the state updated in place (as the library glue calls it).
  DevBuf d_h(B * E * N * 4), d_out2(rows * asl * es);
  if (!p.h0.empty()) DEV_CHECK(cudaMemcpy(d_h.get(), d_h0.get(), B * E * N * 4, cudaMemcpyDeviceToDevice));
  else DEV_CHECK(cudaMemset(d_h.get(), 0, B * E * N * 4));
  kern::S6FwdArgs fi = fa;
  fi.h0 = fi.hT = d_h.as<float>(), fi.out = d_out2.get(), fi.ckpt = nullptr;
  DEV_CHECK(kern::s6_fwd(in, fi, ws.get(), nullptr));
  DEV_CHECK(cudaDeviceSynchronize());

  // Backward
  std::vector<double> dout = rng.normals(rows * E), dhT = c.dhT ? rng.normals(B * E * N) : std::vector<double>();
  round_all(dout, c.io);
  round_all(dhT, IoType::F32);
  DevBuf d_dout = act_buf(dout), d_dhT = dhT.empty() ? DevBuf() : upload(dhT, IoType::F32);
  DevBuf d_du(rows * asl * es), d_dd(rows * asl * es), d_dz(rows * asl * es);
  DevBuf d_dB(rows * N * 4), d_dC(rows * N * 4), d_dA(E * N * 8), d_dD(E * 8), d_dbias(E * 8), d_ds(E * 8),
      d_dh0(B * E * N * 4);
  kern::S6BwdArgs ba;
  ba.h0 = d_h0.as<float>(), ba.ckpt = d_ckpt.as<float>();
  ba.dout = d_dout.get(), ba.dout_sb = L * asl, ba.dout_sl = asl, ba.dhT = d_dhT.as<float>();
  ba.du = d_du.get(), ba.du_sb = L * asl, ba.du_sl = asl;
  ba.ddelta = d_dd.get(), ba.ddelta_sb = L * asl, ba.ddelta_sl = asl;
  if (c.z) ba.dz = d_dz.get(), ba.dz_sb = L * asl, ba.dz_sl = asl;
  ba.dB = d_dB.as<float>(), ba.dC = d_dC.as<float>(), ba.dA = d_dA.as<double>(), ba.dD = d_dD.as<double>();
  ba.ddt_bias = d_dbias.as<double>(), ba.ddt_scale = d_ds.as<double>(), ba.dh0 = d_dh0.as<float>();
  DEV_CHECK(kern::s6_bwd(in, ba, ws.get(), nullptr));
  DEV_CHECK(cudaDeviceSynchronize());

  const auto rf = kern::ref::s6_ref_fwd(p);
  const auto rg = kern::ref::s6_ref_bwd(p, dout, dhT);
  auto act = [&](const DevBuf& d) { return gather(download(d, rows * asl, c.io), rows, E, asl, 0); };

  double out_floor = 0;  // fp32: 3x the error of a plain sequential fp32 evaluation on the same inputs
  S6Result res;
  Json metrics;
  const bool bf = c.io == IoType::BF16;
  // kind 0: out-style (fp32: max|err|/RMS <= 1e-5; bf16: ulps <= 1); kind 1: max|err|/max|ref| <= 1e-5
  auto check = [&](const char* name, const std::vector<double>& got, const std::vector<double>& ref, int kind) {
    const Err e = compare(got, ref, 1e-5);
    double v, tol;
    if (kind == 0 && bf) v = e.max_ulps, tol = 1.0;
    else if (kind == 0 && std::string(name) == "out") v = e.rel_rms(), tol = std::max(1e-5, out_floor);
    else v = e.rel_max(), tol = 1e-5;
    metrics.num(name, v);
    const double ratio = std::isfinite(v) ? v / tol : INFINITY;
    if (!(v <= tol)) res.pass = false;
    if (ratio >= res.worst_ratio) {
      res.worst_ratio = ratio;
      char buf[96];
      std::snprintf(buf, sizeof(buf), "%s=%.2e", name, v);
      res.worst = buf;
    }
  };
  const auto out = act(d_out);
  if (!bf) {  // context: the same recurrence evaluated sequentially in fp32 (a fp32-state floor)
    const Err e32 = compare(kern::ref::s6_ref_fwd<float>(p).out, rf.out);
    const Err ek = compare(out, rf.out);
    out_floor = 3 * e32.rel_rms();
    metrics.num("out_fp32_sequential", e32.rel_rms()).num("out_rel_max", ek.rel_max());
    metrics.num("out_mean_abs_over_rms", [&] {
      double m = 0;
      for (size_t i = 0; i < out.size(); ++i) m += std::fabs(out[i] - rf.out[i]);
      return ek.ref_rms > 0 ? m / double(out.size()) / ek.ref_rms : 0.0;
    }());
  }
  check("out", out, rf.out, 0);
  check("hT", download(d_hT, B * E * N, IoType::F32), rf.hT, 1);
  {
    const auto out2 = act(d_out2);
    const auto h2 = download(d_h, B * E * N, IoType::F32);
    double diff = 0;
    for (size_t i = 0; i < out.size(); ++i) diff = std::max(diff, std::fabs(out2[i] - out[i]));
    const auto hT = download(d_hT, B * E * N, IoType::F32);
    for (size_t i = 0; i < hT.size(); ++i) diff = std::max(diff, std::fabs(h2[i] - hT[i]));
    // Same kernels and plan, so equal up to the order of the fp64 atomics summing Δ over time segments.
    double scale = 1e-30;
    for (double v : out) scale = std::max(scale, std::fabs(v));
    metrics.num("inplace_vs_ckpt_run_rel", diff / scale);
    if (!(diff <= 1e-6 * scale)) res.pass = false;
  }
  check("du", act(d_du), rg.du, 0);
  check("ddelta", act(d_dd), rg.ddelta, 0);
  if (c.z) check("dz", act(d_dz), rg.dz, 0);
  check("dB", download(d_dB, rows * N, IoType::F32), rg.dB, 1);
  check("dC", download(d_dC, rows * N, IoType::F32), rg.dC, 1);
  check("dA", download_f64(d_dA, E * N), rg.dA, 1);
  check("dD", download_f64(d_dD, E), rg.dD, 1);
  check("ddt_bias", download_f64(d_dbias, E), rg.ddt_bias, 1);
  check("dscale", download_f64(d_ds, E), rg.ddt_scale, 1);
  check("dh0", download(d_dh0, B * E * N, IoType::F32), rg.dh0, 1);

  Json j;
  j.str("kind", "s6").num("B", B).num("L", L).num("E", E).num("N", N).str("io", io_name(c.io));
  j.boolean("z", c.z).num("scale", c.scale).boolean("h0", c.h0).boolean("dhT", c.dhT).num("segments", c.segments);
  j.boolean("strided", c.strided).num("seed", double(seed)).raw("metrics", metrics.dump()).boolean("pass", res.pass);
  res.json = j.dump();
  return res;
}

}  // namespace mx::dev
