// Benchmarks of the standalone kernel program (GPU only): the S6 forward / backward at E = 5120, N = 16,
// batch 1 (the mamba-2.8b shape; kernels.md §3 measured mamba_ssm at 7.53 / 24.9 ms bf16 and 13.05 / 27.9 ms
// fp32 at L = 64k), the 130m shape with and without time segments, conv1d and add+RMSNorm.
// CUDA events around each launch after two warm-ups; the median of `reps`. Inputs are uniform random
// (never zeros), generated on the GPU; each (B, L, E) tensor is far larger than the L2, so repeats do not
// run from cache. The floor is max(bytes / 3.0 TB/s, exps / 4.18e12/s, FP32 ops / 33.5e12/s) with the
// H100 figures of kernels.md §3 (measured copy bandwidth, MUFU ex2 rate, FP32 lane rate at 1.98 GHz).
#pragma once
#ifndef MX_CPU_EMU
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "conv1d/conv1d.h"
#include "dev/harness.h"
#include "norm/norm.h"
#include "s6/s6.h"

namespace mx::dev {

constexpr double kHbmBytesPerS = 3.0e12, kExpPerS = 4.18e12, kFp32OpsPerS = 33.5e12;

__global__ void fill_uniform_kernel(void* p, int64_t n, int bf16, uint64_t seed, float lo, float hi) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t h = seed ^ (uint64_t(i) * 0x9E3779B97F4A7C15ull);
    h ^= h >> 30, h *= 0xBF58476D1CE4E5B9ull, h ^= h >> 27, h *= 0x94D049BB133111EBull, h ^= h >> 31;
    const float v = lo + (hi - lo) * float(h >> 40) * (1.0f / 16777216.0f);
    if (bf16) static_cast<kern::bf16*>(p)[i].bits = kern::float_to_bf16(v);
    else static_cast<float*>(p)[i] = v;
  }
}

inline DevBuf random_buf(int64_t n, IoType io, uint64_t seed, float lo, float hi) {
  DevBuf d(n * io_size(io), false);
  fill_uniform_kernel<<<1024, 256>>>(d.get(), n, io == IoType::BF16, seed, lo, hi);
  DEV_CHECK(cudaGetLastError());
  return d;
}

// Median milliseconds of fn() over `reps` timed runs after 2 warm-ups.
inline double time_ms(const std::function<void()>& fn, int reps) {
  cudaEvent_t a, b;
  DEV_CHECK(cudaEventCreate(&a));
  DEV_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 2; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    DEV_CHECK(cudaEventRecord(a));
    fn();
    DEV_CHECK(cudaEventRecord(b));
    DEV_CHECK(cudaEventSynchronize(b));
    float t = 0;
    DEV_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  DEV_CHECK(cudaEventDestroy(a));
  DEV_CHECK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct BenchRow {
  std::string json, line;
};

inline BenchRow bench_row(const std::string& op, const std::string& shape, IoType io, double ms, double bytes,
                          double exps, double flops, double ref_ms) {
  const double floor = std::max({bytes / kHbmBytesPerS, exps / kExpPerS, flops / kFp32OpsPerS}) * 1e3;
  Json j;
  j.str("op", op).str("shape", shape).str("io", io_name(io)).num("ms", ms).num("floor_ms", floor);
  j.num("floor_fraction", floor / ms).num("hbm_ms", bytes / kHbmBytesPerS * 1e3).num("exp_ms", exps / kExpPerS * 1e3);
  j.num("fp32_ms", flops / kFp32OpsPerS * 1e3).num("GBps", bytes / ms / 1e6);
  if (ref_ms > 0) j.num("mamba_ssm_ms", ref_ms).num("speedup_vs_mamba_ssm", ref_ms / ms);
  char buf[256];
  std::snprintf(buf, sizeof(buf), "%-14s %-26s %-5s %9.3f ms  floor %7.3f ms (%4.0f%%)  %7.0f GB/s%s", op.c_str(),
                shape.c_str(), io_name(io), ms, floor, 100 * floor / ms, bytes / ms / 1e6,
                ref_ms > 0 ? ("  mamba_ssm " + std::to_string(ref_ms).substr(0, 5) + " ms").c_str() : "");
  return {j.dump(), buf};
}

// S6 at (B, L, E, N): forward for inference (out + hT), forward with checkpoints, backward from checkpoints.
// segments: 0 = the automatic plan (the row names the segments taken); with_bwd = false times the forward
// passes only.
inline std::vector<BenchRow> bench_s6(int64_t B, int64_t L, int64_t E, int64_t N, IoType io, int segments, int reps,
                                      double ref_fwd_ms, double ref_bwd_ms, bool with_bwd = true) {
  const int64_t BLE = B * L * E, BLN = B * L * N;
  const double es = double(io_size(io));
  DevBuf u = random_buf(BLE, io, 1, -1.f, 1.f), dl = random_buf(BLE, io, 2, -4.f, 1.f), z = random_buf(BLE, io, 3, -2.f, 2.f);
  DevBuf Bm = random_buf(BLN, io, 4, -1.f, 1.f), Cm = random_buf(BLN, io, 5, -1.f, 1.f);
  DevBuf A = random_buf(E * N, IoType::F32, 6, -16.f, -1.f), D = random_buf(E, IoType::F32, 7, -1.f, 1.f);
  DevBuf bias = random_buf(E, IoType::F32, 8, -0.5f, 0.5f), s = random_buf(1, IoType::F32, 9, 0.5f, 1.5f);
  DevBuf h0 = random_buf(B * E * N, IoType::F32, 10, -1.f, 1.f), dout = random_buf(BLE, io, 11, -1.f, 1.f);
  DevBuf out(BLE * io_size(io)), hT(B * E * N * 4), ckpt(B * kern::s6_num_chunks(L) * E * N * 4);
  DevBuf du(BLE * io_size(io)), dd(BLE * io_size(io)), dz(BLE * io_size(io));
  DevBuf dB(BLN * 4), dC(BLN * 4), dA(E * N * 8), dD(E * 8), dbias(E * 8), ds(E * 8), dh0(B * E * N * 4);
  kern::S6Inputs in;
  in.batch = B, in.len = L, in.dim = E, in.dstate = N, in.io = io;
  in.u = u.get(), in.u_sb = L * E, in.u_sl = E;
  in.delta = dl.get(), in.delta_sb = L * E, in.delta_sl = E;
  in.z = z.get(), in.z_sb = L * E, in.z_sl = E;
  in.B = Bm.get(), in.B_sb = L * N, in.B_sl = N;
  in.C = Cm.get(), in.C_sb = L * N, in.C_sl = N;
  in.A = A.as<float>(), in.D = D.as<float>(), in.dt_bias = bias.as<float>(), in.dt_scale = s.as<float>();
  in.num_segments = segments;
  DevBuf ws(std::max(kern::s6_fwd_workspace_bytes(in), kern::s6_bwd_workspace_bytes(in)));
  kern::S6FwdArgs fa;
  fa.h0 = h0.as<float>(), fa.hT = hT.as<float>(), fa.out = out.get(), fa.out_sb = L * E, fa.out_sl = E;
  kern::S6FwdArgs fc = fa;
  fc.ckpt = ckpt.as<float>();
  kern::S6BwdArgs ba;
  ba.h0 = h0.as<float>(), ba.ckpt = ckpt.as<float>(), ba.dout = dout.get(), ba.dout_sb = L * E, ba.dout_sl = E;
  ba.dhT = hT.as<float>();
  ba.du = du.get(), ba.du_sb = L * E, ba.du_sl = E, ba.ddelta = dd.get(), ba.ddelta_sb = L * E, ba.ddelta_sl = E;
  ba.dz = dz.get(), ba.dz_sb = L * E, ba.dz_sl = E;
  ba.dB = dB.as<float>(), ba.dC = dC.as<float>(), ba.dA = dA.as<double>(), ba.dD = dD.as<double>();
  ba.ddt_bias = dbias.as<double>(), ba.ddt_scale = ds.as<double>(), ba.dh0 = dh0.as<float>();

  const double t_fwd = time_ms([&] { DEV_CHECK(kern::s6_fwd(in, fa, ws.get(), nullptr)); }, reps);
  const double t_fwdc = time_ms([&] { DEV_CHECK(kern::s6_fwd(in, fc, ws.get(), nullptr)); }, reps);
  const double t_bwd = with_bwd ? time_ms([&] { DEV_CHECK(kern::s6_bwd(in, ba, ws.get(), nullptr)); }, reps) : 0;
  DEV_CHECK(cudaDeviceSynchronize());

  const double elems = double(B) * L * E * N, ckpt_bytes = double(B) * kern::s6_num_chunks(L) * E * N * 4;
  const double fwd_bytes = double(B) * L * (4 * E * es + 2 * N * es);
  const double bwd_bytes = double(B) * L * (7 * E * es + 2 * N * es + 2 * N * 4) + ckpt_bytes;
  char shape[96];
  std::snprintf(shape, sizeof(shape), "B%lld L%lld E%lld N%lld S%d%s", (long long)B, (long long)L, (long long)E,
                (long long)N, kern::s6_fwd_segments(in), segments > 0 ? "" : "(auto)");
  // FP32 work per (t, e, n): forward 4 ops (mul, fma, mul, fma); backward about 13 (kernels.md §3).
  std::vector<BenchRow> rows = {bench_row("s6_fwd", shape, io, t_fwd, fwd_bytes, elems, 4 * elems, ref_fwd_ms),
                                bench_row("s6_fwd+ckpt", shape, io, t_fwdc, fwd_bytes + ckpt_bytes, elems, 4 * elems, 0)};
  if (with_bwd) rows.push_back(bench_row("s6_bwd", shape, io, t_bwd, bwd_bytes, elems, 13 * elems, ref_bwd_ms));
  return rows;
}

inline std::vector<BenchRow> bench_conv_norm(int64_t L, int64_t C, int64_t D, IoType io, int reps) {
  std::vector<BenchRow> rows;
  const double es = double(io_size(io));
  {
    DevBuf x = random_buf(L * C, io, 21, -1.f, 1.f), w = random_buf(C * 4, io, 22, -1.f, 1.f);
    DevBuf b = random_buf(C, io, 23, -1.f, 1.f), st = random_buf(C * 3, io, 24, -1.f, 1.f);
    DevBuf dy = random_buf(L * C, io, 25, -1.f, 1.f), y(L * C * io_size(io)), dx(L * C * io_size(io));
    DevBuf dw(C * 4 * 4), db(C * 4), dsi(C * 3 * 4);
    kern::Conv1dArgs a;
    a.batch = 1, a.len = L, a.channels = C, a.width = 4, a.io = io, a.x = x.get(), a.x_sb = L * C, a.x_sl = C;
    a.weight = w.get(), a.bias = b.get(), a.state_in = st.get();
    kern::Conv1dBwdArgs g;
    g.dy = dy.get(), g.dy_sb = L * C, g.dy_sl = C, g.dx = dx.get(), g.dx_sb = L * C, g.dx_sl = C;
    g.dweight = dw.as<float>(), g.dbias = db.as<float>(), g.dstate_in = dsi.as<float>();
    const double tf = time_ms([&] { DEV_CHECK(kern::conv1d_fwd(a, y.get(), L * C, C, nullptr, nullptr)); }, reps);
    const double tb = time_ms([&] { DEV_CHECK(kern::conv1d_bwd(a, g, nullptr)); }, reps);
    const std::string shape = "L" + std::to_string(L) + " C" + std::to_string(C) + " K4";
    rows.push_back(bench_row("conv1d_fwd", shape, io, tf, 2.0 * L * C * es, 0, 4.0 * L * C, 0));
    rows.push_back(bench_row("conv1d_bwd", shape, io, tb, 3.0 * L * C * es, 0, 8.0 * L * C, 0));
  }
  {
    DevBuf x = random_buf(L * D, io, 31, -1.f, 1.f), r = random_buf(L * D, IoType::F32, 32, -3.f, 3.f);
    DevBuf w = random_buf(D, IoType::F32, 33, 0.5f, 1.5f), y(L * D * io_size(io));
    kern::AddNormArgs a;
    a.rows = L, a.dim = D, a.x_io = io, a.x = x.get(), a.x_srow = D, a.residual_in = r.as<float>();
    a.residual_out = r.as<float>(), a.weight = w.as<float>(), a.y_io = io, a.y = y.get();
    const double t = time_ms([&] { DEV_CHECK(kern::add_rmsnorm_fwd(a, nullptr)); }, reps);
    rows.push_back(bench_row("add_rmsnorm", "rows" + std::to_string(L) + " D" + std::to_string(D), io, t,
                             double(L) * D * (2 * es + 8), 0, 4.0 * L * D, 0));
  }
  return rows;
}

}  // namespace mx::dev
#endif  // MX_CPU_EMU
