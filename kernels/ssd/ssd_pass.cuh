// The SSD stages shared by the forward and the backward (ssd.h has the math): Δ and its chunk-local cumsum,
// CB = C·Bᵀ, the chunk states (also used, with dy and C, for the backward's per-chunk state gradients) and the
// sequential state passing (forward, or in reverse for the state gradients), plus their launch sequence.
// Included by ssd_fwd.cu and ssd_bwd.cu (each gets its own copy: anonymous namespace).
#pragma once
#include <algorithm>

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
MX_DEV void store4(float* p, const float (&v)[4]) {
#ifdef MX_CPU_EMU
  for (int i = 0; i < 4; ++i) p[i] = v[i];
#else
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
#endif
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

// ---- 1. Δ (dtv) and cs2 = log2(e) · inclusive cumsum of Δ·A within the chunk; (B, H, Lp), padding Δ = 0.
// Grid (nc, H, B), kQ threads, smem kQ floats.
template <typename T>
__global__ void __launch_bounds__(kQ) dt_cumsum_kernel(SsdArgs a, Dims d, float* dtv, float* cs2) {
  float* sc = reinterpret_cast<float*>(dynamic_smem());
  const int t = int(threadIdx.x);
  const int64_t c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tok = c * kQ + t;
  float delta = 0.f;
  if (tok < d.L) delta = head_scale(a, h) * dt_clamped(a, raw_dt<T>(a, b, tok, h), h);
  sc[t] = delta * a.A[h] * kLog2e;
  __syncthreads();
  for (int off = 1; off < kQ; off <<= 1) {
    const float add = t >= off ? sc[t - off] : 0.f;
    __syncthreads();
    sc[t] += add;
    __syncthreads();
  }
  const int64_t o = (b * d.H + h) * d.Lp + tok;
  dtv[o] = delta;
  cs2[o] = sc[t];
}

// ---- 2. CB[b,c,g] (kQ × kQ, fp32) = C·Bᵀ over the chunk, 64 × 64 blocks (i, j) with j <= i.
// Grid (10, nc, B·G), 128 threads (warp w: rows 16w..16w+15 of the block).
template <typename T>
__global__ void __launch_bounds__(128) cb_kernel(SsdArgs a, Dims d, float* cb) {
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
// Grid (nc, H, B), 256 threads: warp w owns p rows 16·(w%4).. and n columns (w/4)·N/2 ...
struct StateSrc {
  const void* u;
  int64_t u_sb, u_sl, u_sh;
  const void* v;
  int64_t v_sb, v_sl, v_sg;
};

template <typename T, int N>
constexpr size_t chunk_state_smem() {
  return size_t(64 + N) * ld_of<T>(64) * sizeof(T) + kQ * sizeof(float);
}

template <typename T, int N, bool kRev>
__global__ void __launch_bounds__(256) chunk_state_kernel(StateSrc s, Dims d, const float* dtv, const float* cs2,
                                                          float* out) {
  constexpr int LD = ld_of<T>(64), NI = N / 16;
  T* As = reinterpret_cast<T*>(dynamic_smem());  // [p][s]
  T* Bs = As + 64 * LD;                            // [n][s]
  float* wr = reinterpret_cast<float*>(Bs + N * LD);
  const int64_t c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, g = h / d.hpg;
  const int64_t base = (b * d.H + h) * d.Lp + c * kQ;
  const float cend = cs2[base + kQ - 1];
  for (int t = int(threadIdx.x); t < kQ; t += int(blockDim.x))
    wr[t] = kRev ? fast_exp2(cs2[base + t]) : fast_exp2(cend - cs2[base + t]) * dtv[base + t];
  __syncthreads();
  const int rv = int(std::min<int64_t>(kQ, d.L - c * kQ));
  const int w = warp_id(), rb = w & 3, half = w >> 2;
  float acc[NI][4];
  zero_acc(acc);
  const T* u0 = static_cast<const T*>(s.u) + b * s.u_sb + h * s.u_sh + c * kQ * s.u_sl;
  const T* v0 = static_cast<const T*>(s.v) + b * s.v_sb + g * s.v_sg + c * kQ * s.v_sl;
  for (int sb = 0; sb < 4 && 64 * sb < rv; ++sb) {
    const float* wsb = wr + 64 * sb;
    stage<true>(As, LD, u0 + 64 * sb * s.u_sl, s.u_sl, 64, 64, rv - 64 * sb,
                [&](int r, int, float v) { return v * wsb[r]; });
    stage<true>(Bs, LD, v0 + 64 * sb * s.v_sl, s.v_sl, 64, N, rv - 64 * sb, Identity{});
    __syncthreads();
    warp_mma<T, NI>(acc, As + 16 * rb * LD, LD, Bs + half * (N / 2) * LD, LD, 4);
    __syncthreads();
  }
  float* o = out + ((b * d.nc + c) * d.H + h) * int64_t(kP) * N;
  store_acc(o, N, 16 * rb, half * (N / 2), acc, 64);
}

// ---- 4. State passing over S (B, nc, H, P, N), in place, 4 elements per thread, grid (P·N/1024, H, B):
//   forward:  S[c] ← S_in[c] where S_in[0] = hin (or 0), S_in[c+1] = exp(cs_end(c))·S_in[c] + S_c; hout = S_in[nc]
//   backward: S[c] ← G_c where G_{nc-1} = hin (dhT, or 0), G_{c-1} = exp(cs_end(c))·G_c + R_c; hout = G_{-1}
//             = dh0; also dcs_sp[b,h,c] += exp(cs_end(c))·Σ G_c ⊙ Sin[c] (the gradient of cs_end through the
//             decay of the state passing).
template <bool kRev>
__global__ void __launch_bounds__(256) state_pass_kernel(Dims d, float* S, const float* hin, float* hout,
                                                         const float* cs2, const float* Sin, float* dcs_sp) {
  const int64_t PN = kP * d.N;
  const int64_t e = (int64_t(blockIdx.x) * 256 + threadIdx.x) * 4;
  const int64_t h = blockIdx.y, b = blockIdx.z, bh = b * d.H + h;
  float run[4] = {0.f, 0.f, 0.f, 0.f};
  if (hin) load4(hin + bh * PN + e, run);
  const float* csend = cs2 + bh * d.Lp + kQ - 1;
  const int64_t cstride = d.H * PN;
  float* Sb = S + (b * d.nc * d.H + h) * PN + e;
  const float* Sib = Sin ? Sin + (b * d.nc * d.H + h) * PN + e : nullptr;
  constexpr int kU = 4;
  for (int64_t k0 = 0; k0 < d.nc; k0 += kU) {
    const int cnt = int(std::min<int64_t>(kU, d.nc - k0));
    float v[kU][4], si[kU][4], dec[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      if (u < cnt) {
        const int64_t c = kRev ? d.nc - 1 - (k0 + u) : k0 + u;
        load4(Sb + c * cstride, v[u]);
        if (kRev) load4(Sib + c * cstride, si[u]);
        dec[u] = fast_exp2(csend[c * kQ]);
      }
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      if (u < cnt) {
        const int64_t c = kRev ? d.nc - 1 - (k0 + u) : k0 + u;
        store4(Sb + c * cstride, run);
        if (kRev) {
          float dot = run[0] * si[u][0] + run[1] * si[u][1] + run[2] * si[u][2] + run[3] * si[u][3];
          dot = warp_sum(dot * dec[u]);
          if (lane_id() == 0) atomicAdd(dcs_sp + bh * d.nc + c, dot);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) run[i] = fmaf(dec[u], run[i], v[u][i]);
      }
    }
  }
  if (hout) store4(hout + bh * PN + e, run);
}

inline void mark(const char* stage, cudaStream_t st) {
  if (SsdStageHook hk = ssd_stage_hook()) hk(stage, st);
}

template <typename K>
cudaError_t set_smem(K kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

// Stages 1–4 of the forward: fills w.dtv, w.cs2, w.cb and w.S (= S_in per chunk); hT (or null) gets the final
// state.
template <typename T, int N>
cudaError_t launch_prefix(const SsdArgs& a, const Dims& d, const FwdWs& w, float* hT, cudaStream_t st) {
  const unsigned nc = unsigned(d.nc), H = unsigned(d.H), B = unsigned(d.B);
  auto k1 = dt_cumsum_kernel<T>;
  MX_LAUNCH(k1, dim3(nc, H, B), dim3(kQ), kQ * sizeof(float), st, a, d, w.dtv, w.cs2);
  mark("dt_cumsum", st);
  auto k2 = cb_kernel<T>;
  MX_LAUNCH(k2, dim3(10, nc, unsigned(d.B * d.G)), dim3(128), 2 * 64 * ld_of<T>(64) * sizeof(T), st, a, d, w.cb);
  mark("cb", st);
  auto k3 = chunk_state_kernel<T, N, false>;
  const size_t sm3 = chunk_state_smem<T, N>();
  cudaError_t err = set_smem(k3, sm3);
  if (err != cudaSuccess) return err;
  const StateSrc src{a.x, a.x_sb, a.x_sl, a.x_sh, a.Bm, a.B_sb, a.B_sl, a.B_sg};
  MX_LAUNCH(k3, dim3(nc, H, B), dim3(256), sm3, st, src, d, w.dtv, w.cs2, w.S);
  mark("chunk_state", st);
  auto k4 = state_pass_kernel<false>;
  MX_LAUNCH(k4, dim3(unsigned(kP * d.N / 1024), H, B), dim3(256), 0, st, d, w.S, a.h0, hT, w.cs2,
            static_cast<const float*>(nullptr), static_cast<float*>(nullptr));
  mark("state_pass", st);
  return cudaGetLastError();
}

}  // namespace
}  // namespace mx::kern::ssd
