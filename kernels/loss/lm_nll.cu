// Fused LM-head cross entropy (lm_nll.h has the math). One CTA of kThreads per row, one pass over the row:
// each thread keeps a running (max m, Σ exp(x − m)) in fp32 over its elements (16-byte vector loads over the
// row's 16-byte-aligned middle, two in flight per thread; scalar loads for the unaligned head and the tail),
// rescaling its sum when the max grows; the CTA combines the pairs through shared memory (no shuffles, so the
// CPU emulator runs it too) and thread 0 writes (double)m + log((double)Σ) − (double)x[target]. The
// exponentials use the SFU's exp2 on (x − m)·log2(e): x − m is exact or rounded once, so the error of a term
// does not grow with the logits' magnitude.
#include <cmath>
#include <limits>

#include "common.cuh"
#include "loss/lm_nll.h"

namespace mx::kern::loss {
namespace {

constexpr int kThreads = 256;

struct alignas(16) Raw16 {
  uint32_t w[4];
};

MX_DEV float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// 16 raw bytes -> N floats.
template <typename T>
struct Pack;
template <>
struct Pack<float> {
  static constexpr int N = 4;
  MX_DEV static void unpack(const Raw16& r, float* f) {
#pragma unroll
    for (int i = 0; i < 4; ++i) f[i] = bits_to_float(r.w[i]);
  }
};
template <>
struct Pack<bf16> {
  static constexpr int N = 8;
  MX_DEV static void unpack(const Raw16& r, float* f) {  // little-endian: the low half is the first element
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[2 * i] = bits_to_float(r.w[i] << 16);
      f[2 * i + 1] = bits_to_float(r.w[i] & 0xffff0000u);
    }
  }
};

// exp(x − ref) for the sums; ref = 0 while the max is −inf (no finite element yet), so that −inf elements add
// 0 and NaN / +inf elements make the sum NaN, as the ATen expression does.
MX_DEV float exp_from(float x, float ref) { return fast_exp2((x - ref) * kLog2e); }
MX_DEV float ref_of(float m) { return m == -INFINITY ? 0.f : m; }

// Running max and Σ exp(x − max) of one thread.
struct Acc {
  float m = -INFINITY, s = 0.f;
  template <int K>
  MX_DEV void add(const float* x) {
    float cm = x[0];
#pragma unroll
    for (int i = 1; i < K; ++i) cm = fmaxf(cm, x[i]);  // ignores NaN; the sum below catches it
    if (cm > m) {
      s *= exp_from(m, cm);
      m = cm;
    }
    const float ref = ref_of(m);
    float e[K];
#pragma unroll
    for (int i = 0; i < K; ++i) e[i] = exp_from(x[i], ref);
#pragma unroll
    for (int w = 1; w < K; w *= 2)  // pairwise within the vector
#pragma unroll
      for (int i = 0; i + w < K; i += 2 * w) e[i] += e[i + w];
    s += e[0];
  }
};

// (m, s) <- the pair of the union of both element sets.
MX_DEV void combine(float& m, float& s, float m2, float s2) {
  const float M = fmaxf(m, m2), ref = ref_of(M);
  s = s * exp_from(m, ref) + s2 * exp_from(m2, ref);
  m = M;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) lm_nll_kernel(LmNllArgs a) {
  float* s_m = reinterpret_cast<float*>(dynamic_smem());  // (kThreads)
  float* s_s = s_m + kThreads;                            // (kThreads)
  const int tid = threadIdx.x;
  const int64_t row = blockIdx.x, V = a.vocab;
  const int64_t g = row / a.group_rows, j = row - g * a.group_rows;
  const T* x = static_cast<const T*>(a.logits) + g * a.logits_sg + j * a.logits_sr;

  int64_t target = -1;
  float picked = 0.f;
  if (tid == 0) {  // issued first so that its latency hides behind the row
    target = a.targets[g * a.targets_sg + j * a.targets_sr];
    if (target >= 0 && target < V) picked = load_f(x, target);
  }

  constexpr int N = Pack<T>::N;
  const int64_t to_aligned = static_cast<int64_t>((16 - (reinterpret_cast<uintptr_t>(x) & 15)) & 15) /
                             static_cast<int64_t>(sizeof(T));
  const int64_t head = to_aligned < V ? to_aligned : V;
  const int64_t nvec = (V - head) / N, tail = head + nvec * N;
  Acc acc;
  for (int64_t i = tid; i < head; i += kThreads) {
    const float v = load_f(x, i);
    acc.add<1>(&v);
  }
  const Raw16* xv = reinterpret_cast<const Raw16*>(x + head);
  int64_t i = tid;
  for (; i + kThreads < nvec; i += 2 * kThreads) {
    const Raw16 r0 = xv[i], r1 = xv[i + kThreads];
    float f[N];
    Pack<T>::unpack(r0, f);
    acc.add<N>(f);
    Pack<T>::unpack(r1, f);
    acc.add<N>(f);
  }
  if (i < nvec) {
    float f[N];
    Pack<T>::unpack(xv[i], f);
    acc.add<N>(f);
  }
  for (int64_t k = tail + tid; k < V; k += kThreads) {
    const float v = load_f(x, k);
    acc.add<1>(&v);
  }

  s_m[tid] = acc.m;
  s_s[tid] = acc.s;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (tid < w) {
      float m = s_m[tid], s = s_s[tid];
      combine(m, s, s_m[tid + w], s_s[tid + w]);
      s_m[tid] = m;
      s_s[tid] = s;
    }
    __syncthreads();
  }
  if (tid == 0) {
    const double nll = target >= 0 && target < V
                           ? static_cast<double>(s_m[0]) + log(static_cast<double>(s_s[0])) - static_cast<double>(picked)
                           : std::numeric_limits<double>::quiet_NaN();
    a.nll[g * a.nll_sg + j * a.nll_sr] = nll;
  }
}

template <typename T>
cudaError_t launch(const LmNllArgs& a, int64_t rows, cudaStream_t stream) {
  auto k = lm_nll_kernel<T>;
  MX_LAUNCH(k, dim3(unsigned(rows)), dim3(kThreads), 2 * sizeof(float) * kThreads, stream, a);
  return cudaGetLastError();
}

}  // namespace
}  // namespace mx::kern::loss

namespace mx::kern {

cudaError_t lm_nll_fwd(const LmNllArgs& a, cudaStream_t stream) {
  if (!a.logits || !a.targets || !a.nll || a.groups < 0 || a.group_rows < 0 || a.vocab < 1)
    return cudaErrorInvalidValue;
  if (a.groups == 0 || a.group_rows == 0) return cudaSuccess;
  if (a.groups > INT32_MAX / a.group_rows) return cudaErrorInvalidValue;  // one CTA per row: grid.x < 2^31
  const size_t es = a.io == IoType::BF16 ? 2 : 4;
  if (reinterpret_cast<uintptr_t>(a.logits) % es != 0) return cudaErrorInvalidValue;  // element-aligned rows
  const int64_t rows = a.groups * a.group_rows;
  return a.io == IoType::BF16 ? loss::launch<bf16>(a, rows, stream) : loss::launch<float>(a, rows, stream);
}

}  // namespace mx::kern
