// Fused residual add + RMSNorm forward (norm.h has the math). One CTA of kThreads per row: pass 1 forms
// r = residual + x in fp32 (stored when residual_out is given) and the sum of squares, reduced over the CTA
// through shared memory; pass 2 re-reads the row (cache-resident) and writes r·rstd·w.
#include "common.cuh"
#include "norm/norm.h"

namespace mx::kern::norm {
namespace {

constexpr int kThreads = 256;

template <typename XT, typename YT>
__global__ void __launch_bounds__(kThreads) add_rmsnorm_kernel(AddNormArgs a) {
  float* s_red = reinterpret_cast<float*>(dynamic_smem());  // (kThreads)
  const int64_t row = blockIdx.x, D = a.dim;
  const XT* x = static_cast<const XT*>(a.x) + row * a.x_srow;
  const float* rin = a.residual_in ? a.residual_in + row * D : nullptr;
  float* rout = a.residual_out ? a.residual_out + row * D : nullptr;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += kThreads) {
    float r = load_f(x, i);
    if (rin) r += rin[i];
    if (rout) rout[i] = r;
    ss = fmaf(r, r, ss);
  }
  s_red[threadIdx.x] = ss;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (int(threadIdx.x) < w) s_red[threadIdx.x] += s_red[threadIdx.x + w];
    __syncthreads();
  }
  const float rstd = rsqrtf(s_red[0] / float(D) + a.eps);
  YT* y = static_cast<YT*>(a.y) + row * D;
  for (int64_t i = threadIdx.x; i < D; i += kThreads) {
    // Same thread, same element as pass 1: reading residual_out back is safe even when it aliases residual_in.
    const float r = rout ? rout[i] : (rin ? rin[i] + load_f(x, i) : load_f(x, i));
    store_f(y, i, r * rstd * a.weight[i]);
  }
}

template <typename XT, typename YT>
cudaError_t launch(const AddNormArgs& a, cudaStream_t stream) {
  auto k = add_rmsnorm_kernel<XT, YT>;
  MX_LAUNCH(k, dim3(unsigned(a.rows)), dim3(kThreads), sizeof(float) * kThreads, stream, a);
  return cudaGetLastError();
}

}  // namespace
}  // namespace mx::kern::norm

namespace mx::kern {

cudaError_t add_rmsnorm_fwd(const AddNormArgs& a, cudaStream_t stream) {
  if (!a.x || !a.weight || !a.y || a.rows < 0 || a.dim < 1) return cudaErrorInvalidValue;
  if (a.rows == 0) return cudaSuccess;
  const bool xb = a.x_io == IoType::BF16, yb = a.y_io == IoType::BF16;
  if (xb && yb) return norm::launch<bf16, bf16>(a, stream);
  if (xb) return norm::launch<bf16, float>(a, stream);
  if (yb) return norm::launch<float, bf16>(a, stream);
  return norm::launch<float, float>(a, stream);
}

}  // namespace mx::kern
