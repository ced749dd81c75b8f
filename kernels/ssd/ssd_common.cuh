// Building blocks of the SSD kernels (ssd_fwd.cu, ssd_bwd.cu): warp shuffles and the m16n8k16 tensor-core
// product (with CPU-emulator versions), cooperative staging of global tiles into shared memory, and a warp-level
// tile product that runs on tensor cores for bf16 and in plain fp32 FMAs for fp32.
//
// Accumulator layout (both paths): a warp computes a 16 × (8·NI) tile as acc[NI][4]; lane l (g = l/4, q = l%4)
// holds acc[j][r] = element (row g + 8·(r/2), column 8j + 2q + r%2).
// Shared-memory operand tiles are "K-contiguous": A is stored [m][k] and B is stored [n][k], row stride
// ld_of<T>(K) (K + 8 bf16 or K + 4 floats: a stride ≡ 4 words mod 32, so fragment loads hit 32 distinct banks).
#pragma once
#include <cstdint>
#include <type_traits>

#include "common.cuh"
#include "ssd/ssd.h"

#ifdef MX_CPU_EMU
#include <barrier>
#endif

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

MX_DEV int lane_id() { return int(threadIdx.x) & 31; }
MX_DEV int warp_id() { return int(threadIdx.x) >> 5; }

// ---- CPU emulation of the warp collectives (each lane is an OS thread; a warp meets at a std::barrier).
#ifdef MX_CPU_EMU
namespace emu {
struct WarpBar {
  std::barrier<> b{32};
};
inline WarpBar g_bars[32];
inline uint32_t g_xchg[32][32][8];
inline void wsync() { g_bars[threadIdx.x >> 5].b.arrive_and_wait(); }
}  // namespace emu
#endif

MX_DEV float shfl_xor(float v, int mask) {
#ifdef MX_CPU_EMU
  const int w = warp_id(), l = lane_id();
  memcpy(&emu::g_xchg[w][l][0], &v, 4);
  emu::wsync();
  float r;
  memcpy(&r, &emu::g_xchg[w][l ^ mask][0], 4);
  emu::wsync();
  return r;
#else
  return __shfl_xor_sync(0xffffffffu, v, mask);
#endif
}

MX_DEV double shfl_xor(double v, int mask) {
#ifdef MX_CPU_EMU
  const int w = warp_id(), l = lane_id();
  memcpy(&emu::g_xchg[w][l][0], &v, 8);
  emu::wsync();
  double r;
  memcpy(&r, &emu::g_xchg[w][l ^ mask][0], 8);
  emu::wsync();
  return r;
#else
  return __shfl_xor_sync(0xffffffffu, v, mask);
#endif
}

template <typename V>
MX_DEV V warp_sum(V v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v += shfl_xor(v, m);
  return v;
}

// Two floats as a bf16 pair (lo in the low half: the element with the lower index), round to nearest even.
MX_DEV uint32_t pack_bf16(float lo, float hi) {
#ifdef MX_CPU_EMU
  return uint32_t(float_to_bf16(lo)) | (uint32_t(float_to_bf16(hi)) << 16);
#else
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
#endif
}

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

MX_DEV uint32_t lds32(const bf16* p) {
#ifdef MX_CPU_EMU
  uint32_t u;
  memcpy(&u, p, 4);
  return u;
#else
  return *reinterpret_cast<const uint32_t*>(p);
#endif
}

// acc (16 × 8·NI) += A (16 × 16·kb) · B, with A = As[m][k] (16 rows from As) and B given as Bs[n][k]
// (8·NI rows from Bs), both K-contiguous with strides lda / ldb.
template <typename T, int NI>
MX_DEV void warp_mma(float (&acc)[NI][4], const T* As, int lda, const T* Bs, int ldb, int kb) {
  const int l = lane_id(), g = l >> 2, q = l & 3;
  if constexpr (std::is_same_v<T, bf16>) {
    for (int ks = 0; ks < kb; ++ks) {
      const int k = ks * 16 + 2 * q;
      uint32_t a[4];
      a[0] = lds32(As + g * lda + k);
      a[1] = lds32(As + (g + 8) * lda + k);
      a[2] = lds32(As + g * lda + k + 8);
      a[3] = lds32(As + (g + 8) * lda + k + 8);
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        uint32_t b[2];
        b[0] = lds32(Bs + (8 * j + g) * ldb + k);
        b[1] = lds32(Bs + (8 * j + g) * ldb + k + 8);
        mma_bf16(acc[j], a, b);
      }
    }
  } else {
    const int kn = kb * 16;
    for (int k = 0; k < kn; ++k) {
      const float alo = As[g * lda + k], ahi = As[(g + 8) * lda + k];
#pragma unroll
      for (int j = 0; j < NI; ++j) {
        const float b0 = Bs[(8 * j + 2 * q) * ldb + k], b1 = Bs[(8 * j + 2 * q + 1) * ldb + k];
        acc[j][0] = fmaf(alo, b0, acc[j][0]);
        acc[j][1] = fmaf(alo, b1, acc[j][1]);
        acc[j][2] = fmaf(ahi, b0, acc[j][2]);
        acc[j][3] = fmaf(ahi, b1, acc[j][3]);
      }
    }
  }
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
MX_DEV void load2(const float* p, float& a, float& b) { a = p[0], b = p[1]; }
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

// Cooperative copy of an R × C tile (C a multiple of 8) of a global row-major source (row stride lds, unit
// column stride) into shared memory: dst[r][c] (kTrans = false) or dst[c][r] (kTrans = true), row stride ldd.
// Element (r, c) becomes f(r, c, value); rows r >= rvalid are zero (and not read).
template <bool kTrans, typename Dst, typename Src, class F>
MX_DEV void stage(Dst* dst, int ldd, const Src* src, int64_t lds, int R, int C, int rvalid, F f) {
  const int c8n = C >> 3, total = R * c8n;
  for (int v = int(threadIdx.x); v < total; v += int(blockDim.x)) {
    int r, c;
    if (kTrans) {
      r = v % R;
      c = (v / R) << 3;
    } else {
      r = v / c8n;
      c = (v % c8n) << 3;
    }
    float e[8];
    if (r < rvalid) {
      load8(src + int64_t(r) * lds + c, e);
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

struct Identity {
  MX_DEV float operator()(int, int, float v) const { return v; }
};

MX_DEV float fast_exp2f(float x) { return fast_exp2(x); }

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
// dtv, cs2 (B, H, Lp); S (B, nc, H, P, N); CB (B, nc, G, Q, Q).
struct FwdWs {
  float *dtv, *cs2, *S, *cb;
  size_t floats;
};
inline size_t align4(size_t n) { return (n + 3) & ~size_t(3); }
inline FwdWs fwd_ws(const Dims& d, void* base) {
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
  w.S = take(size_t(d.B * d.nc * d.H * kP * d.N));
  w.cb = take(size_t(d.B * d.nc * d.G) * kQ * kQ);
  w.floats = off;
  return w;
}

}  // namespace mx::kern::ssd
