// ops::causal_conv1d: validates, then runs the CPU reference or the CUDA kernel (kernels/conv1d).
#include <ATen/ATen.h>

#include "mambaextend/ops.h"
#include "ops/check.h"
#include "ops/autograd.h"
#include "ref/ref.h"
#ifdef MX_WITH_CUDA
#include "ops/cuda_ops.h"
#endif

namespace mx::ops {

at::Tensor causal_conv1d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::Tensor& state,
                         bool silu) {
  using detail::check_shape;
  constexpr const char* op = "causal_conv1d";
  check_shape(x, {-1, -1, -1}, op, "x");
  const int64_t B = x.size(0), C = x.size(2);
  check_shape(weight, {C, -1}, op, "weight");
  const int64_t K = weight.size(1);
  if (K < 2) throw ShapeError("causal_conv1d: kernel width must be at least 2");
  if (bias.defined()) check_shape(bias, {C}, op, "bias");
  check_shape(state, {B, C, K - 1}, op, "state");
  for (const at::Tensor* t : std::initializer_list<const at::Tensor*>{&weight, &bias, &state}) detail::check_same_device(x, *t, op, "weight/bias/state");
  if (detail::wants_grad({&x, &state})) {  // CFBP only (ops/autograd.h)
    auto y = detail::causal_conv1d_autograd(x, weight, bias, state);
    return silu ? at::silu(y) : y;
  }
#ifdef MX_WITH_CUDA
  if (x.is_cuda()) return causal_conv1d_cuda(x, weight, bias, state, silu);
#endif
  auto y = detail::causal_conv1d_forward(x, weight, bias, state);
  return silu ? at::silu(y) : y;
}

namespace detail {
at::Tensor causal_conv1d_forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                 at::Tensor& state) {
  constexpr const char* op = "causal_conv1d";
#ifdef MX_WITH_CUDA
  if (x.is_cuda()) return causal_conv1d_cuda(x, weight, bias, state);
#endif
  if (!x.device().is_cpu()) throw Error(std::string(op) + ": no implementation for device " + x.device().str());
  return ref::causal_conv1d(x, weight, bias, state);
}
}  // namespace detail

}  // namespace mx::ops
