// S6 backward (s6.h has the math and the argument layout): the main kernel, the time-segment first pass and
// the segment combine. With g_t = dout_t·silu(z_t) the gradient of y_t, and dh_t the total gradient of h_t:
//   dh_t   = C_t·g_t + a_{t+1}·dh_{t+1}              (a_t = exp(Δ_t·A); dh after the last token = dhT)
//   du_t   = D·g_t + Δ_t·Σ_n B_t dh_t                 dΔ_t = u_t·Σ_n B_t dh_t + Σ_n A·a_t·h_{t-1}·dh_t
//   dB_t   = Σ_e Δ_t u_t dh_t      dC_t = Σ_e g_t h_t      dA = Σ_t Δ_t a_t h_{t-1} dh_t      dD = Σ_t g_t u_t
//   dz_t   = dout_t·y_t·silu'(z_t)                    (y_t before the gate, D·u included)
//   d(delta_raw) = dΔ·s·σ(delta_raw + b);  d(dt_bias) = Σ_t d(delta_raw);  d(s) = Σ_t dΔ·softplus(delta_raw + b)
//   dh0    = a_0·dh_0
// CTA = (channel block, batch row, time segment), thread (g, el) = channel e0 + el, states [4g, 4g + 4).
// Tiles of kT tokens run in reverse. Per tile: stage the per-token terms in shared memory (the previous
// tile's global loads are issued right after, to overlap), recompute the states at the starts of the kNSub
// register sub-tiles from the forward's checkpoint, then per sub-tile (last first): recompute its kT2 states
// keeping a_t and a_t·h_{t-1} in registers, run dh backwards, and reduce
//   over the thread's states  -> Σ_n B dh, Σ_n A a h dh, y (per token; summed over the G threads of a channel)
//   over the CTA's channels   -> dB, dC (shared-memory contraction; one float4 atomic per 4 values per tile)
// dA / dD / d(dt_bias) / d(s) are summed in fp32 within a tile, in fp64 across tiles and by fp64 atomics.
#include "s6/s6_common.cuh"

namespace mx::kern::s6 {
namespace {

struct BwdRun {
  const float* dh_init = nullptr;  // gradient arriving at the segment's last state: dh_init + b*di_sb + s*di_ss
  int64_t di_sb = 0, di_ss = 0;
  float* dh_loc = nullptr;  // first pass: (B, S, E, N) carry out of each segment from a zero carry in
  double* sumdt = nullptr;  // first pass: (B, S, E) Σ Δ over each segment
  int64_t nchunks = 0, seg_len = 0;
  int S = 1;
};

template <typename IO, int N>
__global__ void __launch_bounds__(kThreads, kBwdCtasPerSm) s6_bwd_kernel(S6Inputs in, S6BwdArgs args, BwdRun run) {
  using Cf = Cfg<N>;
  constexpr int G = Cf::G, EC = Cf::EC, PT = Cf::PT, BCV = Cf::BCV, HP = Cf::HP;
  const int tid = threadIdx.x, g = tid / EC, el = tid % EC, n0 = g * kNS;
  const int64_t b = blockIdx.y, seg = blockIdx.z, E = in.dim, L = in.len;
  const int64_t e = int64_t(blockIdx.x) * EC + el;
  const bool ev = e < E;
  const int64_t t_begin = seg * run.seg_len, t_end = t_begin + run.seg_len < L ? t_begin + run.seg_len : L;
  const bool has_z = in.z != nullptr;

  float* s_dt = reinterpret_cast<float*>(dynamic_smem());  // (kT, EC) Δ
  float* s_dtu = s_dt + kT * EC;                             // (kT, EC) Δ·u
  float* s_u = s_dtu + kT * EC;                              // (kT, EC) u
  float* s_g = s_u + kT * EC;                                // (kT, EC) dout·silu(z)
  float* s_dzf = s_g + kT * EC;                              // (kT, EC) dout·silu'(z)
  float* s_dsig = s_dzf + kT * EC;                           // (kT, EC) s·σ(x) = dΔ/d(delta_raw)
  float* s_sp = s_dsig + kT * EC;                            // (kT, EC) softplus(x) = dΔ/ds
  float* s_B = s_sp + kT * EC;                               // (kT, N)
  float* s_C = s_B + kT * N;                                 // (kT, N)
  float* s_h = s_C + kT * N;                                 // (kT2, N, HP) h_t of the sub-tile
  float* s_dh = s_h + kT2 * N * HP;                          // (kT2, N, HP) dh_t of the sub-tile
  float* s_y = s_dh + kT2 * N * HP;                          // (G, kT2, EC) y partials
  float2* s_red = reinterpret_cast<float2*>(s_y + G * kT2 * EC);  // (G, kT2, EC) (Σ B dh, Σ A a h dh) partials
  float* s_dBC = reinterpret_cast<float*>(s_red + G * kT2 * EC);  // (kT, 2N) [dB | dC] of the tile

  IO* du = static_cast<IO*>(args.du) + b * args.du_sb;
  IO* dd = static_cast<IO*>(args.ddelta) + b * args.ddelta_sb;
  IO* dzp = has_z ? static_cast<IO*>(args.dz) + b * args.dz_sb : nullptr;

  float A2[kNS], Av[kNS], dhc[kNS], dAf[kNS];
  double dA_acc[kNS];
#pragma unroll
  for (int i = 0; i < kNS; ++i) {
    Av[i] = ev ? in.A[e * N + n0 + i] : 0.f;
    A2[i] = Av[i] * kLog2e;
    dhc[i] = (ev && run.dh_init) ? run.dh_init[b * run.di_sb + seg * run.di_ss + e * N + n0 + i] : 0.f;
    dAf[i] = 0.f;
    dA_acc[i] = 0.0;
  }
  const float bias = (ev && in.dt_bias) ? in.dt_bias[e] : 0.f;
  const float scale = in.dt_scale ? in.dt_scale[ev ? e * in.dt_scale_stride : 0] : 1.f;
  const float Dv = (ev && in.D) ? in.D[e] : 0.f;
  float dD_f = 0.f, dbias_f = 0.f, ds_f = 0.f;
  double dD_acc = 0.0, dbias_acc = 0.0, ds_acc = 0.0;

  const int64_t c_first = t_begin / kT, c_last = t_begin < t_end ? (t_end - 1) / kT : c_first - 1;
  // Per-thread cursors at token c_last*kT + g of channel ec, moved back by kT rows per tile (see s6_fwd.cu).
  const int64_t ec = ev ? e : E - 1, r0 = c_last * kT + g;
  const IO* u_p = static_cast<const IO*>(in.u) + b * in.u_sb + r0 * in.u_sl + ec;
  const IO* d_p = static_cast<const IO*>(in.delta) + b * in.delta_sb + r0 * in.delta_sl + ec;
  const IO* z_p = has_z ? static_cast<const IO*>(in.z) + b * in.z_sb + r0 * in.z_sl + ec : u_p;
  const int64_t z_sl = has_z ? in.z_sl : in.u_sl;
  const IO* o_p = static_cast<const IO*>(args.dout) + b * args.dout_sb + r0 * args.dout_sl + ec;
  const IO* B_p = static_cast<const IO*>(in.B) + b * in.B_sb + c_last * kT * in.B_sl;
  const IO* C_p = static_cast<const IO*>(in.C) + b * in.C_sb + c_last * kT * in.C_sl;
  int64_t bc_row[BCV];
#pragma unroll
  for (int j = 0; j < BCV; ++j) bc_row[j] = (tid + j * kThreads) / N;

  IO ru[PT], rd[PT], rz[PT], rdo[PT], rb[BCV], rc[BCV];  // the previous tile, raw
  auto load_tile = [&](int64_t t0) {
    const int64_t last = (t_end - 1 - t0 < kT - 1 ? t_end - 1 - t0 : kT - 1);  // clamp rows past the end
#pragma unroll
    for (int k = 0; k < PT; ++k) {
      const int64_t r = (g + k * G < last ? g + k * G : last) - g;
      ru[k] = u_p[r * in.u_sl];
      rd[k] = d_p[r * in.delta_sl];
      rz[k] = z_p[r * z_sl];
      rdo[k] = o_p[r * args.dout_sl];
    }
#pragma unroll
    for (int j = 0; j < BCV; ++j) {
      const int idx = tid + j * kThreads, n = idx % N;
      const int64_t r = idx < kT * N && bc_row[j] < last ? bc_row[j] : last;
      rb[j] = B_p[r * in.B_sl + n];
      rc[j] = C_p[r * in.C_sl + n];
    }
  };
  auto retreat = [&] {
    u_p -= kT * in.u_sl, d_p -= kT * in.delta_sl, z_p -= kT * z_sl, o_p -= kT * args.dout_sl;
    B_p -= kT * in.B_sl, C_p -= kT * in.C_sl;
  };

  if (c_last >= c_first) load_tile(c_last * kT);
  for (int64_t c = c_last; c >= c_first; --c) {
    const int64_t t0 = c * kT;
    const int nt = int(t_end - t0 < kT ? t_end - t0 : kT);
    // ---- stage (padded tokens get Δ = 0 and g = 0: they leave h and dh unchanged and add nothing)
#pragma unroll
    for (int k = 0; k < PT; ++k) {
      const int tt = g + k * G;
      float dt = 0.f, uv = 0.f, gv = 0.f, dzf = 0.f, dsig = 0.f, sp = 0.f;
      if (ev && tt < nt) {
        const float x = to_f(rd[k]) + bias, dov = to_f(rdo[k]);
        float sgx;
        sp = softplus_series_f(x, &sgx);
        dt = scale * sp;
        uv = to_f(ru[k]);
        dsig = scale * sgx;
        if (has_z) {
          const float zv = to_f(rz[k]), sz = sigmoid_fast_f(zv);
          gv = dov * zv * sz;
          dzf = dov * sz * (1.f + zv * (1.f - sz));
        } else {
          gv = dov;
        }
      }
      const int o = tt * EC + el;
      s_dt[o] = dt;
      s_dtu[o] = dt * uv;
      s_u[o] = uv;
      s_g[o] = gv;
      s_dzf[o] = dzf;
      s_dsig[o] = dsig;
      s_sp[o] = sp;
    }
#pragma unroll
    for (int j = 0; j < BCV; ++j) {
      const int idx = tid + j * kThreads;
      if (idx < kT * N) {
        s_B[idx] = bc_row[j] < nt ? to_f(rb[j]) : 0.f;
        s_C[idx] = bc_row[j] < nt ? to_f(rc[j]) : 0.f;
      }
    }
    float st[kNSub][kNS];  // states at the starts of the sub-tiles
    {
      float4 h4 = make_float4(0.f, 0.f, 0.f, 0.f);
      if (ev) h4 = *reinterpret_cast<const float4*>(args.ckpt + ((b * run.nchunks + c) * E + e) * N + n0);
      st[0][0] = h4.x;
      st[0][1] = h4.y;
      st[0][2] = h4.z;
      st[0][3] = h4.w;
    }
    __syncthreads();
    if (c > c_first) {
      retreat();
      load_tile((c - 1) * kT);
    }

    // ---- states at the sub-tile starts
#pragma unroll
    for (int j = 1; j < kNSub; ++j) {
#pragma unroll
      for (int i = 0; i < kNS; ++i) st[j][i] = st[j - 1][i];
#pragma unroll
      for (int k = 0; k < kT2; ++k) {
        const int tt = (j - 1) * kT2 + k;
        const float dt = s_dt[tt * EC + el], dtu = s_dtu[tt * EC + el];
        const float4 B4 = *reinterpret_cast<const float4*>(s_B + tt * N + n0);
        const float Bv[kNS] = {B4.x, B4.y, B4.z, B4.w};
#pragma unroll
        for (int i = 0; i < kNS; ++i) st[j][i] = fmaf(fast_exp2(dt * A2[i]), st[j][i], dtu * Bv[i]);
      }
    }

    // ---- sub-tiles, last first
#pragma unroll
    for (int j = kNSub - 1; j >= 0; --j) {
      float av[kT2][kNS], ahv[kT2][kNS];  // a_t and a_t·h_{t-1}
      {
        float h[kNS];
#pragma unroll
        for (int i = 0; i < kNS; ++i) h[i] = st[j][i];
#pragma unroll
        for (int k = 0; k < kT2; ++k) {
          const int tt = j * kT2 + k;
          const float dt = s_dt[tt * EC + el], dtu = s_dtu[tt * EC + el];
          const float4 B4 = *reinterpret_cast<const float4*>(s_B + tt * N + n0);
          const float4 C4 = *reinterpret_cast<const float4*>(s_C + tt * N + n0);
          const float Bv[kNS] = {B4.x, B4.y, B4.z, B4.w}, Cv[kNS] = {C4.x, C4.y, C4.z, C4.w};
          float y = 0.f;
#pragma unroll
          for (int i = 0; i < kNS; ++i) {
            av[k][i] = fast_exp2(dt * A2[i]);
            ahv[k][i] = av[k][i] * h[i];
            h[i] = fmaf(dtu, Bv[i], ahv[k][i]);
            y = fmaf(Cv[i], h[i], y);
            s_h[(k * N + n0 + i) * HP + el] = h[i];
          }
          s_y[(g * kT2 + k) * EC + el] = y;
        }
      }
#pragma unroll
      for (int k = kT2 - 1; k >= 0; --k) {
        const int tt = j * kT2 + k;
        const float gt = s_g[tt * EC + el], dt = s_dt[tt * EC + el];
        const float4 B4 = *reinterpret_cast<const float4*>(s_B + tt * N + n0);
        const float4 C4 = *reinterpret_cast<const float4*>(s_C + tt * N + n0);
        const float Bv[kNS] = {B4.x, B4.y, B4.z, B4.w}, Cv[kNS] = {C4.x, C4.y, C4.z, C4.w};
        float sB = 0.f, sA = 0.f;
#pragma unroll
        for (int i = 0; i < kNS; ++i) {
          const float dh = fmaf(Cv[i], gt, dhc[i]);
          const float q = dh * ahv[k][i];
          dAf[i] = fmaf(q, dt, dAf[i]);
          sA = fmaf(q, Av[i], sA);
          sB = fmaf(Bv[i], dh, sB);
          dhc[i] = dh * av[k][i];
          s_dh[(k * N + n0 + i) * HP + el] = dh;
        }
        s_red[(g * kT2 + k) * EC + el] = make_float2(sB, sA);
      }
      __syncthreads();

      // dB[t, n] = Σ_e dh·Δu and dC[t, n] = Σ_e h·g over the CTA's channels, for the sub-tile's tokens
      constexpr int kItems = 2 * kT2 * N;
#pragma unroll
      for (int m = 0; m < (kItems + kThreads - 1) / kThreads; ++m) {
        const int item = tid + m * kThreads;
        if (item < kItems) {
          const int which = item / (kT2 * N), r = item % (kT2 * N), k = r / N, n = r % N, tt = j * kT2 + k;
          const float* row = (which ? s_h : s_dh) + (k * N + n) * HP;
          const float* vec = (which ? s_g : s_dtu) + tt * EC;
          float acc = 0.f;
#pragma unroll
          for (int q = 0; q < EC; q += 4) {
            const float4 rv = *reinterpret_cast<const float4*>(row + q);
            const float4 vv = *reinterpret_cast<const float4*>(vec + q);
            acc = fmaf(rv.x, vv.x, acc);
            acc = fmaf(rv.y, vv.y, acc);
            acc = fmaf(rv.z, vv.z, acc);
            acc = fmaf(rv.w, vv.w, acc);
          }
          s_dBC[tt * 2 * N + which * N + n] = acc;
        }
      }
      // per (token, channel): threads g, g + G, ... of the channel finish the sub-tile's tokens g, g + G, ...
#pragma unroll
      for (int m = 0; m < (kT2 + G - 1) / G; ++m) {
        const int k = g + m * G, tt = j * kT2 + k;
        if (k < kT2 && ev && tt < nt) {
          float yv = 0.f, SB = 0.f, SA = 0.f;
#pragma unroll
          for (int gg = 0; gg < G; ++gg) {
            yv += s_y[(gg * kT2 + k) * EC + el];
            const float2 r = s_red[(gg * kT2 + k) * EC + el];
            SB += r.x;
            SA += r.y;
          }
          const int o = tt * EC + el;
          const float uv = s_u[o], gv = s_g[o], dt = s_dt[o];
          yv = fmaf(Dv, uv, yv);
          const float ddt = fmaf(uv, SB, SA);
          const float ddr = ddt * s_dsig[o];
          const int64_t t = t0 + tt;
          store_f(du, t * args.du_sl + e, fmaf(Dv, gv, dt * SB));
          store_f(dd, t * args.ddelta_sl + e, ddr);
          if (has_z) store_f(dzp, t * args.dz_sl + e, yv * s_dzf[o]);
          dD_f = fmaf(gv, uv, dD_f);
          dbias_f += ddr;
          ds_f = fmaf(ddt, s_sp[o], ds_f);
        }
      }
      __syncthreads();
    }

    // ---- per tile: fp32 partial sums into fp64, dB / dC into global memory
#pragma unroll
    for (int i = 0; i < kNS; ++i) {
      dA_acc[i] += dAf[i];
      dAf[i] = 0.f;
    }
    dD_acc += dD_f;
    dbias_acc += dbias_f;
    ds_acc += ds_f;
    dD_f = dbias_f = ds_f = 0.f;
    constexpr int kVecs = kT * 2 * N / 4;
#pragma unroll
    for (int m = 0; m < (kVecs + kThreads - 1) / kThreads; ++m) {
      const int v = tid + m * kThreads;
      if (v < kVecs) {
        const int tt = v / (2 * N / 4), q = (v % (2 * N / 4)) * 4;
        if (tt < nt) {
          const float4 val = *reinterpret_cast<const float4*>(s_dBC + tt * 2 * N + q);
          float* dst = (q < N ? args.dB + q : args.dC + (q - N)) + (b * L + t0 + tt) * N;
#if defined(MX_CPU_EMU) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900)
          atomicAdd(reinterpret_cast<float4*>(dst), val);  // one 16-byte atomic (sm_90)
#else
          atomicAdd(dst, val.x), atomicAdd(dst + 1, val.y), atomicAdd(dst + 2, val.z), atomicAdd(dst + 3, val.w);
#endif
        }
      }
    }
  }

  if (ev) {
    if (seg == 0 && args.dh0) {
      float* dst = args.dh0 + (b * E + e) * N + n0;
      *reinterpret_cast<float4*>(dst) = make_float4(dhc[0], dhc[1], dhc[2], dhc[3]);
    }
#pragma unroll
    for (int i = 0; i < kNS; ++i) atomicAdd(args.dA + e * N + n0 + i, dA_acc[i]);
    if (args.dD) atomicAdd(args.dD + e, dD_acc);
    if (args.ddt_bias) atomicAdd(args.ddt_bias + e, dbias_acc);
    if (args.ddt_scale) atomicAdd(args.ddt_scale + e, ds_acc);
  }
}

// First pass of the time split: for segments 1 .. S-1, the carry out of the segment's first token
// (Π a)·(...) from a zero carry in, dh_loc[s] = Σ_{t in s} (Π_{t' in s, t' <= t} a_t')·C_t·g_t, and Σ Δ.
template <typename IO, int N>
__global__ void __launch_bounds__(kThreads, kBwdFirstCtasPerSm) s6_bwd_first_kernel(S6Inputs in, S6BwdArgs args, BwdRun run) {
  using Cf = Cfg<N>;
  constexpr int G = Cf::G, EC = Cf::EC, PT = Cf::PT, BCV = Cf::BCV;
  const int tid = threadIdx.x, g = tid / EC, el = tid % EC, n0 = g * kNS;
  const int64_t b = blockIdx.y, seg = blockIdx.z + 1, E = in.dim, L = in.len;
  const int64_t e = int64_t(blockIdx.x) * EC + el;
  const bool ev = e < E;
  const int64_t t_begin = seg * run.seg_len, t_end = t_begin + run.seg_len < L ? t_begin + run.seg_len : L;
  const bool has_z = in.z != nullptr;

  float* s_dt = reinterpret_cast<float*>(dynamic_smem());  // (kT, EC)
  float* s_g = s_dt + kT * EC;                               // (kT, EC)
  float* s_C = s_g + kT * EC;                                // (kT, N)

  float A2[kNS], dhc[kNS];
#pragma unroll
  for (int i = 0; i < kNS; ++i) {
    A2[i] = ev ? in.A[e * N + n0 + i] * kLog2e : 0.f;
    dhc[i] = 0.f;
  }
  const float bias = (ev && in.dt_bias) ? in.dt_bias[e] : 0.f;
  const float scale = in.dt_scale ? in.dt_scale[ev ? e * in.dt_scale_stride : 0] : 1.f;
  double sum_dt = 0.0;

  const int64_t c_first = t_begin / kT, c_last = t_begin < t_end ? (t_end - 1) / kT : c_first - 1;
  const int64_t ec = ev ? e : E - 1, r0 = c_last * kT + g;  // cursors as in s6_bwd_kernel
  const IO* d_p = static_cast<const IO*>(in.delta) + b * in.delta_sb + r0 * in.delta_sl + ec;
  const IO* z_p = has_z ? static_cast<const IO*>(in.z) + b * in.z_sb + r0 * in.z_sl + ec : d_p;
  const int64_t z_sl = has_z ? in.z_sl : in.delta_sl;
  const IO* o_p = static_cast<const IO*>(args.dout) + b * args.dout_sb + r0 * args.dout_sl + ec;
  const IO* C_p = static_cast<const IO*>(in.C) + b * in.C_sb + c_last * kT * in.C_sl;
  int64_t bc_row[BCV];
#pragma unroll
  for (int j = 0; j < BCV; ++j) bc_row[j] = (tid + j * kThreads) / N;

  IO rd[PT], rz[PT], rdo[PT], rc[BCV];
  auto load_tile = [&](int64_t t0) {
    const int64_t last = (t_end - 1 - t0 < kT - 1 ? t_end - 1 - t0 : kT - 1);
#pragma unroll
    for (int k = 0; k < PT; ++k) {
      const int64_t r = (g + k * G < last ? g + k * G : last) - g;
      rd[k] = d_p[r * in.delta_sl];
      rz[k] = z_p[r * z_sl];
      rdo[k] = o_p[r * args.dout_sl];
    }
#pragma unroll
    for (int j = 0; j < BCV; ++j) {
      const int idx = tid + j * kThreads, n = idx % N;
      rc[j] = C_p[(idx < kT * N && bc_row[j] < last ? bc_row[j] : last) * in.C_sl + n];
    }
  };

  if (c_last >= c_first) load_tile(c_last * kT);
  for (int64_t c = c_last; c >= c_first; --c) {
    const int64_t t0 = c * kT;
    const int nt = int(t_end - t0 < kT ? t_end - t0 : kT);
#pragma unroll
    for (int k = 0; k < PT; ++k) {
      const int tt = g + k * G;
      float dt = 0.f, gv = 0.f;
      if (ev && tt < nt) {
        dt = scale * softplus_series_f(to_f(rd[k]) + bias);
        sum_dt += dt;
        gv = has_z ? to_f(rdo[k]) * silu_f(to_f(rz[k])) : to_f(rdo[k]);
      }
      s_dt[tt * EC + el] = dt;
      s_g[tt * EC + el] = gv;
    }
#pragma unroll
    for (int j = 0; j < BCV; ++j) {
      const int idx = tid + j * kThreads;
      if (idx < kT * N) s_C[idx] = bc_row[j] < nt ? to_f(rc[j]) : 0.f;
    }
    __syncthreads();
    if (c > c_first) {
      d_p -= kT * in.delta_sl, z_p -= kT * z_sl, o_p -= kT * args.dout_sl, C_p -= kT * in.C_sl;
      load_tile((c - 1) * kT);
    }
#pragma unroll 4
    for (int tt = kT - 1; tt >= 0; --tt) {
      const float gt = s_g[tt * EC + el], dt = s_dt[tt * EC + el];
      const float4 C4 = *reinterpret_cast<const float4*>(s_C + tt * N + n0);
      const float Cv[kNS] = {C4.x, C4.y, C4.z, C4.w};
#pragma unroll
      for (int i = 0; i < kNS; ++i) dhc[i] = fmaf(Cv[i], gt, dhc[i]) * fast_exp2(dt * A2[i]);
    }
    __syncthreads();
  }
  if (ev) {
    float* dst = run.dh_loc + (b * run.S + seg) * E * N + e * N + n0;
    *reinterpret_cast<float4*>(dst) = make_float4(dhc[0], dhc[1], dhc[2], dhc[3]);
    atomicAdd(run.sumdt + (b * run.S + seg) * E + e, sum_dt);
  }
}

// Segment combine, in reverse: dh_in[S-1] = dhT, dh_in[s-1] = exp(A·ΣΔ[s])·dh_in[s] + dh_loc[s].
__global__ void s6_bwd_combine_kernel(const float* A, const float* dhT, const float* dh_loc, const double* sumdt,
                                      float* dh_in, int64_t batch, int64_t E, int64_t N, int S) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= batch * E * N) return;
  const int64_t b = idx / (E * N), en = idx % (E * N), e = en / N;
  const double a = A[en];
  float c = dhT ? dhT[idx] : 0.f;
  for (int s = S - 1; s >= 0; --s) {
    const int64_t slot = (b * S + s) * E * N + en;
    dh_in[slot] = c;
    if (s > 0) c = float(exp(a * sumdt[(b * S + s) * E + e])) * c + dh_loc[slot];
  }
}

template <typename IO, int N>
size_t bwd_smem_bytes() {
  using Cf = Cfg<N>;
  return sizeof(float) * size_t(7 * kT * Cf::EC + 2 * kT * N + 2 * kT2 * N * Cf::HP + 3 * Cf::G * kT2 * Cf::EC +
                                2 * kT * N);
}

template <typename IO, int N>
cudaError_t launch_bwd(const S6Inputs& in, const S6BwdArgs& args, void* workspace, cudaStream_t stream) {
  using Cf = Cfg<N>;
  const int64_t nblk = channel_blocks<N>(in);
  const SegPlan plan = plan_segments(in, nblk * in.batch, kBwdCtasPerSm);
  const int64_t EN = in.dim * N;
  cudaError_t err = cudaSuccess;
  auto zero = [&](void* p, size_t bytes) {
    if (p && err == cudaSuccess) err = cudaMemsetAsync(p, 0, bytes, stream);
  };
  zero(args.dB, sizeof(float) * in.batch * in.len * N);
  zero(args.dC, sizeof(float) * in.batch * in.len * N);
  zero(args.dA, sizeof(double) * EN);
  zero(args.dD, sizeof(double) * in.dim);
  zero(args.ddt_bias, sizeof(double) * in.dim);
  zero(args.ddt_scale, sizeof(double) * in.dim);
  if (err != cudaSuccess) return err;

  BwdRun run;
  run.nchunks = s6_num_chunks(in.len);
  run.seg_len = plan.seg_len;
  run.S = plan.S;
  if (plan.S > 1) {
    // workspace: dh_loc (B, S, E, N) f32 | dh_in (B, S, E, N) f32 | sumdt (B, S, E) f64
    float* dh_loc = static_cast<float*>(workspace);
    float* dh_in = dh_loc + in.batch * plan.S * EN;
    double* sumdt = reinterpret_cast<double*>(dh_in + in.batch * plan.S * EN);
    zero(sumdt, sizeof(double) * in.batch * plan.S * in.dim);
    if (err != cudaSuccess) return err;
    BwdRun first = run;
    first.dh_loc = dh_loc;
    first.sumdt = sumdt;
    auto k_first = s6_bwd_first_kernel<IO, N>;
    const size_t smem_first = sizeof(float) * size_t(2 * kT * Cf::EC + kT * N);
    MX_LAUNCH(k_first, dim3(unsigned(nblk), unsigned(in.batch), unsigned(plan.S - 1)), dim3(kThreads), smem_first,
              stream, in, args, first);
    const int64_t total = in.batch * EN;
    MX_LAUNCH(s6_bwd_combine_kernel, dim3(unsigned(ceil_div(total, 256))), dim3(256), 0, stream, in.A, args.dhT,
              dh_loc, sumdt, dh_in, in.batch, in.dim, int64_t(N), plan.S);
    run.dh_init = dh_in;
    run.di_sb = plan.S * EN;
    run.di_ss = EN;
  } else {
    run.dh_init = args.dhT;
    run.di_sb = EN;
  }
  auto k_main = s6_bwd_kernel<IO, N>;
  const size_t smem = bwd_smem_bytes<IO, N>();
  err = cudaFuncSetAttribute(k_main, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err != cudaSuccess) return err;
  MX_LAUNCH(k_main, dim3(unsigned(nblk), unsigned(in.batch), unsigned(plan.S)), dim3(kThreads), smem, stream, in,
            args, run);
  return cudaGetLastError();
}

}  // namespace
}  // namespace mx::kern::s6

namespace mx::kern {

namespace s6 {
// Workspace of the backward's segmented pass: two (B, S, E, N) fp32 state arrays and a (B, S, E) fp64 Σ Δ.
size_t segment_workspace_bytes(const S6Inputs& in, int max_ctas_per_sm) {
  if (!s6_supported_dstate(in.dstate)) return 0;
  int64_t nblk = 0;
  dispatch(IoType::F32, in.dstate, [&](auto, auto nc) { nblk = channel_blocks<decltype(nc)::value>(in); });
  const int S = plan_segments(in, nblk * in.batch, max_ctas_per_sm).S;
  if (S <= 1) return 0;
  const size_t slots = size_t(in.batch) * S * in.dim;
  return slots * in.dstate * sizeof(float) * 2 + slots * sizeof(double);
}
}  // namespace s6

size_t s6_bwd_workspace_bytes(const S6Inputs& in) { return s6::segment_workspace_bytes(in, s6::kBwdCtasPerSm); }

cudaError_t s6_bwd(const S6Inputs& in, const S6BwdArgs& args, void* workspace, cudaStream_t stream) {
  if (!s6_supported_dstate(in.dstate) || !in.u || !in.delta || !in.B || !in.C || !in.A || in.batch < 1 ||
      in.len < 1 || in.dim < 1 || !args.ckpt || !args.dout || !args.du || !args.ddelta || !args.dB || !args.dC ||
      !args.dA || (in.z && !args.dz))
    return cudaErrorInvalidValue;
  if (s6_bwd_workspace_bytes(in) > 0 && !workspace) return cudaErrorInvalidValue;
  cudaError_t err = cudaSuccess;
  s6::dispatch(in.io, in.dstate, [&](auto io, auto nc) {
    err = s6::launch_bwd<decltype(io), decltype(nc)::value>(in, args, workspace, stream);
  });
  return err;
}

}  // namespace mx::kern
