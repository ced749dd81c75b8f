// The SSD stages shared by the forward and the backward (ssd.h has the math): Δ and its chunk-local cumsum,
// CB = C·Bᵀ, the chunk states (also used, with dy and C, for the backward's per-chunk state gradients) and the
// sequential state passing (forward, or in reverse for the state gradients), plus their launch sequence.
// Included by ssd_fwd.cu and ssd_bwd.cu (each gets its own copy: anonymous namespace).
#pragma once
#include <algorithm>
#include <map>

#include "ssd/ssd_common.cuh"

namespace mx::kern::ssd {
namespace {

MX_DEV float head_scale(const SsdArgs& a, int64_t h) {
  return a.dt_scale ? a.dt_scale[a.scale_per_head ? h : 0] : 1.f;
}
// clamp(softplus(raw + bias), dt_min, dt_max) (before the scale).
MX_DEV float dt_clamped(const SsdArgs& a, float raw, int64_t h) {
  const float sp = softplus_f(raw + (a.dt_bias ? a.dt_bias[h] : 0.f));
  return fminf(fmaxf(sp, a.dt_min), a.dt_max);
}
template <typename T>
MX_DEV float raw_dt(const SsdArgs& a, int64_t b, int64_t t, int64_t h) {
  return load_f(static_cast<const T*>(a.dt), b * a.dt_sb + t * a.dt_sl + h * a.dt_sh);
}

MX_DEV void load4(const float* p, float (&v)[4]) {
#ifdef MX_CPU_EMU
  for (int i = 0; i < 4; ++i) v[i] = p[i];
#else
  const float4 u = *reinterpret_cast<const float4*>(p);
  v[0] = u.x, v[1] = u.y, v[2] = u.z, v[3] = u.w;
#endif
}
MX_DEV void load4(const bf16* p, float (&v)[4]) {  // 8-byte aligned
  load2(p, v[0], v[1]);
  load2(p + 2, v[2], v[3]);
}
MX_DEV void store4(float* p, const float (&v)[4]) {
#ifdef MX_CPU_EMU
  for (int i = 0; i < 4; ++i) p[i] = v[i];
#else
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
#endif
}
MX_DEV void store4(bf16* p, const float (&v)[4]) {  // 8-byte aligned
  store2(p, v[0], v[1]);
  store2(p + 2, v[2], v[3]);
}

// Stores a warp's 16 × 8·NI accumulator tile at out[(row0 + row) * ld + col0 + col] (fp32), rows < rvalid.
template <int NI>
MX_DEV void store_acc(float* out, int64_t ld, int row0, int col0, const float (&acc)[NI][4], int rvalid) {
  const int l = lane_id(), g = l >> 2, q = l & 3;
#pragma unroll
  for (int j = 0; j < NI; ++j)
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int row = row0 + g + 8 * u;
      if (row < rvalid) store2(out + int64_t(row) * ld + col0 + 8 * j + 2 * q, acc[j][2 * u], acc[j][2 * u + 1]);
    }
}

// Multiplies row t of the two 16-row accumulator tiles of a warp (row blocks rbs[0], rbs[1]) by f[t].
MX_DEV void scale_rows(float (&acc)[2][8][4], const int (&rbs)[2], const float* f) {
  const int gq = lane_id() >> 2;
#pragma unroll
  for (int k = 0; k < 2; ++k)
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const float m = f[16 * rbs[k] + gq + 8 * u];
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[k][j][2 * u] *= m, acc[k][j][2 * u + 1] *= m;
    }
}

// ---- 1. Δ (dtv) and the inclusive cumsum of Δ·A·log2(e) within the chunk, accumulated in double and stored as
// the double-float cs2 + csl; (B, H, Lp), padding Δ = 0. Grid (nc, ceil(H / kCsHeads), B), 256 threads: the CTA
// stages the raw dt of the chunk's 256 tokens for its kCsHeads heads (reads along the heads: coalesced in the
// model's layout), then each warp scans one head at a time: lane l sums tokens 8l .. 8l + 7 in double and a warp
// scan adds the lanes before it (one CTA barrier; one CTA per (chunk, head) with a 16-barrier scan took 75 us).
constexpr int kCsHeads = 16;
constexpr size_t kCsSmem = size_t(kQ) * (kCsHeads + 1) * sizeof(float);

template <typename T>
__global__ void __launch_bounds__(256) dt_cumsum_kernel(SsdArgs a, Dims d, float* dtv, float* cs2, float* csl) {
  constexpr int LD = kCsHeads + 1;  // odd row stride: a warp's column reads hit distinct banks
  float* raw = reinterpret_cast<float*>(dynamic_smem());  // [kQ][LD] raw dt
  const int64_t c = blockIdx.x, h0 = int64_t(blockIdx.y) * kCsHeads, b = blockIdx.z;
  const int nh = int(std::min<int64_t>(kCsHeads, d.H - h0)), rv = int(std::min<int64_t>(kQ, d.L - c * kQ));
#pragma unroll 4
  for (int i = int(threadIdx.x); i < kQ * kCsHeads; i += int(blockDim.x)) {
    const int t = i / kCsHeads, hh = i % kCsHeads;
    raw[t * LD + hh] = t < rv && hh < nh ? raw_dt<T>(a, b, c * kQ + t, h0 + hh) : 0.f;
  }
  __syncthreads();
  const int l = lane_id();
  for (int hh = warp_id(); hh < nh; hh += int(blockDim.x) / 32) {
    const int64_t h = h0 + hh;
    const double A2 = double(a.A[h]) * 1.4426950408889634;
    const float scale = head_scale(a, h);
    float delta[8], hi[8], lo[8];
    double pre[8], run = 0.0;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int t = 8 * l + i;
      delta[i] = t < rv ? scale * dt_clamped(a, raw[t * LD + hh], h) : 0.f;
      run += double(delta[i]) * A2;
      pre[i] = run;
    }
    double incl = run;  // inclusive scan of the lane totals
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const double up = shfl_up(incl, o);
      if (l >= o) incl += up;
    }
    const double off = incl - run;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const double v = off + pre[i];
      hi[i] = float(v);
      lo[i] = float(v - double(hi[i]));
    }
    const int64_t o = (b * d.H + h) * d.Lp + c * kQ + 8 * l;
    store8(dtv + o, delta);
    store8(cs2 + o, hi);
    store8(csl + o, lo);
  }
}

// ---- 2. CB[b,c,g] (kQ × kQ, fp32) = C·Bᵀ over the chunk, 64 × 64 blocks (i, j) with j <= i.
// Grid (10, nc, B·G), 128 threads (warp w: rows 16w..16w+15 of the block).
template <typename T>
__global__ void __launch_bounds__(128, 4) cb_kernel(SsdArgs a, Dims d, float* cb) {
  constexpr int LD = ld_of<T>(64);
  T* As = reinterpret_cast<T*>(dynamic_smem());
  T* Bs = As + 64 * LD;
  int i = 0, j = int(blockIdx.x);
  while (j > i) j -= ++i;
  const int64_t c = blockIdx.y, b = blockIdx.z / d.G, g = blockIdx.z % d.G;
  const int64_t t0 = c * kQ + 64 * i, s0 = c * kQ + 64 * j;
  const int rvA = int(std::min<int64_t>(64, std::max<int64_t>(0, d.L - t0)));
  const int rvB = int(std::min<int64_t>(64, std::max<int64_t>(0, d.L - s0)));
  const T* Cg = static_cast<const T*>(a.Cm) + b * a.C_sb + g * a.C_sg + t0 * a.C_sl;
  const T* Bg = static_cast<const T*>(a.Bm) + b * a.B_sb + g * a.B_sg + s0 * a.B_sl;
  float acc[8][4];
  zero_acc(acc);
  const int w = warp_id();
  if (rvA > 0 && rvB > 0) {
    for (int nb = 0; nb < d.N; nb += 64) {
      stage<false>(As, LD, Cg + nb, a.C_sl, 64, 64, rvA, Identity{});
      stage<false>(Bs, LD, Bg + nb, a.B_sl, 64, 64, rvB, Identity{});
      __syncthreads();
      warp_mma<T, 8>(acc, As + 16 * w * LD, LD, Bs, LD, 4);
      __syncthreads();
    }
  }
  float* out = cb + ((b * d.nc + c) * d.G + g) * kQ * kQ + (64 * i) * kQ + 64 * j;
  store_acc(out, kQ, 16 * w, 0, acc, 64);
}

// ---- 3. Chunk states out[b,c,h] (P × N, fp32) = Σ_s w_s · u_s ⊗ v_s over the chunk:
//   forward (kRev = false): u = x, v = B, w_s = exp(cs_end − cs_s)·Δ_s           (S_c)
//   backward (kRev = true): u = dy, v = C, w_t = exp(cs_t)                       (R_c = ∂L/∂S_in[c] via y)
// Grid chunk_head_grid(d), 256 threads: warp w owns p rows 16·(w%4).. and n columns (w/4)·N/2 ... Per block of 64
// tokens, u (scaled by w) and v are copied as [s][p] and [s][n] tiles; the product reads both transposed.
struct StateSrc {
  const void* u;
  int64_t u_sb, u_sl, u_sh;
  const void* v;
  int64_t v_sb, v_sl, v_sg;
};

template <typename T, int N>
constexpr size_t chunk_state_smem() {
  return (size_t(64) * ld_of<T>(64) + size_t(64) * ld_of<T>(N)) * sizeof(T) + kQ * sizeof(float);
}

template <typename T, int N, bool kRev>
__global__ void __launch_bounds__(256, 2) chunk_state_kernel(StateSrc s, Dims d, const float* dtv, const float* cs2,
                                                             const float* csl, float* out) {
  constexpr int LA = ld_of<T>(64), LB = ld_of<T>(N), NI = N / 16;
  T* As = reinterpret_cast<T*>(dynamic_smem());  // u [s][p]
  T* Bs = As + 64 * LA;                            // v [s][n]
  float* wr = reinterpret_cast<float*>(Bs + 64 * LB);
  const int64_t c = grid_chunk(d), h = grid_head(d), b = blockIdx.z, g = h / d.hpg;
  const int64_t base = (b * d.H + h) * d.Lp + c * kQ;
  const float ceh = cs2[base + kQ - 1], cel = csl[base + kQ - 1];
  for (int t = int(threadIdx.x); t < kQ; t += int(blockDim.x))
    wr[t] = kRev ? fast_exp2(cs2[base + t] + csl[base + t])
                 : dexp2(ceh, cel, cs2[base + t], csl[base + t]) * dtv[base + t];
  __syncthreads();
  const int rv = int(std::min<int64_t>(kQ, d.L - c * kQ));
  const int w = warp_id(), rb = w & 3, half = w >> 2;
  float acc[NI][4];
  zero_acc(acc);
  const T* u0 = static_cast<const T*>(s.u) + b * s.u_sb + h * s.u_sh + c * kQ * s.u_sl;
  const T* v0 = static_cast<const T*>(s.v) + b * s.v_sb + g * s.v_sg + c * kQ * s.v_sl;
  for (int sb = 0; sb < 4 && 64 * sb < rv; ++sb) {
    const float* wsb = wr + 64 * sb;
    stage<false>(As, LA, u0 + 64 * sb * s.u_sl, s.u_sl, 64, 64, rv - 64 * sb,
                 [&](int r, int, float v) { return v * wsb[r]; });
    stage<false>(Bs, LB, v0 + 64 * sb * s.v_sl, s.v_sl, 64, N, rv - 64 * sb, Identity{});
    __syncthreads();
    warp_mma<T, NI, true, true>(acc, As + 16 * rb, LA, Bs + half * (N / 2), LB, 4);
    __syncthreads();
  }
  float* o = out + ((b * d.nc + c) * d.H + h) * int64_t(kP) * N;
  store_acc(o, N, 16 * rb, half * (N / 2), acc, 64);
}

// bf16 chunk states, pipelined: the raw u and v tiles of each block of 64 tokens go through a cp.async pipeline of
// state_stages<N>() buffers (the next blocks' copies in flight while one computes), and w_s is applied to the A
// fragments (uᵀ, read transposed) in registers, with the same single rounding to bf16 as chunk_state_kernel.
// A CTA serves HPC heads of one group (2 for N <= 128 when the group's head count is even, else 1), which share
// the v tile: it is read from L2 once per HPC heads (the kernel is bound by L2 traffic: 0.73 ms at 64k with one
// head per CTA). HPC = 1: warp w owns rows p = 16·(w%4).. and the columns n of half w/4; HPC = 2: head w/4, rows
// 16·(w%4).., all N columns. Smem 108 KB (N = 128, HPC = 2, 3 buffers) / 86 KB (N = 256, 2 buffers).
template <int N>
constexpr int state_stages() {
  return N <= 128 ? 3 : 2;
}
template <int N, int HPC>
constexpr size_t chunk_state_buf() {
  return size_t(64) * (72 * HPC + N + 8) * sizeof(bf16);
}
template <int N, int HPC>
constexpr size_t chunk_state_async_smem() {
  return state_stages<N>() * chunk_state_buf<N, HPC>() + HPC * kQ * sizeof(float);
}

template <int N, int HPC, bool kRev>
__global__ void __launch_bounds__(256, 2) chunk_state_async_kernel(StateSrc s, Dims d, const float* dtv,
                                                                   const float* cs2, const float* csl, float* out) {
  constexpr int LA = 72, LB = N + 8, NW = N * HPC / 2, NI = NW / 8;  // NW: columns n of a warp
  unsigned char* bufs = dynamic_smem();  // per buffer: u of each head [s][p] (64 × LA each), then v [s][n] (64 × LB)
  float* wr = reinterpret_cast<float*>(bufs + state_stages<N>() * chunk_state_buf<N, HPC>());  // (HPC, kQ)
  const int64_t hq = d.H / HPC, c = int64_t(blockIdx.x) / hq, h0 = int64_t(blockIdx.x) % hq * HPC, b = blockIdx.z;
  const int64_t g = h0 / d.hpg;
  for (int i = int(threadIdx.x); i < HPC * kQ; i += int(blockDim.x)) {
    const int t = i % kQ;
    const int64_t base = (b * d.H + h0 + i / kQ) * d.Lp + c * kQ;
    wr[i] = kRev ? fast_exp2(cs2[base + t] + csl[base + t])
                 : dexp2(cs2[base + kQ - 1], csl[base + kQ - 1], cs2[base + t], csl[base + t]) * dtv[base + t];
  }
  const int rv = int(std::min<int64_t>(kQ, d.L - c * kQ));
  const int w = warp_id(), rb = w & 3, hk = HPC == 2 ? w >> 2 : 0, n0 = HPC == 2 ? 0 : (w >> 2) * (N / 2);
  const int l = lane_id(), q = l & 3, mi = l >> 3, r = l & 7;
  float acc[NI][4];
  zero_acc(acc);
  const bf16* u0 = static_cast<const bf16*>(s.u) + b * s.u_sb + h0 * s.u_sh + c * kQ * s.u_sl;
  const bf16* v0 = static_cast<const bf16*>(s.v) + b * s.v_sb + g * s.v_sg + c * kQ * s.v_sl;
  const int pa = hk * 64 * LA + ((mi >> 1) * 8 + r) * LA + 16 * rb + (mi & 1) * 8;   // Aᵀ: rows s, columns p
  const int pb = HPC * 64 * LA + ((mi & 1) * 8 + r) * LB + n0 + (mi >> 1) * 8;      // B: rows s, columns n
  auto issue = [&](int sb, int buf) {
    bf16* Xb = reinterpret_cast<bf16*>(bufs + buf * chunk_state_buf<N, HPC>());
#pragma unroll
    for (int k = 0; k < HPC; ++k)
      copy_tile_async<64, 256>(Xb + k * 64 * LA, LA, u0 + k * s.u_sh + 64 * sb * s.u_sl, s.u_sl, 64, rv - 64 * sb);
    copy_tile_async<N, 256>(Xb + HPC * 64 * LA, LB, v0 + 64 * sb * s.v_sl, s.v_sl, 64, rv - 64 * sb);
  };
  auto compute = [&](int sb, int buf) {
    const bf16* Xb = reinterpret_cast<const bf16*>(bufs + buf * chunk_state_buf<N, HPC>());
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      uint32_t a[4];
      ldsm_x4<true>(a, Xb + pa + ks * 16 * LA);
      const float* wk = wr + hk * kQ + 64 * sb + 16 * ks + 2 * q;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float* wi = wk + (i >> 1) * 8;
        a[i] = pack_bf16(bf16_lo(a[i]) * wi[0], bf16_hi(a[i]) * wi[1]);
      }
#pragma unroll
      for (int j = 0; j < NI; j += 2) {
        uint32_t bb[4];
        ldsm_x4<true>(bb, Xb + pb + ks * 16 * LB + (j / 2) * 16);
        const uint32_t b0[2] = {bb[0], bb[1]}, b1[2] = {bb[2], bb[3]};
        mma_bf16(acc[j], a, b0);
        mma_bf16(acc[j + 1], a, b1);
      }
    }
  };
  cp_async_pipeline<state_stages<N>()>((rv + 63) / 64, issue, compute);
  float* o = out + ((b * d.nc + c) * d.H + h0 + hk) * int64_t(kP) * N;
  store_acc(o, N, 16 * rb, n0, acc, 64);
}

// ---- 4. State passing over S (B, nc, H, P, N), in place, 4 elements per thread, grid (P·N/1024, H, B):
//   forward:  S[c] ← S_in[c] where S_in[0] = hin (or 0), S_in[c+1] = exp(cs_end(c))·S_in[c] + S_c; hout = S_in[nc];
//             with S16, S_in[c] goes to S16 rounded to bf16 instead (the bf16 chunk scan's operand: half the bytes
//             written and read; S keeps the chunk states)
//   backward: S[c] ← G_c where G_{nc-1} = hin (dhT, or 0), G_{c-1} = exp(cs_end(c))·G_c + R_c; hout = G_{-1}
//             = dh0; also dcs_sp[b,h,c] += exp(cs_end(c))·Σ G_c ⊙ Sin[c] (the gradient of cs_end through the
//             decay of the state passing); with S16, G_c goes to S16 rounded to bf16 instead (the operand of the
//             bf16 kernels that read G) and Sin is S_in in bf16 (what the bf16 forward's chunk scan used).
template <bool kRev, typename SinT = float>
__global__ void __launch_bounds__(256, 3) state_pass_kernel(Dims d, float* S, const float* hin, float* hout,
                                                         const float* cs2, const float* csl, const SinT* Sin,
                                                         float* dcs_sp, bf16* S16) {
  const int64_t PN = kP * d.N;
  const int64_t e = (int64_t(blockIdx.x) * 256 + threadIdx.x) * 4;
  const int64_t h = blockIdx.y, b = blockIdx.z, bh = b * d.H + h;
  float run[4] = {0.f, 0.f, 0.f, 0.f};
  if (hin) load4(hin + bh * PN + e, run);
  const float* csend = cs2 + bh * d.Lp + kQ - 1;
  const float* cslend = csl + bh * d.Lp + kQ - 1;
  const int64_t cstride = d.H * PN;
  float* Sb = S + (b * d.nc * d.H + h) * PN + e;
  bf16* Sb16 = S16 ? S16 + (b * d.nc * d.H + h) * PN + e : nullptr;
  const SinT* Sib = Sin ? Sin + (b * d.nc * d.H + h) * PN + e : nullptr;
  // Groups of kU chunks; the next group's loads are issued before this group's stores (S is updated in place,
  // so the compiler cannot move a load of S across a store to S by itself), keeping 2·kU loads in flight.
  constexpr int kU = 4;
  float v[kU][4] = {}, si[kU][4] = {}, dec[kU] = {};
  auto load_group = [&](int64_t k0) {
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      if (k0 + u < d.nc) {
        const int64_t c = kRev ? d.nc - 1 - (k0 + u) : k0 + u;
        load4(Sb + c * cstride, v[u]);
        if (kRev) load4(Sib + c * cstride, si[u]);
        dec[u] = fast_exp2(csend[c * kQ] + cslend[c * kQ]);
      }
    }
  };
  load_group(0);
  for (int64_t k0 = 0; k0 < d.nc; k0 += kU) {
    const int cnt = int(std::min<int64_t>(kU, d.nc - k0));
    float vc[kU][4], sic[kU][4], decc[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      decc[u] = dec[u];
#pragma unroll
      for (int i = 0; i < 4; ++i) vc[u][i] = v[u][i], sic[u][i] = si[u][i];
    }
    if (k0 + kU < d.nc) load_group(k0 + kU);
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      if (u < cnt) {
        const int64_t c = kRev ? d.nc - 1 - (k0 + u) : k0 + u;
        if (Sb16) store4(Sb16 + c * cstride, run);
        else store4(Sb + c * cstride, run);
        if (kRev) {
          float dot = run[0] * sic[u][0] + run[1] * sic[u][1] + run[2] * sic[u][2] + run[3] * sic[u][3];
          dot = warp_sum(dot * decc[u]);
          if (lane_id() == 0) atomicAdd(dcs_sp + bh * d.nc + c, dot);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) run[i] = fmaf(decc[u], run[i], vc[u][i]);
      }
    }
  }
  if (hout) store4(hout + bh * PN + e, run);
}

inline void mark(const char* stage, cudaStream_t st) {
  if (SsdStageHook hk = ssd_stage_hook()) hk(stage, st);
}

// The second stream of launch_fwd / launch_bwd and its events, one set per device and host thread (and per
// translation unit: this header's anonymous namespace), created on first use and kept for the life of the process.
struct SideStream {
  cudaStream_t s = nullptr;
  cudaEvent_t fork = nullptr, dcb = nullptr, done = nullptr;
};
inline cudaError_t side_stream(SideStream& out) {
  thread_local std::map<int, SideStream> cache;
  int dev = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) return err;
  auto it = cache.find(dev);
  if (it == cache.end()) {
    SideStream ss;
    if ((err = cudaStreamCreateWithFlags(&ss.s, cudaStreamNonBlocking)) != cudaSuccess) return err;
    for (cudaEvent_t* e : {&ss.fork, &ss.dcb, &ss.done})
      if ((err = cudaEventCreateWithFlags(e, cudaEventDisableTiming)) != cudaSuccess) return err;
    it = cache.emplace(dev, ss).first;
  }
  out = it->second;
  return cudaSuccess;
}

// Forks the side stream from st (its work waits for st's so far), unless a stage hook profiles: then side.s is st,
// `forked` is false and the caller skips its joins, so that everything runs in order.
inline cudaError_t fork_side(cudaStream_t st, SideStream& side, bool& forked) {
  forked = ssd_stage_hook() == nullptr;
  if (!forked) {
    side.s = st;
    return cudaSuccess;
  }
  cudaError_t err = side_stream(side);
  if (err == cudaSuccess) err = cudaEventRecord(side.fork, st);
  if (err == cudaSuccess) err = cudaStreamWaitEvent(side.s, side.fork, 0);
  return err;
}

template <typename K>
cudaError_t set_smem(K kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

// Chunk states (forward: x, B; backward: dy, C) into out: the async kernel for bf16, the staged one for fp32.
template <typename T, int N, bool kRev>
cudaError_t launch_chunk_state(const StateSrc& src, const Dims& d, const FwdWs& w, float* out, cudaStream_t st) {
  const dim3 grid = chunk_head_grid(d);
  cudaError_t err = cudaSuccess;
  if constexpr (std::is_same_v<T, bf16>) {
    if constexpr (N <= 128) {
      if (d.hpg % 2 == 0) {  // two heads of a group per CTA
        auto k = chunk_state_async_kernel<N, 2, kRev>;
        const size_t sm = chunk_state_async_smem<N, 2>();
        if ((err = set_smem(k, sm)) != cudaSuccess) return err;
        MX_LAUNCH(k, dim3(unsigned(d.nc * d.H / 2), 1u, unsigned(d.B)), dim3(256), sm, st, src, d, w.dtv, w.cs2,
                  w.csl, out);
        return cudaGetLastError();
      }
    }
    auto k = chunk_state_async_kernel<N, 1, kRev>;
    const size_t sm = chunk_state_async_smem<N, 1>();
    if ((err = set_smem(k, sm)) != cudaSuccess) return err;
    MX_LAUNCH(k, grid, dim3(256), sm, st, src, d, w.dtv, w.cs2, w.csl, out);
  } else {
    auto k = chunk_state_kernel<T, N, kRev>;
    const size_t sm = chunk_state_smem<T, N>();
    if ((err = set_smem(k, sm)) != cudaSuccess) return err;
    MX_LAUNCH(k, grid, dim3(256), sm, st, src, d, w.dtv, w.cs2, w.csl, out);
  }
  return cudaGetLastError();
}

// Stages 1–4 of the forward: fills w.dtv, w.cs2, w.cb and w.S (= S_in per chunk, or with S16 the chunk states
// and S16 = S_in in bf16); hT (or null) gets the final state. CB, which only the chunk scans read, goes on st_cb
// (st, or a stream that the caller joins before them).
template <typename T, int N>
cudaError_t launch_prefix(const SsdArgs& a, const Dims& d, const FwdWs& w, float* hT, cudaStream_t st,
                          cudaStream_t st_cb, bf16* S16 = nullptr) {
  const unsigned nc = unsigned(d.nc), H = unsigned(d.H), B = unsigned(d.B);
  auto k1 = dt_cumsum_kernel<T>;
  MX_LAUNCH(k1, dim3(nc, unsigned(ceil_div(d.H, int64_t(kCsHeads))), B), dim3(256), kCsSmem, st, a, d, w.dtv, w.cs2,
            w.csl);
  mark("dt_cumsum", st);
  auto k2 = cb_kernel<T>;
  MX_LAUNCH(k2, dim3(10, nc, unsigned(d.B * d.G)), dim3(128), 2 * 64 * ld_of<T>(64) * sizeof(T), st_cb, a, d, w.cb);
  mark("cb", st);
  const StateSrc src{a.x, a.x_sb, a.x_sl, a.x_sh, a.Bm, a.B_sb, a.B_sl, a.B_sg};
  cudaError_t err = launch_chunk_state<T, N, false>(src, d, w, w.S, st);
  if (err != cudaSuccess) return err;
  mark("chunk_state", st);
  auto k4 = state_pass_kernel<false>;
  MX_LAUNCH(k4, dim3(unsigned(kP * d.N / 1024), H, B), dim3(256), 0, st, d, w.S, a.h0, hT, w.cs2, w.csl,
            static_cast<const float*>(nullptr), static_cast<float*>(nullptr), S16);
  mark("state_pass", st);
  return cudaGetLastError();
}

}  // namespace
}  // namespace mx::kern::ssd
