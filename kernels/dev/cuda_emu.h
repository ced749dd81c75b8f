// A tiny CPU emulator of the CUDA subset the kernels in kernels/ use, so their logic (indexing, tiling,
// barriers, atomics) can be checked on a machine with no GPU: `g++ -std=c++20 -DMX_CPU_EMU -x c++ foo.cu`.
// Each CTA runs as blockDim.x std::threads sharing one dynamic shared-memory buffer; __syncthreads() is a
// std::barrier. It knows nothing of warps: the kernels must not rely on warp-synchronous behaviour or use
// shuffles (they use shared memory and barriers only). Atomics go through one mutex. CTAs run one at a time.
// It is slow (an OS thread per CUDA thread) and meant for small shapes only. Never part of the library.
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3_ {
  unsigned x = 0, y = 0, z = 0;
};
struct float2 {
  float x, y;
};
struct float4 {
  float x, y, z, w;
};
inline float2 make_float2(float a, float b) { return {a, b}; }
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }

using cudaStream_t = void*;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorLaunchFailure = 4 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
inline const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }

namespace mx::emu {
inline thread_local uint3_ tl_thread, tl_block;
inline thread_local dim3 tl_block_dim, tl_grid_dim;
inline thread_local unsigned char* tl_smem = nullptr;
inline thread_local std::barrier<>* tl_barrier = nullptr;
inline std::mutex& atomic_mutex() {
  static std::mutex m;
  return m;
}
inline int& sm_count() {
  static int n = 4;  // pretend a small GPU so that the time-segment path is exercised
  return n;
}

// Runs body() for every thread of every CTA of the grid.
template <typename F>
void launch(dim3 grid, dim3 block, size_t smem_bytes, F&& body) {
  const unsigned nthreads = block.x * block.y * block.z;
  std::vector<unsigned char> smem(std::max<size_t>(smem_bytes, 16));
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        // Poison shared memory so that reads of never-written slots show up as NaNs.
        std::fill(smem.begin(), smem.end(), static_cast<unsigned char>(0xFF));
        std::barrier<> bar(nthreads);
        std::vector<std::thread> threads;
        threads.reserve(nthreads);
        for (unsigned t = 0; t < nthreads; ++t)
          threads.emplace_back([&, t] {
            tl_thread = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            tl_block = {bx, by, bz};
            tl_block_dim = block;
            tl_grid_dim = grid;
            tl_smem = smem.data();
            tl_barrier = &bar;
            body();
          });
        for (auto& th : threads) th.join();
      }
}
}  // namespace mx::emu

#define threadIdx (mx::emu::tl_thread)
#define blockIdx (mx::emu::tl_block)
#define blockDim (mx::emu::tl_block_dim)
#define gridDim (mx::emu::tl_grid_dim)

inline void __syncthreads() { mx::emu::tl_barrier->arrive_and_wait(); }

inline float atomicAdd(float* p, float v) {
  std::lock_guard<std::mutex> g(mx::emu::atomic_mutex());
  const float old = *p;
  *p = old + v;
  return old;
}
inline double atomicAdd(double* p, double v) {
  std::lock_guard<std::mutex> g(mx::emu::atomic_mutex());
  const double old = *p;
  *p = old + v;
  return old;
}
inline float4 atomicAdd(float4* p, float4 v) {
  std::lock_guard<std::mutex> g(mx::emu::atomic_mutex());
  const float4 old = *p;
  *p = {old.x + v.x, old.y + v.y, old.z + v.z, old.w + v.w};
  return old;
}

inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return std::exp(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }

inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrMultiProcessorCount ? mx::emu::sm_count() : 227 * 1024;
  return cudaSuccess;
}
template <typename K>
inline cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int) {
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t = nullptr) {
  std::memset(p, v, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemset(void* p, int v, size_t n) { return cudaMemsetAsync(p, v, n); }
// Streams and events: the emulator runs every launch to completion in order, so forks and joins are no-ops.
using cudaEvent_t = void*;
constexpr unsigned cudaStreamNonBlocking = 1, cudaEventDisableTiming = 2;
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = nullptr;
  return cudaSuccess;
}
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = nullptr;
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t = nullptr) { return cudaSuccess; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned = 0) { return cudaSuccess; }
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) {
  std::memcpy(d, s, n);
  return cudaSuccess;
}
inline cudaError_t cudaMalloc(void** p, size_t n) {
  *p = std::malloc(n);
  return *p ? cudaSuccess : cudaErrorInvalidValue;
}
inline cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
