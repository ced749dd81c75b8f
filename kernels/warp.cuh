// Warp collectives (lane / warp ids, __syncwarp, shuffles; the SSD kernels use them), with CPU-emulator versions: in
// kernels/dev/cuda_emu.h each lane is an OS thread and a warp meets at a std::barrier (whole warps only: the CTA
// size must be a multiple of 32 where these are used).
#pragma once
#include <cstdint>
#include <cstring>

#include "common.cuh"

#ifdef MX_CPU_EMU
#include <barrier>
#endif

namespace mx::kern {

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
inline const void* g_xptr[32][32];
inline void wsync() { g_bars[threadIdx.x >> 5].b.arrive_and_wait(); }
// A shuffle: every lane of the warp publishes v and receives the value of lane `src`.
template <typename V>
V exchange(V v, int src) {
  const int w = warp_id(), l = lane_id();
  memcpy(&g_xchg[w][l][0], &v, sizeof(V));
  wsync();
  V r;
  memcpy(&r, &g_xchg[w][src][0], sizeof(V));
  wsync();
  return r;
}
}  // namespace emu
#endif

// Orders shared-memory accesses among the lanes of a warp.
MX_DEV void warp_sync() {
#ifdef MX_CPU_EMU
  emu::wsync();
#else
  __syncwarp();
#endif
}

// The value of lane ^ mask; V is float or double.
template <typename V>
MX_DEV V shfl_xor(V v, int mask) {
#ifdef MX_CPU_EMU
  return emu::exchange(v, lane_id() ^ mask);
#else
  return __shfl_xor_sync(0xffffffffu, v, mask);
#endif
}

// The value of lane − delta (own value for lanes < delta); V is float or double.
template <typename V>
MX_DEV V shfl_up(V v, int delta) {
#ifdef MX_CPU_EMU
  const int l = lane_id();
  return emu::exchange(v, l >= delta ? l - delta : l);
#else
  return __shfl_up_sync(0xffffffffu, v, delta);
#endif
}

template <typename V>
MX_DEV V warp_sum(V v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v += shfl_xor(v, m);
  return v;
}

}  // namespace mx::kern
