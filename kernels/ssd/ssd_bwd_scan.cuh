// bf16 backward chunk scan with asynchronous copies (included by ssd_bwd.cu; same math, layout and outputs as
// chunk_scan_bwd_kernel there): dx and the per-chunk ∂L/∂cs and direct ∂L/∂Δ terms (slots 12, 13) of one
// (chunk, head). Each of its 8 phases (B·G_cᵀ and C·S_inᵀ over 2 blocks of N each, Mᵀ·dy over 4 target blocks)
// takes one round trip of cp.async. In the Mᵀ·dy phase the raw fp32 CB rows of the target block are read
// transposed and decayed while the A fragments are formed (left of the diagonal block the decay factors through
// the block start). Smem ≈ 101 KB.
#pragma once
#include "ssd/ssd_pass.cuh"

namespace mx::kern::ssd {
namespace {

constexpr int kLM = 260;  // row stride (floats) of the raw CB rows in phase (b): ≡ 4 mod 32 for the column reads
constexpr size_t kScanBwdAsyncSmem =
    size_t(kQ) * 72 * sizeof(float) + size_t(64) * 72 * sizeof(float) + (9 * kQ + 8) * sizeof(float);

template <int N>
__global__ void __launch_bounds__(256, 2) chunk_scan_bwd_async_kernel(SsdArgs a, SsdBwdArgs gr, Dims d,
                                                                      const float* dtv, const float* cs2,
                                                                      const float* csl, const float* Sin,
                                                                      const float* Gst, const float* cb,
                                                                      float* slot) {
  constexpr int LD = 72;
  float* Af = reinterpret_cast<float*>(dynamic_smem());  // B / C tile (bf16 [256][72]) or CB rows (fp32 [64][kLM])
  bf16* Ab = reinterpret_cast<bf16*>(Af);
  float* Sf = Af + kQ * LD;  // G / S_in tile fp32 [64][72], or the dy tile bf16 [64][72]
  bf16* Yb = reinterpret_cast<bf16*>(Sf);
  float* scs = Sf + 64 * LD;
  float* scl = scs + kQ;
  float* sdt = scl + kQ;
  float* sex = sdt + kQ;
  float* sdec = sex + kQ;
  float* odcs = sdec + kQ;
  float* oddt = odcs + kQ;
  float* rowf = oddt + kQ;
  float* colf = rowf + kQ;
  float* red = colf + kQ;
  const int64_t c = grid_chunk(d), h = grid_head(d), b = blockIdx.z, g = h / d.hpg;
  const int64_t base = (b * d.H + h) * d.Lp + c * kQ;
  const float ceh = cs2[base + kQ - 1], cel = csl[base + kQ - 1];
  for (int t = int(threadIdx.x); t < kQ; t += int(blockDim.x)) {
    scs[t] = cs2[base + t];
    scl[t] = csl[base + t];
    sdt[t] = dtv[base + t];
    sex[t] = fast_exp2(scs[t] + scl[t]);
    sdec[t] = dexp2(ceh, cel, scs[t], scl[t]);
    odcs[t] = oddt[t] = 0.f;
  }
  __syncthreads();
  const int rv = int(std::min<int64_t>(kQ, d.L - c * kQ));
  const int w = warp_id(), l = lane_id(), gq = l >> 2, q = l & 3, mi = l >> 3, r8 = l & 7;
  const int rbs[2] = {w, 15 - w};
  float acc[2][8][4];
  zero_acc(acc[0]);
  zero_acc(acc[1]);
  const bf16* xg = static_cast<const bf16*>(a.x) + b * a.x_sb + h * a.x_sh + c * kQ * a.x_sl;
  const bf16* dyg = static_cast<const bf16*>(gr.dy) + b * gr.dy_sb + h * gr.dy_sh + c * kQ * gr.dy_sl;
  const int64_t soff = ((b * d.nc + c) * d.H + h) * int64_t(kP) * N;

  // (a) B_s·G_cᵀ, then dW_s = x_s·(B_s·G_cᵀ) and the W_s scaling.
  const bf16* Bg = static_cast<const bf16*>(a.Bm) + b * a.B_sb + g * a.B_sg + c * kQ * a.B_sl;
  cs_term_async<N>(acc, rbs, Bg, a.B_sl, rv, Gst + soff, Ab, Sf);
  float wsum = 0.f;
#pragma unroll
  for (int k = 0; k < 2; ++k)
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int t = 16 * rbs[k] + gq + 8 * u;
      float part = 0.f;
      if (t < rv)
#pragma unroll
        for (int jj = 0; jj < 8; ++jj) {
          float x0, x1;
          load2(xg + t * a.x_sl + 8 * jj + 2 * q, x0, x1);
          part = fmaf(x0, acc[k][jj][2 * u], fmaf(x1, acc[k][jj][2 * u + 1], part));
        }
      part += shfl_xor(part, 1);
      part += shfl_xor(part, 2);
      const float Wt = sdec[t] * sdt[t];
      if (q == 0) {
        odcs[t] -= part * Wt;
        oddt[t] += part * sdec[t];
        wsum += part * Wt;
      }
#pragma unroll
      for (int jj = 0; jj < 8; ++jj) acc[k][jj][2 * u] *= Wt, acc[k][jj][2 * u + 1] *= Wt;
    }
  wsum = warp_sum(wsum);
  if (l == 0) red[w] = wsum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.f;
    for (int ww = 0; ww < 8; ++ww) s += red[ww];
    odcs[kQ - 1] += s;
  }

  // (b) Σ_{t>=s} M_ts·dy_t by target blocks of 64 tokens; A(s, t) = M[t][s] from the raw CB rows t.
  const float* cbg = cb + ((b * d.nc + c) * d.G + g) * kQ * kQ;
  const bf16* pb = Yb + ((mi & 1) * 8 + r8) * LD + (mi >> 1) * 8;  // dy tile [t][p], read transposed
  for (int jt = 0; jt < 4 && 64 * jt < rv; ++jt) {
    const int t0 = 64 * jt;
    if (t0 > 0) {
      const int i = int(threadIdx.x);
      if (i < t0) colf[i] = dexp2(scs[t0], scl[t0], scs[i], scl[i]) * sdt[i];
      if (i >= t0 && i < t0 + 64) rowf[i] = dexp2(scs[i], scl[i], scs[t0], scl[t0]);
    }
    copy_async(Af, kLM, cbg + t0 * kQ, kQ, 64, t0 + 64, 64);
    copy_tile_async<kP, 256>(Yb, LD, dyg + t0 * gr.dy_sl, gr.dy_sl, 64, rv - t0);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int rb = rbs[k];
      if (16 * rb >= t0 + 64) continue;
      const int k0 = rb >= 4 * jt ? rb - 4 * jt : 0;
      const bool off = rb < 4 * jt;  // the whole row block (sources s) lies left of the diagonal block
      const int sr[2] = {16 * rb + gq, 16 * rb + gq + 8};
      const float cf[2] = {off ? colf[sr[0]] : 0.f, off ? colf[sr[1]] : 0.f};
      for (int ks = k0; ks < 4; ++ks) {
        uint32_t af[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int s = sr[i & 1], tc = 16 * ks + 2 * q + (i >> 1) * 8, t = t0 + tc;
          float v0 = Af[tc * kLM + s], v1 = Af[(tc + 1) * kLM + s];
          if (off) {
            v0 *= rowf[t] * cf[i & 1], v1 *= rowf[t + 1] * cf[i & 1];
          } else {
            v0 = s <= t ? v0 * dexp2(scs[t], scl[t], scs[s], scl[s]) * sdt[s] : 0.f;
            v1 = s <= t + 1 ? v1 * dexp2(scs[t + 1], scl[t + 1], scs[s], scl[s]) * sdt[s] : 0.f;
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

  // dx = acc + D·dy.
  const float Dh = a.D ? a.D[h] : 0.f;
  bf16* dxg = static_cast<bf16*>(gr.dx) + b * gr.dx_sb + h * gr.dx_sh + c * kQ * gr.dx_sl;
#pragma unroll
  for (int k = 0; k < 2; ++k)
#pragma unroll
    for (int jj = 0; jj < 8; ++jj)
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        const int t = 16 * rbs[k] + gq + 8 * u, p = 8 * jj + 2 * q;
        if (t < rv) {
          float d0, d1;
          load2(dyg + t * gr.dy_sl + p, d0, d1);
          store2(dxg + t * gr.dx_sl + p, fmaf(Dh, d0, acc[k][jj][2 * u]), fmaf(Dh, d1, acc[k][jj][2 * u + 1]));
        }
      }

  // (c) ∂L/∂cs_t += dy_t · y_off_t, y_off = exp(cs_t)·C_t·S_inᵀ.
  zero_acc(acc[0]);
  zero_acc(acc[1]);
  const bf16* Cg = static_cast<const bf16*>(a.Cm) + b * a.C_sb + g * a.C_sg + c * kQ * a.C_sl;
  cs_term_async<N>(acc, rbs, Cg, a.C_sl, rv, Sin + soff, Ab, Sf);
  scale_rows(acc, rbs, sex);
#pragma unroll
  for (int k = 0; k < 2; ++k)
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int t = 16 * rbs[k] + gq + 8 * u;
      float part = 0.f;
      if (t < rv)
#pragma unroll
        for (int jj = 0; jj < 8; ++jj) {
          float d0, d1;
          load2(dyg + t * gr.dy_sl + 8 * jj + 2 * q, d0, d1);
          part = fmaf(d0, acc[k][jj][2 * u], fmaf(d1, acc[k][jj][2 * u + 1], part));
        }
      part += shfl_xor(part, 1);
      part += shfl_xor(part, 2);
      if (q == 0) odcs[t] += part;
    }
  __syncthreads();
  const int64_t ss = d.B * d.H * d.Lp;
  for (int t = int(threadIdx.x); t < kQ; t += int(blockDim.x)) {
    slot[12 * ss + base + t] = odcs[t];
    slot[13 * ss + base + t] = oddt[t];
  }
}

}  // namespace
}  // namespace mx::kern::ssd
