// Gated group RMSNorm forward (gated_norm.h has the math). Grid (rows, groups), 128 threads: pass 1 forms
// g = y·silu(z) and its sum of squares (reduced through shared memory), pass 2 re-reads y and z (cache-resident)
// and writes g·rstd·w.
#include "common.cuh"
#include "ssd/gated_norm.h"

namespace mx::kern::gnorm {
namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void __launch_bounds__(kThreads) gated_norm_kernel(GatedNormArgs a) {
  float* red = reinterpret_cast<float*>(dynamic_smem());
  const int64_t row = blockIdx.x, gs = a.dim / a.groups, c0 = int64_t(blockIdx.y) * gs;
  const T* y = static_cast<const T*>(a.y) + row * a.y_srow + c0;
  const T* z = static_cast<const T*>(a.z) + row * a.z_srow + c0;
  T* out = static_cast<T*>(a.out) + row * a.out_srow + c0;
  auto gate = [&](int64_t i) {
    const float zv = load_f(z, i);
    return load_f(y, i) * zv * sigmoid_f(zv);
  };
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < gs; i += kThreads) {
    const float g = gate(i);
    ss = fmaf(g, g, ss);
  }
  red[threadIdx.x] = ss;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if (int(threadIdx.x) < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
  const float r = rsqrtf(red[0] / float(gs) + a.eps);
  for (int64_t i = threadIdx.x; i < gs; i += kThreads) store_f(out, i, gate(i) * r * a.w[c0 + i]);
}

}  // namespace
}  // namespace mx::kern::gnorm

namespace mx::kern {

cudaError_t gated_group_rmsnorm_fwd(const GatedNormArgs& a, cudaStream_t stream) {
  if (a.rows < 0 || a.dim < 1 || a.groups < 1 || a.dim % a.groups != 0 || a.groups > 65535 || !a.y || !a.z ||
      !a.w || !a.out)
    return cudaErrorInvalidValue;
  if (a.rows == 0) return cudaSuccess;
  const dim3 grid(unsigned(a.rows), unsigned(a.groups));
  if (a.io == IoType::BF16) {
    MX_LAUNCH(gnorm::gated_norm_kernel<bf16>, grid, dim3(gnorm::kThreads), gnorm::kThreads * sizeof(float), stream, a);
  } else {
    MX_LAUNCH(gnorm::gated_norm_kernel<float>, grid, dim3(gnorm::kThreads), gnorm::kThreads * sizeof(float), stream, a);
  }
  return cudaGetLastError();
}

}  // namespace mx::kern
