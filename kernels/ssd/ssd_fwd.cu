// SSD forward (ssd.h has the math): stages 1–4 (ssd_pass.cuh), then the chunk scan, which for each (chunk,
// head) forms y = exp(cs_t)·C_t·S_inᵀ + (CB ⊙ decay ⊙ Δ)·x + D·x over the chunk's 256 tokens; and the
// recurrent kernel for short sequences (decoding steps).
// Chunk scan CTA: 8 warps; warp w owns the 16-row blocks w and 15 − w of the 256 × 64 output (balanced under
// the causal mask). fp32 (chunk_scan_kernel): term 1 runs over N in blocks of 64 (C and S_in tiles staged per
// block, exp(cs_t) applied to the accumulator), term 2 over the 4 source blocks of 64 tokens (decayed CB tile and
// the x tile, read transposed, staged per block; below the diagonal block the decay factors into row and column
// terms); shared memory ≈ 93 KB. bf16 (chunk_scan_warp_kernel): warp-private streams, see there.
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

// bf16 chunk scan with warp-private streams (same math as chunk_scan_kernel, no CTA barrier in the main loop).
// The shared operands, the chunk's x tile (B operand of term 2) and S_in in bf16 (B operand of term 1, rounded by
// the state passing), are loaded once; then each warp streams the rows it alone uses (C rows for term 1 in steps of
// 32 columns, CB rows for term 2 in steps of 16 source tokens) through a private cp.async pipeline of
// scan_steps<N>() buffers, synchronised with __syncwarp only, so that no warp waits for another's share of a phase
// (with CTA-wide phases the causal triangle left warps idle at the barriers: 2.47 ms at 64k, now 1.46 ms). Warp w
// owns the 16-row blocks w and 15 − w (balanced under the causal mask) and finishes one (term 1, the source blocks
// left of it, its diagonal block, + D·x, store) before the next. The decay is factored through the row block's
// start r0 (cs_t <= cs_r0 <= cs_s for s < r0 <= t, every factor <= 1): the warp accumulates
//   exp(cs_r0)·C_t·S_inᵀ + Σ_{s < r0} CB_ts·exp(cs_r0 − cs_s)·Δ_s·x_s
// then multiplies its rows by exp(cs_t − cs_r0) and adds the diagonal block with the exact exp(cs_t − cs_s). Left
// of the diagonal an A-fragment element costs one multiply by its column factor
// exp(cs_r0 − cs_e)·exp(cs_e − cs_s)·Δ_s (e the end of the 16-token source block); the fp32 CB values are rounded
// to bf16 once, as in chunk_scan_kernel.
template <int N>
constexpr int scan_steps() {
  return N <= 128 ? 4 : 2;
}
constexpr int kLX = 72;       // x tile row stride (bf16)
constexpr int kStepLd = 24;   // row stride (floats) of a CB step tile: 16 rows × 16 columns
constexpr int kStepLdC = 40;  // row stride (bf16) of a C step tile: 16 rows × 32 columns
constexpr size_t kStepBytes = size_t(16) * kStepLd * sizeof(float);
static_assert(size_t(16) * kStepLdC * sizeof(uint16_t) <= kStepBytes, "a C step tile fits a step buffer");
template <int N>
constexpr size_t scan_warp_smem() {
  return size_t(kQ) * kLX * 2 + size_t(kP) * (N + 8) * 2 + 8 * scan_steps<N>() * kStepBytes +
         size_t(kQ) * (sizeof(float2) + 2 * sizeof(float));
}

template <int N>
__global__ void __launch_bounds__(256, 2) chunk_scan_warp_kernel(SsdArgs a, Dims d, const float* dtv,
                                                                 const float* cs2, const float* csl,
                                                                 const bf16* Sin, const float* cb, SsdFwdOut o) {
  constexpr int LS = N + 8, KS = scan_steps<N>(), T1 = N / 32;  // T1: term-1 steps of 32 columns of C
  unsigned char* sm = dynamic_smem();
  bf16* Xs = reinterpret_cast<bf16*>(sm);  // x [s][p] of the chunk, rows >= rv zero
  bf16* Ss = Xs + kQ * kLX;                // S_in [p][n], bf16
  unsigned char* steps = reinterpret_cast<unsigned char*>(Ss + kP * LS);
  float2* scp = reinterpret_cast<float2*>(steps + 8 * KS * kStepBytes);  // cumsum (hi, lo)
  float* sdt = reinterpret_cast<float*>(scp + kQ);                        // Δ
  float* colf = sdt + kQ;  // exp(cs_e − cs_s)·Δ_s, e the end of s's 16-token block (0 in the last block)
  const int64_t c = grid_chunk(d), h = grid_head(d), b = blockIdx.z, g = h / d.hpg;
  const int64_t base = (b * d.H + h) * d.Lp + c * kQ;
  const int rv = int(std::min<int64_t>(kQ, d.L - c * kQ));
  const int w = warp_id(), l = lane_id(), gq = l >> 2, q = l & 3, mi = l >> 3, r8 = l & 7;
  const bf16* Cg = static_cast<const bf16*>(a.Cm) + b * a.C_sb + g * a.C_sg + c * kQ * a.C_sl;
  const bf16* Sg = Sin + ((b * d.nc + c) * d.H + h) * int64_t(kP) * N;
  const float* cbg = cb + ((b * d.nc + c) * d.G + g) * kQ * kQ;
  const bf16* xg = static_cast<const bf16*>(a.x) + b * a.x_sb + h * a.x_sh + c * kQ * a.x_sl;

  // The warp's steps: row block w (T1 term-1 steps of 32 columns, then w + 1 source steps of 16 tokens), then row
  // block 15 − w.
  unsigned char* mine = steps + w * KS * kStepBytes;
  const int n0 = T1 + w + 1, nsteps = n0 + T1 + 16 - w;
  // This lane's copy sources for the two row blocks (C: rows l/4 and l/4 + 8, quarter l%4 of 32 columns; CB: rows
  // l/4 and l/4 + 8, quarter l%4 of 16 columns), advanced per step, and its destinations within a step buffer.
  const int ra = 16 * w, rc = 16 * (15 - w);
  const int crow = l >> 2;
  const bool oka0 = ra + crow < rv, oka1 = ra + crow + 8 < rv, okc0 = rc + crow < rv, okc1 = rc + crow + 8 < rv;
  const bf16* csa = Cg + (ra + crow) * a.C_sl + (l & 3) * 8;
  const bf16* csc = Cg + (rc + crow) * a.C_sl + (l & 3) * 8;
  const float* cba = cbg + (ra + (l >> 2)) * kQ + (l & 3) * 4;
  const float* cbc = cbg + (rc + (l >> 2)) * kQ + (l & 3) * 4;
  const int cdst = crow * kStepLdC + (l & 3) * 8, cbdst = crow * kStepLd + (l & 3) * 4;
  auto issue = [&](int s, int buf) {
    const bool k = s >= n0;
    const int i = s - (k ? n0 : 0);
    unsigned char* dst = mine + buf * kStepBytes;
    if (i < T1) {  // C rows r0 .. r0 + 15, columns 32i ..
      const bool ok0 = k ? okc0 : oka0, ok1 = k ? okc1 : oka1;
      const bf16* src = (k ? csc : csa) + 32 * i;
      bf16* dd = reinterpret_cast<bf16*>(dst) + cdst;
      cp_async16(dd, ok0 ? src : Cg, ok0);
      cp_async16(dd + 8 * kStepLdC, ok1 ? src + 8 * a.C_sl : Cg, ok1);
    } else {  // CB rows r0 .. r0 + 15, columns 16(i − T1) ..
      const float* src = (k ? cbc : cba) + 16 * (i - T1);
      float* dd = reinterpret_cast<float*>(dst) + cbdst;
      cp_async16(dd, src, true);
      cp_async16(dd + 8 * kStepLd, src + 8 * kQ, true);
    }
  };

  // Prologue: the x and S_in tiles and the first steps in flight, the scalars staged meanwhile.
  copy_tile_async<kP, 256>(Xs, kLX, xg, a.x_sl, kQ, rv);
  copy_tile_async<N, 256>(Ss, LS, Sg, N, kP, kP);
  cp_async_commit();
#pragma unroll
  for (int s = 0; s < KS - 1; ++s) {
    if (s < nsteps) issue(s, s);
    cp_async_commit();
  }
  for (int t = int(threadIdx.x); t < kQ; t += int(blockDim.x)) {
    scp[t] = make_float2(cs2[base + t], csl[base + t]);
    sdt[t] = dtv[base + t];
  }
  cp_async_wait<KS - 1>();  // this thread's part of the x and S_in tiles has landed
  __syncthreads();
  auto dexp = [&](int t, int s) { return dexp2(scp[t].x, scp[t].y, scp[s].x, scp[s].y); };  // exp(cs_t − cs_s)
  for (int s = int(threadIdx.x); s < kQ; s += int(blockDim.x)) {
    const int e = (s / 16 + 1) * 16;
    colf[s] = e < kQ ? dexp(e, s) * sdt[s] : 0.f;
  }
  __syncthreads();

  const float Dh = a.D ? a.D[h] : 0.f;
  bf16* yg = static_cast<bf16*>(o.y) + b * o.y_sb + h * o.y_sh + c * kQ * o.y_sl;
  const bf16* pbs = Ss + ((mi >> 1) * 8 + r8) * LS + (mi & 1) * 8;   // S_in as B (k = n, n = p)
  const bf16* pbx = Xs + ((mi & 1) * 8 + r8) * kLX + (mi >> 1) * 8;  // x as B (k = s, n = p), read transposed
  float acc[8][4];
  zero_acc(acc);
  for (int s = 0; s < nsteps; ++s) {
    if (s + KS - 1 < nsteps) issue(s + KS - 1, (s + KS - 1) % KS);
    cp_async_commit();
    cp_async_wait<KS - 1>();
    warp_sync();
    const int k = s >= n0, i = s - (k ? n0 : 0), rb = k ? 15 - w : w, r0 = 16 * rb;
    const unsigned char* st = mine + (s % KS) * kStepBytes;
    if (i < T1) {  // term 1, columns n in [32i, 32i + 32): C_t·S_inᵀ
#pragma unroll
      for (int kk = 0; kk < 2; ++kk) {
        uint32_t af[4];
        ldsm_x4<false>(af,
                       reinterpret_cast<const bf16*>(st) + ((mi & 1) * 8 + r8) * kStepLdC + 16 * kk + (mi >> 1) * 8);
        mma_16x64<false>(acc, af, pbs + 32 * i + 16 * kk, 16 * LS);
      }
      if (i == T1 - 1) {  // × exp(cs_r0)
        const float m = fast_exp2(scp[r0].x + scp[r0].y);
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
          for (int r = 0; r < 4; ++r) acc[j][r] *= m;
      }
    } else {  // term 2, source tokens [16ks, 16ks + 16)
      const int ks = i - T1, s0b = 16 * ks;
      const float* stf = reinterpret_cast<const float*>(st);
      const int tr[2] = {r0 + gq, r0 + gq + 8};
      uint32_t af[4];
      if (ks < rb) {  // left of the diagonal: one multiply per element by its column factor
        const float beta = dexp(r0, s0b + 16);  // exp(cs_r0 − cs_e)
        float cf[2][2];
        column_factors(cf, colf + s0b, beta);
#pragma unroll
        for (int i4 = 0; i4 < 4; ++i4) {
          float v0, v1;
          load2(stf + (gq + 8 * (i4 & 1)) * kStepLd + 2 * q + 8 * (i4 >> 1), v0, v1);
          af[i4] = pack_bf16(v0 * cf[i4 >> 1][0], v1 * cf[i4 >> 1][1]);
        }
      } else {  // the diagonal block: rows × exp(cs_t − cs_r0) first, then the exact exp(cs_t − cs_s)
#pragma unroll
        for (int u = 0; u < 2; ++u) {
          const float m = dexp(tr[u], r0);
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[j][2 * u] *= m, acc[j][2 * u + 1] *= m;
        }
#pragma unroll
        for (int i4 = 0; i4 < 4; ++i4) {
          const int row = gq + 8 * (i4 & 1), cc = 2 * q + 8 * (i4 >> 1), t = r0 + row, sa = s0b + cc;
          float v0, v1;
          load2(stf + row * kStepLd + cc, v0, v1);
          v0 = sa <= t ? v0 * dexp(t, sa) * sdt[sa] : 0.f;
          v1 = sa + 1 <= t ? v1 * dexp(t, sa + 1) * sdt[sa + 1] : 0.f;
          af[i4] = pack_bf16(v0, v1);
        }
      }
      mma_16x64<true>(acc, af, pbx + s0b * kLX, 16);
      if (ks == rb) {  // the row block is complete: + D·x (x from the tile), store, start the next one
        store_plus_skip(yg, o.y_sl, acc, tr, rv, Xs, kLX, Dh);
        zero_acc(acc);
      }
    }
    warp_sync();
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

// The recurrent kernel serves short sequences, unless the intermediates are wanted (SsdFwdOut::saved).
bool use_recurrent(const SsdArgs& a, bool with_saved) {
  return !a.force_chunked && !with_saved && a.len <= kSsdRecurrentMaxLen;
}

// Workspace: fwd_ws, then (bf16) S_in in bf16. With SsdFwdOut::saved those live there (saved_ws), and only the
// bf16 path's fp32 chunk states remain here.
size_t fwd_workspace_bytes(const SsdArgs& a, bool with_saved) {
  if (use_recurrent(a, with_saved) || a.batch < 1 || a.len < 1) return 0;
  const Dims d = make_dims(a);
  const bool b16 = a.io == IoType::BF16;
  if (with_saved) return b16 ? size_t(d.B * d.nc * d.H) * kP * d.N * sizeof(float) : 0;
  return fwd_ws(d, nullptr).floats * sizeof(float) + (b16 ? s16_bytes(d) : 0);
}

template <typename T, int N>
cudaError_t launch_fwd(const SsdArgs& a, const SsdFwdOut& o, void* ws, cudaStream_t st) {
  const Dims d = make_dims(a);
  constexpr bool b16 = std::is_same_v<T, bf16>;
  if (use_recurrent(a, o.saved != nullptr)) {
    auto kr = recurrent_kernel<T, N>;
    MX_LAUNCH(kr, dim3(unsigned(d.H), unsigned(d.B)), dim3(256), 0, st, a, d, o);
    mark("recurrent", st);
    return cudaGetLastError();
  }
  FwdWs w = o.saved ? saved_ws(d, o.saved, b16) : fwd_ws(d, ws);
  if (o.saved && b16) w.S = static_cast<float*>(ws);  // the chunk states
  const dim3 grid = chunk_head_grid(d);
  cudaError_t err = cudaSuccess;
  // CB, which only the chunk scan reads, runs on a second stream beside the cumsum, the chunk states and the state
  // passing, joined before the chunk scan (everything in order on st when a stage hook profiles).
  SideStream side;
  bool fork = false;
  if ((err = fork_side(st, side, fork)) != cudaSuccess) return err;
  const cudaStream_t st_cb = side.s;
  auto join = [&]() -> cudaError_t {
    if (!fork) return cudaSuccess;
    const cudaError_t e = cudaEventRecord(side.done, side.s);
    return e != cudaSuccess ? e : cudaStreamWaitEvent(st, side.done, 0);
  };
  if constexpr (b16) {
    bf16* S16 = o.saved ? saved_s16(d, o.saved) : reinterpret_cast<bf16*>(static_cast<float*>(ws) + w.floats);
    if ((err = launch_prefix<T, N>(a, d, w, o.hT, st, st_cb, S16)) != cudaSuccess) return err;
    if ((err = join()) != cudaSuccess) return err;
    auto k5 = chunk_scan_warp_kernel<N>;
    if ((err = set_smem(k5, scan_warp_smem<N>())) != cudaSuccess) return err;
    MX_LAUNCH(k5, grid, dim3(256), scan_warp_smem<N>(), st, a, d, w.dtv, w.cs2, w.csl, S16, w.cb, o);
  } else {
    if ((err = launch_prefix<T, N>(a, d, w, o.hT, st, st_cb)) != cudaSuccess) return err;
    if ((err = join()) != cudaSuccess) return err;
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

size_t ssd_fwd_workspace_bytes(const SsdArgs& a, bool with_saved) { return ssd::fwd_workspace_bytes(a, with_saved); }

size_t ssd_saved_bytes(const SsdArgs& a) {
  if (a.batch < 1 || a.len < 1) return 0;
  return ssd::saved_bytes(ssd::make_dims(a), a.io == IoType::BF16);
}

cudaError_t ssd_fwd(const SsdArgs& a, const SsdFwdOut& o, void* workspace, cudaStream_t stream) {
  if (!ssd_supported(a.head_dim, a.dstate) || a.batch < 1 || a.len < 1 || a.heads < 1 || a.groups < 1 ||
      a.heads % a.groups != 0 || a.batch > 65535 || a.heads > 65535 || !a.x || !a.dt || !a.Bm || !a.Cm || !a.A ||
      !o.y || (ssd_fwd_workspace_bytes(a, o.saved != nullptr) > 0 && !workspace) ||
      reinterpret_cast<uintptr_t>(o.saved) % 16 != 0)
    return cudaErrorInvalidValue;
  cudaError_t err = cudaSuccess;
  ssd::dispatch(a.io, a.dstate, [&](auto io, auto n) {
    err = ssd::launch_fwd<decltype(io), decltype(n)::value>(a, o, workspace, stream);
  });
  return err;
}

}  // namespace mx::kern
