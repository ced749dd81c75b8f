// SSD backward (ssd.h). Per (b, h), chunk c, local positions t, s; cs = chunk-local cumsum of Δ·A (natural
// units), L_ts = exp(cs_t − cs_s), W_s = exp(cs_end − cs_s)·Δ_s, M_ts = CB_ts·L_ts·Δ_s (s <= t), and
// G_c = ∂L/∂S_in[c+1] (from the reverse state passing, G_{nc-1} = dhT):
//   dx_s  = W_s·(B_s·G_cᵀ) + Σ_{t>=s} M_ts·dy_t + D·dy_s
//   dB_s  = Σ_h W_s·(x_s·G_c) + Σ_t dCB_ts·C_t,     dC_t = Σ_h exp(cs_t)·(dy_t·S_in[c]) + Σ_s dCB_ts·B_s
//   dCB_ts = Σ_h (dy_t·x_s)·L_ts·Δ_s (s <= t)
//   ∂L/∂cs_t: + Σ_s T_ts − Σ_s T_st (T_ts = (dy_t·x_s)·M_ts)  + dy_t·y_off_t  − dW_t·W_t  + [t = end]·(Σ_s dW_s·W_s
//             + exp(cs_end)·⟨G_c, S_in[c]⟩),   with dW_s = x_s·(B_s·G_cᵀ)
//   ∂L/∂Δ_s (direct): Σ_t (dy_t·x_s)·CB_ts·L_ts + dW_s·exp(cs_end − cs_s)
//   dΔ_u = direct_u + A·Σ_{t>=u} ∂L/∂cs_t;  d(dt)_u = dΔ_u·s·[dt_min <= sp <= dt_max]·σ(dt + bias);  ds += dΔ·clamp(sp)
// The column sums need no elementwise products: with dxi_s = Σ_{t>=s} CB_ts·L_ts·dy_t (dx_s = Δ_s·dxi_s + ...),
//   Σ_t T_ts = Δ_s·(x_s·dxi_s),   Σ_t (dy_t·x_s)·CB_ts·L_ts = x_s·dxi_s;
// the chunk scan backward forms them with dx; the row sums Σ_s T_ts come from dcb_kernel with dCB.
// Kernels: the forward stages 1–4 (Δ, cumsum, CB, S_in; skipped when the forward kept them, SsdBwdArgs::saved),
// the chunk states of (dy·exp(cs), C) and the reverse state passing
// (G, dh0), dcb_kernel (dCB and the T row sums, looping over the heads of a group), chunk_scan_bwd_kernel (dx and
// the per-chunk terms; bf16 uses chunk_scan_bwd_async_kernel of ssd_bwd_scan.cuh), the dB and dC kernels (products
// summed over the heads of a group: dbc_async_kernel for bf16, dbc_kernel for fp32) and finalize_kernel.
// The per-position partial sums go to separate slots (plain stores; summed by finalize_kernel).
#include "ssd/ssd_bwd_scan.cuh"
#include "ssd/ssd_pass.cuh"

namespace mx::kern::ssd {
namespace {

constexpr int kSlots = 6;  // 0–3: T row sums by source block (dcb_kernel); 4: ∂L/∂cs, 5: direct ∂L/∂Δ (chunk
                           // scan backward)

// bf16 I/O also has S_in and G_c in bf16 (the B operands of the bf16 chunk scan backward and dB / dC kernels):
// S16 after the floats, G16 in the fp32 region of f.S (the forward prefix's chunk states, unused once S16 is
// written). With the forward's intermediates (with_saved: SsdBwdArgs::saved) f and S16 point into them (read only)
// and G16 goes after the floats.
struct BwdWs {
  FwdWs f;
  float *G, *dcb, *slot, *dcs_sp;
  size_t floats;
  bf16 *S16 = nullptr, *G16 = nullptr;
  size_t bytes;
};
BwdWs bwd_ws(const Dims& d, void* base, bool b16, bool with_saved, const void* saved = nullptr) {
  BwdWs w;
  void* sv = const_cast<void*>(saved);  // FwdWs's mutable pointer types; the backward only reads these regions
  w.f = with_saved ? saved_ws(d, sv, b16) : fwd_ws(d, base);
  float* p = static_cast<float*>(base);
  size_t off = with_saved ? 0 : w.f.floats;
  auto take = [&](size_t n) {
    float* r = p ? p + off : nullptr;
    off += align4(n);
    return r;
  };
  w.G = take(size_t(d.B * d.nc * d.H * kP * d.N));
  w.dcb = take(size_t(d.B * d.nc * d.G) * kQ * kQ);
  w.slot = take(size_t(kSlots) * d.B * d.H * d.Lp);
  w.dcs_sp = take(size_t(d.B * d.H * d.nc));
  w.floats = off;
  w.bytes = off * sizeof(float);
  if (b16) {
    if (base) {
      bf16* tail = reinterpret_cast<bf16*>(p + off);
      w.S16 = with_saved ? (sv ? saved_s16(d, sv) : nullptr) : tail;
      w.G16 = with_saved ? tail : reinterpret_cast<bf16*>(w.f.S);
    }
    w.bytes += s16_bytes(d);
  }
  return w;
}

// ---- dCB (fp32, summed over the heads of the group) for the 64 × 64 block (i, j), j <= i, and per head the T
// row sums over the block's columns, Σ_s T_ts = Σ_s v_ts·CB_ts (slot j), with v_ts = (dy_t·x_s)·exp(cs_t − cs_s)·Δ_s
// (s <= t) and dCB_ts = Σ_h v_ts. (The T column sums and the direct dΔ sums come from the chunk scan backward.)
// Grid (10, nc, B·G), 128 threads: warp w owns rows 16w.. of the block. Per head the dy / x tiles and the head's
// cumsum / Δ values arrive by cp.async into one of two buffers, the next head's copies in flight while the
// current head is processed; one CTA barrier per head. The CB values of the thread's fragment are the same for
// every head: they stay in registers. Smem 40 KB (bf16, 4 CTAs per SM) / 72 KB (fp32, 3 CTAs per SM).
// The decay factors through a point e with s < e <= t, every factor <= 1 (cs is non-increasing):
// exp(cs_t − cs_s) = rf_t·exp(cs_e − cs_s), rf_t = exp(cs_t − cs_e); e = 64i (the block's first row) off the
// diagonal (i > j), e = 64i + 16w (the warp's first row) in the diagonal blocks, where only the 16 × 16 sub-block
// s, t ∈ [e, e + 16) needs the exact exp(cs_t − cs_s) and the mask s <= t, and columns s >= e + 16 are zero.
// Per head each warp computes its rf_t and cd_s = exp(cs_e − cs_s)·Δ_s into a private table; then left of e an
// element costs t1 = dm·cd_s, dCB += t1·rf_t, rsum_t += t1·CB_ts (rsum_t times rf_t once per row).
template <typename T>
constexpr size_t dcb_buf_elems() {  // one buffer: dy [64][LD], x [64][LD] (T), then 5 × 64 floats
  return size_t(2 * 64) * ld_of<T>(64) + 5 * 64 * sizeof(float) / sizeof(T);
}
template <typename T>
constexpr size_t dcb_smem() {  // two buffers, then per warp rf [16] and cd [64]
  return 2 * dcb_buf_elems<T>() * sizeof(T) + 4 * 80 * sizeof(float);
}

template <typename T>
__global__ void __launch_bounds__(128, sizeof(T) == 2 ? 4 : 3)
    dcb_kernel(SsdArgs a, SsdBwdArgs gr, Dims d, const float* dtv, const float* cs2, const float* csl, const float* cb,
               float* dcb, float* slot) {
  constexpr int LD = ld_of<T>(64);
  T* bufs = reinterpret_cast<T*>(dynamic_smem());
  int i = 0, j = int(blockIdx.x);
  while (j > i) j -= ++i;
  const bool diag = i == j;
  const int64_t c = blockIdx.y, b = blockIdx.z / d.G, g = blockIdx.z % d.G;
  const int64_t t0 = c * kQ + 64 * i, s0 = c * kQ + 64 * j;
  const int rvt = int(std::min<int64_t>(64, std::max<int64_t>(0, d.L - t0)));
  const int w = warp_id(), l = lane_id(), gq = l >> 2, q = l & 3;
  const int64_t ss = d.B * d.H * d.Lp;
  float* rf = reinterpret_cast<float*>(bufs + 2 * dcb_buf_elems<T>()) + 80 * w;  // the warp's table
  float* cd = rf + 16;
  // e relative to the block's first row, and the number of columns left of it.
  const int el = diag ? 16 * w : 0, ncl = diag ? 16 * w : 64;
  float acc[8][4];
  zero_acc(acc);
  // Buffer parts: dy [t][p], x [s][p], then tH, tL (cumsum at rows t), sH, sL, sds (at columns s).
  auto part = [&](int k, int which) { return bufs + k * dcb_buf_elems<T>() + which * 64 * LD; };
  auto scal = [&](int k, int which) { return reinterpret_cast<float*>(part(k, 2)) + which * 64; };
  // Copies: thread tid takes the 16-byte vector tid % CV of the tile rows tid / CV + RP·u, and (tid < 80) the
  // vector tid % 16 of scalar array tid / 16.
  constexpr int CV = kP * int(sizeof(T)) / 16, RP = 128 / CV;
  const int tid = int(threadIdx.x), cr = tid / CV, cc = (tid % CV) * (16 / int(sizeof(T)));
  const int rvs = int(std::min<int64_t>(64, d.L - s0)), sw = tid >> 4, sv = 4 * (tid & 15);
  const float* ssrc = (sw == 4 ? dtv : sw & 1 ? csl : cs2) + c * kQ + 64 * (sw < 2 ? i : j) + sv;
  auto issue = [&](int64_t hh, int k) {
    const int64_t h = g * d.hpg + hh;
    // Row 0 of each tile (always valid: the source of the zero-filled rows), then this thread's rows.
    const T* dy0 = static_cast<const T*>(gr.dy) + b * gr.dy_sb + h * gr.dy_sh + t0 * gr.dy_sl + cc;
    const T* x0 = static_cast<const T*>(a.x) + b * a.x_sb + h * a.x_sh + s0 * a.x_sl + cc;
    const T *dyr = dy0 + cr * gr.dy_sl, *xr = x0 + cr * a.x_sl;
#pragma unroll
    for (int u = 0; u < 64 / RP; ++u, dyr += RP * gr.dy_sl, xr += RP * a.x_sl) {
      const int r = cr + RP * u;
      cp_async16(part(k, 0) + r * LD + cc, r < rvt ? dyr : dy0, r < rvt);
      cp_async16(part(k, 1) + r * LD + cc, r < rvs ? xr : x0, r < rvs);
    }
    if (tid < 80) cp_async16(scal(k, sw) + sv, ssrc + (b * d.H + h) * d.Lp, true);
    cp_async_commit();
  };
  if (rvt > 0) {  // then s0 <= t0 < L too
    float cbr[8][4];  // CB_ts of the fragment (t = 16w + gq + 8u, s = 8jj + 2q + e within the block)
    const float* cbg = cb + ((b * d.nc + c) * d.G + g) * kQ * kQ + (64 * i + 16 * w + gq) * kQ + 64 * j + 2 * q;
#pragma unroll
    for (int jj = 0; jj < 8; ++jj)
#pragma unroll
      for (int u = 0; u < 2; ++u) load2(cbg + 8 * u * kQ + 8 * jj, cbr[jj][2 * u], cbr[jj][2 * u + 1]);
    issue(0, 0);
    for (int64_t hh = 0; hh < d.hpg; ++hh) {
      const int k = int(hh & 1);
      const int64_t h = g * d.hpg + hh, base = (b * d.H + h) * d.Lp + c * kQ;
      cp_async_wait_all();
      __syncthreads();  // head hh's buffer is complete; every warp is done with the other one (head hh − 1)
      if (hh + 1 < d.hpg) issue(hh + 1, k ^ 1);
      const float *tH = scal(k, 0), *tL = scal(k, 1), *sH = scal(k, 2), *sL = scal(k, 3), *sds = scal(k, 4);
      {
        const float eH = tH[el], eL = tL[el];
        if (l < 16) rf[l] = dexp2(tH[16 * w + l], tL[16 * w + l], eH, eL);
#pragma unroll
        for (int s = l; s < 64; s += 32)
          if (s < ncl) cd[s] = dexp2(eH, eL, sH[s], sL[s]) * sds[s];
      }
      warp_sync();
      const float rft[2] = {rf[gq], rf[gq + 8]};
      float rs[2] = {0.f, 0.f}, rsd[2] = {0.f, 0.f};  // row sums left of e (times rf_t later), diagonal sub-block
#pragma unroll
      for (int nh = 0; nh < 2; ++nh) {  // columns 32nh .. 32nh + 31: dm = dy_t·x_s, then the elements
        if (diag && 32 * nh >= 16 * w + 16) break;
        float dm[4][4];
        zero_acc(dm);
        warp_mma<T, 4>(dm, part(k, 0) + 16 * w * LD, LD, part(k, 1) + 32 * nh * LD, LD, 4);
#pragma unroll
        for (int jl = 0; jl < 4; ++jl) {
          const int jj = 4 * nh + jl;
          if (!diag || jj < 2 * w) {
            float cd0, cd1;
            load2(cd + 8 * jj + 2 * q, cd0, cd1);
#pragma unroll
            for (int u = 0; u < 2; ++u)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const float t1 = dm[jl][2 * u + e] * (e ? cd1 : cd0);
                acc[jj][2 * u + e] = fmaf(t1, rft[u], acc[jj][2 * u + e]);
                rs[u] = fmaf(t1, cbr[jj][2 * u + e], rs[u]);
              }
          } else if (jj < 2 * w + 2) {  // the diagonal 16 × 16 sub-block
#pragma unroll
            for (int u = 0; u < 2; ++u)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const int tl = 16 * w + gq + 8 * u, sl = 8 * jj + 2 * q + e;
                const float v =
                    sl <= tl ? dm[jl][2 * u + e] * dexp2(tH[tl], tL[tl], sH[sl], sL[sl]) * sds[sl] : 0.f;
                acc[jj][2 * u + e] += v;
                rsd[u] = fmaf(v, cbr[jj][2 * u + e], rsd[u]);
              }
          }
        }
      }
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        float r = fmaf(rs[u], rft[u], rsd[u]);
        r += shfl_xor(r, 1);
        r += shfl_xor(r, 2);
        if (q == 0) slot[j * ss + base + 64 * i + 16 * w + gq + 8 * u] = r;
      }
    }
  }
  store_acc(dcb + ((b * d.nc + c) * d.G + g) * kQ * kQ + 64 * i * kQ + 64 * j, kQ, 16 * w, 0, acc, 64);
}

// ---- dx and the per-chunk ∂L/∂cs and direct ∂L/∂Δ terms (slots 4, 5) of one (chunk, head). Layout as the forward
// chunk scan (warp w owns the row blocks w and 15 − w of the 256 × 64 tile, rows = source positions s). The rows
// accumulate exp(cs_end − cs_s)·B_s·G_cᵀ ((a)) + dxi_s ((b)), dxi_s = Σ_{t>=s} CB_ts·L_ts·dy_t; then
// x_s·acc_s = dW_s·exp(cs_end − cs_s) + q_s, where q_s = x_s·dxi_s = Σ_t (dy_t·x_s)·CB_ts·L_ts is the direct
// ∂L/∂Δ_s of the intra-chunk term and Δ_s·q_s = Σ_t T_ts its T column sum: x_s·acc_s is the direct ∂L/∂Δ_s, and
// −Δ_s·x_s·acc_s the −dW_s·W_s and −Σ_t T_ts terms of ∂L/∂cs_s; dx_s = Δ_s·acc_s + D·dy_s.
template <typename T>
constexpr size_t scan_bwd_smem() {
  return size_t(kQ + 64) * ld_of<T>(64) * sizeof(T) + (9 * kQ + 8) * sizeof(float);
}

template <typename T, int N>
__global__ void __launch_bounds__(256, 2) chunk_scan_bwd_kernel(SsdArgs a, SsdBwdArgs gr, Dims d, const float* dtv,
                                                                const float* cs2, const float* csl, const float* Sin,
                                                                const float* Gst, const float* cb, float* slot) {
  constexpr int LD = ld_of<T>(64), LM = ld_of<T>(kQ);
  T* As = reinterpret_cast<T*>(dynamic_smem());  // [256][LD]: B / C tiles; in (b) the M tile [64][LM]
  T* Bs = As + kQ * LD;                            // [64][LD]: G / S_in tiles [p][n], dy tile [t][p]
  float* scs = reinterpret_cast<float*>(Bs + 64 * LD);
  float* scl = scs + kQ;
  float* sdt = scl + kQ;
  float* sex = sdt + kQ;   // exp(cs_t)
  float* sdec = sex + kQ;  // exp(cs_end − cs_t)
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
  const int w = warp_id(), l = lane_id(), gq = l >> 2, q = l & 3;
  const int rbs[2] = {w, 15 - w};
  float acc[2][8][4];
  zero_acc(acc[0]);
  zero_acc(acc[1]);
  const T* xg = static_cast<const T*>(a.x) + b * a.x_sb + h * a.x_sh + c * kQ * a.x_sl;
  const T* dyg = static_cast<const T*>(gr.dy) + b * gr.dy_sb + h * gr.dy_sh + c * kQ * gr.dy_sl;
  const int64_t soff = ((b * d.nc + c) * d.H + h) * int64_t(kP) * N;
  // Row t (this lane's row u of tile k) of acc·vᵀ for a row-major source v, reduced over the row's 4 lanes.
  auto row_dot = [&](const T* src, int64_t ld, int k, int u) {
    const int t = 16 * rbs[k] + gq + 8 * u;
    float part = 0.f;
    if (t < rv)
#pragma unroll
      for (int jj = 0; jj < 8; ++jj) {
        float v0, v1;
        load2(src + t * ld + 8 * jj + 2 * q, v0, v1);
        part = fmaf(v0, acc[k][jj][2 * u], fmaf(v1, acc[k][jj][2 * u + 1], part));
      }
    part += shfl_xor(part, 1);
    return part + shfl_xor(part, 2);
  };

  // (a) B_s·G_cᵀ, then dW_s = x_s·(B_s·G_cᵀ) for Σ_s dW_s·W_s, and the rows times exp(cs_end − cs_s).
  const T* Bg = static_cast<const T*>(a.Bm) + b * a.B_sb + g * a.B_sg + c * kQ * a.B_sl;
  for (int nb = 0; nb < N; nb += 64) {
    stage<false>(As, LD, Bg + nb, a.B_sl, kQ, 64, rv, Identity{});
    stage<false>(Bs, LD, Gst + soff + nb, N, kP, 64, kP, Identity{});
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 2; ++k) warp_mma<T, 8>(acc[k], As + 16 * rbs[k] * LD, LD, Bs, LD, 4);
    __syncthreads();
  }
  float wsum = 0.f;
#pragma unroll
  for (int k = 0; k < 2; ++k)
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int t = 16 * rbs[k] + gq + 8 * u;
      const float dW = row_dot(xg, a.x_sl, k, u);
      if (q == 0) wsum += dW * sdec[t] * sdt[t];
#pragma unroll
      for (int jj = 0; jj < 8; ++jj) acc[k][jj][2 * u] *= sdec[t], acc[k][jj][2 * u + 1] *= sdec[t];
    }
  wsum = warp_sum(wsum);
  if (l == 0) red[w] = wsum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.f;
    for (int ww = 0; ww < 8; ++ww) s += red[ww];
    odcs[kQ - 1] += s;
  }

  // (b) dxi_s = Σ_{t>=s} CB_ts·L_ts·dy_t by target blocks of 64 tokens: the tile CB_ts·L_ts [t][s] (rows of the
  // block, columns s below its end) is read transposed. Left of the diagonal block the decay factors through
  // e = t0 (block start).
  const float* cbg = cb + ((b * d.nc + c) * d.G + g) * kQ * kQ;
  for (int jt = 0; jt < 4 && 64 * jt < rv; ++jt) {
    const int t0 = 64 * jt;
    if (t0 > 0) {
      const int i = int(threadIdx.x);
      if (i < t0) colf[i] = dexp2(scs[t0], scl[t0], scs[i], scl[i]);
      if (i >= t0 && i < t0 + 64) rowf[i] = dexp2(scs[i], scl[i], scs[t0], scl[t0]);
      __syncthreads();
    }
    stage<false>(As, LM, cbg + t0 * kQ, kQ, 64, t0 + 64, 64, [&](int r, int s, float v) {
      const int t = t0 + r;
      if (s < t0) return v * rowf[t] * colf[s];
      return s <= t ? v * dexp2(scs[t], scl[t], scs[s], scl[s]) : 0.f;
    });
    stage<false>(Bs, LD, dyg + t0 * gr.dy_sl, gr.dy_sl, 64, kP, rv - t0, Identity{});
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int rb = rbs[k];
      if (16 * rb >= t0 + 64) continue;
      const int k0 = rb >= 4 * jt ? rb - 4 * jt : 0;
      warp_mma<T, 8, true, true>(acc[k], As + 16 * rb + 16 * k0 * LM, LM, Bs + 16 * k0 * LD, LD, 4 - k0);
    }
    __syncthreads();
  }

  // xa_s = x_s·acc_s: direct ∂L/∂Δ_s, and −Δ_s·xa_s into ∂L/∂cs_s; dx = Δ_s·acc + D·dy.
  const float Dh = a.D ? a.D[h] : 0.f;
  T* dxg = static_cast<T*>(gr.dx) + b * gr.dx_sb + h * gr.dx_sh + c * kQ * gr.dx_sl;
#pragma unroll
  for (int k = 0; k < 2; ++k)
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int t = 16 * rbs[k] + gq + 8 * u;
      const float xa = row_dot(xg, a.x_sl, k, u);
      if (q == 0) {
        odcs[t] -= sdt[t] * xa;
        oddt[t] = xa;
      }
      if (t < rv)
#pragma unroll
        for (int jj = 0; jj < 8; ++jj) {
          const int p = 8 * jj + 2 * q;
          float d0, d1;
          load2(dyg + t * gr.dy_sl + p, d0, d1);
          store2(dxg + t * gr.dx_sl + p, fmaf(Dh, d0, sdt[t] * acc[k][jj][2 * u]),
                 fmaf(Dh, d1, sdt[t] * acc[k][jj][2 * u + 1]));
        }
    }

  // (c) ∂L/∂cs_t += dy_t · y_off_t, y_off = exp(cs_t)·C_t·S_inᵀ.
  zero_acc(acc[0]);
  zero_acc(acc[1]);
  const T* Cg = static_cast<const T*>(a.Cm) + b * a.C_sb + g * a.C_sg + c * kQ * a.C_sl;
  for (int nb = 0; nb < N; nb += 64) {
    stage<false>(As, LD, Cg + nb, a.C_sl, kQ, 64, rv, Identity{});
    stage<false>(Bs, LD, Sin + soff + nb, N, kP, 64, kP, Identity{});
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 2; ++k) warp_mma<T, 8>(acc[k], As + 16 * rbs[k] * LD, LD, Bs, LD, 4);
    __syncthreads();
  }
  scale_rows(acc, rbs, sex);
#pragma unroll
  for (int k = 0; k < 2; ++k)
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int t = 16 * rbs[k] + gq + 8 * u;
      const float part = row_dot(dyg, gr.dy_sl, k, u);
      if (q == 0) odcs[t] += part;
    }
  __syncthreads();
  const int64_t ss = d.B * d.H * d.Lp;
  for (int t = int(threadIdx.x); t < kQ; t += int(blockDim.x)) {
    slot[4 * ss + base + t] = odcs[t];
    slot[5 * ss + base + t] = oddt[t];
  }
}

// ---- fp32 I/O: dB (kC = false, rows s) or dC (kC = true, rows t) for a 64-row block i of a chunk and group:
//   dB_s = Σ_h W_s·x_s·G_c + Σ_{t-blocks >= i} dCBᵀ·C;    dC_t = Σ_h exp(cs_t)·dy_t·S_in + Σ_{s-blocks <= i} dCB·B.
// Grid (4, nc, B·G), 256 threads: warp w owns rows 16·(w%4).. and columns (w/4)·N/2 ...
template <typename T, int N>
constexpr size_t dbc_smem() {
  return (size_t(64) * ld_of<T>(64) + size_t(64) * ld_of<T>(N)) * sizeof(T) + 64 * sizeof(float);
}

template <typename T, int N, bool kC>
__global__ void __launch_bounds__(256, 2) dbc_kernel(SsdArgs a, SsdBwdArgs gr, Dims d, const float* dtv,
                                                     const float* cs2, const float* csl, const float* Sin,
                                                     const float* Gst, const float* dcb) {
  constexpr int LA = ld_of<T>(64), LB = ld_of<T>(N), NI = N / 16;
  T* As = reinterpret_cast<T*>(dynamic_smem());  // [64][LA]
  T* Bs = As + 64 * LA;                            // [64][LB]: G / S_in [p][n], C / B [t|s][n]
  float* srow = reinterpret_cast<float*>(Bs + 64 * LB);
  const int i = int(blockIdx.x);
  const int64_t c = blockIdx.y, b = blockIdx.z / d.G, g = blockIdx.z % d.G;
  const int64_t r0 = c * kQ + 64 * i;
  const int rvi = int(std::min<int64_t>(64, std::max<int64_t>(0, d.L - r0)));
  if (rvi <= 0) return;
  const int tid = int(threadIdx.x), w = warp_id(), rb = w & 3, half = w >> 2;
  float acc[NI][4];
  zero_acc(acc);
  for (int64_t hh = 0; hh < d.hpg; ++hh) {
    const int64_t h = g * d.hpg + hh, base = (b * d.H + h) * d.Lp + c * kQ;
    if (tid < 64) {
      const int64_t o = base + 64 * i + tid;
      srow[tid] = kC ? fast_exp2(cs2[o] + csl[o])
                     : dexp2(cs2[base + kQ - 1], csl[base + kQ - 1], cs2[o], csl[o]) * dtv[o];
    }
    __syncthreads();
    const T* src = kC ? static_cast<const T*>(gr.dy) + b * gr.dy_sb + h * gr.dy_sh + r0 * gr.dy_sl
                      : static_cast<const T*>(a.x) + b * a.x_sb + h * a.x_sh + r0 * a.x_sl;
    stage<false>(As, LA, src, kC ? gr.dy_sl : a.x_sl, 64, kP, rvi, [&](int r, int, float v) { return v * srow[r]; });
    stage<false>(Bs, LB, (kC ? Sin : Gst) + ((b * d.nc + c) * d.H + h) * int64_t(kP) * N, N, kP, N, kP, Identity{});
    __syncthreads();
    warp_mma<T, NI, false, true>(acc, As + 16 * rb * LA, LA, Bs + half * (N / 2), LB, 4);
    __syncthreads();
  }
  const float* dcbg = dcb + ((b * d.nc + c) * d.G + g) * kQ * kQ;
  for (int k = kC ? 0 : i; kC ? k <= i : k < 4; ++k) {
    const int64_t k0 = c * kQ + 64 * k;
    if (k0 >= d.L) break;
    const int rvk = int(std::min<int64_t>(64, d.L - k0));
    if (kC) {
      stage<false>(As, LA, dcbg + 64 * i * kQ + 64 * k, kQ, 64, 64, 64, Identity{});  // dCB [t][s]
      stage<false>(Bs, LB, static_cast<const T*>(a.Bm) + b * a.B_sb + g * a.B_sg + k0 * a.B_sl, a.B_sl, 64, N, rvk,
                   Identity{});  // B [s][n]
      __syncthreads();
      warp_mma<T, NI, false, true>(acc, As + 16 * rb * LA, LA, Bs + half * (N / 2), LB, 4);
    } else {
      stage<false>(As, LA, dcbg + 64 * k * kQ + 64 * i, kQ, 64, 64, 64, Identity{});  // dCB [t][s], read as dCBᵀ
      stage<false>(Bs, LB, static_cast<const T*>(a.Cm) + b * a.C_sb + g * a.C_sg + k0 * a.C_sl, a.C_sl, 64, N, rvk,
                   Identity{});  // C [t][n]
      __syncthreads();
      warp_mma<T, NI, true, true>(acc, As + 16 * rb, LA, Bs + half * (N / 2), LB, 4);
    }
    __syncthreads();
  }
  float* out = (kC ? gr.dC : gr.dB) + ((b * d.L + r0) * d.G + g) * N;
  store_acc(out, d.G * N, 16 * rb, half * (N / 2), acc, rvi);
}

// ---- dB / dC for bf16 I/O (the fp32 path uses dbc_kernel above): one CTA per (chunk, group, column slice n0 ..
// n0 + NC of N, NC = min(N, 128)) holds all 256 rows, so each G / S_in tile is read once (dbc_kernel reads it once
// per 64-row block). Grid (N / NC, nc, B·G), 512 threads, 1 CTA per SM. Phases through a kDbcStages-buffer cp.async
// ring (cp_async_ring: one CTA barrier per phase, the next two phases' copies in flight):
//   - the dCB products in steps of 32 tokens k (t for dB, s for dC): A = dCB (fp32, only the blocks at or below
//     the diagonal, which dcb_kernel writes), B = C rows t (dB) or B rows s (dC), bf16;
//   - one phase per head h of the group: A = x rows s (dB) or dy rows t (dC), B = G_c or S_in[c] [p][n], all bf16
//     (the state passes write G_c and S_in in bf16 for the bf16 path: the bits the fp32 values would round to).
// The fp32 dCB operand is rounded to bf16 as the fragments are built. The row scale (W_s = exp(cs_end − cs_s)·Δ_s for
// dB, exp(cs_t) for dC) is applied to the A fragments in registers (bf16 -> fp32, multiply, round to nearest: the
// bits that dbc_kernel stages) rather than to a per-head fp32 product, which would need a second set of
// accumulators (64 more registers per thread at N = 128, over the 128 that 512 threads allow). The head's cumsum
// (and Δ) travel with the phase before it; after that phase's barrier threads 0..255 turn them into the 256 row
// scales (a double-buffered smem array), which the head's phase reads after its own barrier.
// Warps: CG = NC / 32 column groups × 16 / CG row groups; warp w owns rows 16·MI·(w / CG) .. (MI = 4 at NC = 128,
// 2 at NC = 64: a whole 64-row block or half of one) and columns 32·(w % CG) .. of the slice. Within those 32
// columns the n8 tile u ∈ 0..3 of the MMA holds the columns 4c + u (c = 0..7), so that the B fragments of the four
// tiles come from one 8-byte load per row k of the bf16 G / S_in and C / B tiles, and a lane ends up with 8
// consecutive columns per row (two 16-byte stores).
template <int N>
struct DbcShape {
  static constexpr int NC = N < 128 ? N : 128, CG = NC / 32, RG = 16 / CG, WR = kQ / RG, MI = WR / 16;
  static constexpr int LX = 72, LV = NC + 8;  // row strides (bf16): x / dy; G / S_in and C / B
  static constexpr int LDB = 260, LDC = 40;  // dCB step tile: dB [32 t][s] (LDB), dC [256 t][32 s] (LDC), fp32
  // A buffer: head phase X [kQ][LX] bf16 | S [kP][LV] bf16, or dCB phase D (dCB tile) | V [32][LV] bf16; then the
  // next head's cumsum hi, lo (and Δ) [3][kQ] at kSc.
  static constexpr size_t kX = size_t(kQ) * LX * 2, kS = size_t(kP) * LV * 2, kD = size_t(kQ) * LDC * 4;
  static_assert(size_t(32) * LDB <= size_t(kQ) * LDC, "both dCB step tiles fit the dC size");
  static constexpr size_t kSc = kX + kS > kD + size_t(32) * LV * 2 ? kX + kS : kD + size_t(32) * LV * 2;
  static constexpr size_t buf = kSc + 3 * kQ * 4;
};
constexpr int kDbcStages = 3;
template <int N>
constexpr size_t dbc_async_smem() {  // 170 KB (N >= 128), 146 KB (N = 64)
  return kDbcStages * DbcShape<N>::buf + 2 * kQ * sizeof(float);
}

template <int N, bool kC>
__global__ void __launch_bounds__(512, 1) dbc_async_kernel(SsdArgs a, SsdBwdArgs gr, Dims d, const float* dtv,
                                                           const float* cs2, const float* csl, const bf16* Sin,
                                                           const bf16* Gst, const float* dcb) {
  using Sh = DbcShape<N>;
  constexpr int NC = Sh::NC, CG = Sh::CG, WR = Sh::WR, MI = Sh::MI, LX = Sh::LX, LV = Sh::LV;
  constexpr int LDB = Sh::LDB, LDC = Sh::LDC;
  unsigned char* bufs = dynamic_smem();
  float* rsc = reinterpret_cast<float*>(bufs + kDbcStages * Sh::buf);  // [2][kQ] row scales of a head
  const int64_t c = blockIdx.y, b = blockIdx.z / d.G, g = blockIdx.z % d.G, n0 = int64_t(blockIdx.x) * NC;
  const int rv = int(std::min<int64_t>(kQ, d.L - c * kQ));
  const int tid = int(threadIdx.x), w = warp_id(), l = lane_id(), gq = l >> 2, q = l & 3;
  const int row0 = WR * (w / CG), blk = row0 / 64, nw = 32 * (w % CG);  // the warp's rows, their 64-row block
  const int nk = (rv + 31) / 32, P = nk + int(d.hpg);  // nk >= 1 dCB phases, then the heads
  // A: rows s of x (dB) or t of dy (dC); V: rows t of C (dB) or s of B (dC); state: G_c (dB) or S_in[c] (dC).
  const bf16* A0 = kC ? static_cast<const bf16*>(gr.dy) + b * gr.dy_sb + c * kQ * gr.dy_sl
                      : static_cast<const bf16*>(a.x) + b * a.x_sb + c * kQ * a.x_sl;
  const int64_t a_sl = kC ? gr.dy_sl : a.x_sl, a_sh = kC ? gr.dy_sh : a.x_sh;
  const bf16* V0 = kC ? static_cast<const bf16*>(a.Bm) + b * a.B_sb + g * a.B_sg + c * kQ * a.B_sl + n0
                      : static_cast<const bf16*>(a.Cm) + b * a.C_sb + g * a.C_sg + c * kQ * a.C_sl + n0;
  const int64_t v_sl = kC ? a.B_sl : a.C_sl;
  const bf16* S0 = (kC ? Sin : Gst) + (b * d.nc + c) * d.H * int64_t(kP) * N + n0;
  const float* dcbg = dcb + ((b * d.nc + c) * d.G + g) * kQ * kQ;
  const int64_t h0 = g * d.hpg, cbase = (b * d.H + h0) * d.Lp + c * kQ;
  // This thread's 16-byte vectors of a head phase: A rows xr + 64·i, columns xc ..; state rows sr + SR·i, columns
  // sn ..; vector tid % 64 of the cumsum hi / lo / Δ array tid / 64 (kScal arrays).
  constexpr int SR = 512 / (NC / 8), kScal = kC ? 2 : 3;
  const int xr = tid >> 3, xc = 8 * (tid & 7), sr = tid / (NC / 8), sn = 8 * (tid % (NC / 8));
  const float* csrc = tid < 64 ? cs2 : tid < 128 ? csl : dtv;

  auto issue = [&](int p, int k) {
    unsigned char* sb = bufs + k * Sh::buf;
    if (p < nk) {  // dCB step: contraction tokens k0 .. k0 + 31, in the 64-token block p / 2
      const int k0 = 32 * p, kb = p / 2;
      float* D = reinterpret_cast<float*>(sb);
      // Rows t >= rv are zero-filled (the same as dcb_kernel's values there).
      if (kC)  // dCB [t][s] rows t >= 64·kb (the blocks at or below the diagonal), columns s = k0 ..
        copy_async(D + 64 * kb * LDC, LDC, dcbg + 64 * kb * kQ + k0, kQ, kQ - 64 * kb, 32, rv - 64 * kb);
      else  // dCB rows t = k0 .., columns s < 64·(kb + 1)
        copy_async(D, LDB, dcbg + k0 * kQ, kQ, 32, 64 * (kb + 1), rv - k0);
      copy_tile_async<NC, 512>(reinterpret_cast<bf16*>(sb + Sh::kD), LV, V0 + k0 * v_sl, v_sl, 32, rv - k0);
    } else {
      const int64_t h = h0 + p - nk;
      bf16* X = reinterpret_cast<bf16*>(sb) + xr * LX + xc;
      const bf16* xs = A0 + h * a_sh + xc;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const bool ok = xr + 64 * i < rv;
        cp_async16(X + 64 * i * LX, xs + (ok ? (xr + 64 * i) * a_sl : 0), ok);
      }
      bf16* S = reinterpret_cast<bf16*>(sb + Sh::kX) + sr * LV + sn;
      const bf16* ss = S0 + h * kP * N + sn;
#pragma unroll
      for (int i = 0; i < kP / SR; ++i) cp_async16(S + SR * i * LV, ss + (sr + SR * i) * N, true);
    }
    if (p + 1 >= nk && p + 1 < P && tid < 64 * kScal)  // the next head's cumsum (and Δ)
      cp_async16(reinterpret_cast<float*>(sb + Sh::kSc) + 4 * tid, csrc + cbase + (p + 1 - nk) * d.Lp + 4 * (tid & 63),
                 true);
  };

  float acc[MI][4][4];
#pragma unroll
  for (int mi = 0; mi < MI; ++mi) zero_acc(acc[mi]);
  auto compute = [&](int p, int k) {
    const unsigned char* sb = bufs + k * Sh::buf;
    if (p + 1 >= nk && p + 1 < P && tid < kQ) {  // row scales of the next head
      const float* sc = reinterpret_cast<const float*>(sb + Sh::kSc);
      rsc[((p + 1) & 1) * kQ + tid] = kC ? fast_exp2(sc[tid] + sc[kQ + tid])
                                         : dexp2(sc[kQ - 1], sc[2 * kQ - 1], sc[tid], sc[kQ + tid]) * sc[2 * kQ + tid];
    }
    if (p < nk) {
      const int kb = p / 2;
      if (kC ? blk < kb : blk > kb) return;  // dC: rows t below the step's block; dB: rows s above it
      const float* D = reinterpret_cast<const float*>(sb);
      const bf16* V = reinterpret_cast<const bf16*>(sb + Sh::kD) + 2 * q * LV + nw + 4 * gq;
#pragma unroll 1
      for (int ks = 0; ks < 2; ++ks) {
        // B(k, n) = V[k][n]: rows 2q, 2q + 1 (bf[u][0]) and 2q + 8, 2q + 9 (bf[u][1]), column 4·gq + u of tile u.
        uint32_t v[4][2], bf[4][2];
#pragma unroll
        for (int i = 0; i < 4; ++i) lds64(V + (16 * ks + (i & 1) + 8 * (i >> 1)) * LV, v[i][0], v[i][1]);
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            bf[2 * e][j] = (v[2 * j][e] & 0xffffu) | (v[2 * j + 1][e] << 16);
            bf[2 * e + 1][j] = (v[2 * j][e] >> 16) | (v[2 * j + 1][e] & 0xffff0000u);
          }
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
          const int m = row0 + 16 * mi + gq;
          uint32_t af[4];  // af[i]: row m + 8·(i & 1), columns k 2q + 8·(i >> 1), + 1
          if (kC) {        // A(t, s) = dCB[t][s]: pairs along s are adjacent
            const float* pa = D + m * LDC + 16 * ks + 2 * q;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              float lo, hi;
              load2(pa + (i & 1) * 8 * LDC + (i >> 1) * 8, lo, hi);
              af[i] = pack_bf16(lo, hi);
            }
          } else {  // A(s, t) = dCB[t][s]: pairs along t are rows apart
            const float* pa = D + (16 * ks + 2 * q) * LDB + m;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const float* pi = pa + (i & 1) * 8 + (i >> 1) * 8 * LDB;
              af[i] = pack_bf16(pi[0], pi[LDB]);
            }
          }
#pragma unroll
          for (int u = 0; u < 4; ++u) mma_bf16(acc[mi][u], af, bf[u]);
        }
      }
    } else {
      const float* rs = rsc + (p & 1) * kQ + row0 + gq;  // scale of row row0 + 16·mi + gq + 8·i: rs[16·mi + 8·i]
      const bf16* pa = reinterpret_cast<const bf16*>(sb) + (row0 + ((l >> 3) & 1) * 8 + (l & 7)) * LX + (l >> 4) * 8;
      const bf16* S = reinterpret_cast<const bf16*>(sb + Sh::kX) + 2 * q * LV + nw + 4 * gq;
#pragma unroll
      for (int ks = 0; ks < 4; ++ks) {
        // B(p, n) = S[p][n]: rows 2q, 2q + 1 (bf[u][0]) and 2q + 8, 2q + 9 (bf[u][1]), column 4·gq + u of tile u.
        uint32_t bf[4][2];
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          uint32_t r0[2], r1[2];  // rows 2q + 8j and + 1: columns (4gq, 4gq + 1), (4gq + 2, 4gq + 3)
          lds64(S + (16 * ks + 8 * j) * LV, r0[0], r0[1]);
          lds64(S + (16 * ks + 8 * j + 1) * LV, r1[0], r1[1]);
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            bf[2 * e][j] = (r0[e] & 0xffffu) | (r1[e] << 16);
            bf[2 * e + 1][j] = (r0[e] >> 16) | (r1[e] & 0xffff0000u);
          }
        }
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
          uint32_t af[4];  // ldmatrix: af[i] holds row gq + 8·(i & 1)
          ldsm_x4<false>(af, pa + 16 * mi * LX + 16 * ks);
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const float sc = rs[16 * mi + 8 * (i & 1)];
            af[i] = pack_bf16(bf16_lo(af[i]) * sc, bf16_hi(af[i]) * sc);
          }
#pragma unroll
          for (int u = 0; u < 4; ++u) mma_bf16(acc[mi][u], af, bf[u]);
        }
      }
    }
  };
  cp_async_ring<kDbcStages>(P, issue, compute);

  // acc[mi][u][2i + e]: row row0 + 16·mi + gq + 8·i, column nw + 8q + 4e + u.
  float* out = (kC ? gr.dC : gr.dB) + ((b * d.L + c * kQ) * d.G + g) * N + n0 + nw + 8 * q;
#pragma unroll
  for (int mi = 0; mi < MI; ++mi)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int r = row0 + 16 * mi + gq + 8 * i;
      if (r >= rv) continue;
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float v[4] = {acc[mi][0][2 * i + e], acc[mi][1][2 * i + e], acc[mi][2][2 * i + e],
                            acc[mi][3][2 * i + e]};
        store4(out + int64_t(r) * d.G * N + 4 * e, v);
      }
    }
}

// ---- Sums the slots per position, reverse cumsum of ∂L/∂cs within the chunk, dΔ, then d(dt) and d(scale).
// Grid chunk_head_grid (the heads of a chunk are neighbours, so that their strided d(dt) stores and dt loads share
// sectors in L2), kQ threads: thread t holds position p = kQ − 1 − t, so that a prefix scan over t (warp shuffles,
// then the warp totals) is the suffix sum over positions.
template <typename T>
__global__ void __launch_bounds__(kQ) finalize_kernel(SsdArgs a, SsdBwdArgs gr, Dims d, const float* slot,
                                                      const float* dcs_sp) {
  double* sred = reinterpret_cast<double*>(dynamic_smem());  // [kQ / 32] warp sums of d(scale)
  float* wtot = reinterpret_cast<float*>(sred + kQ / 32);     // [kQ / 32] warp totals of the scan
  const int t = int(threadIdx.x), p = kQ - 1 - t, l = lane_id(), w = warp_id();
  const int64_t c = grid_chunk(d), h = grid_head(d), b = blockIdx.z, bh = b * d.H + h;
  const int64_t idx = bh * d.Lp + c * kQ + p, ss = d.B * d.H * d.Lp;
  float dcs = slot[4 * ss + idx] + (p == kQ - 1 ? dcs_sp[bh * d.nc + c] : 0.f);
  const float ddl = slot[5 * ss + idx];
  // The T row sums: dcb_kernel writes slots 0 .. i for the rows of a block i = p / 64 that starts before L.
  if (c * kQ + (p & ~63) < d.L)
    for (int k = 0; k <= p / 64; ++k) dcs += slot[k * ss + idx];
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float u = shfl_up(dcs, off);
    if (l >= off) dcs += u;
  }
  if (l == 31) wtot[w] = dcs;
  __syncthreads();
  for (int ww = 0; ww < w; ++ww) dcs += wtot[ww];  // now Σ_{p' >= p} ∂L/∂cs_p'
  const float dDelta = ddl + a.A[h] * dcs;
  const int64_t tok = c * kQ + p;
  double part = 0.0;
  if (tok < d.L) {
    const float raw = raw_dt<T>(a, b, tok, h) + (a.dt_bias ? a.dt_bias[h] : 0.f);
    const float sp = softplus_f(raw);
    const bool inside = sp >= a.dt_min && sp <= a.dt_max;
    gr.ddt[(b * d.L + tok) * d.H + h] = inside ? dDelta * head_scale(a, h) * sigmoid_f(raw) : 0.f;
    part = double(dDelta) * double(fminf(fmaxf(sp, a.dt_min), a.dt_max));
  }
  if (gr.dscale) {
    part = warp_sum(part);
    if (l == 0) sred[w] = part;
    __syncthreads();
    if (t == 0) {
      double s = 0.0;
      for (int ww = 0; ww < kQ / 32; ++ww) s += sred[ww];
      atomicAdd(gr.dscale + h, s);
    }
  }
}

template <typename T, int N>
cudaError_t launch_bwd(const SsdArgs& a, const SsdBwdArgs& gr, void* ws, cudaStream_t st) {
  const Dims d = make_dims(a);
  constexpr bool b16 = std::is_same_v<T, bf16>;
  const BwdWs w = bwd_ws(d, ws, b16, gr.saved != nullptr, gr.saved);
  const unsigned nc = unsigned(d.nc), H = unsigned(d.H), B = unsigned(d.B), BG = unsigned(d.B * d.G);
  // The forward's stages 1–4, unless it kept them (gr.saved). Read-only from here on.
  cudaError_t err = gr.saved ? cudaSuccess : launch_prefix<T, N>(a, d, w.f, nullptr, st, st, w.S16);
  if (err != cudaSuccess) return err;
  const float* S_in = w.f.S;  // fp32 I/O
  const bf16* S16 = w.S16;     // bf16 I/O
  if ((err = cudaMemsetAsync(w.dcs_sp, 0, size_t(d.B * d.H * d.nc) * sizeof(float), st)) != cudaSuccess) return err;
  if (gr.dscale && (err = cudaMemsetAsync(gr.dscale, 0, size_t(d.H) * sizeof(double), st)) != cudaSuccess) return err;
  // Two branches after the prefix: dcb_kernel and dC need only the prefix's outputs; the reverse chunk states, the
  // reverse state passing and the chunk scan backward form the G chain. The first runs on a second stream (forked
  // from st here, joined before dB and before finalize), so that its kernels fill the SMs that the latency-bound
  // G chain leaves idle. With a stage hook (profiling) everything runs in order on st.
  SideStream side;
  bool fork = false;
  if ((err = fork_side(st, side, fork)) != cudaSuccess) return err;
  const cudaStream_t s2 = side.s;
  // dB (kC = false) or dC: dbc_async_kernel for bf16, dbc_kernel for fp32.
  auto launch_dbc = [&](auto kc, cudaStream_t sk) -> cudaError_t {
    constexpr bool kC = decltype(kc)::value != 0;
    cudaError_t e = cudaSuccess;
    if constexpr (b16) {
      auto k8 = dbc_async_kernel<N, kC>;
      const size_t sm = dbc_async_smem<N>();
      const unsigned slices = unsigned(N / DbcShape<N>::NC);
      if ((e = set_smem(k8, sm)) != cudaSuccess) return e;
      MX_LAUNCH(k8, dim3(slices, nc, BG), dim3(512), sm, sk, a, gr, d, w.f.dtv, w.f.cs2, w.f.csl, S16,
                static_cast<const bf16*>(w.G16), static_cast<const float*>(w.dcb));
    } else {
      auto k8 = dbc_kernel<T, N, kC>;
      const size_t sm = dbc_smem<T, N>();
      if ((e = set_smem(k8, sm)) != cudaSuccess) return e;
      MX_LAUNCH(k8, dim3(4, nc, BG), dim3(256), sm, sk, a, gr, d, w.f.dtv, w.f.cs2, w.f.csl, S_in,
                static_cast<const float*>(w.G), static_cast<const float*>(w.dcb));
    }
    return cudaGetLastError();
  };

  // Side branch: dCB and the T row sums, then dC.
  auto k6 = dcb_kernel<T>;
  if ((err = set_smem(k6, dcb_smem<T>())) != cudaSuccess) return err;
  MX_LAUNCH(k6, dim3(10, nc, BG), dim3(128), dcb_smem<T>(), s2, a, gr, d, w.f.dtv, w.f.cs2, w.f.csl, w.f.cb, w.dcb,
            w.slot);
  mark("bwd_dcb", st);
  if (fork && (err = cudaEventRecord(side.dcb, s2)) != cudaSuccess) return err;
  if ((err = launch_dbc(IntTag<1>{}, s2)) != cudaSuccess) return err;
  mark("bwd_dC", st);
  if (fork && (err = cudaEventRecord(side.done, s2)) != cudaSuccess) return err;

  // G chain: R_c into G, then the reverse state passing turns it into G_c (and dh0): in G (fp32), or in G16 (bf16
  // I/O); then the chunk scan backward.
  const StateSrc src{gr.dy, gr.dy_sb, gr.dy_sl, gr.dy_sh, a.Cm, a.C_sb, a.C_sl, a.C_sg};
  if ((err = launch_chunk_state<T, N, true>(src, d, w.f, w.G, st)) != cudaSuccess) return err;
  mark("bwd_chunk_state", st);
  const dim3 pass_grid(unsigned(kP * d.N / 1024), H, B);
  if constexpr (b16) {
    auto k4 = state_pass_kernel<true, bf16>;
    MX_LAUNCH(k4, pass_grid, dim3(256), 0, st, d, w.G, gr.dhT, gr.dh0, w.f.cs2, w.f.csl, S16, w.dcs_sp, w.G16);
  } else {
    auto k4 = state_pass_kernel<true>;
    MX_LAUNCH(k4, pass_grid, dim3(256), 0, st, d, w.G, gr.dhT, gr.dh0, w.f.cs2, w.f.csl, S_in, w.dcs_sp,
              static_cast<bf16*>(nullptr));
  }
  mark("bwd_state_pass", st);
  if constexpr (b16) {
    auto k7 = chunk_scan_bwd_async_kernel<N>;
    if ((err = set_smem(k7, scan_bwd_async_smem<N>())) != cudaSuccess) return err;
    MX_LAUNCH(k7, chunk_head_grid(d), dim3(256), scan_bwd_async_smem<N>(), st, a, gr, d, w.f.dtv, w.f.cs2, w.f.csl,
              S16, static_cast<const bf16*>(w.G16), w.f.cb, w.slot);
  } else {
    auto k7 = chunk_scan_bwd_kernel<T, N>;
    if ((err = set_smem(k7, scan_bwd_smem<T>())) != cudaSuccess) return err;
    MX_LAUNCH(k7, chunk_head_grid(d), dim3(256), scan_bwd_smem<T>(), st, a, gr, d, w.f.dtv, w.f.cs2, w.f.csl, S_in,
              static_cast<const float*>(w.G), w.f.cb, w.slot);
  }
  mark("bwd_chunk_scan", st);

  // Join: dB needs dCB, finalize the side branch's row sums.
  if (fork && (err = cudaStreamWaitEvent(st, side.dcb, 0)) != cudaSuccess) return err;
  if ((err = launch_dbc(IntTag<0>{}, st)) != cudaSuccess) return err;
  mark("bwd_dB", st);
  if (fork && (err = cudaStreamWaitEvent(st, side.done, 0)) != cudaSuccess) return err;
  auto k9 = finalize_kernel<T>;
  MX_LAUNCH(k9, chunk_head_grid(d), dim3(kQ), (kQ / 32) * (sizeof(double) + sizeof(float)), st, a, gr, d,
            static_cast<const float*>(w.slot), static_cast<const float*>(w.dcs_sp));
  mark("bwd_finalize", st);
  return cudaGetLastError();
}

}  // namespace
}  // namespace mx::kern::ssd

namespace mx::kern {

size_t ssd_bwd_workspace_bytes(const SsdArgs& a, bool with_saved) {
  if (a.batch < 1 || a.len < 1) return 0;
  return ssd::bwd_ws(ssd::make_dims(a), nullptr, a.io == IoType::BF16, with_saved).bytes;
}

cudaError_t ssd_bwd(const SsdArgs& a, const SsdBwdArgs& g, void* workspace, cudaStream_t stream) {
  if (!ssd_supported(a.head_dim, a.dstate) || a.batch < 1 || a.len < 1 || a.heads < 1 || a.groups < 1 ||
      a.heads % a.groups != 0 || a.batch * a.groups > 65535 || a.heads > 65535 || !a.x || !a.dt || !a.Bm ||
      !a.Cm || !a.A || !g.dy || !g.dx || !g.ddt || !g.dB || !g.dC || !workspace ||
      reinterpret_cast<uintptr_t>(g.saved) % 16 != 0)
    return cudaErrorInvalidValue;
  cudaError_t err = cudaSuccess;
  ssd::dispatch(a.io, a.dstate, [&](auto io, auto n) {
    err = ssd::launch_bwd<decltype(io), decltype(n)::value>(a, g, workspace, stream);
  });
  return err;
}

}  // namespace mx::kern
