// S6 forward (s6.h has the math): the main kernel, its time-segment first pass and the segment combine.
//
// CTA = (channel block of EC channels, batch row, time segment), T = 128 threads (FwdCfg). Thread
// (g, el) owns channel e0 + el and states [4g, 4g + 4) in the scan. Per tile of kT tokens:
//   stage    registers -> shared: Δ = s·softplus(δ + b) and Δ·u per (token, channel), B and C per token;
//            the next tile's global loads are issued right after, so they overlap the scan
//   scan     each thread walks the kT tokens: a = 2^(Δ·A·log2 e), h = a·h + Δu·B, y_part += C·h
//   epilogue y = Σ_g y_part + D·u, times silu(z), stored by the thread that staged that (token, channel)
// Staging and the epilogue work on items of VW consecutive channels of one token: one 16-byte load (bf16;
// two for fp32) per tensor and item when the activations are aligned (FwdRun::vec), element loads otherwise.
// B and C are read from global memory once per CTA and tile, not once per channel.
// The launcher splits time into S segments when the channel blocks leave CTA slots free, and cuts the first
// pass into pieces when it alone would leave them free (plan_forward).
// Measured on an H100 (kernels/dev/NOTES_mamba1.md, v4): CTAs of 32 or 64 threads without time segments balance
// the blocks better but leave ~1 warp per scheduler, and the recurrence is latency-bound there (E = 5120,
// L = 64k, bf16: 8.1-9.0 ms unsplit vs 5.65 ms at 128 threads and S = 3), so the CTA size is fixed at 128.
// Fewer states per thread (2 or 1) to fill the GPU without the time split were slower too, also with io / scan warp
// specialisation (64k bf16: 5.3-8.8 ms vs 4.55 ms; NOTES_mamba1.md, "Forward v5 (dropped)").
#include "s6/s6_common.cuh"

namespace mx::kern::s6 {
namespace {

// Tiling of the forward for a d_state of N (T = kThreads threads per CTA).
template <int N>
struct FwdCfg {
  static constexpr int T = kThreads;
  static_assert(N % kNS == 0 && N % 8 == 0 && N / kNS <= T, "unsupported d_state for this CTA size");
  static constexpr int G = N / kNS;                       // threads per channel in the scan
  static constexpr int EC = T / G;                        // channels per CTA
  static constexpr int VW = EC < 8 ? EC : 8;              // channels per staging item
  static constexpr int CG = EC / VW;                      // staging items per token
  static constexpr int IT = (kT * CG + T - 1) / T;        // staging items per thread and tile
  static constexpr int BI = (2 * kT * N / 8 + T - 1) / T;  // 8-value B / C items per thread and tile
  static constexpr int DP = EC + 1;                       // padded row of s_dd (float2): 2-way conflicts at most
  static constexpr int YP = EC >= 8 ? EC + 4 : EC;        // padded row of s_y (floats)
  static constexpr size_t smem_bytes() {
    return sizeof(float) * size_t(2 * kT * DP + 2 * kT * N + G * kT * YP + 3 * EC);
  }
};

// Stores VW floats as IO (vector store when `vec`, else the first n elements one by one).
template <int VW>
MX_DEV void store_vec(float* p, const float (&y)[VW], bool vec, int n) {
  if (vec && VW % 4 == 0) {
#pragma unroll
    for (int i = 0; i < VW / 4; ++i) {
      const uint32_t w[4] = {bits_from_f(y[4 * i]), bits_from_f(y[4 * i + 1]), bits_from_f(y[4 * i + 2]),
                             bits_from_f(y[4 * i + 3])};
      st_u32x4(p + 4 * i, w);
    }
  } else {
#pragma unroll
    for (int v = 0; v < VW; ++v)
      if (v < n) p[v] = y[v];
  }
}
template <int VW>
MX_DEV void store_vec(bf16* p, const float (&y)[VW], bool vec, int n) {
  if (vec && VW == 8) {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = pack_bf16(y[2 * i], y[2 * i + 1]);
    st_u32x4(p, w);
  } else {
#pragma unroll
    for (int v = 0; v < VW; ++v)
      if (v < n) p[v].bits = float_to_bf16(y[v]);
  }
}

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
  bool vec = false;     // u, delta, z (and out) rows allow aligned VW-element vector access
  bool bc_vec = false;  // B and C rows allow aligned 8-element vector access
};

// kOut: the full pass (writes y); otherwise the first pass of the segment split (states and Σ Δ only).
// Full tiles load without row guards; the sequence's last partial tile clamps its rows to the last token
// (values past the end are masked when staged).
template <typename IO, int N, bool kOut>
__global__ void __launch_bounds__(kThreads, fwd_ctas_per_sm<IO>()) s6_fwd_kernel(S6Inputs in, FwdRun run) {
  using Cf = FwdCfg<N>;
  constexpr int T = kThreads, G = Cf::G, EC = Cf::EC, VW = Cf::VW, CG = Cf::CG, IT = Cf::IT, BI = Cf::BI, DP = Cf::DP, YP = Cf::YP;
  const int tid = threadIdx.x, g = tid / EC, el = tid % EC, n0 = g * kNS;
  const int64_t b = blockIdx.y, seg = blockIdx.z, E = in.dim, L = in.len;
  const int64_t e_blk = int64_t(blockIdx.x) * EC, e = e_blk + el;
  const bool ev = e < E;
  const int64_t t_begin = seg * run.seg_len, t_end = t_begin + run.seg_len < L ? t_begin + run.seg_len : L;
  const bool has_z = in.z != nullptr;

  float2* s_dd = reinterpret_cast<float2*>(dynamic_smem());  // (kT, DP) (Δ, Δ·u)
  float* s_B = reinterpret_cast<float*>(s_dd + kT * DP);       // (kT, N)
  float* s_C = s_B + kT * N;                                 // (kT, N)
  float* s_y = s_C + kT * N;                                 // (G, kT, YP) partial sums over each thread's states
  float* s_bias = s_y + G * kT * YP;                         // (EC) dt_bias
  float* s_scl = s_bias + EC;                                // (EC) Δ scale
  float* s_D = s_scl + EC;                                   // (EC) D

  // ---- staging items: token row r, channels [ce, ce + nv) of the block
  int row[IT], nv[IT];
  const IO *u_p[IT], *d_p[IT], *z_p[IT];
  IO* o_p[IT];
  double sum_dt[IT][VW];
  const IO* u_base = static_cast<const IO*>(in.u) + b * in.u_sb;
  const IO* d_base = static_cast<const IO*>(in.delta) + b * in.delta_sb;
  const IO* z_base = has_z ? static_cast<const IO*>(in.z) + b * in.z_sb : u_base;
  const int64_t z_sl = has_z ? in.z_sl : in.u_sl;
#pragma unroll
  for (int j = 0; j < IT; ++j) {
    const int64_t ce = staging_item<CG, VW>(tid + j * T, e_blk, E, row[j], nv[j]);
    const int64_t cs = nv[j] > 0 ? ce : 0;  // address-safe channel
    const int64_t t = t_begin + (row[j] < kT ? row[j] : 0);
    u_p[j] = u_base + t * in.u_sl + cs;
    d_p[j] = d_base + t * in.delta_sl + cs;
    z_p[j] = z_base + t * z_sl + cs;
    o_p[j] = kOut ? static_cast<IO*>(run.out) + b * run.out_sb + t * run.out_sl + cs : nullptr;
#pragma unroll
    for (int v = 0; v < VW; ++v) sum_dt[j][v] = 0.0;
  }
  // Per-channel parameters of the block (shared: registers are the scarce resource here).
  for (int c = tid; c < EC; c += T) {
    const int64_t ch = e_blk + c;
    const bool ok = ch < E;
    s_bias[c] = ok && in.dt_bias ? in.dt_bias[ch] : 0.f;
    s_scl[c] = in.dt_scale ? in.dt_scale[ok ? ch * in.dt_scale_stride : 0] : 1.f;
    s_D[c] = ok && in.D ? in.D[ch] : 0.f;
  }
  // B / C items: 8 values of B (items < kT·N/8) or of C, token row br, states [bn, bn + 8)
  constexpr int kBCItems = 2 * kT * N / 8;
  const IO* bc_p[BI];
  int bc_row[BI];
#pragma unroll
  for (int j = 0; j < BI; ++j) {
    const int item = tid + j * T, half = item % (kT * N / 8), isC = item / (kT * N / 8);
    bc_row[j] = item < kBCItems ? half / (N / 8) : kT;
    const int bn = (half % (N / 8)) * 8;
    bc_p[j] = isC ? static_cast<const IO*>(in.C) + b * in.C_sb + t_begin * in.C_sl + bn
                  : static_cast<const IO*>(in.B) + b * in.B_sb + t_begin * in.B_sl + bn;
  }

  float A2[kNS], h[kNS];
#pragma unroll
  for (int i = 0; i < kNS; ++i) {
    A2[i] = ev ? in.A[e * N + n0 + i] * kLog2e : 0.f;
    h[i] = (ev && run.h_init) ? run.h_init[b * run.hi_sb + seg * run.hi_ss + e * N + n0 + i] : 0.f;
  }

  Raw<IO, VW> nu[IT], nd[IT], nz[IT];  // the next tile, raw
  Raw<IO, 8> nbc[BI];
  // Loads the tile at t0 (rows clamped to the segment's last token in a partial tile).
  auto load_tile = [&](int64_t t0) {
    const int64_t last = t_end - 1 - t0;
    const bool full = last >= kT - 1;
#pragma unroll
    for (int j = 0; j < IT; ++j) {
      if (nv[j] == 0) continue;
      const int64_t back = full || row[j] <= last ? 0 : row[j] - last;  // rows to step back to stay in range
      const bool vec = run.vec && nv[j] == VW;
      nu[j].load(u_p[j] - back * in.u_sl, vec, nv[j]);
      nd[j].load(d_p[j] - back * in.delta_sl, vec, nv[j]);
      if (kOut && has_z) nz[j].load(z_p[j] - back * z_sl, vec, nv[j]);
    }
#pragma unroll
    for (int j = 0; j < BI; ++j) {
      if (bc_row[j] >= kT) continue;
      const int64_t sl = tid + j * T < kT * N / 8 ? in.B_sl : in.C_sl;
      const int64_t r = full || bc_row[j] <= last ? bc_row[j] : last;
      nbc[j].load(bc_p[j] + r * sl, run.bc_vec, 8);
    }
  };
  auto advance = [&] {
#pragma unroll
    for (int j = 0; j < IT; ++j) {
      u_p[j] += kT * in.u_sl, d_p[j] += kT * in.delta_sl, z_p[j] += kT * z_sl;
    }
#pragma unroll
    for (int j = 0; j < BI; ++j) bc_p[j] += kT * (tid + j * T < kT * N / 8 ? in.B_sl : in.C_sl);
  };

  float* ck_p = run.ckpt ? run.ckpt + ((b * run.nchunks + t_begin / kT) * E + (ev ? e : 0)) * N + n0 : nullptr;
  Raw<IO, VW> cu[IT], cz[IT];  // this tile's u and z (for the epilogue)
  if (t_begin < t_end) load_tile(t_begin);
  __syncthreads();  // s_bias / s_scl / s_D
  for (int64_t t0 = t_begin; t0 < t_end; t0 += kT) {
    const int nt = int(t_end - t0 < kT ? t_end - t0 : kT);
    // ---- stage
#pragma unroll
    for (int j = 0; j < IT; ++j) {
      if (row[j] >= kT) continue;
      cu[j] = nu[j];
      cz[j] = nz[j];
      const bool live = row[j] < nt;
      const int c0 = (tid + j * T) % CG * VW;
      float dd[2 * VW];
#pragma unroll
      for (int v = 0; v < VW; ++v) {
        float dt = 0.f, dtu = 0.f;
        if (live && v < nv[j]) {
          dt = s_scl[c0 + v] * softplus_fast_f(nd[j].get(v) + s_bias[c0 + v]);
          dtu = dt * nu[j].get(v);
          if (!kOut) sum_dt[j][v] += dt;
        }
        dd[2 * v] = dt, dd[2 * v + 1] = dtu;  // padded tokens: Δ = 0, so a = 1: the state passes through
      }
      float* dst = reinterpret_cast<float*>(s_dd + row[j] * DP + c0);
#pragma unroll
      for (int v = 0; v < VW; ++v) *reinterpret_cast<float2*>(dst + 2 * v) = make_float2(dd[2 * v], dd[2 * v + 1]);
    }
    store_bc_items<N, T>(nbc, bc_row, tid, nt, s_B, s_C);
    if (ck_p) {
      if (ev) *reinterpret_cast<float4*>(ck_p) = make_float4(h[0], h[1], h[2], h[3]);
      ck_p += E * N;
    }
    __syncthreads();
    if (t0 + kT < t_end) {
      advance();
      load_tile(t0 + kT);
    }

    // ---- scan, in groups of kU tokens whose shared-memory operands are loaded before the previous group's
    // y partials are stored (the compiler cannot move loads across those stores: it cannot tell s_y from s_dd)
    constexpr int kU = 4;
    float2 dd_n[kU];
    float4 B_n[kU], C_n[kU];
    auto load_group = [&](int t) {
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        dd_n[u] = s_dd[(t + u) * DP + el];
        B_n[u] = *reinterpret_cast<const float4*>(s_B + (t + u) * N + n0);
        if (kOut) C_n[u] = *reinterpret_cast<const float4*>(s_C + (t + u) * N + n0);
      }
    };
    load_group(0);
#pragma unroll
    for (int t = 0; t < kT; t += kU) {
      float2 dd_c[kU];
      float4 B_c[kU], C_c[kU];
#pragma unroll
      for (int u = 0; u < kU; ++u) dd_c[u] = dd_n[u], B_c[u] = B_n[u], C_c[u] = C_n[u];
      if (t + kU < kT) load_group(t + kU);
      float y[kU];
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const float dt = dd_c[u].x, dtu = dd_c[u].y;
        const float Bv[kNS] = {B_c[u].x, B_c[u].y, B_c[u].z, B_c[u].w};
        const float Cv[kNS] = {C_c[u].x, C_c[u].y, C_c[u].z, C_c[u].w};
        y[u] = 0.f;
#pragma unroll
        for (int i = 0; i < kNS; ++i) {
          h[i] = fmaf(fast_exp2(dt * A2[i]), h[i], dtu * Bv[i]);
          if (kOut) y[u] = fmaf(Cv[i], h[i], y[u]);
        }
      }
      if (kOut) {
#pragma unroll
        for (int u = 0; u < kU; ++u) s_y[(g * kT + t + u) * YP + el] = y[u];
      }
    }
    __syncthreads();

    // ---- epilogue (the next stage writes only s_dd / s_B / s_C, and s_y is rewritten only after
    // the next barrier, so no third barrier is needed)
    if (kOut) {
#pragma unroll
      for (int j = 0; j < IT; ++j) {
        if (row[j] >= nt || nv[j] == 0) continue;
        const int c0 = (tid + j * T) % CG * VW;
        float y[VW];
#pragma unroll
        for (int v = 0; v < VW; ++v) y[v] = 0.f;
#pragma unroll
        for (int gg = 0; gg < G; ++gg) {
          const float* src = s_y + (gg * kT + row[j]) * YP + c0;
          if (VW % 4 == 0) {
#pragma unroll
            for (int q = 0; q < VW / 4; ++q) {
              const float4 p = *reinterpret_cast<const float4*>(src + 4 * q);
              y[4 * q] += p.x, y[4 * q + 1] += p.y, y[4 * q + 2] += p.z, y[4 * q + 3] += p.w;
            }
          } else {
#pragma unroll
            for (int v = 0; v < VW; ++v) y[v] += src[v];
          }
        }
#pragma unroll
        for (int v = 0; v < VW; ++v) {
          y[v] = fmaf(s_D[c0 + v], cu[j].get(v), y[v]);
          if (has_z) y[v] *= silu_fast_f(cz[j].get(v));
        }
        store_vec(o_p[j], y, run.vec && nv[j] == VW, nv[j]);
      }
#pragma unroll
      for (int j = 0; j < IT; ++j) o_p[j] += kT * run.out_sl;
    }
  }

  if (ev && run.h_end && (!run.end_last_only || seg == run.S - 1)) {
    float* dst = run.h_end + b * run.he_sb + seg * run.he_ss + e * N + n0;
    *reinterpret_cast<float4*>(dst) = make_float4(h[0], h[1], h[2], h[3]);
  }
  if (run.sumdt) {
#pragma unroll
    for (int j = 0; j < IT; ++j)
#pragma unroll
      for (int v = 0; v < VW; ++v)
        if (v < nv[j]) atomicAdd(run.sumdt + (b * run.S + seg) * E + e_blk + (tid + j * T) % CG * VW + v, sum_dt[j][v]);
  }
}

// Segment combine over the first pass's K = F·(S-1) pieces (F per segment): h = exp(A·ΣΔ[k])·h + h_loc[k] from
// h0, and h_init[s] = h at the start of piece s·F (every segment's first piece). One thread per (b, e, n).
__global__ void s6_fwd_combine_kernel(const float* A, const float* h0, const float* h_loc, const double* sumdt,
                                      float* h_init, int64_t batch, int64_t E, int64_t N, int S, int F) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= batch * E * N) return;
  const int64_t b = idx / (E * N), en = idx % (E * N), e = en / N, K = int64_t(F) * (S - 1);
  const double a = A[en];
  float h = h0 ? h0[idx] : 0.f;
  for (int64_t k = 0; k < K; ++k) {
    if (k % F == 0) h_init[(b * S + k / F) * E * N + en] = h;
    h = float(exp(a * sumdt[(b * K + k) * E + e])) * h + h_loc[(b * K + k) * E * N + en];
  }
  h_init[(b * S + S - 1) * E * N + en] = h;
}

// How the forward runs (plan_split): S time segments, as many as fill kFwdPlanCtasPerSm slots per SM, and the first
// pass over segments 0 .. S-2 in F pieces each, filling the register budget's slots (it has S-1 of the main pass's
// S segments; at batch 4 x 1536 channels, S = 2 and the first pass would otherwise get 1.5 CTAs per SM).
// Workspace (split_ws): h_loc | h_init | Σ Δ.
inline SplitPlan plan_forward(const S6Inputs& in) {
  const int64_t nblk = ceil_div(in.dim, kThreads / (in.dstate / kNS)) * in.batch;
  const int ctas = in.io == IoType::BF16 ? fwd_ctas_per_sm<bf16>() : fwd_ctas_per_sm<float>();
  return plan_split(in, nblk, kFwdPlanCtasPerSm, ctas);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename IO, int N>
cudaError_t launch_fwd(const S6Inputs& in, const S6FwdArgs& args, const SplitPlan& fp, void* workspace,
                       cudaStream_t stream) {
  const SegPlan& plan = fp.seg;
  constexpr int T = kThreads;
  using Cf = FwdCfg<N>;
  const int64_t nblk = ceil_div(in.dim, Cf::EC);
  const size_t smem = Cf::smem_bytes();
  auto k_main = s6_fwd_kernel<IO, N, true>;
  auto k_first = s6_fwd_kernel<IO, N, false>;
  cudaError_t err = cudaFuncSetAttribute(k_main, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err == cudaSuccess) err = cudaFuncSetAttribute(k_first, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err != cudaSuccess) return err;
  const int64_t EN = in.dim * N;

  // Vector access: 16-byte aligned rows and channel groups (a group of VW elements spans 16 or 32 bytes).
  constexpr int64_t kVecElems = 16 / int64_t(sizeof(IO));
  auto rows_ok = [&](const void* p, int64_t sb, int64_t sl) {
    return p == nullptr || (aligned16(p) && sb % kVecElems == 0 && sl % kVecElems == 0);
  };
  FwdRun run;
  run.vec = (Cf::VW * int64_t(sizeof(IO))) % 16 == 0 && rows_ok(in.u, in.u_sb, in.u_sl) &&
            rows_ok(in.delta, in.delta_sb, in.delta_sl) && rows_ok(in.z, in.z_sb, in.z_sl) &&
            rows_ok(args.out, args.out_sb, args.out_sl);
  run.bc_vec = rows_ok(in.B, in.B_sb, in.B_sl) && rows_ok(in.C, in.C_sb, in.C_sl);
  run.seg_len = plan.seg_len;
  run.S = plan.S;
  if (plan.S > 1) {
    const int64_t K = fp.K();
    const SplitWs ws = split_ws(in, fp, workspace);
    float *h_loc = ws.loc, *h_init = ws.init;
    double* sumdt = ws.sumdt;
    err = cudaMemsetAsync(sumdt, 0, sizeof(double) * in.batch * K * in.dim, stream);
    if (err != cudaSuccess) return err;
    // First pass over the K pieces of segments 0 .. S-2 (the last segment's end state is not needed).
    FwdRun first = run;
    first.seg_len = plan.seg_len / fp.F;
    first.S = int(K);
    first.h_end = h_loc;
    first.he_sb = K * EN;
    first.he_ss = EN;
    first.sumdt = sumdt;
    MX_LAUNCH(k_first, dim3(unsigned(nblk), unsigned(in.batch), unsigned(K)), dim3(T), smem, stream, in, first);
    const int64_t total = in.batch * EN;
    MX_LAUNCH(s6_fwd_combine_kernel, dim3(unsigned(ceil_div(total, 256))), dim3(256), 0, stream, in.A, args.h0,
              h_loc, sumdt, h_init, in.batch, in.dim, int64_t(N), plan.S, fp.F);
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
    MX_LAUNCH(k_main, grid, dim3(T), smem, stream, in, run);
  } else {
    MX_LAUNCH(k_first, grid, dim3(T), smem, stream, in, run);
  }
  return cudaGetLastError();
}

}  // namespace
}  // namespace mx::kern::s6

namespace mx::kern {

bool s6_supported_dstate(int64_t n) { return n == 8 || n == 16 || n == 32 || n == 64 || n == 128; }

int64_t s6_num_chunks(int64_t len) { return ceil_div(len, s6::kT); }

size_t s6_fwd_workspace_bytes(const S6Inputs& in) {
  return s6_supported_dstate(in.dstate) ? s6::split_ws(in, s6::plan_forward(in), nullptr).bytes : 0;
}

int s6_fwd_segments(const S6Inputs& in) { return s6_supported_dstate(in.dstate) ? s6::plan_forward(in).seg.S : 0; }

cudaError_t s6_fwd(const S6Inputs& in, const S6FwdArgs& args, void* workspace, cudaStream_t stream) {
  if (!s6_supported_dstate(in.dstate) || !in.u || !in.delta || !in.B || !in.C || !in.A || in.batch < 1 ||
      in.len < 1 || in.dim < 1)
    return cudaErrorInvalidValue;
  const s6::SplitPlan plan = s6::plan_forward(in);
  if (plan.seg.S > 1 && !workspace) return cudaErrorInvalidValue;
  cudaError_t err = cudaSuccess;
  s6::dispatch(in.io, in.dstate, [&](auto io, auto nc) {
    err = s6::launch_fwd<decltype(io), decltype(nc)::value>(in, args, plan, workspace, stream);
  });
  return err;
}

}  // namespace mx::kern
