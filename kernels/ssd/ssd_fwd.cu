// SSD forward (ssd.h has the math): stages 1–4 (ssd_pass.cuh), then the chunk scan, which for each (chunk,
// head) forms y = exp(cs_t)·C_t·S_inᵀ + (CB ⊙ decay ⊙ Δ)·x + D·x over the chunk's 256 tokens; and the
// recurrent kernel for short sequences (decoding steps).
// Chunk scan CTA: 8 warps; warp w owns the 16-row blocks w and 15 − w of the 256 × 64 output (balanced under
// the causal mask). Term 1 runs over N in blocks of 64 (C and S_in tiles staged per block, exp(cs_t) applied
// to the accumulator); term 2 over the 4 source blocks of 64 tokens (decayed CB tile and the x tile, read transposed, staged
// per block; below the diagonal block the decay factors into row and column terms). Shared memory ≈ 52 KB
// (bf16) / 93 KB (fp32).
#include "ssd/ssd_pass.cuh"

namespace mx::kern::ssd {
namespace {

template <typename T>
constexpr size_t chunk_scan_smem() {
  return size_t(kQ + 64) * ld_of<T>(64) * sizeof(T) + (5 * kQ + 64) * sizeof(float);
}

template <typename T, int N>
__global__ void __launch_bounds__(256, 2) chunk_scan_kernel(SsdArgs a, Dims d, const float* dtv, const float* cs2,
                                                            const float* csl, const float* Sin, const float* cb,
                                                            SsdFwdOut o) {
  constexpr int LD = ld_of<T>(64);
  T* As = reinterpret_cast<T*>(dynamic_smem());  // [256][LD]: C tile, then decayed CB tile
  T* Bs = As + kQ * LD;                            // [64][LD]: S_in tile [p][n], then x tile [s][p]
  float* scs = reinterpret_cast<float*>(Bs + 64 * LD);  // cumsum hi / lo, Δ, exp(cs), row factors (256 each)
  float* scl = scs + kQ;
  float* sdt = scl + kQ;
  float* sex = sdt + kQ;
  float* rowf = sex + kQ;
  float* colf = rowf + kQ;  // (64)
  const int64_t c = grid_chunk(d), h = grid_head(d), b = blockIdx.z, g = h / d.hpg;
  const int64_t base = (b * d.H + h) * d.Lp + c * kQ;
  for (int t = int(threadIdx.x); t < kQ; t += int(blockDim.x)) {
    scs[t] = cs2[base + t];
    scl[t] = csl[base + t];
    sdt[t] = dtv[base + t];
    sex[t] = fast_exp2(scs[t] + scl[t]);
  }
  __syncthreads();
  const int rv = int(std::min<int64_t>(kQ, d.L - c * kQ));
  const int w = warp_id();
  const int rbs[2] = {w, 15 - w};
  float acc[2][8][4];
  zero_acc(acc[0]);
  zero_acc(acc[1]);

  // Term 1: exp(cs_t)·C_t·S_inᵀ (the exp applied to the fp32 accumulator).
  const T* Cg = static_cast<const T*>(a.Cm) + b * a.C_sb + g * a.C_sg + c * kQ * a.C_sl;
  const float* Sg = Sin + ((b * d.nc + c) * d.H + h) * int64_t(kP) * N;
  for (int nb = 0; nb < N; nb += 64) {
    stage<false>(As, LD, Cg + nb, a.C_sl, kQ, 64, rv, Identity{});
    stage<false>(Bs, LD, Sg + nb, N, kP, 64, kP, Identity{});
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 2; ++k) warp_mma<T, 8>(acc[k], As + 16 * rbs[k] * LD, LD, Bs, LD, 4);
    __syncthreads();
  }
  scale_rows(acc, rbs, sex);

  // Term 2: Σ_{s<=t} CB_ts·exp(cs_t − cs_s)·Δ_s·x_s by source blocks j of 64 tokens. Below the diagonal block
  // the decay factors through e = 64(j+1): exp(cs_t − cs_e) (rowf, t >= e) times exp(cs_e − cs_s)·Δ_s (colf,
  // s < e), both <= 1, so only the diagonal block needs an exp per element.
  const float* cbg = cb + ((b * d.nc + c) * d.G + g) * kQ * kQ;
  const T* xg = static_cast<const T*>(a.x) + b * a.x_sb + h * a.x_sh + c * kQ * a.x_sl;
  for (int j = 0; j < 4 && 64 * j < rv; ++j) {
    const int t0 = 64 * j, e = t0 + 64, R = kQ - t0;
    if (e < kQ) {
      const int i = int(threadIdx.x);
      if (i < 64) colf[i] = dexp2(scs[e], scl[e], scs[t0 + i], scl[t0 + i]) * sdt[t0 + i];
      if (i >= e) rowf[i] = dexp2(scs[i], scl[i], scs[e], scl[e]);
      __syncthreads();
    }
    stage<false>(As, LD, cbg + t0 * kQ + t0, kQ, R, 64, R, [&](int r, int cc, float v) {
      const int t = t0 + r, s = t0 + cc;
      if (t >= e) return v * rowf[t] * colf[cc];
      return s <= t ? v * dexp2(scs[t], scl[t], scs[s], scl[s]) * sdt[s] : 0.f;
    });
    stage<false>(Bs, LD, xg + t0 * a.x_sl, a.x_sl, 64, kP, rv - t0, Identity{});
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int rb = rbs[k];
      if (16 * rb + 15 < t0) continue;
      const int kb = rb >= 4 * j + 4 ? 4 : rb - 4 * j + 1;
      warp_mma<T, 8, false, true>(acc[k], As + (16 * rb - t0) * LD, LD, Bs, LD, kb);
    }
    __syncthreads();
  }

  // Epilogue: + D·x, store.
  const float Dh = a.D ? a.D[h] : 0.f;
  T* yg = static_cast<T*>(o.y) + b * o.y_sb + h * o.y_sh + c * kQ * o.y_sl;
  const int l = lane_id(), gq = l >> 2, q = l & 3;
#pragma unroll
  for (int k = 0; k < 2; ++k)
#pragma unroll
    for (int jj = 0; jj < 8; ++jj)
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        const int t = 16 * rbs[k] + gq + 8 * u, p = 8 * jj + 2 * q;
        if (t < rv) {
          float x0, x1;
          load2(xg + t * a.x_sl + p, x0, x1);
          store2(yg + t * o.y_sl + p, fmaf(Dh, x0, acc[k][jj][2 * u]), fmaf(Dh, x1, acc[k][jj][2 * u + 1]));
        }
      }
}

// bf16 chunk scan with asynchronous copies (same math and layout as chunk_scan_kernel): each of the 6 phases (2
// blocks of N for term 1, 4 source blocks for term 2) takes one round trip of cp.async; the raw fp32 CB tile is
// decayed while the A fragments are formed (each element once: a warp owns its rows), S_in is rounded to bf16 as
// its fragments are formed. Smem ≈ 97 KB.
constexpr size_t kScanAsyncSmem = size_t(kQ) * 72 * sizeof(float) + size_t(64) * 72 * sizeof(float) +
                                  (5 * kQ + 64) * sizeof(float);

template <int N>
__global__ void __launch_bounds__(256, 2) chunk_scan_async_kernel(SsdArgs a, Dims d, const float* dtv,
                                                                  const float* cs2, const float* csl,
                                                                  const float* Sin, const float* cb, SsdFwdOut o) {
  constexpr int LD = 72;
  float* Af = reinterpret_cast<float*>(dynamic_smem());  // CB tile fp32 [256][72] (or the C tile, bf16)
  bf16* Ab = reinterpret_cast<bf16*>(Af);
  float* Sf = Af + kQ * LD;                  // S_in tile fp32 [64][72] (or the x tile, bf16 [64][72])
  bf16* Xb = reinterpret_cast<bf16*>(Sf);
  float* scs = Sf + 64 * LD;
  float* scl = scs + kQ;
  float* sdt = scl + kQ;
  float* sex = sdt + kQ;
  float* rowf = sex + kQ;
  float* colf = rowf + kQ;
  const int64_t c = grid_chunk(d), h = grid_head(d), b = blockIdx.z, g = h / d.hpg;
  const int64_t base = (b * d.H + h) * d.Lp + c * kQ;
  for (int t = int(threadIdx.x); t < kQ; t += int(blockDim.x)) {
    scs[t] = cs2[base + t];
    scl[t] = csl[base + t];
    sdt[t] = dtv[base + t];
    sex[t] = fast_exp2(scs[t] + scl[t]);
  }
  __syncthreads();
  const int rv = int(std::min<int64_t>(kQ, d.L - c * kQ));
  const int w = warp_id(), l = lane_id(), gq = l >> 2, q = l & 3, mi = l >> 3, r8 = l & 7;
  const int rbs[2] = {w, 15 - w};
  float acc[2][8][4];
  zero_acc(acc[0]);
  zero_acc(acc[1]);

  // Term 1: exp(cs_t)·C_t·S_inᵀ.
  const bf16* Cg = static_cast<const bf16*>(a.Cm) + b * a.C_sb + g * a.C_sg + c * kQ * a.C_sl;
  cs_term_async<N>(acc, rbs, Cg, a.C_sl, rv, Sin + ((b * d.nc + c) * d.H + h) * int64_t(kP) * N, Ab, Sf);
  scale_rows(acc, rbs, sex);

  // Term 2 by source blocks j of 64 tokens (decay factored through e = 64(j+1) below the diagonal block).
  const float* cbg = cb + ((b * d.nc + c) * d.G + g) * kQ * kQ;
  const bf16* xg = static_cast<const bf16*>(a.x) + b * a.x_sb + h * a.x_sh + c * kQ * a.x_sl;
  const bf16* pb = Xb + ((mi & 1) * 8 + r8) * LD + (mi >> 1) * 8;  // x tile [s][p], read transposed
  for (int j = 0; j < 4 && 64 * j < rv; ++j) {
    const int t0 = 64 * j, e = t0 + 64, R = kQ - t0;
    if (e < kQ) {
      const int i = int(threadIdx.x);
      if (i < 64) colf[i] = dexp2(scs[e], scl[e], scs[t0 + i], scl[t0 + i]) * sdt[t0 + i];
      if (i >= e) rowf[i] = dexp2(scs[i], scl[i], scs[e], scl[e]);
    }
    copy_async(Af, LD, cbg + t0 * kQ + t0, kQ, R, 64, R);
    copy_async(Xb, LD, xg + t0 * a.x_sl, a.x_sl, 64, kP, rv - t0);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int rb = rbs[k];
      if (16 * rb + 15 < t0) continue;
      const int kb = rb >= 4 * j + 4 ? 4 : rb - 4 * j + 1;
      const bool off = 16 * rb >= e;  // the whole row block lies below the diagonal block
      const int tr[2] = {16 * rb + gq, 16 * rb + gq + 8};
      const float rf[2] = {off ? rowf[tr[0]] : 0.f, off ? rowf[tr[1]] : 0.f};
      for (int ks = 0; ks < kb; ++ks) {
        uint32_t af[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int t = tr[i & 1], cc = 16 * ks + 2 * q + (i >> 1) * 8, s0 = t0 + cc;
          float v0, v1;
          load2(Af + (t - t0) * LD + cc, v0, v1);  // 8-byte shared load (conflict-free per half warp)
          if (off) {
            v0 *= rf[i & 1] * colf[cc], v1 *= rf[i & 1] * colf[cc + 1];
          } else {
            v0 = s0 <= t ? v0 * dexp2(scs[t], scl[t], scs[s0], scl[s0]) * sdt[s0] : 0.f;
            v1 = s0 + 1 <= t ? v1 * dexp2(scs[t], scl[t], scs[s0 + 1], scl[s0 + 1]) * sdt[s0 + 1] : 0.f;
          }
          af[i] = pack_bf16(v0, v1);
        }
#pragma unroll
        for (int jj = 0; jj < 8; jj += 2) {
          uint32_t bb[4];
          ldsm_x4<true>(bb, pb + ks * 16 * LD + (jj / 2) * 16);
          const uint32_t b0[2] = {bb[0], bb[1]}, b1[2] = {bb[2], bb[3]};
          mma_bf16(acc[k][jj], af, b0);
          mma_bf16(acc[k][jj + 1], af, b1);
        }
      }
    }
    __syncthreads();
  }

  // Epilogue: + D·x, store.
  const float Dh = a.D ? a.D[h] : 0.f;
  bf16* yg = static_cast<bf16*>(o.y) + b * o.y_sb + h * o.y_sh + c * kQ * o.y_sl;
#pragma unroll
  for (int k = 0; k < 2; ++k)
#pragma unroll
    for (int jj = 0; jj < 8; ++jj)
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        const int t = 16 * rbs[k] + gq + 8 * u, p = 8 * jj + 2 * q;
        if (t < rv) {
          float x0, x1;
          load2(xg + t * a.x_sl + p, x0, x1);
          store2(yg + t * o.y_sl + p, fmaf(Dh, x0, acc[k][jj][2 * u]), fmaf(Dh, x1, acc[k][jj][2 * u + 1]));
        }
      }
}

// Direct recurrence for short sequences: CTA (head, batch) of 256 threads, thread (p, quarter) keeps N/4
// states of row p in registers; y_t[p] is reduced over the 4 quarters with shuffles.
template <typename T, int N>
__global__ void __launch_bounds__(256) recurrent_kernel(SsdArgs a, Dims d, SsdFwdOut o) {
  constexpr int NQ = N / 4;
  const int tid = int(threadIdx.x), p = tid >> 2, qq = tid & 3;
  const int64_t h = blockIdx.x, b = blockIdx.y, g = h / d.hpg;
  const int64_t sidx = ((b * d.H + h) * kP + p) * N + qq * NQ;
  float st[NQ];
#pragma unroll
  for (int n = 0; n < NQ; ++n) st[n] = a.h0 ? a.h0[sidx + n] : 0.f;
  const float A2 = a.A[h] * kLog2e, Dh = a.D ? a.D[h] : 0.f, sc = head_scale(a, h);
  const T* xg = static_cast<const T*>(a.x) + b * a.x_sb + h * a.x_sh + p;
  const T* Bg = static_cast<const T*>(a.Bm) + b * a.B_sb + g * a.B_sg + qq * NQ;
  const T* Cg = static_cast<const T*>(a.Cm) + b * a.C_sb + g * a.C_sg + qq * NQ;
  T* yg = static_cast<T*>(o.y) + b * o.y_sb + h * o.y_sh + p;
  for (int64_t t = 0; t < d.L; ++t) {
    const float delta = sc * dt_clamped(a, raw_dt<T>(a, b, t, h), h);
    const float dA = fast_exp2(delta * A2);
    const float xv = load_f(xg, t * a.x_sl);
    const float dx = delta * xv;
    const T* Bt = Bg + t * a.B_sl;
    const T* Ct = Cg + t * a.C_sl;
    float acc = 0.f;
#pragma unroll
    for (int n = 0; n < NQ; ++n) {
      st[n] = fmaf(dA, st[n], dx * load_f(Bt, n));
      acc = fmaf(st[n], load_f(Ct, n), acc);
    }
    acc += shfl_xor(acc, 1);
    acc += shfl_xor(acc, 2);
    if (qq == 0) store_f(yg, t * o.y_sl, fmaf(Dh, xv, acc));
  }
  if (o.hT)
#pragma unroll
    for (int n = 0; n < NQ; ++n) o.hT[sidx + n] = st[n];
}

bool use_recurrent(const SsdArgs& a) { return !a.force_chunked && a.len <= kSsdRecurrentMaxLen; }

template <typename T, int N>
cudaError_t launch_fwd(const SsdArgs& a, const SsdFwdOut& o, void* ws, cudaStream_t st) {
  const Dims d = make_dims(a);
  if (use_recurrent(a)) {
    auto kr = recurrent_kernel<T, N>;
    MX_LAUNCH(kr, dim3(unsigned(d.H), unsigned(d.B)), dim3(256), 0, st, a, d, o);
    mark("recurrent", st);
    return cudaGetLastError();
  }
  const FwdWs w = fwd_ws(d, ws);
  cudaError_t err = launch_prefix<T, N>(a, d, w, o.hT, st);
  if (err != cudaSuccess) return err;
  const dim3 grid = chunk_head_grid(d);
  if constexpr (std::is_same_v<T, bf16>) {
    auto k5 = chunk_scan_async_kernel<N>;
    if ((err = set_smem(k5, kScanAsyncSmem)) != cudaSuccess) return err;
    MX_LAUNCH(k5, grid, dim3(256), kScanAsyncSmem, st, a, d, w.dtv, w.cs2, w.csl, w.S, w.cb, o);
  } else {
    auto k5 = chunk_scan_kernel<T, N>;
    const size_t sm = chunk_scan_smem<T>();
    if ((err = set_smem(k5, sm)) != cudaSuccess) return err;
    MX_LAUNCH(k5, grid, dim3(256), sm, st, a, d, w.dtv, w.cs2, w.csl, w.S, w.cb, o);
  }
  mark("chunk_scan", st);
  return cudaGetLastError();
}

}  // namespace
}  // namespace mx::kern::ssd

namespace mx::kern {

namespace {
SsdStageHook g_stage_hook = nullptr;
}
void ssd_set_stage_hook(SsdStageHook hook) { g_stage_hook = hook; }
SsdStageHook ssd_stage_hook() { return g_stage_hook; }

bool ssd_supported(int64_t head_dim, int64_t dstate) {
  return head_dim == kSsdHeadDim && (dstate == 64 || dstate == 128 || dstate == 256);
}

size_t ssd_fwd_workspace_bytes(const SsdArgs& a) {
  if (ssd::use_recurrent(a) || a.batch < 1 || a.len < 1) return 0;
  return ssd::fwd_ws(ssd::make_dims(a), nullptr).floats * sizeof(float);
}

cudaError_t ssd_fwd(const SsdArgs& a, const SsdFwdOut& o, void* workspace, cudaStream_t stream) {
  if (!ssd_supported(a.head_dim, a.dstate) || a.batch < 1 || a.len < 1 || a.heads < 1 || a.groups < 1 ||
      a.heads % a.groups != 0 || a.batch > 65535 || a.heads > 65535 || !a.x || !a.dt || !a.Bm || !a.Cm || !a.A ||
      !o.y || (ssd_fwd_workspace_bytes(a) > 0 && !workspace))
    return cudaErrorInvalidValue;
  cudaError_t err = cudaSuccess;
  ssd::dispatch(a.io, a.dstate, [&](auto io, auto n) {
    err = ssd::launch_fwd<decltype(io), decltype(n)::value>(a, o, workspace, stream);
  });
  return err;
}

}  // namespace mx::kern
