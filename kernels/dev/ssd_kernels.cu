// Standalone test + benchmark of the Mamba2 SSD kernels (kernels/ssd), built by nvcc alone (no LibTorch):
//   nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -I kernels kernels/dev/ssd_kernels.cu \
//        kernels/ssd/ssd_fwd.cu kernels/ssd/ssd_bwd.cu -o ssd_kernels
//   ./ssd_kernels [--test] [--quick] [--bench] [--len L] [--profile] [--out DIR] [--seed S]
// --test runs the forward and the backward against the float64 sequential reference (kernels/ssd/ssd_ref.h) on
// random inputs (rounded to the io type first) over lengths, n_groups, d_state, Δ scale modes, clamps, initial
// and final states, strided (model-layout) inputs; --quick keeps small shapes (for the CPU emulator:
// g++ -std=c++20 -O1 -DMX_CPU_EMU -I kernels -x c++ ... -lpthread). --bench times forward and forward+backward at
// H = 80, P = 64, N = 128, batch 1, bf16 for L = 65536, 131072, 524288 (medians of per-run CUDA event timings)
// with a per-kernel breakdown at 65536 and the memory each needs (--len L: that length only). Writes
// DIR/ssd_kernels.json; exit status 1 when a check fails.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "dev/harness.h"
#include "ssd/ssd.h"
#include "ssd/ssd_ref.h"

using namespace mx::dev;
using mx::kern::IoType;

namespace {

struct Case {
  IoType io = IoType::F32;
  int64_t B = 1, L = 64, H = 2, G = 1, N = 64;
  int scale = 0;  // 0 none, 1 scalar, 2 per head
  bool h0 = false, dhT = false, clamp = false, strided = false, chunked = false, bwd = true;
  std::string name() const {
    char s[200];
    std::snprintf(s, sizeof s, "%s B%lld L%lld H%lld G%lld N%lld s%d%s%s%s%s%s", io_name(io), (long long)B,
                  (long long)L, (long long)H, (long long)G, (long long)N, scale, h0 ? " h0" : "", dhT ? " dhT" : "",
                  clamp ? " clamp" : "", strided ? " strided" : "", chunked ? " chunked" : "");
    return s;
  }
};

// Inputs in the model's layout when strided: x, B, C are views of one (B, L, H·P + 2GN + 8) buffer and dt of a
// (B, L, H + 8) buffer; otherwise each is contiguous.
struct Inputs {
  mx::kern::ref::SsdRefIn r;
  DevBuf xbc, dtb, bias, A, D, scale, h0;
  mx::kern::SsdArgs a;
};

Inputs make_inputs(const Case& c, Rng& rng) {
  Inputs in;
  auto& r = in.r;
  const int64_t P = 64, HP = c.H * P, GN = c.G * c.N;
  r.B = c.B, r.L = c.L, r.H = c.H, r.P = P, r.G = c.G, r.N = c.N;
  r.x = rng.normals(c.B * c.L * HP);
  r.dt = rng.normals(c.B * c.L * c.H, 0.5);
  r.Bm = rng.normals(c.B * c.L * GN, 0.5);
  r.Cm = rng.normals(c.B * c.L * GN, 0.5);
  for (int64_t h = 0; h < c.H; ++h) {
    const double dt0 = std::exp(rng.uniform(std::log(1e-3), std::log(1e-1)));
    r.dt_bias.push_back(dt0 + std::log(-std::expm1(-dt0)));  // softplus⁻¹
    r.A.push_back(-std::exp(rng.uniform(0.0, std::log(16.0))));
    r.D.push_back(rng.uniform(-1, 1));
  }
  if (c.scale == 1) r.scale = {rng.uniform(0.5, 2.0)};
  if (c.scale == 2)
    for (int64_t h = 0; h < c.H; ++h) r.scale.push_back(rng.uniform(0.5, 2.0));
  if (c.clamp) r.dt_min = 2e-3, r.dt_max = 0.05;
  if (c.h0) r.h0 = rng.normals(c.B * c.H * P * c.N, 0.5);
  round_all(r.x, c.io), round_all(r.dt, c.io), round_all(r.Bm, c.io), round_all(r.Cm, c.io);
  for (auto* v : {&r.dt_bias, &r.A, &r.D, &r.scale, &r.h0}) round_all(*v, IoType::F32);

  const int64_t W = c.strided ? HP + 2 * GN + 8 : 0, Wd = c.strided ? c.H + 8 : c.H;
  auto& a = in.a;
  a.batch = c.B, a.len = c.L, a.heads = c.H, a.head_dim = P, a.groups = c.G, a.dstate = c.N, a.io = c.io;
  a.force_chunked = c.chunked;
  const size_t es = io_size(c.io);
  if (c.strided) {
    std::vector<double> buf(c.B * c.L * W, 0.0);
    for (int64_t bl = 0; bl < c.B * c.L; ++bl) {
      std::copy(&r.x[bl * HP], &r.x[(bl + 1) * HP], &buf[bl * W]);
      std::copy(&r.Bm[bl * GN], &r.Bm[(bl + 1) * GN], &buf[bl * W + HP]);
      std::copy(&r.Cm[bl * GN], &r.Cm[(bl + 1) * GN], &buf[bl * W + HP + GN]);
    }
    in.xbc = upload(buf, c.io);
    char* base = in.xbc.as<char>();
    a.x = base, a.x_sb = c.L * W, a.x_sl = W, a.x_sh = P;
    a.Bm = base + HP * es, a.B_sb = c.L * W, a.B_sl = W, a.B_sg = c.N;
    a.Cm = base + (HP + GN) * es, a.C_sb = c.L * W, a.C_sl = W, a.C_sg = c.N;
  } else {
    std::vector<double> buf(r.x);
    buf.insert(buf.end(), r.Bm.begin(), r.Bm.end());
    buf.insert(buf.end(), r.Cm.begin(), r.Cm.end());
    in.xbc = upload(buf, c.io);
    char* base = in.xbc.as<char>();
    a.x = base, a.x_sb = c.L * HP, a.x_sl = HP, a.x_sh = P;
    a.Bm = base + r.x.size() * es, a.B_sb = c.L * GN, a.B_sl = GN, a.B_sg = c.N;
    a.Cm = base + (r.x.size() + r.Bm.size()) * es, a.C_sb = c.L * GN, a.C_sl = GN, a.C_sg = c.N;
  }
  std::vector<double> dtbuf(c.B * c.L * Wd, 0.0);
  for (int64_t bl = 0; bl < c.B * c.L; ++bl) std::copy(&r.dt[bl * c.H], &r.dt[(bl + 1) * c.H], &dtbuf[bl * Wd]);
  in.dtb = upload(dtbuf, c.io);
  a.dt = in.dtb.get(), a.dt_sb = c.L * Wd, a.dt_sl = Wd, a.dt_sh = 1;
  in.bias = upload(r.dt_bias, IoType::F32), in.A = upload(r.A, IoType::F32), in.D = upload(r.D, IoType::F32);
  a.dt_bias = in.bias.as<float>(), a.A = in.A.as<float>(), a.D = in.D.as<float>();
  if (!r.scale.empty()) {
    in.scale = upload(r.scale, IoType::F32);
    a.dt_scale = in.scale.as<float>(), a.scale_per_head = r.scale.size() > 1;
  }
  a.dt_min = float(r.dt_min), a.dt_max = float(r.dt_max);
  if (c.h0) in.h0 = upload(r.h0, IoType::F32), a.h0 = in.h0.as<float>();
  return in;
}

struct Check {
  std::string what;
  Err e;
  double tol;
  double mean = 0, floor = 0;  // mean |err| / rms(ref); for io-type outputs, max error of rounding the reference
  double tol_mean = 1.0;
  bool ok() const { return e.finite && e.rel_rms() <= tol && mean <= tol_mean; }
};

Check check(const std::string& what, const std::vector<double>& got, const std::vector<double>& ref, double tol,
            IoType out_io) {
  Check c{what, compare(got, ref), tol};
  double s = 0;
  for (size_t i = 0; i < ref.size(); ++i) s += std::fabs(got[i] - ref[i]);
  c.mean = ref.empty() || c.e.ref_rms == 0 ? 0 : s / double(ref.size()) / c.e.ref_rms;
  if (out_io == IoType::BF16) {
    std::vector<double> rr(ref);
    round_all(rr, out_io);
    c.floor = compare(rr, ref).rel_rms();
    c.tol = 2 * c.floor + 1e-2;  // bf16 outputs: within twice the rounding of the exact result, plus 1e-2
  }
  return c;
}

bool g_all_ok = true;

std::string run_case(const Case& c, Rng& rng) {
  Inputs in = make_inputs(c, rng);
  const auto& r = in.r;
  const int64_t P = 64, n_y = c.B * c.L * c.H * P, n_h = c.B * c.H * P * c.N;
  std::vector<double> y_ref, hT_ref;
  mx::kern::ref::ssd_ref_fwd(r, y_ref, hT_ref);

  DevBuf y(n_y * io_size(c.io)), hT(n_h * 4);
  mx::kern::SsdFwdOut o;
  o.y = y.get(), o.y_sb = c.L * c.H * P, o.y_sl = c.H * P, o.y_sh = P, o.hT = hT.as<float>();
  DevBuf ws(std::max(mx::kern::ssd_fwd_workspace_bytes(in.a), mx::kern::ssd_bwd_workspace_bytes(in.a)));
  DEV_CHECK(mx::kern::ssd_fwd(in.a, o, ws.get(), nullptr));
  DEV_CHECK(cudaDeviceSynchronize());
  const bool bf = c.io == IoType::BF16;
  std::vector<Check> checks;
  checks.push_back(check("y", download(y, n_y, c.io), y_ref, bf ? 3e-2 : 5e-5, c.io));
  checks.push_back(check("hT", download(hT, n_h, IoType::F32), hT_ref, bf ? 6e-2 : 5e-5, IoType::F32));

  if (c.bwd) {
    std::vector<double> dy = rng.normals(n_y), dhT;
    round_all(dy, c.io);
    if (c.dhT) dhT = rng.normals(n_h, 0.5), round_all(dhT, IoType::F32);
    const auto g_ref = mx::kern::ref::ssd_ref_bwd(r, dy, dhT);
    DevBuf dyb = upload(dy, c.io), dhTb = c.dhT ? upload(dhT, IoType::F32) : DevBuf(16);
    const int64_t n_bc = c.B * c.L * c.G * c.N;
    DevBuf dx(n_y * io_size(c.io)), ddt(c.B * c.L * c.H * 4), dB(n_bc * 4), dC(n_bc * 4), dh0(n_h * 4),
        ds(c.H * 8);
    mx::kern::SsdBwdArgs g;
    g.dy = dyb.get(), g.dy_sb = c.L * c.H * P, g.dy_sl = c.H * P, g.dy_sh = P;
    g.dhT = c.dhT ? dhTb.as<float>() : nullptr;
    g.dx = dx.get(), g.dx_sb = c.L * c.H * P, g.dx_sl = c.H * P, g.dx_sh = P;
    g.ddt = ddt.as<float>(), g.dB = dB.as<float>(), g.dC = dC.as<float>(), g.dh0 = dh0.as<float>();
    g.dscale = ds.as<double>();
    mx::kern::SsdArgs a = in.a;
    a.force_chunked = true;  // the backward is always chunked
    DEV_CHECK(mx::kern::ssd_bwd(a, g, ws.get(), nullptr));
    DEV_CHECK(cudaDeviceSynchronize());
    const double tg = bf ? 0.15 : 2e-4;  // bf16 gradients: heavy-tailed max error, mean bounded below
    const IoType f32 = IoType::F32;
    checks.push_back(check("dx", download(dx, n_y, c.io), g_ref.dx, tg, c.io));
    checks.push_back(check("ddt", download(ddt, c.B * c.L * c.H, f32), g_ref.ddt, tg, f32));
    checks.push_back(check("dB", download(dB, n_bc, f32), g_ref.dB, tg, f32));
    checks.push_back(check("dC", download(dC, n_bc, f32), g_ref.dC, tg, f32));
    checks.push_back(check("dh0", download(dh0, n_h, f32), g_ref.dh0, tg, f32));
    checks.push_back(check("dscale", download_f64(ds, c.H), g_ref.dscale, tg, f32));

    // Again from the forward's kept intermediates (SsdFwdOut::saved -> SsdBwdArgs::saved) instead of the backward's
    // recompute: the same kernels on the same inputs, so dx, dB, dC and dh0 must agree bit for bit; d(dt) and
    // d(scale) sum through atomics (the reverse state passing's ⟨G_c, S_in⟩, the per-head d(scale)), so to fp32
    // rounding.
    DevBuf st(mx::kern::ssd_saved_bytes(a)), y2(n_y * io_size(c.io)), hT2(n_h * 4), dx2(n_y * io_size(c.io)),
        ddt2(c.B * c.L * c.H * 4), dB2(n_bc * 4), dC2(n_bc * 4), dh02(n_h * 4), ds2(c.H * 8),
        ws2(std::max(mx::kern::ssd_fwd_workspace_bytes(in.a, true), mx::kern::ssd_bwd_workspace_bytes(a, true)));
    mx::kern::SsdFwdOut o2 = o;
    o2.y = y2.get(), o2.hT = hT2.as<float>(), o2.saved = st.get();
    DEV_CHECK(mx::kern::ssd_fwd(in.a, o2, ws2.get(), nullptr));
    mx::kern::SsdBwdArgs g2 = g;
    g2.saved = st.get();
    g2.dx = dx2.get(), g2.ddt = ddt2.as<float>(), g2.dB = dB2.as<float>(), g2.dC = dC2.as<float>();
    g2.dh0 = dh02.as<float>(), g2.dscale = ds2.as<double>();
    DEV_CHECK(mx::kern::ssd_bwd(a, g2, ws2.get(), nullptr));
    DEV_CHECK(cudaDeviceSynchronize());
    auto same = [&](const char* what, const DevBuf& got, const DevBuf& want, size_t n, IoType io, double tol) {
      checks.push_back(Check{std::string(what) + "(saved)", compare(download(got, n, io), download(want, n, io)), tol});
    };
    same("dx", dx2, dx, n_y, c.io, 0);
    same("dB", dB2, dB, n_bc, f32, 0);
    same("dC", dC2, dC, n_bc, f32, 0);
    same("dh0", dh02, dh0, n_h, f32, 0);
    same("ddt", ddt2, ddt, c.B * c.L * c.H, f32, 1e-6);
    checks.push_back(Check{"dscale(saved)", compare(download_f64(ds2, c.H), download_f64(ds, c.H)), 1e-6});
    checks.push_back(check("y(saved)", download(y2, n_y, c.io), y_ref, bf ? 3e-2 : 5e-5, c.io));
  }
  Json j;
  j.str("case", c.name());
  bool ok = true;
  std::string line = c.name() + ":";
  for (auto& ch : checks) {
    if (bf && ch.what != "y" && ch.what != "dx" && ch.what != "hT" && ch.what != "dscale") ch.tol_mean = 5e-3;
    j.num(ch.what + "_err_rel_rms", ch.e.rel_rms());
    j.num(ch.what + "_err_mean_rel_rms", ch.mean);
    if (ch.floor > 0) j.num(ch.what + "_rounding_floor_rel_rms", ch.floor);
    char buf[128];
    std::snprintf(buf, sizeof buf, " %s %.1e/%.1e%s", ch.what.c_str(), ch.e.rel_rms(), ch.mean, ch.ok() ? "" : "(FAIL)");
    if (ch.floor > 0) std::snprintf(buf + std::strlen(buf), sizeof buf - std::strlen(buf), "[floor %.1e]", ch.floor);
    line += buf;
    ok = ok && ch.ok();
  }
  j.boolean("ok", ok);
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", line.c_str());
  std::fflush(stdout);
  g_all_ok = g_all_ok && ok;
  return j.dump();
}

std::vector<Case> cases(bool quick) {
  std::vector<Case> cs;
  int k = 0;
  auto add = [&](IoType io, int64_t L, int64_t H, int64_t G, int64_t N, int64_t B = 1) {
    Case c;
    c.io = io, c.L = L, c.H = H, c.G = G, c.N = N, c.B = B;
    c.scale = k % 3, c.h0 = k % 2 == 0, c.dhT = k % 4 < 2, c.clamp = k % 5 == 2, c.strided = k % 3 == 1;
    ++k;
    cs.push_back(c);
    return &cs.back();
  };
  if (quick) {
    for (IoType io : {IoType::F32, IoType::BF16}) {
      add(io, 1, 2, 1, 64)->chunked = true;
      add(io, 5, 2, 1, 64);
      add(io, 300, 2, 2, 64, 2);
      add(io, 256, 2, 1, 128);
    }
    add(IoType::F32, 70, 2, 1, 256);
    add(IoType::BF16, 520, 4, 2, 64);
    add(IoType::BF16, 300, 5, 1, 64);  // 5 heads per group: the double-buffered head loop of the dCB kernel
    add(IoType::BF16, 300, 4, 1, 128);  // N = 128 with a partial chunk: 2 heads per CTA in the chunk states
    return cs;
  }
  for (IoType io : {IoType::F32, IoType::BF16}) {
    const bool f32 = io == IoType::F32;
    for (int64_t L : {1, 255, 256, 257, 4096}) {
      add(io, L, 4, 1, 128, 2);
      add(io, L, 8, 8, 64, 1);
    }
    add(io, 1, 4, 1, 128)->chunked = true;
    add(io, 20, 4, 2, 256);
    add(io, 1000, 4, 2, 256);
    add(io, 65536, 2, 1, 128)->bwd = f32;
    add(io, 262144, 1, 1, 64)->bwd = f32;
  }
  return cs;
}

// ---- benchmark
#ifndef MX_CPU_EMU
std::map<std::string, float> g_stage_ms;
std::vector<std::pair<std::string, cudaEvent_t>> g_marks;
void stage_hook(const char* name, cudaStream_t st) {
  cudaEvent_t e;
  cudaEventCreate(&e);
  cudaEventRecord(e, st);
  g_marks.push_back({name, e});
}

// A device buffer of n random io-type values: one random block of up to 2^24 values, uploaded once and tiled on
// the device (drawing billions of normals on the host would take minutes at L = 524288).
DevBuf random_dev(size_t n, IoType io, Rng& rng, double scale) {
  const size_t m = std::min<size_t>(n, size_t(1) << 24), es = io_size(io);
  DevBuf pat = upload(rng.normals(m, scale), io);
  DevBuf d(n * es, false);
  for (size_t off = 0; off < n; off += m)
    DEV_CHECK(cudaMemcpy(d.as<char>() + off * es, pat.get(), std::min(m, n - off) * es, cudaMemcpyDeviceToDevice));
  return d;
}

// Median over reps runs of f, each timed by its own pair of CUDA events (after the caller's warm-up).
template <class F>
float median_ms(int reps, F&& f) {
  std::vector<cudaEvent_t> ev(2 * reps);
  for (auto& e : ev) cudaEventCreate(&e);
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(ev[2 * i]);
    f();
    cudaEventRecord(ev[2 * i + 1]);
  }
  DEV_CHECK(cudaEventSynchronize(ev.back()));
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; ++i) cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]);
  for (auto& e : ev) cudaEventDestroy(e);
  std::sort(ms.begin(), ms.end());
  return ms[reps / 2];
}

// One benchmark length. profile_only: a single forward and backward (for ncu), nothing timed.
std::string bench_one(int64_t L, bool breakdown, Rng& rng, bool profile_only = false) {
  Case c;
  c.io = IoType::BF16, c.L = L, c.H = 80, c.G = 1, c.N = 128;
  const int64_t P = 64, n_y = L * c.H * P, n_h = c.H * P * c.N;
  size_t free0, total;
  cudaMemGetInfo(&free0, &total);
  // Inputs: N(0,1) values uploaded in chunks (no float64 host copy of the whole problem needed beyond one).
  Inputs in;
  {
    mx::kern::ref::SsdRefIn& r = in.r;
    r.B = 1, r.L = L, r.H = c.H, r.P = P, r.G = 1, r.N = c.N;
    auto& a = in.a;
    a.batch = 1, a.len = L, a.heads = c.H, a.head_dim = P, a.groups = 1, a.dstate = c.N, a.io = c.io;
    in.xbc = random_dev(n_y + 2 * L * c.N, c.io, rng, 0.5);
    char* base = in.xbc.as<char>();
    a.x = base, a.x_sb = n_y, a.x_sl = c.H * P, a.x_sh = P;
    a.Bm = base + n_y * 2, a.B_sb = L * c.N, a.B_sl = c.N, a.B_sg = c.N;
    a.Cm = base + (n_y + L * c.N) * 2, a.C_sb = L * c.N, a.C_sl = c.N, a.C_sg = c.N;
    in.dtb = random_dev(L * c.H, c.io, rng, 0.5);
    a.dt = in.dtb.get(), a.dt_sb = L * c.H, a.dt_sl = c.H, a.dt_sh = 1;
    std::vector<double> bias, A;
    for (int64_t h = 0; h < c.H; ++h) {
      const double dt0 = std::exp(rng.uniform(std::log(1e-3), std::log(1e-1)));
      bias.push_back(dt0 + std::log(-std::expm1(-dt0)));
      A.push_back(-std::exp(rng.uniform(0.0, std::log(16.0))));
    }
    in.bias = upload(bias, IoType::F32), in.A = upload(A, IoType::F32), in.D = upload(std::vector<double>(c.H, 1.0), IoType::F32);
    a.dt_bias = in.bias.as<float>(), a.A = in.A.as<float>(), a.D = in.D.as<float>();
  }
  DevBuf y(n_y * 2), hT(n_h * 4);
  mx::kern::SsdFwdOut o;
  o.y = y.get(), o.y_sb = n_y, o.y_sl = c.H * P, o.y_sh = P, o.hT = hT.as<float>();
  const size_t ws_f = mx::kern::ssd_fwd_workspace_bytes(in.a), ws_b = mx::kern::ssd_bwd_workspace_bytes(in.a);
  const size_t in_bytes = (n_y + 2 * L * c.N + L * c.H) * 2, fwd_out = n_y * 2 + n_h * 4;
  Json j;
  j.num("L", double(L)).num("H", 80).num("P", 64).num("N", 128).str("dtype", "bf16");
  if (profile_only) {
    DevBuf ws(std::max(ws_f, ws_b));
    DevBuf dy = random_dev(n_y, c.io, rng, 1.0), dx(n_y * 2), ddt(L * c.H * 4), dB(L * c.N * 4), dC(L * c.N * 4);
    mx::kern::SsdBwdArgs g;
    g.dy = dy.get(), g.dy_sb = n_y, g.dy_sl = c.H * P, g.dy_sh = P;
    g.dx = dx.get(), g.dx_sb = n_y, g.dx_sl = c.H * P, g.dx_sh = P;
    g.ddt = ddt.as<float>(), g.dB = dB.as<float>(), g.dC = dC.as<float>();
    DEV_CHECK(mx::kern::ssd_fwd(in.a, o, ws.get(), nullptr));
    DEV_CHECK(mx::kern::ssd_bwd(in.a, g, ws.get(), nullptr));
    DEV_CHECK(cudaDeviceSynchronize());
    return "";
  }
  float ms_f = 0, ms_fb = 0, ms_rc = 0;
  {
    DevBuf ws(ws_f);
    size_t free1;
    for (int i = 0; i < 2; ++i) DEV_CHECK(mx::kern::ssd_fwd(in.a, o, ws.get(), nullptr));
    DEV_CHECK(cudaDeviceSynchronize());
    cudaMemGetInfo(&free1, &total);
    const int reps = L > 200000 ? 5 : 21;
    ms_f = median_ms(reps, [&] { mx::kern::ssd_fwd(in.a, o, ws.get(), nullptr); });
    j.num("fwd_ms", ms_f).num("fwd_mem_gb", double(in_bytes + fwd_out + ws_f) / 1e9);
    j.num("fwd_mem_measured_gb", double(free0 - free1) / 1e9);
    if (breakdown) {
      mx::kern::ssd_set_stage_hook(stage_hook);
      g_marks.clear();
      cudaEvent_t s0;
      cudaEventCreate(&s0);
      cudaEventRecord(s0);
      mx::kern::ssd_fwd(in.a, o, ws.get(), nullptr);
      DEV_CHECK(cudaDeviceSynchronize());
      cudaEvent_t prev = s0;
      for (auto& [name, e] : g_marks) {
        float ms;
        cudaEventElapsedTime(&ms, prev, e);
        j.num("fwd_" + name + "_ms", ms);
        prev = e;
      }
      mx::kern::ssd_set_stage_hook(nullptr);
    }
  }
  // Forward + backward twice: with the backward recomputing the forward's stages 1–4 ("fwd_bwd_recompute") and with
  // the forward keeping them for it (SsdFwdOut::saved -> SsdBwdArgs::saved, as the model's autograd does:
  // "fwd_bwd"). The breakdown is of the latter's backward.
  for (const bool keep : {false, true}) {
    const std::string key = keep ? "fwd_bwd" : "fwd_bwd_recompute";
    const size_t ws_fk = mx::kern::ssd_fwd_workspace_bytes(in.a, keep);
    const size_t ws_bk = mx::kern::ssd_bwd_workspace_bytes(in.a, keep);
    const size_t st_bytes = keep ? mx::kern::ssd_saved_bytes(in.a) : 0;
    DevBuf ws(std::max(ws_fk, ws_bk)), st(std::max<size_t>(st_bytes, 16));
    DevBuf dy = random_dev(n_y, c.io, rng, 1.0), dx(n_y * 2), ddt(L * c.H * 4), dB(L * c.N * 4), dC(L * c.N * 4),
           dh0(n_h * 4), ds(c.H * 8);
    mx::kern::SsdFwdOut of = o;
    mx::kern::SsdBwdArgs g;
    g.dy = dy.get(), g.dy_sb = n_y, g.dy_sl = c.H * P, g.dy_sh = P;
    g.dx = dx.get(), g.dx_sb = n_y, g.dx_sl = c.H * P, g.dx_sh = P;
    g.ddt = ddt.as<float>(), g.dB = dB.as<float>(), g.dC = dC.as<float>(), g.dh0 = dh0.as<float>();
    g.dscale = ds.as<double>();
    if (keep) of.saved = st.get(), g.saved = st.get();
    size_t free2;
    for (int i = 0; i < 2; ++i) {
      DEV_CHECK(mx::kern::ssd_fwd(in.a, of, ws.get(), nullptr));
      DEV_CHECK(mx::kern::ssd_bwd(in.a, g, ws.get(), nullptr));
    }
    DEV_CHECK(cudaDeviceSynchronize());
    cudaMemGetInfo(&free2, &total);
    const int reps = L > 200000 ? 3 : 11;
    const float ms = median_ms(reps, [&] {
      mx::kern::ssd_fwd(in.a, of, ws.get(), nullptr);
      mx::kern::ssd_bwd(in.a, g, ws.get(), nullptr);
    });
    (keep ? ms_fb : ms_rc) = ms;
    const size_t bwd_io = n_y * 2 * 2 + L * c.H * 4 + 2 * L * c.N * 4 + n_h * 4;
    j.num(key + "_ms", ms)
        .num(key + "_mem_gb", double(in_bytes + fwd_out + st_bytes + bwd_io + std::max(ws_fk, ws_bk)) / 1e9);
    j.num(key + "_mem_measured_gb", double(free0 - free2) / 1e9);
    if (breakdown && keep) {
      mx::kern::ssd_set_stage_hook(stage_hook);
      g_marks.clear();
      cudaEvent_t s0;
      cudaEventCreate(&s0);
      cudaEventRecord(s0);
      mx::kern::ssd_bwd(in.a, g, ws.get(), nullptr);
      DEV_CHECK(cudaDeviceSynchronize());
      cudaEvent_t prev = s0;
      for (auto& [name, e] : g_marks) {
        float ms_stage;
        cudaEventElapsedTime(&ms_stage, prev, e);
        j.num("bwd_" + name + "_ms", ms_stage);
        prev = e;
      }
      mx::kern::ssd_set_stage_hook(nullptr);
    }
  }
  DEV_CHECK(cudaGetLastError());
  std::printf("bench L=%lld: fwd %.3f ms, fwd+bwd %.3f ms (recomputing stages 1-4: %.3f ms) (Triton: 3.67 / 15.1 ms at "
              "65536)\n  %s\n", (long long)L, ms_f, ms_fb, ms_rc, j.dump().c_str());
  std::fflush(stdout);
  return j.dump();
}
#endif

}  // namespace

int main(int argc, char** argv) {
  bool test = false, quick = false, bench = false, profile = false;
  std::vector<int64_t> bench_lens = {65536, 131072, 524288};
  std::string out = ".";
  uint64_t seed = 1234;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--test") test = true;
    else if (s == "--quick") quick = true;
    else if (s == "--bench") bench = true;
    else if (s == "--profile") profile = true;
    else if (s == "--out" && i + 1 < argc) out = argv[++i];
    else if (s == "--seed" && i + 1 < argc) seed = std::stoull(argv[++i]);
    else if (s == "--len" && i + 1 < argc) bench_lens = {std::stoll(argv[++i])};
    else {
      std::fprintf(stderr, "usage: %s [--test] [--quick] [--bench] [--len L] [--profile] [--out DIR] [--seed S]\n",
                   argv[0]);
      return 2;
    }
  }
  Rng rng(seed);
#ifndef MX_CPU_EMU
  if (profile) {
    bench_one(65536, false, rng, true);
    return 0;
  }
#endif
  if (!test && !bench) test = true;
  std::vector<std::string> results, benches;
  if (test)
    for (const Case& c : cases(quick)) results.push_back(run_case(c, rng));
#ifndef MX_CPU_EMU
  if (bench)
    for (int64_t L : bench_lens) benches.push_back(bench_one(L, L == 65536, rng));
#endif
  std::ofstream f(out + "/ssd_kernels.json");
  f << "{\"tests\": " << json_array(results) << ",\n\"bench\": " << json_array(benches)
    << ",\n\"all_ok\": " << (g_all_ok ? "true" : "false") << "}\n";
  std::printf("%s\n", g_all_ok ? "ALL OK" : "SOME CHECKS FAILED");
  return g_all_ok ? 0 : 1;
}
