// CPU reference implementations of the ops in include/mambaextend/ops.h: plain loops over contiguous
// tensors, computing in float64 when the main input is float64 and in float32 otherwise. They are what the
// CPU model runs and what the CUDA kernels are tested against. Arguments are validated by src/ops/.
#pragma once
#include <ATen/core/Tensor.h>

namespace mx::ref {

at::Tensor causal_conv1d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::Tensor& state);

at::Tensor selective_scan(const at::Tensor& u, const at::Tensor& delta_raw, const at::Tensor& dt_bias,
                          const at::Tensor& dt_scale, const at::Tensor& A, const at::Tensor& Bm,
                          const at::Tensor& Cm, const at::Tensor& D, const at::Tensor& z, at::Tensor& h);

at::Tensor ssd_scan(const at::Tensor& x, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                    const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                    const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, at::Tensor& h);

at::Tensor rmsnorm(const at::Tensor& x, const at::Tensor& w, double eps);

at::Tensor gated_group_rmsnorm(const at::Tensor& y, const at::Tensor& z, const at::Tensor& w, int64_t groups,
                               double eps);

// softplus with PyTorch's default threshold (x > 20: identity), as HF and mamba_ssm compute it.
template <typename T>
inline T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}

}  // namespace mx::ref
