// Helpers shared by the CUDA kernels in kernels/ (torch-free): element I/O for the fp32 / bf16 activation
// types, the fast exp2 used inside the scans, accurate softplus / sigmoid for the per-token terms, dynamic
// shared memory and the launch macro. With MX_CPU_EMU defined the same sources compile as plain C++ against
// kernels/dev/cuda_emu.h (a CPU emulator for logic checks on machines without a GPU).
#pragma once
#include <cstdint>
#include <cstring>

#ifdef MX_CPU_EMU
#include "dev/cuda_emu.h"
#define MX_LAUNCH(kernel, grid, block, smem, stream, ...) \
  mx::emu::launch(grid, block, smem, [&] { kernel(__VA_ARGS__); })
#else
#include <cuda_runtime.h>
#define MX_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)
#endif

#define MX_HD __host__ __device__ __forceinline__
#define MX_DEV __device__ __forceinline__

namespace mx::kern {

// Activation element types. bf16 is stored as its 16 raw bits (no cuda_bf16.h: the emulator builds these
// sources with g++ too); conversions round to nearest even, as torch does.
struct bf16 {
  uint16_t bits;
};

// 32-bit words <-> float.
MX_HD float f_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
MX_HD uint32_t bits_from_f(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

MX_HD float bf16_to_float(uint16_t b) { return f_from_bits(static_cast<uint32_t>(b) << 16); }
MX_HD uint16_t float_to_bf16(float f) {
  uint32_t u = bits_from_f(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

template <typename T>
MX_HD float load_f(const T* p, int64_t i);
template <>
MX_HD float load_f<float>(const float* p, int64_t i) {
  return p[i];
}
template <>
MX_HD float load_f<bf16>(const bf16* p, int64_t i) {
  return bf16_to_float(p[i].bits);
}
template <typename T>
MX_HD void store_f(T* p, int64_t i, float v);
template <>
MX_HD void store_f<float>(float* p, int64_t i, float v) {
  p[i] = v;
}
template <>
MX_HD void store_f<bf16>(bf16* p, int64_t i, float v) {
  p[i].bits = float_to_bf16(v);
}

// Two floats as a bf16 pair (lo in the low half: the element with the lower index), round to nearest even (NaN
// stays NaN); one F2FP instruction on the GPU.
MX_DEV uint32_t pack_bf16(float lo, float hi) {
#ifdef MX_CPU_EMU
  return uint32_t(float_to_bf16(lo)) | (uint32_t(float_to_bf16(hi)) << 16);
#else
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
#endif
}

// 16-byte loads / stores of four words (p must be 16-byte aligned).
MX_DEV void ld_u32x4(const void* p, uint32_t* w) {
#ifdef MX_CPU_EMU
  memcpy(w, p, 16);
#else
  const uint4 q = *reinterpret_cast<const uint4*>(p);
  w[0] = q.x, w[1] = q.y, w[2] = q.z, w[3] = q.w;
#endif
}
MX_DEV void st_u32x4(void* p, const uint32_t* w) {
#ifdef MX_CPU_EMU
  memcpy(p, w, 16);
#else
  *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
#endif
}

// Raw element -> float (the prefetched tiles keep raw elements, converted only when staged).
MX_HD float to_f(float v) { return v; }
MX_HD float to_f(bf16 v) { return bf16_to_float(v.bits); }

constexpr float kLog2e = 1.4426950408889634f;

// 2^x on the SFU (MUFU.EX2, ~2 ulp; flushes denormal results to 0). The scans call it with x = Δ·A·log2(e).
MX_DEV float fast_exp2(float x) {
#ifdef MX_CPU_EMU
  return exp2f(x);
#else
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#endif
}

// softplus with PyTorch's threshold (x > 20: identity), accurate for very negative x (Δ down to 1e-4 and
// below needs log1p, not log(1 + e^x)): max(x, 0) + log1p(w), w = e^-|x| in (0, 1], with
// log1p(w) = 2·atanh(s), s = w / (2 + w) <= 1/3, as an odd series to s^13 (truncation < 2e-8).
// Measured max relative error 2.6e-7 over [-30, 25] (log1pf(expf(x)): 1.2e-7) at half the instructions.
// With `sig`, also σ(x) = d softplus / dx from the same exponential.
// The series part: max(x, 0) + 2·atanh(w / (2 + w)) for w = e^-|x| (x > 20: x).
MX_DEV float softplus_of_w(float x, float w) {
  const float s = __fdividef(w, 2.f + w), s2 = s * s;
  float p = 1.f / 13;
  p = fmaf(p, s2, 1.f / 11);
  p = fmaf(p, s2, 1.f / 9);
  p = fmaf(p, s2, 1.f / 7);
  p = fmaf(p, s2, 1.f / 5);
  p = fmaf(p, s2, 1.f / 3);
  p = fmaf(p, s2, 1.f);
  return x > 20.f ? x : fmaxf(x, 0.f) + 2.f * s * p;
}
MX_DEV float softplus_series_f(float x, float* sig = nullptr) {
  const float w = expf(-fabsf(x));
  if (sig) *sig = x > 20.f ? 1.f : __fdividef(x >= 0.f ? 1.f : w, 1.f + w);
  return softplus_of_w(x, w);
}
// The same on the SFU's exponential (ex2.approx of -|x|·log2 e): about 1e-6 relative for |x| <= 20, at a third
// of the instructions. The forward scans use it; the backward keeps softplus_series_f.
MX_DEV float softplus_fast_f(float x) { return softplus_of_w(x, fast_exp2(-fabsf(x) * kLog2e)); }
// x·σ(x) on the SFU's exponential (-> -0 when e^-x overflows).
MX_DEV float silu_fast_f(float x) { return __fdividef(x, 1.f + fast_exp2(-x * kLog2e)); }
MX_DEV float softplus_f(float x) { return x > 20.f ? x : log1pf(expf(x)); }  // 1.2e-7, slower
MX_DEV float sigmoid_f(float x) { return 1.f / (1.f + expf(-x)); }
// σ(x) and x·σ(x) with an accurate exp and a fast (2 ulp) division (-> 0 when e^-x overflows).
MX_DEV float sigmoid_fast_f(float x) { return __fdividef(1.f, 1.f + expf(-x)); }
MX_DEV float silu_f(float x) { return __fdividef(x, 1.f + expf(-x)); }

// Dynamic shared memory of the running kernel, 16-byte aligned.
#ifdef MX_CPU_EMU
MX_DEV unsigned char* dynamic_smem() { return mx::emu::tl_smem; }
#else
MX_DEV unsigned char* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char mx_dynamic_smem[];
  return mx_dynamic_smem;
}
#endif

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Multiprocessors of the current device (cached per process; the kernels are tuned for one GPU type).
inline int device_sm_count() {
  static int n = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
      return 132;
    return v > 0 ? v : 132;
  }();
  return n;
}

}  // namespace mx::kern
