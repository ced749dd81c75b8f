// S6 forward (s6.h has the math): the main kernel, its time-segment first pass and the segment combine.
// EXPERIMENT (branch s6fwd, not for merging: slower than main's v4, see kernels/dev/NOTES_mamba1.md "Forward v5").
//
// CTA = (channel block of EC channels, batch row, time segment), T = TS + TI threads (FwdCfg): TS scan threads,
// thread (g, el) owns channel e0 + el and NS states [NS·g, NS·g + NS) (NS = 2 at N = 16), and TI io threads.
// Software pipeline over the tiles of kT tokens, one CTA barrier per step: in step i
//   io threads   epilogue of tile i-2: y = Σ_g y_part + D·u, times silu(z), stored; then stage tile i into
//                shared buffer i % 2 (Δ = s·softplus(δ + b) and Δ·u per (token, channel)) and issue the loads of
//                tile i+1; all threads stage B and C
//   scan threads tile i-1 from buffer (i-1) % 2: a = 2^(Δ·A·log2 e), h = a·h + Δu·B, y_part += C·h
// Staging and the epilogue work on items of VW consecutive channels of one token: one vector load per tensor and
// item when the activations are aligned (FwdRun::vec), element loads otherwise.
// The launcher splits time into S segments when the channel blocks leave CTA slots free, and cuts the first
// pass into pieces when it alone would leave them free (plan_forward); at E = 5120 it needs none (S = 1).
#include "s6/s6_common.cuh"

namespace mx::kern::s6 {
namespace {

// Tiling of the forward for a d_state of N: TS scan threads (G per channel, NS states each, EC channels) and TI io
// threads (staging items of VW consecutive channels of one token, CG per token), T = TS + TI per CTA.
// States per thread NS: kFwdNS, raised so that a CTA keeps at least 8 channels (whole 16-byte bf16 items), at most 4.
// The scan's shared operands are packed so that one 16-byte read serves TP = 4 / NS tokens x NS states, and
// double-buffered (the io threads fill one tile while the scan threads read the other):
//   s_dd  (kT / TP, DR) float2: token pack p, channel c, token t % TP at p·DR + c·TP + t % TP  ((Δ, Δ·u))
//   s_B   (kT / TP, N, TP) floats: (t, n) at ((t / TP)·N + n)·TP + t % TP  (s_C alike)
//   s_y   (G, kT, YP) floats, YG apart between state groups: the y partial of state group g, token t, channel c
template <int N>
struct FwdCfg {
  static constexpr int TS = kFwdScanThreads, TI = kFwdIoThreads, T = TS + TI;
  static constexpr int NS = std::min(4, std::max(kFwdNS, N * 8 / TS));
  static_assert(4 % NS == 0 && N % NS == 0 && N % 8 == 0 && N / NS <= TS, "unsupported d_state for this CTA size");
  static constexpr int TP = 4 / NS;                       // tokens per pack
  static constexpr int G = N / NS;                        // scan threads per channel
  static constexpr int EC = TS / G;                       // channels per CTA
  static constexpr int VW = std::min(EC, std::max(2, std::min(8, EC * kT / TI)));  // channels per staging item:
                                                          // at most 8, fewer so that every io thread has one
  static constexpr int CG = EC / VW;                      // staging items per token
  static constexpr int IT = (kT * CG + TI - 1) / TI;      // staging items per io thread and tile
  static constexpr int BI = (2 * kT * N / 8 + T - 1) / T;  // 8-value B / C items per thread (all threads) and tile
  static constexpr int DR = TP * (EC + 1);                // padded pack row of s_dd (float2): staging stores
                                                          // conflict 2-way at most, rows stay 16-byte aligned
  static constexpr int kDD = kT / TP * DR;                // float2 per s_dd buffer
  static constexpr int YP = EC >= 8 ? EC + 4 : EC;        // padded token row of s_y (floats)
  static constexpr int YG = kT * YP + EC % 32;            // state-group stride of s_y: the groups of one warp
                                                          // (32 / EC of them) store to distinct banks
  static constexpr size_t smem_bytes() {
    return sizeof(float) * size_t(2 * (2 * kDD + 2 * kT * N + G * YG) + 3 * EC);
  }
};

// K consecutive floats of shared memory (p aligned to 4·K bytes up to 16) with 16- / 8-byte loads.
template <int K>
MX_DEV void lds_floats(const float* p, float (&v)[K]) {
  if constexpr (K % 4 == 0) {
#pragma unroll
    for (int q = 0; q < K / 4; ++q) {
      const float4 x = *reinterpret_cast<const float4*>(p + 4 * q);
      v[4 * q] = x.x, v[4 * q + 1] = x.y, v[4 * q + 2] = x.z, v[4 * q + 3] = x.w;
    }
  } else if constexpr (K == 2) {
    const float2 x = *reinterpret_cast<const float2*>(p);
    v[0] = x.x, v[1] = x.y;
  } else {
    static_assert(K == 1, "1, 2 or a multiple of 4 floats");
    v[0] = p[0];
  }
}

// A thread's NS states to global memory (p aligned to 4·NS bytes): one vector store.
template <int NS>
MX_DEV void store_states(float* p, const float (&h)[NS]) {
  if constexpr (NS == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(h[0], h[1], h[2], h[3]);
  } else if constexpr (NS == 2) {
    *reinterpret_cast<float2*>(p) = make_float2(h[0], h[1]);
  } else {
    p[0] = h[0];
  }
}

// A tile's B and C items into the packed s_B / s_C (FwdCfg): store_bc_items's items and zero rows, with the states
// of a token TP floats apart.
template <int N, int T, int TP, typename IO, int BI>
MX_DEV void store_bc_packed(const Raw<IO, 8> (&nbc)[BI], const int (&bc_row)[BI], int tid, int nt, float* s_B,
                            float* s_C) {
  if constexpr (TP == 1) {
    store_bc_items<N, T>(nbc, bc_row, tid, nt, s_B, s_C);
  } else {
#pragma unroll
    for (int j = 0; j < BI; ++j) {
      const int r = bc_row[j];
      if (r >= kT) continue;
      const int item = tid + j * T, half = item % (kT * N / 8), isC = item / (kT * N / 8);
      float* dst = (isC ? s_C : s_B) + ((r / TP) * N + half % (N / 8) * 8) * TP + r % TP;
      const bool live = r < nt;
#pragma unroll
      for (int k = 0; k < 8; ++k) dst[k * TP] = live ? nbc[j].get(k) : 0.f;
    }
  }
}

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
  if (vec && (VW == 8 || VW == 4)) {
    uint32_t w[VW / 2];
#pragma unroll
    for (int i = 0; i < VW / 2; ++i) w[i] = pack_bf16(y[2 * i], y[2 * i + 1]);
    if constexpr (VW == 8) st_u32x4(p, w);
    else st_u32x2(p, w);
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
// Software pipeline over the segment's tiles, one CTA barrier per step: in step i the io threads finish tile i-2
// (epilogue from s_y), stage tile i into buffer i % 2 and issue the loads of tile i+1, while the scan threads scan
// tile i-1 from buffer (i-1) % 2 into s_y buffer (i-1) % 2. Full tiles load without row guards; the sequence's
// last partial tile clamps its rows to the last token (values past the end are masked when staged).
template <typename IO, int N, bool kOut>
__global__ void __launch_bounds__(FwdCfg<N>::T, kFwdCtasPerSm)
    s6_fwd_kernel(S6Inputs in, FwdRun run) {
  using Cf = FwdCfg<N>;
  constexpr int T = Cf::T, TS = Cf::TS, TI = Cf::TI, NS = Cf::NS, TP = Cf::TP, G = Cf::G, EC = Cf::EC, VW = Cf::VW,
                CG = Cf::CG, IT = Cf::IT, BI = Cf::BI, DR = Cf::DR, YP = Cf::YP, YG = Cf::YG;
  const int tid = threadIdx.x;
  const bool scanner = tid < TS;
  const int g = scanner ? tid / EC : 0, el = scanner ? tid % EC : 0, n0 = g * NS;
  const int64_t b = blockIdx.y, seg = blockIdx.z, E = in.dim, L = in.len;
  const int64_t e_blk = int64_t(blockIdx.x) * EC, e = e_blk + el;
  const bool ev = scanner && e < E;
  const int64_t t_begin = seg * run.seg_len, t_end = t_begin + run.seg_len < L ? t_begin + run.seg_len : L;
  const int64_t ntiles = t_end > t_begin ? (t_end - t_begin + kT - 1) / kT : 0;
  const bool has_z = in.z != nullptr;

  float2* s_dd0 = reinterpret_cast<float2*>(dynamic_smem());  // 2 x (kT / TP, DR) (Δ, Δ·u), packed
  float* s_B0 = reinterpret_cast<float*>(s_dd0 + 2 * Cf::kDD);  // 2 x (kT / TP, N, TP)
  float* s_C0 = s_B0 + 2 * kT * N;                             // 2 x (kT / TP, N, TP)
  float* s_y0 = s_C0 + 2 * kT * N;                             // 2 x (G, kT, YP), YG apart: partial sums of y
  float* s_bias = s_y0 + 2 * G * YG;                           // (EC) dt_bias
  float* s_scl = s_bias + EC;                                  // (EC) Δ scale
  float* s_D = s_scl + EC;                                     // (EC) D

  // ---- staging items of the io threads: token row r, channels [ce, ce + nv) of the block (none for scanners)
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
    const int item = scanner ? kT * CG : tid - TS + j * TI;
    const int64_t ce = staging_item<CG, VW>(item, e_blk, E, row[j], nv[j]);
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
  // B / C items (all threads): 8 values of B (items < kT·N/8) or of C, token row br, states [bn, bn + 8)
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

  float A2[NS], h[NS];
#pragma unroll
  for (int i = 0; i < NS; ++i) {
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
  Raw<IO, VW> cu1[IT], cz1[IT], cu2[IT], cz2[IT];  // u and z of tiles i-1 and i-2 (for the epilogue)
  if (ntiles > 0) load_tile(t_begin);
  __syncthreads();  // s_bias / s_scl / s_D
  for (int64_t i = 0; i < ntiles + (kOut ? 2 : 1); ++i) {
    const int bi = int(i % 2);
    // ---- epilogue of tile i-2 (io threads): y = Σ_g y_part + D·u, times silu(z)
    if (kOut && i >= 2) {
      const float* s_y = s_y0 + bi * G * YG;
      const int64_t t0 = t_begin + (i - 2) * kT;
      const int nt = int(t_end - t0 < kT ? t_end - t0 : kT);
#pragma unroll
      for (int j = 0; j < IT; ++j) {
        if (row[j] >= nt || nv[j] == 0) continue;
        const int c0 = (tid - TS + j * TI) % CG * VW;
        float y[VW];
#pragma unroll
        for (int v = 0; v < VW; ++v) y[v] = 0.f;
#pragma unroll
        for (int gg = 0; gg < G; ++gg) {
          const float* src = s_y + gg * YG + row[j] * YP + c0;
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
          y[v] = fmaf(s_D[c0 + v], cu2[j].get(v), y[v]);
          if (has_z) y[v] *= silu_fast_f(cz2[j].get(v));
        }
        store_vec(o_p[j], y, run.vec && nv[j] == VW, nv[j]);
      }
#pragma unroll
      for (int j = 0; j < IT; ++j) o_p[j] += kT * run.out_sl;
    }
    // ---- stage tile i into buffer bi (io threads: Δ, Δ·u; all threads: B and C), then load tile i+1
#pragma unroll
    for (int j = 0; j < IT; ++j) cu2[j] = cu1[j], cz2[j] = cz1[j], cu1[j] = nu[j], cz1[j] = nz[j];
    if (i < ntiles) {
      const int64_t t0 = t_begin + i * kT;
      const int nt = int(t_end - t0 < kT ? t_end - t0 : kT);
      float2* s_dd = s_dd0 + bi * Cf::kDD;
#pragma unroll
      for (int j = 0; j < IT; ++j) {
        if (row[j] >= kT) continue;
        const bool live = row[j] < nt;
        const int c0 = (tid - TS + j * TI) % CG * VW;
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
        float2* dst = s_dd + row[j] / TP * DR + c0 * TP + row[j] % TP;
#pragma unroll
        for (int v = 0; v < VW; ++v) dst[v * TP] = make_float2(dd[2 * v], dd[2 * v + 1]);
      }
      store_bc_packed<N, T, TP>(nbc, bc_row, tid, nt, s_B0 + bi * kT * N, s_C0 + bi * kT * N);
      if (i + 1 < ntiles) {
        advance();
        load_tile(t0 + kT);
      }
    }

    // ---- scan of tile i-1 (scan threads), in groups of kU tokens (kP packs) whose shared-memory operands are
    // loaded before the previous group's y partials are stored (the compiler cannot move loads across those
    // stores: it cannot tell s_y from s_dd). Per pack: (Δ, Δ·u) of TP tokens, and B, C of TP tokens x NS
    // states, one 16-byte read each.
    if (scanner && i >= 1 && i <= ntiles) {
      if (ck_p) {
        if (ev) store_states(ck_p, h);
        ck_p += E * N;
      }
      const float2* s_dd = s_dd0 + (1 - bi) * Cf::kDD;
      const float* s_B = s_B0 + (1 - bi) * kT * N;
      const float* s_C = s_C0 + (1 - bi) * kT * N;
      float* s_y = s_y0 + (1 - bi) * G * YG;
      constexpr int kU = 4, kP = kU / TP;
      float dd_n[kP][2 * TP], B_n[kP][4], C_n[kP][4];
      auto load_group = [&](int t) {
#pragma unroll
        for (int q = 0; q < kP; ++q) {
          const int p = t / TP + q;
          lds_floats(reinterpret_cast<const float*>(s_dd + p * DR + el * TP), dd_n[q]);
          lds_floats(s_B + (p * N + n0) * TP, B_n[q]);
          if (kOut) lds_floats(s_C + (p * N + n0) * TP, C_n[q]);
        }
      };
      load_group(0);
#pragma unroll
      for (int t = 0; t < kT; t += kU) {
        float dd_c[kP][2 * TP], B_c[kP][4], C_c[kP][4];
#pragma unroll
        for (int q = 0; q < kP; ++q) {
#pragma unroll
          for (int k = 0; k < 2 * TP; ++k) dd_c[q][k] = dd_n[q][k];
#pragma unroll
          for (int k = 0; k < 4; ++k) B_c[q][k] = B_n[q][k], C_c[q][k] = C_n[q][k];
        }
        if (t + kU < kT) load_group(t + kU);
        float y[kU];
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          const int q = u / TP, tt = u % TP;
          const float dt = dd_c[q][2 * tt], dtu = dd_c[q][2 * tt + 1];
          y[u] = 0.f;
#pragma unroll
          for (int s = 0; s < NS; ++s) {
            h[s] = fmaf(fast_exp2(dt * A2[s]), h[s], dtu * B_c[q][s * TP + tt]);
            if (kOut) y[u] = fmaf(C_c[q][s * TP + tt], h[s], y[u]);
          }
        }
        if (kOut) {
#pragma unroll
          for (int u = 0; u < kU; ++u) s_y[g * YG + (t + u) * YP + el] = y[u];
        }
      }
    }
    __syncthreads();
  }

  if (ev && run.h_end && (!run.end_last_only || seg == run.S - 1))
    store_states(run.h_end + b * run.he_sb + seg * run.he_ss + e * N + n0, h);
  if (run.sumdt) {
#pragma unroll
    for (int j = 0; j < IT; ++j)
#pragma unroll
      for (int v = 0; v < VW; ++v)
        if (v < nv[j])
          atomicAdd(run.sumdt + (b * run.S + seg) * E + e_blk + (tid - TS + j * TI) % CG * VW + v, sum_dt[j][v]);
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

// How the forward runs: S time segments (s6_common.cuh, plan_segments: as many as fill the CTA slots), and the
// first pass over segments 0 .. S-2 cut into F pieces each, so that it too fills the slots (it has S-1 of the
// main pass's S segments; at batch 4 x 1536 channels, S = 2 and the first pass would otherwise get 1.5 CTAs per
// SM). Pieces are whole tiles: the segment length is rounded up to a multiple of F tiles.
struct FwdPlan {
  SegPlan seg;
  int F = 1;
};

inline FwdPlan plan_forward(const S6Inputs& in) {
  int ec = 1;  // the forward's channels per CTA
  dispatch(in.io, in.dstate, [&](auto, auto nc) { ec = FwdCfg<decltype(nc)::value>::EC; });
  const int64_t nblk = ceil_div(in.dim, ec) * in.batch;
  FwdPlan p;
  p.seg = plan_segments(in, nblk, kFwdCtasPerSm);
  if (p.seg.S > 1) {
    const int64_t slots = int64_t(kFwdCtasPerSm) * device_sm_count(), nchunks = ceil_div(in.len, kT);
    int64_t F = std::min<int64_t>(slots / (nblk * (p.seg.S - 1)), 8);
    F = std::max<int64_t>(std::min<int64_t>(F, p.seg.seg_len / kT / 8), 1);  // pieces of at least 8 tiles
    const int64_t seg_chunks = ceil_div(nchunks, p.seg.S * F) * F;
    p.seg.seg_len = seg_chunks * kT;
    p.seg.S = int(ceil_div(in.len, p.seg.seg_len));
    p.F = p.seg.S > 1 ? int(F) : 1;
  }
  return p;
}

// Workspace of a segmented forward: h_loc (B, K, E, N) f32 | h_init (B, S, E, N) f32 | sumdt (B, K, E) f64.
inline size_t fwd_workspace_bytes(const S6Inputs& in, const FwdPlan& p) {
  if (p.seg.S <= 1) return 0;
  const size_t K = size_t(p.F) * (p.seg.S - 1), be = size_t(in.batch) * in.dim;
  return be * (K + p.seg.S) * in.dstate * sizeof(float) + be * K * sizeof(double);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename IO, int N>
cudaError_t launch_fwd(const S6Inputs& in, const S6FwdArgs& args, const FwdPlan& fp, void* workspace,
                       cudaStream_t stream) {
  const SegPlan& plan = fp.seg;
  using Cf = FwdCfg<N>;
  constexpr int T = Cf::T;
  const int64_t nblk = ceil_div(in.dim, Cf::EC);
  const size_t smem = Cf::smem_bytes();
  auto k_main = s6_fwd_kernel<IO, N, true>;
  auto k_first = s6_fwd_kernel<IO, N, false>;
  cudaError_t err = cudaFuncSetAttribute(k_main, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err == cudaSuccess) err = cudaFuncSetAttribute(k_first, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err != cudaSuccess) return err;
  const int64_t EN = in.dim * N;

  // Vector access: 16-byte aligned rows, and channel groups of VW elements that span 8 (bf16, VW = 4), 16 or 32 bytes.
  constexpr bool kVecItems = std::is_same_v<IO, bf16> ? Cf::VW == 4 || Cf::VW == 8 : Cf::VW % 4 == 0;
  constexpr int64_t kVecElems = 16 / int64_t(sizeof(IO));
  auto rows_ok = [&](const void* p, int64_t sb, int64_t sl) {
    return p == nullptr || (aligned16(p) && sb % kVecElems == 0 && sl % kVecElems == 0);
  };
  FwdRun run;
  run.vec = kVecItems && rows_ok(in.u, in.u_sb, in.u_sl) &&
            rows_ok(in.delta, in.delta_sb, in.delta_sl) && rows_ok(in.z, in.z_sb, in.z_sl) &&
            rows_ok(args.out, args.out_sb, args.out_sl);
  run.bc_vec = rows_ok(in.B, in.B_sb, in.B_sl) && rows_ok(in.C, in.C_sb, in.C_sl);
  run.seg_len = plan.seg_len;
  run.S = plan.S;
  if (plan.S > 1) {
    const int64_t K = int64_t(fp.F) * (plan.S - 1);
    float* h_loc = static_cast<float*>(workspace);                   // (B, K, E, N)
    float* h_init = h_loc + in.batch * K * EN;                         // (B, S, E, N)
    double* sumdt = reinterpret_cast<double*>(h_init + in.batch * plan.S * EN);  // (B, K, E)
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
  return s6_supported_dstate(in.dstate) ? s6::fwd_workspace_bytes(in, s6::plan_forward(in)) : 0;
}

int s6_fwd_segments(const S6Inputs& in) { return s6_supported_dstate(in.dstate) ? s6::plan_forward(in).seg.S : 0; }

cudaError_t s6_fwd(const S6Inputs& in, const S6FwdArgs& args, void* workspace, cudaStream_t stream) {
  if (!s6_supported_dstate(in.dstate) || !in.u || !in.delta || !in.B || !in.C || !in.A || in.batch < 1 ||
      in.len < 1 || in.dim < 1)
    return cudaErrorInvalidValue;
  const s6::FwdPlan plan = s6::plan_forward(in);
  if (plan.seg.S > 1 && !workspace) return cudaErrorInvalidValue;
  cudaError_t err = cudaSuccess;
  s6::dispatch(in.io, in.dstate, [&](auto io, auto nc) {
    err = s6::launch_fwd<decltype(io), decltype(nc)::value>(in, args, plan, workspace, stream);
  });
  return err;
}

}  // namespace mx::kern
