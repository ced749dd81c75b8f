// S6 backward (s6.h has the math and the argument layout): the main kernel, the time-segment first pass and
// the segment combine. With g_t = dout_t·silu(z_t) the gradient of y_t, and dh_t the total gradient of h_t:
//   dh_t   = C_t·g_t + a_{t+1}·dh_{t+1}              (a_t = exp(Δ_t·A); dh after the last token = dhT)
//   du_t   = D·g_t + Δ_t·Σ_n B_t dh_t                 dΔ_t = u_t·Σ_n B_t dh_t + Σ_n A·a_t·h_{t-1}·dh_t
//   dB_t   = Σ_e Δ_t u_t dh_t      dC_t = Σ_e g_t h_t      dA = Σ_t Δ_t a_t h_{t-1} dh_t      dD = Σ_t g_t u_t
//   dz_t   = dout_t·y_t·silu'(z_t)                    (y_t before the gate, D·u included)
//   d(delta_raw) = dΔ·s·σ(delta_raw + b);  d(dt_bias) = Σ_t d(delta_raw);  d(s) = Σ_t dΔ·softplus(delta_raw + b)
//   dh0    = a_0·dh_0
// CTA = (channel block, batch row, time segment), thread (g, el) = channel e0 + el, states [4g, 4g + 4).
// The launcher splits time into S segments when the channel blocks leave CTA slots free: a first pass, cut into
// pieces that fill the GPU, runs dh backwards over every later segment from a zero carry, a combine gives each
// segment its true incoming dh, then the main pass runs all segments at once.
// Tiles of kT tokens run in reverse. Per tile:
//   stage     items of 8 consecutive channels of one token (one 16-byte load per tensor when the rows are
//             aligned): Δ, Δu, g and the per-(token, channel) factors of the finish into shared memory; the
//             previous tile's global loads are issued right after, to overlap
//   states    at the starts of the kNSub register sub-tiles, recomputed from the forward's checkpoint
//   sub-tiles last first, in a loop unrolled only kBwdSubUnroll times (the tile's code then fits the instruction
//             cache): recompute its kT2 states keeping a_t and a_t·h_{t-1} in registers, run dh backwards, and reduce
//     over the thread's states -> y, Σ_n B dh, Σ_n A a h dh (partials, summed over the G threads of a channel)
//     over the warp's channels -> dB, dC: h and dh go to shared memory as one 16-byte row per thread and token,
//                                 each warp contracts its own (no CTA barrier), one float4 atomic per output
//     per (token, channel)     -> du, d(delta), dz (one thread each, after the sub-tile's one barrier)
// dA / dD / d(dt_bias) / d(s) are summed in fp32 within a tile, in fp64 across tiles and by fp64 atomics.
#include "s6/s6_common.cuh"

namespace mx::kern::s6 {
namespace {

// Tiling of the main kernel for a d_state of N. Thread (g, el) owns channel el of the block and states
// [4g, 4g + 4) as in Cfg<N>; T = kThreads.
template <int N>
struct BwdCfg {
  static constexpr int T = kThreads, G = Cfg<N>::G, EC = Cfg<N>::EC;
  // staging: items of VW consecutive channels of one token
  static constexpr int VW = EC < 8 ? EC : 8;               // channels per item
  static constexpr int CG = EC / VW;                       // items per token
  static constexpr int IT = (kT * CG + T - 1) / T;         // items per thread and tile
  static constexpr int BI = (2 * kT * N / 8 + T - 1) / T;  // 8-value B / C items per thread and tile
  static constexpr int FM = (kT2 + G - 1) / G;             // (token, channel) pairs a thread finishes per sub-tile
  // dB / dC: every warp contracts its own states over its own channels; an output is 4 values of dB or dC
  // (one token, one state group), summed over the warp's channels by LPO lanes of CPL channels each
  static constexpr int WC = EC < 32 ? EC : 32;         // channels of a warp
  static constexpr int WG = 32 / WC;                   // state groups of a warp
  static constexpr int CPL = WC < 8 ? WC : 8;          // channels per lane
  static constexpr int LPO = WC / CPL;                 // lanes per output
  static constexpr int OPL = 2 * kT2 * WG * LPO / 32;  // outputs per lane
  static_assert(OPL * 32 == 2 * kT2 * WG * LPO && (OPL == 1 || LPO == 1), "contraction layout");
  // Rows of 16-byte slots with one padding slot after every 8 (pad8) and rows 4 slots apart modulo 8: stores
  // of 8 consecutive threads (or channels) and the contraction's reads hit distinct bank groups.
  static constexpr int TP = (T + T / 8 + 3) / 8 * 8 + 4;    // s_hd row: T slots
  static constexpr int PR = (EC + EC / 8 + 3) / 8 * 8 + 4;  // s_pv row: EC slots
  static constexpr size_t smem_bytes() {
    return sizeof(float) * size_t(4 * (2 * kT2 * TP + kT * PR + T) + 2 * kT * EC + 4 * G * kT2 * EC + 2 * kT * EC +
                                  2 * kT * N + 2 * G * kT2 * EC + 2 * EC);
  }
};

MX_HD constexpr int pad8(int i) { return i + i / 8; }

// Unroll factor of the main kernel's sub-tile loop. Fully unrolled (kNSub) the tile loop is ~4.4k SASS instructions
// (~70 KB), more than the instruction cache holds ("no instruction" stalls 0.64 per issued instruction); unrolled by 2
// it is ~2.4k (0.04). Measured (H100, E = 5120, 64k, bf16 backward): 8 15.91-16.01 ms, 1 15.69, 2 15.41-15.54,
// 4 15.16-15.22 (kernels/dev/NOTES_mamba1.md, Backward v6). MX_S6_BWD_SUB_UNROLL overrides it for experiments (a
// divisor of kNSub).
#ifndef MX_S6_BWD_SUB_UNROLL
#define MX_S6_BWD_SUB_UNROLL 4
#endif
constexpr int kBwdSubUnroll = MX_S6_BWD_SUB_UNROLL;

// CTAs of the main kernel per SM: the register budget (kBwdCtasPerSm, 168 registers) or the shared memory
// (228 KB per SM, 1 KB of it reserved per CTA), whichever allows fewer; the launch bounds and the time-segment
// plan use it. N = 16 .. 128: 3; N = 8 (105 KB per CTA): 2, at up to 255 registers.
template <int N>
constexpr int bwd_ctas_per_sm() {
  constexpr int by_smem = int(size_t(228 * 1024) / (BwdCfg<N>::smem_bytes() + 1024));
  return kBwdCtasPerSm < by_smem ? kBwdCtasPerSm : by_smem;
}

constexpr float kLn2 = 0.6931471805599453f;

// Orders shared-memory accesses among the threads of a warp (the emulator knows no warps: a CTA barrier there,
// which every thread reaches too).
MX_DEV void warp_sync() {
#ifdef MX_CPU_EMU
  __syncthreads();
#else
  __syncwarp();
#endif
}

// One activation element (bf16: round to nearest even in one F2FP).
MX_DEV void store_one(float* p, float v) { *p = v; }
MX_DEV void store_one(bf16* p, float v) { p->bits = static_cast<uint16_t>(pack_bf16(v, 0.f)); }

struct BwdRun {
  const float* dh_init = nullptr;  // gradient arriving at the segment's last state: dh_init + b*di_sb + s*di_ss
  int64_t di_sb = 0, di_ss = 0;
  float* dh_loc = nullptr;  // first pass: (B, K, E, N) carry out of each piece from a zero carry in
  double* sumdt = nullptr;  // first pass: (B, K, E) Σ Δ over each piece
  int64_t nchunks = 0, seg_len = 0;  // seg_len: tokens per segment (first pass: per piece)
  int S = 1;                         // segments (first pass: K, the pieces it runs)
  int first_piece = 0;               // first pass: index in time of its piece 0 (segment 0's F pieces skipped)
  bool vec = false;     // u, delta, z, dout rows allow aligned VW-element vector loads
  bool bc_vec = false;  // B and C rows allow aligned 8-element vector loads
};

// Full tiles load without row guards; the sequence's last partial tile clamps its rows to the last token
// (values past the end are masked when staged).
template <typename IO, int N>
__global__ void __launch_bounds__(kThreads, bwd_ctas_per_sm<N>())
    s6_bwd_kernel(S6Inputs in, S6BwdArgs args, BwdRun run) {
  using Cf = BwdCfg<N>;
  constexpr int T = Cf::T, G = Cf::G, EC = Cf::EC, VW = Cf::VW, CG = Cf::CG, IT = Cf::IT, BI = Cf::BI, FM = Cf::FM;
  constexpr int WC = Cf::WC, WG = Cf::WG, CPL = Cf::CPL, LPO = Cf::LPO, OPL = Cf::OPL, TP = Cf::TP, PR = Cf::PR;
  const int tid = threadIdx.x, g = tid / EC, el = tid % EC, n0 = g * kNS, lane = tid % 32, hslot = pad8(tid);
  const int64_t b = blockIdx.y, seg = blockIdx.z, E = in.dim, L = in.len;
  const int64_t e_blk = int64_t(blockIdx.x) * EC, e = e_blk + el;
  const bool ev = e < E;
  const int64_t t_begin = seg * run.seg_len, t_end = t_begin + run.seg_len < L ? t_begin + run.seg_len : L;
  const bool has_z = in.z != nullptr;
  const int64_t c_first = t_begin / kT, c_last = t_begin < t_end ? (t_end - 1) / kT : c_first - 1;
  const int64_t t_last = c_last * kT;  // first token of the first tile processed (tiles run in reverse)

  float4* s_hd = reinterpret_cast<float4*>(dynamic_smem());    // (2, kT2, TP) [dh | h] of the sub-tile, slot pad8(tid)
  float4* s_pv = s_hd + 2 * kT2 * TP;                            // (kT, PR) (u, s·σ(x), dout·silu'(z), softplus(x))
  float4* s_red = s_pv + kT * PR;                                // (T) contraction partials
  float2* s_dd = reinterpret_cast<float2*>(s_red + T);           // (kT, EC) (Δ, Δ·u)
  float2* s_sba = s_dd + kT * EC;                                // (2, G, kT2, EC) (Σ_n B dh, Σ_n A a h dh) partials
  float* s_dtu = reinterpret_cast<float*>(s_sba + 2 * G * kT2 * EC);  // (kT, EC) Δ·u
  float* s_g = s_dtu + kT * EC;                                  // (kT, EC) dout·silu(z)
  float* s_B = s_g + kT * EC;                                    // (kT, N)
  float* s_C = s_B + kT * N;                                     // (kT, N)
  float* s_y = s_C + kT * N;                                     // (2, G, kT2, EC) y partials (Σ_n C h)
  float* s_bias = s_y + 2 * G * kT2 * EC;                        // (EC) dt_bias
  float* s_scl = s_bias + EC;                                    // (EC) Δ scale

  // ---- staging items: token row srow, channels [e_blk + c0, e_blk + c0 + nv) of the block (addresses are
  // computed per tile: 64-bit cursors would cost registers, the scarce resource here)
  int srow[IT], nv[IT];
#pragma unroll
  for (int j = 0; j < IT; ++j) staging_item<CG, VW>(tid + j * T, e_blk, E, srow[j], nv[j]);
  // B / C items: 8 values of B (items < kT·N/8) or of C, token row bc_row, states [bn, bn + 8)
  constexpr int kBCHalf = kT * N / 8;
  int bc_row[BI];
#pragma unroll
  for (int j = 0; j < BI; ++j) {
    const int item = tid + j * T;
    bc_row[j] = item < 2 * kBCHalf ? item % kBCHalf / (N / 8) : kT;
  }
  // Per-channel parameters of the block (shared: registers are the scarce resource here).
  for (int c = tid; c < EC; c += T) {
    const int64_t ch = e_blk + c;
    const bool ok = ch < E;
    s_bias[c] = ok && in.dt_bias ? in.dt_bias[ch] : 0.f;
    s_scl[c] = in.dt_scale ? in.dt_scale[ok ? ch * in.dt_scale_stride : 0] : 1.f;
  }

  // ---- per-thread state
  float A2[kNS], dhc[kNS], dAf[kNS];  // A2 = A·log2(e); Σ_n A a h dh is summed as Σ_n A2 a h dh, times ln 2
  double dA_acc[kNS];
#pragma unroll
  for (int i = 0; i < kNS; ++i) {
    A2[i] = ev ? in.A[e * N + n0 + i] * kLog2e : 0.f;
    dhc[i] = (ev && run.dh_init) ? run.dh_init[b * run.di_sb + seg * run.di_ss + e * N + n0 + i] : 0.f;
    dAf[i] = 0.f;
    dA_acc[i] = 0.0;
  }
  const float Dv = (ev && in.D) ? in.D[e] : 0.f;
  float dD_f = 0.f, dbias_f = 0.f, ds_f = 0.f;
  double dD_acc = 0.0, dbias_acc = 0.0, ds_acc = 0.0;

  // Finishing (token, channel) pairs: thread (g, el) takes tokens g, g + G, ... of every sub-tile, channel el.
  // Cursors at the row of token g of the first tile's last sub-tile, moved back by kT2 rows per sub-tile.
  const int64_t ef = ev ? e : 0, rf = t_last + kT - kT2 + g;
  IO* du_f = static_cast<IO*>(args.du) + b * args.du_sb + rf * args.du_sl + ef;
  IO* dd_f = static_cast<IO*>(args.ddelta) + b * args.ddelta_sb + rf * args.ddelta_sl + ef;
  IO* dz_f = has_z ? static_cast<IO*>(args.dz) + b * args.dz_sb + rf * args.dz_sl + ef : du_f;
  const int64_t dz_sl = has_z ? args.dz_sl : args.du_sl;

  // Contraction outputs of this lane: m-th output = (which: dB or dC, token k of the sub-tile, state group),
  // channels [own, own + CPL) of the warp (owned by threads own .. own + CPL - 1).
  int cslot[OPL], ck[OPL];
  const float* cvec[OPL];
  float* cdst[OPL];
#pragma unroll
  for (int m = 0; m < OPL; ++m) {
    const int o = lane / LPO + m * (32 / LPO), which = o / (kT2 * WG), k = o / WG % kT2, gl = o % WG;
    const int own = tid / 32 * 32 + gl * WC + lane % LPO * CPL;
    ck[m] = k;
    cslot[m] = (which * kT2 + k) * TP + pad8(own);
    cvec[m] = (which ? s_g : s_dtu) + k * EC + own % EC;  // dC = Σ_e g·h, dB = Σ_e Δu·dh
    cdst[m] = (which ? args.dC : args.dB) + (b * L + t_last + k) * N + own / EC * kNS;
  }

  Raw<IO, VW> nu[IT], nd[IT], nz[IT], no[IT];  // the next tile, raw
  Raw<IO, 8> nbc[BI];
  // Loads the tile at t0 (rows clamped to the segment's last token in a partial tile).
  auto load_tile = [&](int64_t t0) {
    const int64_t last = t_end - 1 - t0;
#pragma unroll
    for (int j = 0; j < IT; ++j) {
      if (nv[j] == 0) continue;
      const int64_t t = t0 + (srow[j] <= last ? srow[j] : last), ch = e_blk + (tid + j * T) % CG * VW;
      const bool vec = run.vec && nv[j] == VW;
      nu[j].load(static_cast<const IO*>(in.u) + b * in.u_sb + t * in.u_sl + ch, vec, nv[j]);
      nd[j].load(static_cast<const IO*>(in.delta) + b * in.delta_sb + t * in.delta_sl + ch, vec, nv[j]);
      if (has_z) nz[j].load(static_cast<const IO*>(in.z) + b * in.z_sb + t * in.z_sl + ch, vec, nv[j]);
      no[j].load(static_cast<const IO*>(args.dout) + b * args.dout_sb + t * args.dout_sl + ch, vec, nv[j]);
    }
#pragma unroll
    for (int j = 0; j < BI; ++j) {
      if (bc_row[j] >= kT) continue;
      const int item = tid + j * T, bn = item % kBCHalf % (N / 8) * 8;
      const int64_t t = t0 + (bc_row[j] <= last ? bc_row[j] : last);
      nbc[j].load(item < kBCHalf ? static_cast<const IO*>(in.B) + b * in.B_sb + t * in.B_sl + bn
                                 : static_cast<const IO*>(in.C) + b * in.C_sb + t * in.C_sl + bn,
                  run.bc_vec, 8);
    }
  };

  if (c_last >= c_first) load_tile(t_last);
  __syncthreads();  // s_bias / s_scl
  for (int64_t c = c_last; c >= c_first; --c) {
    const int64_t t0 = c * kT;
    const int nt = int(t_end - t0 < kT ? t_end - t0 : kT);
    const float4 h_ck = ev ? *reinterpret_cast<const float4*>(args.ckpt + ((b * run.nchunks + c) * E + e) * N + n0)
                           : make_float4(0.f, 0.f, 0.f, 0.f);
    // ---- stage (padded tokens and channels get Δ = 0 and g = 0: they leave h and dh unchanged and add nothing)
#pragma unroll
    for (int j = 0; j < IT; ++j) {
      if (srow[j] >= kT) continue;
      const int r = srow[j], c0 = (tid + j * T) % CG * VW;
      const bool live = r < nt;
      float dt[VW], dtu[VW], gv[VW];
#pragma unroll
      for (int v = 0; v < VW; ++v) {
        // computed for every slot (no branches), then zeroed where masked
        const bool ok = live && v < nv[j];
        const float x = nd[j].get(v) + s_bias[c0 + v], scl = s_scl[c0 + v], dov = no[j].get(v);
        float sgx;
        const float spv = softplus_series_f(x, &sgx), uu = nu[j].get(v);
        float gg = dov, dz = 0.f;
        if (has_z) {
          const float zv = nz[j].get(v), sz = sigmoid_fast_f(zv);
          gg = dov * zv * sz;
          dz = dov * sz * (1.f + zv * (1.f - sz));
        }
        const float uv = ok ? uu : 0.f, dsig = ok ? scl * sgx : 0.f, dzf = ok ? dz : 0.f, sp = ok ? spv : 0.f;
        dt[v] = ok ? scl * spv : 0.f;
        dtu[v] = dt[v] * uv;
        gv[v] = ok ? gg : 0.f;
        s_pv[r * PR + pad8(c0 + v)] = make_float4(uv, dsig, dzf, sp);
      }
#pragma unroll
      for (int v = 0; v < VW; v += 2)
        *reinterpret_cast<float4*>(s_dd + r * EC + c0 + v) = make_float4(dt[v], dtu[v], dt[v + 1], dtu[v + 1]);
#pragma unroll
      for (int v = 0; v < VW; v += 4) {
        *reinterpret_cast<float4*>(s_dtu + r * EC + c0 + v) = make_float4(dtu[v], dtu[v + 1], dtu[v + 2], dtu[v + 3]);
        *reinterpret_cast<float4*>(s_g + r * EC + c0 + v) = make_float4(gv[v], gv[v + 1], gv[v + 2], gv[v + 3]);
      }
    }
    store_bc_items<N, T>(nbc, bc_row, tid, nt, s_B, s_C);
    __syncthreads();
    if (c > c_first) load_tile(t0 - kT);

    // ---- states at the sub-tile starts, from the checkpoint
    float st[kNSub][kNS];
    st[0][0] = h_ck.x, st[0][1] = h_ck.y, st[0][2] = h_ck.z, st[0][3] = h_ck.w;
#pragma unroll
    for (int j = 1; j < kNSub; ++j) {
#pragma unroll
      for (int i = 0; i < kNS; ++i) st[j][i] = st[j - 1][i];
#pragma unroll
      for (int k = 0; k < kT2; ++k) {
        const int tt = (j - 1) * kT2 + k;
        const float2 dd = s_dd[tt * EC + el];
        const float4 B4 = *reinterpret_cast<const float4*>(s_B + tt * N + n0);
        const float Bv[kNS] = {B4.x, B4.y, B4.z, B4.w};
#pragma unroll
        for (int i = 0; i < kNS; ++i) st[j][i] = fmaf(fast_exp2(dd.x * A2[i]), st[j][i], dd.y * Bv[i]);
      }
    }

    // ---- sub-tiles, last first; partials of the Σ_n sums alternate between two buffers (one barrier per sub-tile).
    // The loop is unrolled kBwdSubUnroll times only (instruction cache). Registers cannot be indexed by a rolled j, so
    // every sub-tile takes its start state from st[kNSub - 1] and shifts st up by one: st[q] = st[q - 1] (register
    // moves, which the compiler merges across the unrolled copies: bf16 N = 16 has 47 MOV per sub-tile unrolled by 1,
    // 48 per 2 sub-tiles unrolled by 2).
#pragma unroll kBwdSubUnroll
    for (int j = kNSub - 1; j >= 0; --j) {
      const int buf = j & 1;
      // forward: a_t, a_t·h_{t-1} in registers; h_t to s_hd for dC; y partials. Each token's operands are
      // loaded before the previous token's stores (the compiler cannot move loads across those).
      float av[kT2][kNS], ahv[kT2][kNS], dtk[kT2];
      {
        float h[kNS];
#pragma unroll
        for (int i = 0; i < kNS; ++i) h[i] = st[kNSub - 1][i];
#pragma unroll
        for (int q = kNSub - 1; q > 0; --q) {
#pragma unroll
          for (int i = 0; i < kNS; ++i) st[q][i] = st[q - 1][i];
        }
        float2 dd_n = s_dd[j * kT2 * EC + el];
        float4 B_n = *reinterpret_cast<const float4*>(s_B + j * kT2 * N + n0);
        float4 C_n = *reinterpret_cast<const float4*>(s_C + j * kT2 * N + n0);
#pragma unroll
        for (int k = 0; k < kT2; ++k) {
          const float2 dd = dd_n;
          const float Bv[kNS] = {B_n.x, B_n.y, B_n.z, B_n.w}, Cv[kNS] = {C_n.x, C_n.y, C_n.z, C_n.w};
          if (k + 1 < kT2) {
            const int tn = j * kT2 + k + 1;
            dd_n = s_dd[tn * EC + el];
            B_n = *reinterpret_cast<const float4*>(s_B + tn * N + n0);
            C_n = *reinterpret_cast<const float4*>(s_C + tn * N + n0);
          }
          dtk[k] = dd.x;
          float y = 0.f;
#pragma unroll
          for (int i = 0; i < kNS; ++i) {
            av[k][i] = fast_exp2(dd.x * A2[i]);
            ahv[k][i] = av[k][i] * h[i];
            h[i] = fmaf(dd.y, Bv[i], ahv[k][i]);
            y = fmaf(Cv[i], h[i], y);
          }
          s_hd[(kT2 + k) * TP + hslot] = make_float4(h[0], h[1], h[2], h[3]);
          s_y[((buf * G + g) * kT2 + k) * EC + el] = y;
        }
      }
      // backward: dh_t to s_hd for dB; dA; (Σ_n B dh, Σ_n A a h dh) partials
      {
        const int tl = j * kT2 + kT2 - 1;
        float g_n = s_g[tl * EC + el];
        float4 B_n = *reinterpret_cast<const float4*>(s_B + tl * N + n0);
        float4 C_n = *reinterpret_cast<const float4*>(s_C + tl * N + n0);
#pragma unroll
        for (int k = kT2 - 1; k >= 0; --k) {
          const float gt = g_n;
          const float Bv[kNS] = {B_n.x, B_n.y, B_n.z, B_n.w}, Cv[kNS] = {C_n.x, C_n.y, C_n.z, C_n.w};
          if (k > 0) {
            const int tn = j * kT2 + k - 1;
            g_n = s_g[tn * EC + el];
            B_n = *reinterpret_cast<const float4*>(s_B + tn * N + n0);
            C_n = *reinterpret_cast<const float4*>(s_C + tn * N + n0);
          }
          float dh[kNS], sB = 0.f, sA = 0.f;
#pragma unroll
          for (int i = 0; i < kNS; ++i) {
            dh[i] = fmaf(Cv[i], gt, dhc[i]);
            const float q = dh[i] * ahv[k][i];
            dAf[i] = fmaf(q, dtk[k], dAf[i]);
            sA = fmaf(q, A2[i], sA);
            sB = fmaf(Bv[i], dh[i], sB);
            dhc[i] = dh[i] * av[k][i];
          }
          s_hd[k * TP + hslot] = make_float4(dh[0], dh[1], dh[2], dh[3]);
          s_sba[((buf * G + g) * kT2 + k) * EC + el] = make_float2(sB, sA);
        }
      }
      warp_sync();

      // dB[t, n] = Σ_e Δu·dh and dC[t, n] = Σ_e g·h over the warp's channels, one 16-byte atomic per output
      float4 part[OPL];
#pragma unroll
      for (int m = 0; m < OPL; ++m) {
        const float4* src = s_hd + cslot[m];
        const float* vec = cvec[m] + j * kT2 * EC;
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int q = 0; q < CPL; q += 4) {
          const float4 v4 = *reinterpret_cast<const float4*>(vec + q);
          const float vv[4] = {v4.x, v4.y, v4.z, v4.w};
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const float4 hv = src[q + i];
            acc.x = fmaf(hv.x, vv[i], acc.x);
            acc.y = fmaf(hv.y, vv[i], acc.y);
            acc.z = fmaf(hv.z, vv[i], acc.z);
            acc.w = fmaf(hv.w, vv[i], acc.w);
          }
        }
        part[m] = acc;
      }
      if constexpr (LPO > 1) {  // OPL == 1: sum the LPO lanes of the output through s_red
        s_red[tid] = part[0];
        warp_sync();
        if (lane % LPO == 0) {
#pragma unroll
          for (int q = 1; q < LPO; ++q) {
            const float4 p = s_red[tid + q];
            part[0].x += p.x, part[0].y += p.y, part[0].z += p.z, part[0].w += p.w;
          }
        }
      }
#pragma unroll
      for (int m = 0; m < OPL; ++m)
        if (lane % LPO == 0 && j * kT2 + ck[m] < nt)
          atomicAdd(reinterpret_cast<float4*>(cdst[m] + j * kT2 * N), part[m]);

      // per (token, channel): operands first (after the barrier the next tile's staging may overwrite them)
      float fdt[FM], fg[FM];
      float4 fpv[FM];
#pragma unroll
      for (int m = 0; m < FM; ++m) {
        const int kf = g + m * G, tf = j * kT2 + kf;
        if (kf < kT2) {
          fdt[m] = s_dd[tf * EC + el].x;
          fg[m] = s_g[tf * EC + el];
          fpv[m] = s_pv[tf * PR + pad8(el)];
        }
      }
      __syncthreads();
#pragma unroll
      for (int m = 0; m < FM; ++m) {
        const int kf = g + m * G, tf = j * kT2 + kf;
        if (kf < kT2 && ev && tf < nt) {
          const int o0 = (buf * G * kT2 + kf) * EC + el;  // partial of group 0; group gg at + gg·kT2·EC
          float yv = s_y[o0], SB = s_sba[o0].x, SA = s_sba[o0].y;
#pragma unroll
          for (int gg = 1; gg < G; ++gg) {
            const float2 r = s_sba[o0 + gg * kT2 * EC];
            yv += s_y[o0 + gg * kT2 * EC];
            SB += r.x;
            SA += r.y;
          }
          const float uv = fpv[m].x, dsig = fpv[m].y, dzf = fpv[m].z, sp = fpv[m].w, gv = fg[m];
          yv = fmaf(Dv, uv, yv);
          const float ddt = fmaf(uv, SB, SA * kLn2);
          const float ddr = ddt * dsig;
          store_one(du_f + m * G * args.du_sl, fmaf(Dv, gv, fdt[m] * SB));
          store_one(dd_f + m * G * args.ddelta_sl, ddr);
          if (has_z) store_one(dz_f + m * G * dz_sl, yv * dzf);
          dD_f = fmaf(gv, uv, dD_f);
          dbias_f += ddr;
          ds_f = fmaf(ddt, sp, ds_f);
        }
      }
      du_f -= kT2 * args.du_sl, dd_f -= kT2 * args.ddelta_sl, dz_f -= kT2 * dz_sl;
    }

    // ---- per tile: fp32 partial sums into fp64
#pragma unroll
    for (int i = 0; i < kNS; ++i) {
      dA_acc[i] += dAf[i];
      dAf[i] = 0.f;
    }
    dD_acc += dD_f;
    dbias_acc += dbias_f;
    ds_acc += ds_f;
    dD_f = dbias_f = ds_f = 0.f;
#pragma unroll
    for (int m = 0; m < OPL; ++m) cdst[m] -= kT * N;
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

// First pass of the time split: for the K pieces k of segments 1 .. S-1 (piece k spans tokens from
// (first_piece + k)·seg_len), the carry out of the piece's first token from a zero carry in,
// dh_loc[k] = Σ_{t in k} (Π_{t' in k, t' <= t} a_t')·C_t·g_t, and Σ Δ over the piece.
template <typename IO, int N>
__global__ void __launch_bounds__(kThreads, kBwdFirstCtasPerSm) s6_bwd_first_kernel(S6Inputs in, S6BwdArgs args, BwdRun run) {
  using Cf = Cfg<N>;
  constexpr int G = Cf::G, EC = Cf::EC, PT = Cf::PT, BCV = Cf::BCV;
  const int tid = threadIdx.x, g = tid / EC, el = tid % EC, n0 = g * kNS;
  const int64_t b = blockIdx.y, k_out = blockIdx.z, E = in.dim, L = in.len;
  const int64_t e = int64_t(blockIdx.x) * EC + el;
  const bool ev = e < E;
  const int64_t t_begin = (k_out + run.first_piece) * run.seg_len;
  const int64_t t_end = t_begin + run.seg_len < L ? t_begin + run.seg_len : L;
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
    float* dst = run.dh_loc + (b * run.S + k_out) * E * N + e * N + n0;
    *reinterpret_cast<float4*>(dst) = make_float4(dhc[0], dhc[1], dhc[2], dhc[3]);
    atomicAdd(run.sumdt + (b * run.S + k_out) * E + e, sum_dt);
  }
}

// Segment combine over the first pass's K = F·(S-1) pieces, in reverse: c = dhT, then per piece
// c = exp(A·ΣΔ[k])·c + dh_loc[k]; dh_in[S-1] = dhT and dh_in[s-1] = c after piece (s-1)·F, segment s's first.
// One thread per (b, e, n).
__global__ void s6_bwd_combine_kernel(const float* A, const float* dhT, const float* dh_loc, const double* sumdt,
                                      float* dh_in, int64_t batch, int64_t E, int64_t N, int S, int F) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= batch * E * N) return;
  const int64_t b = idx / (E * N), en = idx % (E * N), e = en / N, K = int64_t(F) * (S - 1);
  const double a = A[en];
  float c = dhT ? dhT[idx] : 0.f;
  dh_in[(b * S + S - 1) * E * N + en] = c;
  for (int64_t k = K - 1; k >= 0; --k) {
    c = float(exp(a * sumdt[(b * K + k) * E + e])) * c + dh_loc[(b * K + k) * E * N + en];
    if (k % F == 0) dh_in[(b * S + k / F) * E * N + en] = c;
  }
}

// How the backward runs (plan_split): S time segments on the main kernel's bwd_ctas_per_sm slots per SM, and the
// first pass over segments 1 .. S-1 in F pieces each, filling kBwdFirstCtasPerSm slots per SM (at E = 5120, S = 2
// it would otherwise get 160 CTAs, 1.2 per SM, and take 2.74 of the 17.1 ms; in 3 pieces 1.55 ms).
// Workspace (split_ws): dh_loc | dh_in | Σ Δ.
template <int N>
SplitPlan plan_backward(const S6Inputs& in) {
  return plan_split(in, channel_blocks<N>(in) * in.batch, bwd_ctas_per_sm<N>(), kBwdFirstCtasPerSm);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename IO, int N>
cudaError_t launch_bwd(const S6Inputs& in, const S6BwdArgs& args, void* workspace, cudaStream_t stream) {
  using Cf = Cfg<N>;
  const int64_t nblk = channel_blocks<N>(in);
  const SplitPlan bp = plan_backward<N>(in);
  const SegPlan& plan = bp.seg;
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

  // Vector loads: 16-byte aligned rows and channel groups (a group of VW elements spans 16 or 32 bytes).
  constexpr int64_t kVecElems = 16 / int64_t(sizeof(IO));
  auto rows_ok = [&](const void* p, int64_t sb, int64_t sl) {
    return p == nullptr || (aligned16(p) && sb % kVecElems == 0 && sl % kVecElems == 0);
  };
  BwdRun run;
  run.vec = (BwdCfg<N>::VW * int64_t(sizeof(IO))) % 16 == 0 && rows_ok(in.u, in.u_sb, in.u_sl) &&
            rows_ok(in.delta, in.delta_sb, in.delta_sl) && rows_ok(in.z, in.z_sb, in.z_sl) &&
            rows_ok(args.dout, args.dout_sb, args.dout_sl);
  run.bc_vec = rows_ok(in.B, in.B_sb, in.B_sl) && rows_ok(in.C, in.C_sb, in.C_sl);
  run.nchunks = s6_num_chunks(in.len);
  run.seg_len = plan.seg_len;
  run.S = plan.S;
  if (plan.S > 1) {
    const int64_t K = bp.K();
    const SplitWs ws = split_ws(in, bp, workspace);
    float *dh_loc = ws.loc, *dh_in = ws.init;
    double* sumdt = ws.sumdt;
    zero(sumdt, sizeof(double) * in.batch * K * in.dim);
    if (err != cudaSuccess) return err;
    BwdRun first = run;
    first.dh_loc = dh_loc;
    first.sumdt = sumdt;
    first.seg_len = plan.seg_len / bp.F;
    first.S = int(K);
    first.first_piece = bp.F;
    auto k_first = s6_bwd_first_kernel<IO, N>;
    const size_t smem_first = sizeof(float) * size_t(2 * kT * Cf::EC + kT * N);
    MX_LAUNCH(k_first, dim3(unsigned(nblk), unsigned(in.batch), unsigned(K)), dim3(kThreads), smem_first, stream, in,
              args, first);
    const int64_t total = in.batch * EN;
    MX_LAUNCH(s6_bwd_combine_kernel, dim3(unsigned(ceil_div(total, 256))), dim3(256), 0, stream, in.A, args.dhT,
              dh_loc, sumdt, dh_in, in.batch, in.dim, int64_t(N), plan.S, bp.F);
    run.dh_init = dh_in;
    run.di_sb = plan.S * EN;
    run.di_ss = EN;
  } else {
    run.dh_init = args.dhT;
    run.di_sb = EN;
  }
  auto k_main = s6_bwd_kernel<IO, N>;
  const size_t smem = BwdCfg<N>::smem_bytes();
  err = cudaFuncSetAttribute(k_main, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err != cudaSuccess) return err;
  MX_LAUNCH(k_main, dim3(unsigned(nblk), unsigned(in.batch), unsigned(plan.S)), dim3(kThreads), smem, stream, in,
            args, run);
  return cudaGetLastError();
}

}  // namespace
}  // namespace mx::kern::s6

namespace mx::kern {

size_t s6_bwd_workspace_bytes(const S6Inputs& in) {
  size_t bytes = 0;
  s6::dispatch(IoType::F32, in.dstate, [&](auto, auto nc) {
    bytes = s6::split_ws(in, s6::plan_backward<decltype(nc)::value>(in), nullptr).bytes;
  });
  return bytes;
}

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
