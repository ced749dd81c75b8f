// Building blocks of the SSD kernels (ssd_fwd.cu, ssd_bwd.cu): the m16n8k16 tensor-core product (with a CPU-emulator
// version; the warp shuffles are in warp.cuh), cooperative staging of global tiles into shared memory, and a warp-level
// tile product that runs on tensor cores for bf16 and in plain fp32 FMAs for fp32.
//
// Accumulator layout (both paths): a warp computes a 16 × (8·NI) tile as acc[NI][4]; lane l (g = l/4, q = l%4)
// holds acc[j][r] = element (row g + 8·(r/2), column 8j + 2q + r%2).
// Shared-memory tiles are plain row-major copies of global tiles (16-byte vector stores); warp_mma reads either
// layout of each operand (ldmatrix / ldmatrix.trans for bf16). Row stride ld_of<T>(width) = width + 8 bf16 or
// + 4 floats, so that the 8 rows of an ldmatrix phase (or the fp32 fragment loads) hit distinct banks.
#pragma once
#include <cstdint>
#include <type_traits>

#include "common.cuh"
#include "ssd/ssd.h"
#include "warp.cuh"

namespace mx::kern::ssd {

constexpr int kQ = int(kSsdChunk);  // chunk length
constexpr int kP = 64;              // head dim
constexpr int kLog2Q = 8;

template <typename T>
constexpr int ld_of(int k) {
  return k + (sizeof(T) == 2 ? 8 : 4);
}

// Problem sizes shared by all kernels. Lp = nc·kQ (padded length).
struct Dims {
  int64_t B, L, H, G, N, hpg, nc, Lp;
};

// The per-(chunk, head) kernels (chunk state, chunk scan, their backward) run on a grid (nc·H, 1, B) with the head
// fastest, so that the H heads of a chunk are resident together and read that chunk's C, B (and the fp32 CB tile,
// 256 KB per chunk and group) from L2; chunk-fastest order streamed every chunk's CB through L2 once per head.
inline dim3 chunk_head_grid(const Dims& d) { return dim3(unsigned(d.nc * d.H), 1u, unsigned(d.B)); }
MX_DEV int64_t grid_chunk(const Dims& d) { return int64_t(blockIdx.x) / d.H; }
MX_DEV int64_t grid_head(const Dims& d) { return int64_t(blockIdx.x) % d.H; }

MX_DEV float bf16_lo(uint32_t u) { return bf16_to_float(uint16_t(u & 0xffffu)); }
MX_DEV float bf16_hi(uint32_t u) { return bf16_to_float(uint16_t(u >> 16)); }

// d += a·b for one m16n8k16 tile (bf16 operands, fp32 accumulators), PTX fragment layout:
// a[0] = A(g, 2q..2q+1), a[1] = A(g+8, 2q..), a[2] = A(g, 2q+8..), a[3] = A(g+8, 2q+8..);
// b[0] = B(2q..2q+1, g), b[1] = B(2q+8.., g); d as in the accumulator layout above.
MX_DEV void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#ifdef MX_CPU_EMU
  const int w = warp_id(), l = lane_id();
  for (int i = 0; i < 4; ++i) emu::g_xchg[w][l][i] = a[i];
  emu::g_xchg[w][l][4] = b[0];
  emu::g_xchg[w][l][5] = b[1];
  emu::wsync();
  auto A = [&](int r, int k) {
    const uint32_t v = emu::g_xchg[w][(r & 7) * 4 + ((k & 7) >> 1)][(r >> 3) + 2 * (k >> 3)];
    return (k & 1) ? bf16_hi(v) : bf16_lo(v);
  };
  auto Bv = [&](int k, int n) {
    const uint32_t v = emu::g_xchg[w][n * 4 + ((k & 7) >> 1)][4 + (k >> 3)];
    return (k & 1) ? bf16_hi(v) : bf16_lo(v);
  };
  const int g = l >> 2, q = l & 3;
  float out[4];
  for (int r = 0; r < 4; ++r) {
    const int row = g + 8 * (r >> 1), col = 2 * q + (r & 1);
    float s = d[r];
    for (int k = 0; k < 16; ++k) s += A(row, k) * Bv(k, col);
    out[r] = s;
  }
  emu::wsync();
  for (int r = 0; r < 4; ++r) d[r] = out[r];
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// ldmatrix.m8n8.x4 (b16): lane 8i + r gives the address of row r of matrix i; reg[i] of lane l receives
// (row l/4, columns 2(l%4), 2(l%4)+1) of matrix i, or with kTrans (rows 2(l%4), 2(l%4)+1, column l/4).
template <bool kTrans>
MX_DEV void ldsm_x4(uint32_t (&reg)[4], const bf16* p) {
#ifdef MX_CPU_EMU
  const int w = warp_id(), l = lane_id();
  emu::g_xptr[w][l] = p;
  emu::wsync();
  for (int i = 0; i < 4; ++i) {
    auto at = [&](int row, int col) { return static_cast<const bf16*>(emu::g_xptr[w][8 * i + row])[col].bits; };
    uint16_t lo, hi;
    if (kTrans) {
      lo = at(2 * (l & 3), l >> 2), hi = at(2 * (l & 3) + 1, l >> 2);
    } else {
      lo = at(l >> 2, 2 * (l & 3)), hi = at(l >> 2, 2 * (l & 3) + 1);
    }
    reg[i] = uint32_t(lo) | (uint32_t(hi) << 16);
  }
  emu::wsync();
#else
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  if (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(reg[0]), "=r"(reg[1]), "=r"(reg[2]), "=r"(reg[3])
                 : "r"(a));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(reg[0]), "=r"(reg[1]), "=r"(reg[2]), "=r"(reg[3])
                 : "r"(a));
#endif
}

MX_DEV uint32_t lds32(const bf16* p) {
#ifdef MX_CPU_EMU
  uint32_t u;
  memcpy(&u, p, 4);
  return u;
#else
  return *reinterpret_cast<const uint32_t*>(p);
#endif
}

// Two consecutive 32-bit words at p (8-byte aligned, shared memory): 4 bf16.
MX_DEV void lds64(const bf16* p, uint32_t& x, uint32_t& y) {
#ifdef MX_CPU_EMU
  memcpy(&x, p, 4);
  memcpy(&y, p + 2, 4);
#else
  const uint2 v = *reinterpret_cast<const uint2*>(p);
  x = v.x, y = v.y;
#endif
}

// acc (16 × 64) += af (an A fragment, 16 × 16) · B (16 × 64) from shared memory: pb is this lane's ldmatrix row
// address for the first pair of n8 tiles and step the distance to the next pair (B stored [k][n] and read with
// ldmatrix.trans when kTrans, step 16; B stored [n][k] otherwise, step 16 rows).
template <bool kTrans>
MX_DEV void mma_16x64(float (&acc)[8][4], const uint32_t (&af)[4], const bf16* pb, int step) {
#pragma unroll
  for (int jj = 0; jj < 8; jj += 2) {
    uint32_t bb[4];
    ldsm_x4<kTrans>(bb, pb + (jj / 2) * step);
    const uint32_t b0[2] = {bb[0], bb[1]}, b1[2] = {bb[2], bb[3]};
    mma_bf16(acc[jj], af, b0);
    mma_bf16(acc[jj + 1], af, b1);
  }
}

// acc (16 × 8·NI) += A (16 × 16·kb) · B (16·kb × 8·NI) from shared memory. A(m, k) is As[m·lda + k], or
// As[k·lda + m] with kAT; B(k, n) is Bs[n·ldb + k], or Bs[k·ldb + n] with kBT (As / Bs point at element (0, 0) of
// the warp's tile). bf16: ldmatrix (.trans for the transposed layouts; rows 16-byte aligned) and mma.sync;
// fp32: plain FMAs into the same accumulator layout. NI must be even.
template <typename T, int NI, bool kAT = false, bool kBT = false>
MX_DEV void warp_mma(float (&acc)[NI][4], const T* As, int lda, const T* Bs, int ldb, int kb) {
  static_assert(NI % 2 == 0, "NI must be even");
  const int l = lane_id(), g = l >> 2, q = l & 3;
  if constexpr (std::is_same_v<T, bf16>) {
    const int mi = l >> 3, r = l & 7;
    // Per-lane ldmatrix row addresses at k0 = 0 (A: matrices (m,k) = (0,0) (8,0) (0,8) (8,8); B: per pair of n8
    // tiles (n,k) = (0,0) (0,8) (8,0) (8,8)).
    const T* pa = kAT ? As + ((mi >> 1) * 8 + r) * lda + (mi & 1) * 8 : As + ((mi & 1) * 8 + r) * lda + (mi >> 1) * 8;
    const T* pb = kBT ? Bs + ((mi & 1) * 8 + r) * ldb + (mi >> 1) * 8 : Bs + ((mi >> 1) * 8 + r) * ldb + (mi & 1) * 8;
    const int sa = kAT ? 16 * lda : 16, sb = kBT ? 16 * ldb : 16;  // step per k16
    const int nb = kBT ? 16 : 16 * ldb;                           // step per pair of n8 tiles
    for (int ks = 0; ks < kb; ++ks) {
      uint32_t a[4];
      ldsm_x4<kAT>(a, pa + ks * sa);
#pragma unroll
      for (int j = 0; j < NI; j += 2) {
        uint32_t b[4];
        ldsm_x4<kBT>(b, pb + ks * sb + (j / 2) * nb);
        const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
        mma_bf16(acc[j], a, b0);
        mma_bf16(acc[j + 1], a, b1);
      }
    }
  } else {
    auto A = [&](int m, int k) { return kAT ? As[k * lda + m] : As[m * lda + k]; };
    auto B = [&](int k, int n) { return kBT ? Bs[k * ldb + n] : Bs[n * ldb + k]; };
    const int kn = kb * 16;
    for (int k = 0; k < kn; ++k) {
      const float alo = A(g, k), ahi = A(g + 8, k);
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const float b0 = B(k, 8 * j + 2 * q), b1 = B(k, 8 * j + 2 * q + 1);
        acc[j][0] = fmaf(alo, b0, acc[j][0]);
        acc[j][1] = fmaf(alo, b1, acc[j][1]);
        acc[j][2] = fmaf(ahi, b0, acc[j][2]);
        acc[j][3] = fmaf(ahi, b1, acc[j][3]);
      }
    }
  }
}

// ---- cp.async (16 bytes, global -> shared; zero-fill when !valid) and its groups.
MX_DEV void cp_async16(void* dst, const void* src, bool valid) {
#ifdef MX_CPU_EMU
  if (valid) memcpy(dst, src, 16);
  else memset(dst, 0, 16);
#else
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
#endif
}
MX_DEV void cp_async_commit() {
#ifndef MX_CPU_EMU
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
MX_DEV void cp_async_wait_one() {  // all but the most recent group complete
#ifndef MX_CPU_EMU
  asm volatile("cp.async.wait_group 1;\n" ::);
#endif
}
MX_DEV void cp_async_wait_all() {
#ifndef MX_CPU_EMU
  asm volatile("cp.async.wait_group 0;\n" ::);
#endif
}
template <int K>
MX_DEV void cp_async_wait() {  // all but the K most recent groups complete
#ifndef MX_CPU_EMU
  asm volatile("cp.async.wait_group %0;\n" ::"n"(K));
#endif
}

// A CTA's phases 0 .. P-1 through a kStages-buffer cp.async pipeline: issue(p, s) starts the copies of phase p into
// buffer s; compute(p, s) consumes them. The copies of the next kStages − 1 phases are in flight while phase p
// computes (one commit group per phase, empty ones past the end keep the group count uniform).
template <int kStages, class Issue, class Compute>
MX_DEV void cp_async_pipeline(int P, Issue&& issue, Compute&& compute) {
#pragma unroll
  for (int p = 0; p < kStages - 1; ++p) {
    if (p < P) issue(p, p);
    cp_async_commit();
  }
  for (int p = 0; p < P; ++p) {
    const int next = p + kStages - 1;
    if (next < P) issue(next, next % kStages);
    cp_async_commit();
    cp_async_wait<kStages - 1>();
    __syncthreads();
    compute(p, p % kStages);
    __syncthreads();
  }
}

// The same with one CTA barrier per phase: after phase p's barrier (its copies visible, every warp done with phase
// p − 1) the copies of phase p + kStages − 1 go into the buffer of phase p − 1, so kStages − 1 phases are in flight
// while phase p computes.
template <int kStages, class Issue, class Compute>
MX_DEV void cp_async_ring(int P, Issue&& issue, Compute&& compute) {
  static_assert(kStages >= 2, "at least two buffers");
#pragma unroll
  for (int p = 0; p < kStages - 1; ++p) {
    if (p < P) issue(p, p);
    cp_async_commit();
  }
  for (int p = 0; p < P; ++p) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    const int next = p + kStages - 1;
    if (next < P) issue(next, next % kStages);
    cp_async_commit();
    compute(p, p % kStages);
  }
}

// Raw asynchronous copy of an R × C tile (C · sizeof(S) a multiple of 16 bytes) of a global row-major source
// into dst[r][c] (row stride ldd, same element type); rows r >= rvalid are zero-filled (not read).
template <typename S>
MX_DEV void copy_async(S* dst, int ldd, const S* src, int64_t lds, int R, int C, int rvalid) {
  constexpr int E = 16 / int(sizeof(S));
  const int cv = C / E, total = R * cv;
  for (int v = int(threadIdx.x); v < total; v += int(blockDim.x)) {
    const int r = v / cv, c = (v % cv) * E;
    const bool ok = r < rvalid;
    cp_async16(dst + r * ldd + c, src + (ok ? int64_t(r) * lds + c : 0), ok);
  }
}

// The same for a tile of C columns (compile time) copied by the NT threads of the CTA: thread i copies the 16-byte
// column vector i % CV of rows i / CV, i / CV + NT / CV, ... (CV vectors per row), with one pointer step per row
// instead of an index division and a 64-bit product per vector.
template <int C, int NT, typename S>
MX_DEV void copy_tile_async(S* dst, int ldd, const S* src, int64_t lds, int R, int rvalid) {
  constexpr int E = 16 / int(sizeof(S)), CV = C / E, RP = NT / CV;
  static_assert(C % E == 0 && NT % CV == 0, "rows of whole 16-byte vectors, whole rows per pass");
  const int c = (int(threadIdx.x) % CV) * E;
  int r = int(threadIdx.x) / CV;
  S* d = dst + r * ldd + c;
  const S* s = src + int64_t(r) * lds + c;
  const int64_t step = int64_t(RP) * lds;
  for (; r < R; r += RP, d += RP * ldd, s += step) cp_async16(d, r < rvalid ? s : src, r < rvalid);
}

template <int NI>
MX_DEV void zero_acc(float (&acc)[NI][4]) {
#pragma unroll
  for (int j = 0; j < NI; ++j)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[j][r] = 0.f;
}

// ---- element I/O
// 8 consecutive elements of a global row (16-byte aligned) as floats.
MX_DEV void load8(const bf16* p, float (&v)[8]) {
#ifdef MX_CPU_EMU
  for (int i = 0; i < 8; ++i) v[i] = bf16_to_float(p[i].bits);
#else
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = __uint_as_float(w[i] << 16);
    v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
#endif
}
MX_DEV void load8(const float* p, float (&v)[8]) {
#ifdef MX_CPU_EMU
  for (int i = 0; i < 8; ++i) v[i] = p[i];
#else
  const float4 a = __ldg(reinterpret_cast<const float4*>(p)), b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
#endif
}

// 8 floats into shared memory at p (16-byte aligned), converted to T.
MX_DEV void store8(bf16* p, const float (&v)[8]) {
#ifdef MX_CPU_EMU
  for (int i = 0; i < 8; ++i) p[i].bits = float_to_bf16(v[i]);
#else
  uint4 u;
  u.x = pack_bf16(v[0], v[1]);
  u.y = pack_bf16(v[2], v[3]);
  u.z = pack_bf16(v[4], v[5]);
  u.w = pack_bf16(v[6], v[7]);
  *reinterpret_cast<uint4*>(p) = u;
#endif
}
MX_DEV void store8(float* p, const float (&v)[8]) {
#ifdef MX_CPU_EMU
  for (int i = 0; i < 8; ++i) p[i] = v[i];
#else
  reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
#endif
}
MX_DEV void store1(bf16* p, float v) { p->bits = float_to_bf16(v); }
MX_DEV void store1(float* p, float v) { *p = v; }

// Two consecutive elements (global, 4- or 8-byte aligned) as floats / stored from floats.
MX_DEV void load2(const bf16* p, float& a, float& b) {
  const uint32_t u = lds32(p);
  a = bf16_lo(u), b = bf16_hi(u);
}
MX_DEV void load2(const float* p, float& a, float& b) {
#ifdef MX_CPU_EMU
  a = p[0], b = p[1];
#else
  const float2 v = *reinterpret_cast<const float2*>(p);
  a = v.x, b = v.y;
#endif
}
MX_DEV void store2(bf16* p, float a, float b) {
#ifdef MX_CPU_EMU
  p[0].bits = float_to_bf16(a), p[1].bits = float_to_bf16(b);
#else
  *reinterpret_cast<uint32_t*>(p) = pack_bf16(a, b);
#endif
}
MX_DEV void store2(float* p, float a, float b) {
#ifdef MX_CPU_EMU
  p[0] = a, p[1] = b;
#else
  *reinterpret_cast<float2*>(p) = make_float2(a, b);
#endif
}

// The column factors beta·f[2q + 8hp + k] (hp, k in {0, 1}) of this lane's A-fragment columns, f at the step's
// first column: the off-diagonal decay of the chunk scans, one multiply per element.
MX_DEV void column_factors(float (&cf)[2][2], const float* f, float beta) {
  const int q = lane_id() & 3;
#pragma unroll
  for (int hp = 0; hp < 2; ++hp) {
    float c0, c1;
    load2(f + 2 * q + 8 * hp, c0, c1);
    cf[hp][0] = beta * c0, cf[hp][1] = beta * c1;
  }
}

// out[t][p] = acc + D·skip[t][p] for a warp's 16 × 64 accumulator tile (this lane's rows tr[0], tr[1], those < rv):
// skip bf16 in shared memory (row stride ld), out in global memory (row stride ol).
template <typename T>
MX_DEV void store_plus_skip(T* out, int64_t ol, const float (&acc)[8][4], const int (&tr)[2], int rv,
                            const bf16* skip, int ld, float D) {
  const int q = lane_id() & 3;
#pragma unroll
  for (int jj = 0; jj < 8; ++jj)
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int t = tr[u], p = 8 * jj + 2 * q;
      if (t < rv) {
        float s0, s1;
        load2(skip + t * ld + p, s0, s1);
        store2(out + t * ol + p, fmaf(D, s0, acc[jj][2 * u]), fmaf(D, s1, acc[jj][2 * u + 1]));
      }
    }
}

// Raw 16-byte-aligned vectors of 8 source elements, loaded before any is used (loads in flight together).
template <typename Src>
struct Raw;
template <>
struct Raw<bf16> {
  uint32_t w[4];
  MX_DEV void load(const bf16* p) {
#ifdef MX_CPU_EMU
    memcpy(w, p, 16);
#else
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
    w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
#endif
  }
  MX_DEV void unpack(float (&v)[8]) const {
#pragma unroll
    for (int i = 0; i < 4; ++i) v[2 * i] = bf16_lo(w[i]), v[2 * i + 1] = bf16_hi(w[i]);
  }
  MX_DEV void store(bf16* p) const {  // 16-byte aligned
#ifdef MX_CPU_EMU
    memcpy(p, w, 16);
#else
    *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
#endif
  }
};
template <>
struct Raw<float> {
  float f[8];
  MX_DEV void load(const float* p) { load8(p, f); }
  MX_DEV void unpack(float (&v)[8]) const {
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = f[i];
  }
};

// Cooperative copy of an R × C tile (C a multiple of 8) of a global row-major source (row stride lds, unit
// column stride) into shared memory: dst[r][c] (kTrans = false) or dst[c][r] (kTrans = true: scalar stores,
// slow; unused by the kernels now that warp_mma reads transposed layouts), row stride ldd.
// Element (r, c) becomes f(r, c, value); rows r >= rvalid are zero (and not read). Each thread first issues
// the loads of up to kV vectors (16 registers of raw data), then converts and stores them.
template <bool kTrans, typename Dst, typename Src, class F>
MX_DEV void stage(Dst* dst, int ldd, const Src* src, int64_t lds, int R, int C, int rvalid, F f) {
  constexpr int kV = sizeof(Src) == 2 ? 4 : 2;
  const int c8n = C >> 3, total = R * c8n, nt = int(blockDim.x);
  auto decode = [&](int v, int& r, int& c) {
    if (kTrans) {
      r = v % R;
      c = (v / R) << 3;
    } else {
      r = v / c8n;
      c = (v % c8n) << 3;
    }
  };
  for (int v0 = int(threadIdx.x); v0 < total; v0 += kV * nt) {
    Raw<Src> raw[kV];
#pragma unroll
    for (int u = 0; u < kV; ++u) {
      const int v = v0 + u * nt;
      int r, c;
      decode(v, r, c);
      if (v < total && r < rvalid) raw[u].load(src + int64_t(r) * lds + c);
    }
#pragma unroll
    for (int u = 0; u < kV; ++u) {
      const int v = v0 + u * nt;
      if (v >= total) break;
      int r, c;
      decode(v, r, c);
      float e[8];
      if (r < rvalid) {
        raw[u].unpack(e);
#pragma unroll
        for (int i = 0; i < 8; ++i) e[i] = f(r, c + i, e[i]);
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) e[i] = 0.f;
      }
      if (kTrans) {
#pragma unroll
        for (int i = 0; i < 8; ++i) store1(dst + (c + i) * ldd + r, e[i]);
      } else {
        store8(dst + r * ldd + c, e);
      }
    }
  }
}

struct Identity {
  MX_DEV float operator()(int, int, float v) const { return v; }
};

// exp2 of the double-float difference (hi_t + lo_t) − (hi_s + lo_s), clamped to <= 0.
MX_DEV float dexp2(float hi_t, float lo_t, float hi_s, float lo_s) {
  return fast_exp2(fminf((hi_t - hi_s) + (lo_t - lo_s), 0.f));
}

template <int V>
struct IntTag {
  static constexpr int value = V;
};

// Calls f(T{}, IntTag<N>{}) for the io type and d_state; false when N is unsupported.
template <typename F>
bool dispatch(IoType io, int64_t n, F&& f) {
  auto with_io = [&](auto tag) {
    switch (n) {
      case 64: f(tag, IntTag<64>{}); return true;
      case 128: f(tag, IntTag<128>{}); return true;
      case 256: f(tag, IntTag<256>{}); return true;
      default: return false;
    }
  };
  return io == IoType::BF16 ? with_io(bf16{}) : with_io(float{});
}

inline Dims make_dims(const SsdArgs& a) {
  Dims d;
  d.B = a.batch, d.L = a.len, d.H = a.heads, d.G = a.groups, d.N = a.dstate;
  d.hpg = a.heads / a.groups;
  d.nc = ceil_div(a.len, kQ);
  d.Lp = d.nc * kQ;
  return d;
}

// Workspace layout shared by the forward and the backward (floats, each region 16-byte aligned):
// dtv, cs2, csl (B, H, Lp); S (B, nc, H, P, N), left out (null) with with_S = false; CB (B, nc, G, Q, Q). The
// chunk-local cumsum (log2 units) is the double-float cs2 + csl (cs2 = its fp32 rounding, csl the rest), so that
// differences of nearby positions stay accurate when the cumsum is large: exp2 of (cs2_t − cs2_s) + (csl_t − csl_s).
struct FwdWs {
  float *dtv, *cs2, *csl, *S, *cb;
  size_t floats;
};
inline size_t align4(size_t n) { return (n + 3) & ~size_t(3); }
inline FwdWs fwd_ws(const Dims& d, void* base, bool with_S = true) {
  FwdWs w;
  float* p = static_cast<float*>(base);
  size_t off = 0;
  auto take = [&](size_t n) {
    float* r = p ? p + off : nullptr;
    off += align4(n);
    return r;
  };
  w.dtv = take(size_t(d.B * d.H * d.Lp));
  w.cs2 = take(size_t(d.B * d.H * d.Lp));
  w.csl = take(size_t(d.B * d.H * d.Lp));
  w.S = with_S ? take(size_t(d.B * d.nc * d.H * kP * d.N)) : nullptr;
  w.cb = take(size_t(d.B * d.nc * d.G) * kQ * kQ);
  w.floats = off;
  return w;
}

// S_in in bf16 (bf16 I/O: the B operand of the chunk scans), (B, nc, H, P, N).
inline size_t s16_bytes(const Dims& d) { return size_t(d.B * d.nc * d.H) * kP * d.N * sizeof(uint16_t); }

// The forward's intermediates that the backward reuses (SsdFwdOut::saved): fwd_ws's regions, with S = S_in for fp32
// I/O; for bf16 I/O without S (the fp32 chunk states stay in the forward's workspace) and followed by S_in in bf16
// (saved_s16).
inline FwdWs saved_ws(const Dims& d, void* base, bool b16) { return fwd_ws(d, base, !b16); }
inline size_t saved_bytes(const Dims& d, bool b16) {
  return saved_ws(d, nullptr, b16).floats * sizeof(float) + (b16 ? s16_bytes(d) : 0);
}
inline bf16* saved_s16(const Dims& d, void* base) {
  return reinterpret_cast<bf16*>(static_cast<float*>(base) + saved_ws(d, nullptr, true).floats);
}

}  // namespace mx::kern::ssd
