// S6 forward (s6.h has the math): the main kernel, its time-segment first pass and the segment combine.
//
// CTA = (channel block of EC channels, batch row, time segment), 128 threads. Thread (g, el) owns channel
// e0 + el and states [4g, 4g + 4). Per tile of kT tokens:
//   stage    registers -> shared: Δ = s·softplus(δ + b) and Δ·u per (token, channel), B and C per token;
//            the next tile's global loads are issued right after, so they overlap the scan
//   scan     each thread walks the kT tokens: a = 2^(Δ·A·log2 e), h = a·h + Δu·B, y_part += C·h
//   epilogue y = Σ_g y_part + D·u, times silu(z), stored by the thread that staged that (token, channel)
// B and C are read from global memory once per CTA and tile, not once per channel.
#include "s6/s6_common.cuh"

namespace mx::kern::s6 {
namespace {

struct FwdRun {
  const float* h_init = nullptr;  // state before the segment's first token: h_init + b*hi_sb + s*hi_ss
  int64_t hi_sb = 0, hi_ss = 0;
  float* h_end = nullptr;  // state after the segment's last token (all segments, or the last one only)
  int64_t he_sb = 0, he_ss = 0;
  bool end_last_only = false;
  void* out = nullptr;
  int64_t out_sb = 0, out_sl = 0;
  float* ckpt = nullptr;
  int64_t nchunks = 0;
  double* sumdt = nullptr;  // (B, S, E): Σ Δ over each segment (first pass only)
  int64_t seg_len = 0;
  int S = 1;
};

// kOut: the full pass (writes y); otherwise the first pass of the segment split (states and Σ Δ only).
// Global loads walk per-thread pointers (no 64-bit index products per element); full tiles load without
// guards, the sequence's last partial tile clamps its addresses (values past the end are masked when staged).
template <typename IO, int N, bool kOut>
__global__ void __launch_bounds__(kThreads, kFwdCtasPerSm) s6_fwd_kernel(S6Inputs in, FwdRun run) {
  using Cf = Cfg<N>;
  constexpr int G = Cf::G, EC = Cf::EC, PT = Cf::PT, BCV = Cf::BCV;
  const int tid = threadIdx.x, g = tid / EC, el = tid % EC, n0 = g * kNS;
  const int64_t b = blockIdx.y, seg = blockIdx.z, E = in.dim, L = in.len;
  const int64_t e = int64_t(blockIdx.x) * EC + el;
  const bool ev = e < E;
  const int64_t ec = ev ? e : E - 1;  // address-safe channel for the lanes past E (their values are unused)
  const int64_t t_begin = seg * run.seg_len, t_end = t_begin + run.seg_len < L ? t_begin + run.seg_len : L;
  const bool has_z = in.z != nullptr;

  float2* s_dd = reinterpret_cast<float2*>(dynamic_smem());  // (kT, EC) (Δ, Δ·u)
  float* s_B = reinterpret_cast<float*>(s_dd + kT * EC);       // (kT, N)
  float* s_C = s_B + kT * N;                                 // (kT, N)
  float* s_y = s_C + kT * N;                                 // (G, kT, EC) partial sums over each thread's states

  // Per-thread cursors at token t_begin + g of channel ec; one tile advances them by kT rows.
  const IO* u_p = static_cast<const IO*>(in.u) + b * in.u_sb + (t_begin + g) * in.u_sl + ec;
  const IO* d_p = static_cast<const IO*>(in.delta) + b * in.delta_sb + (t_begin + g) * in.delta_sl + ec;
  const IO* z_p = has_z ? static_cast<const IO*>(in.z) + b * in.z_sb + (t_begin + g) * in.z_sl + ec : u_p;
  const int64_t z_sl = has_z ? in.z_sl : in.u_sl;
  const IO* B_p = static_cast<const IO*>(in.B) + b * in.B_sb + t_begin * in.B_sl;
  const IO* C_p = static_cast<const IO*>(in.C) + b * in.C_sb + t_begin * in.C_sl;
  int64_t bc_row[BCV];  // token row (within the tile) of this thread's B / C values
#pragma unroll
  for (int j = 0; j < BCV; ++j) bc_row[j] = (tid + j * kThreads) / N;

  float A2[kNS], h[kNS];
#pragma unroll
  for (int i = 0; i < kNS; ++i) {
    A2[i] = ev ? in.A[e * N + n0 + i] * kLog2e : 0.f;
    h[i] = (ev && run.h_init) ? run.h_init[b * run.hi_sb + seg * run.hi_ss + e * N + n0 + i] : 0.f;
  }
  const float bias = (ev && in.dt_bias) ? in.dt_bias[e] : 0.f;
  const float scale = in.dt_scale ? in.dt_scale[ev ? e * in.dt_scale_stride : 0] : 1.f;
  const float Dv = (ev && in.D) ? in.D[e] : 0.f;
  double sum_dt = 0.0;

  IO ru[PT], rd[PT], rz[PT], rb[BCV], rc[BCV];  // the next tile, raw
  auto load_tile = [&](int64_t t0) {
    if (t0 + kT <= t_end) {
#pragma unroll
      for (int k = 0; k < PT; ++k) {
        ru[k] = u_p[k * G * in.u_sl];
        rd[k] = d_p[k * G * in.delta_sl];
        rz[k] = z_p[k * G * z_sl];
      }
#pragma unroll
      for (int j = 0; j < BCV; ++j) {
        const int idx = tid + j * kThreads, n = idx % N;
        const int64_t r = idx < kT * N ? bc_row[j] : 0;
        rb[j] = B_p[r * in.B_sl + n];
        rc[j] = C_p[r * in.C_sl + n];
      }
    } else {  // last, partial tile: clamp the row to the last token
      const int64_t last = t_end - 1 - t0;
#pragma unroll
      for (int k = 0; k < PT; ++k) {
        const int64_t r = g + k * G < last ? g + k * G : last;
        ru[k] = u_p[(r - g) * in.u_sl];
        rd[k] = d_p[(r - g) * in.delta_sl];
        rz[k] = z_p[(r - g) * z_sl];
      }
#pragma unroll
      for (int j = 0; j < BCV; ++j) {
        const int idx = tid + j * kThreads, n = idx % N;
        const int64_t r = idx < kT * N && bc_row[j] < last ? bc_row[j] : last;
        rb[j] = B_p[r * in.B_sl + n];
        rc[j] = C_p[r * in.C_sl + n];
      }
    }
  };
  auto advance = [&] {
    u_p += kT * in.u_sl, d_p += kT * in.delta_sl, z_p += kT * z_sl;
    B_p += kT * in.B_sl, C_p += kT * in.C_sl;
  };

  IO* o_p = kOut ? static_cast<IO*>(run.out) + b * run.out_sb + (t_begin + g) * run.out_sl + ec : nullptr;
  float* ck_p = run.ckpt ? run.ckpt + ((b * run.nchunks + t_begin / kT) * E + ec) * N + n0 : nullptr;
  float uu[PT], zz[PT];
  if (t_begin < t_end) load_tile(t_begin);
  for (int64_t t0 = t_begin; t0 < t_end; t0 += kT) {
    const int nt = int(t_end - t0 < kT ? t_end - t0 : kT);
    // ---- stage
#pragma unroll
    for (int k = 0; k < PT; ++k) {
      const int tt = g + k * G;
      float dt = 0.f, dtu = 0.f;
      uu[k] = to_f(ru[k]);
      zz[k] = to_f(rz[k]);
      if (ev && tt < nt) {
        dt = scale * softplus_series_f(to_f(rd[k]) + bias);
        dtu = dt * uu[k];
        if (!kOut) sum_dt += dt;
      }
      s_dd[tt * EC + el] = make_float2(dt, dtu);  // padded tokens: Δ = 0, so a = 1: the state passes through
    }
#pragma unroll
    for (int j = 0; j < BCV; ++j) {
      const int idx = tid + j * kThreads;
      if (idx < kT * N) {
        s_B[idx] = bc_row[j] < nt ? to_f(rb[j]) : 0.f;
        s_C[idx] = bc_row[j] < nt ? to_f(rc[j]) : 0.f;
      }
    }
    if (ck_p) {
      if (ev) *reinterpret_cast<float4*>(ck_p) = make_float4(h[0], h[1], h[2], h[3]);
      ck_p += E * N;
    }
    __syncthreads();
    if (t0 + kT < t_end) {
      advance();
      load_tile(t0 + kT);
    }

    // ---- scan
#pragma unroll 4
    for (int tt = 0; tt < kT; ++tt) {
      const float2 dd = s_dd[tt * EC + el];
      const float dt = dd.x, dtu = dd.y;
      const float4 B4 = *reinterpret_cast<const float4*>(s_B + tt * N + n0);
      const float Bv[kNS] = {B4.x, B4.y, B4.z, B4.w};
      if (kOut) {
        const float4 C4 = *reinterpret_cast<const float4*>(s_C + tt * N + n0);
        const float Cv[kNS] = {C4.x, C4.y, C4.z, C4.w};
        float y = 0.f;
#pragma unroll
        for (int i = 0; i < kNS; ++i) {
          h[i] = fmaf(fast_exp2(dt * A2[i]), h[i], dtu * Bv[i]);
          y = fmaf(Cv[i], h[i], y);
        }
        s_y[(g * kT + tt) * EC + el] = y;
      } else {
#pragma unroll
        for (int i = 0; i < kNS; ++i) h[i] = fmaf(fast_exp2(dt * A2[i]), h[i], dtu * Bv[i]);
      }
    }
    __syncthreads();

    // ---- epilogue (the next stage writes only s_dd / s_B / s_C, and s_y is rewritten only after
    // the next barrier, so no third barrier is needed)
    if (kOut) {
#pragma unroll
      for (int k = 0; k < PT; ++k) {
        const int tt = g + k * G;
        if (ev && tt < nt) {
          float y = 0.f;
#pragma unroll
          for (int gg = 0; gg < G; ++gg) y += s_y[(gg * kT + tt) * EC + el];
          y = fmaf(Dv, uu[k], y);
          if (has_z) y *= silu_f(zz[k]);
          store_f(o_p, k * G * run.out_sl, y);
        }
      }
      o_p += kT * run.out_sl;
    }
  }

  if (ev) {
    if (run.h_end && (!run.end_last_only || seg == run.S - 1)) {
      float* dst = run.h_end + b * run.he_sb + seg * run.he_ss + e * N + n0;
      *reinterpret_cast<float4*>(dst) = make_float4(h[0], h[1], h[2], h[3]);
    }
    if (run.sumdt) atomicAdd(run.sumdt + (b * run.S + seg) * E + e, sum_dt);
  }
}

// Segment combine: h_init[s] = exp(A·ΣΔ[s-1])·h_init[s-1] + h_loc[s-1], h_init[0] = h0. One thread per (b, e, n).
__global__ void s6_fwd_combine_kernel(const float* A, const float* h0, const float* h_loc, const double* sumdt,
                                      float* h_init, int64_t batch, int64_t E, int64_t N, int S) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= batch * E * N) return;
  const int64_t b = idx / (E * N), en = idx % (E * N), e = en / N;
  const double a = A[en];
  float h = h0 ? h0[idx] : 0.f;
  for (int s = 0; s < S; ++s) {
    const int64_t slot = (b * S + s) * E * N + en;
    h_init[slot] = h;
    h = float(exp(a * sumdt[(b * S + s) * E + e])) * h + h_loc[slot];
  }
}

template <typename IO, int N>
cudaError_t launch_fwd(const S6Inputs& in, const S6FwdArgs& args, void* workspace, cudaStream_t stream) {
  using Cf = Cfg<N>;
  const int64_t nblk = channel_blocks<N>(in);
  const SegPlan plan = plan_segments(in, nblk * in.batch, kFwdCtasPerSm);
  const size_t smem = sizeof(float) * size_t(2 * kT * Cf::EC + 2 * kT * N + Cf::G * kT * Cf::EC);
  auto k_main = s6_fwd_kernel<IO, N, true>;
  auto k_first = s6_fwd_kernel<IO, N, false>;
  cudaError_t err = cudaFuncSetAttribute(k_main, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err == cudaSuccess) err = cudaFuncSetAttribute(k_first, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err != cudaSuccess) return err;
  const int64_t EN = in.dim * N;

  FwdRun run;
  run.seg_len = plan.seg_len;
  run.S = plan.S;
  if (plan.S > 1) {
    // workspace: h_loc (B, S, E, N) f32 | h_init (B, S, E, N) f32 | sumdt (B, S, E) f64
    float* h_loc = static_cast<float*>(workspace);
    float* h_init = h_loc + in.batch * plan.S * EN;
    double* sumdt = reinterpret_cast<double*>(h_init + in.batch * plan.S * EN);
    err = cudaMemsetAsync(sumdt, 0, sizeof(double) * in.batch * plan.S * in.dim, stream);
    if (err != cudaSuccess) return err;
    FwdRun first = run;
    first.h_end = h_loc;
    first.he_sb = plan.S * EN;
    first.he_ss = EN;
    first.sumdt = sumdt;
    // The last segment's end state is not needed by the combine: run only segments 0 .. S-2.
    MX_LAUNCH(k_first, dim3(unsigned(nblk), unsigned(in.batch), unsigned(plan.S - 1)), dim3(kThreads), smem, stream,
              in, first);
    const int64_t total = in.batch * EN;
    MX_LAUNCH(s6_fwd_combine_kernel, dim3(unsigned(ceil_div(total, 256))), dim3(256), 0, stream, in.A, args.h0,
              h_loc, sumdt, h_init, in.batch, in.dim, int64_t(N), plan.S);
    run.h_init = h_init;
    run.hi_sb = plan.S * EN;
    run.hi_ss = EN;
  } else {
    run.h_init = args.h0;
    run.hi_sb = EN;
  }
  run.h_end = args.hT;
  run.he_sb = EN;
  run.he_ss = 0;
  run.end_last_only = true;
  run.out = args.out;
  run.out_sb = args.out_sb;
  run.out_sl = args.out_sl;
  run.ckpt = args.ckpt;
  run.nchunks = s6_num_chunks(in.len);
  const dim3 grid(unsigned(nblk), unsigned(in.batch), unsigned(plan.S));
  if (args.out) {
    MX_LAUNCH(k_main, grid, dim3(kThreads), smem, stream, in, run);
  } else {
    MX_LAUNCH(k_first, grid, dim3(kThreads), smem, stream, in, run);
  }
  return cudaGetLastError();
}

}  // namespace
}  // namespace mx::kern::s6

namespace mx::kern {

bool s6_supported_dstate(int64_t n) { return n == 8 || n == 16 || n == 32 || n == 64 || n == 128; }

int64_t s6_num_chunks(int64_t len) { return ceil_div(len, s6::kT); }

namespace s6 {
// Workspace of a segmented pass: two (B, S, E, N) fp32 state arrays and a (B, S, E) fp64 Σ Δ.
size_t segment_workspace_bytes(const S6Inputs& in, int max_ctas_per_sm) {
  if (!s6_supported_dstate(in.dstate)) return 0;
  int64_t nblk = 0;
  dispatch(IoType::F32, in.dstate, [&](auto, auto nc) { nblk = channel_blocks<decltype(nc)::value>(in); });
  const SegPlan plan = plan_segments(in, nblk * in.batch, max_ctas_per_sm);
  if (plan.S <= 1) return 0;
  const size_t slots = size_t(in.batch) * plan.S * in.dim;
  return slots * in.dstate * sizeof(float) * 2 + slots * sizeof(double);
}
}  // namespace s6

size_t s6_fwd_workspace_bytes(const S6Inputs& in) { return s6::segment_workspace_bytes(in, s6::kFwdCtasPerSm); }

cudaError_t s6_fwd(const S6Inputs& in, const S6FwdArgs& args, void* workspace, cudaStream_t stream) {
  if (!s6_supported_dstate(in.dstate) || !in.u || !in.delta || !in.B || !in.C || !in.A || in.batch < 1 ||
      in.len < 1 || in.dim < 1)
    return cudaErrorInvalidValue;
  if (s6_fwd_workspace_bytes(in) > 0 && !workspace) return cudaErrorInvalidValue;
  cudaError_t err = cudaSuccess;
  s6::dispatch(in.io, in.dstate, [&](auto io, auto nc) {
    err = s6::launch_fwd<decltype(io), decltype(nc)::value>(in, args, workspace, stream);
  });
  return err;
}

}  // namespace mx::kern
