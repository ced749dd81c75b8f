// ops::rmsnorm, ops::add_rmsnorm and ops::gated_group_rmsnorm: validate, then dispatch (CUDA kernels when built).
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "mambaextend/ops.h"
#include "ops/check.h"
#include "ref/ref.h"
#ifdef MX_WITH_CUDA
#include "ops/autograd.h"
#include "ops/cuda_ops.h"
#include "ops/cuda_ops_ssd.h"
#endif

namespace mx::ops {

at::Tensor rmsnorm(const at::Tensor& x, const at::Tensor& w, double eps) {
  if (!x.defined() || x.dim() < 1) throw ShapeError("rmsnorm: x must have at least one dimension");
  detail::check_shape(w, {x.size(-1)}, "rmsnorm", "weight");
  detail::check_same_device(x, w, "rmsnorm", "weight");
#ifdef MX_WITH_CUDA
  // The kernel has no backward: with gradients required (CFBP), the ATen expression below (autograd) runs.
  if (x.is_cuda() && !detail::wants_grad({&x})) return rmsnorm_cuda(x, w, eps);
#endif
  return ref::rmsnorm(x, w, eps);
}

at::Tensor add_rmsnorm(const at::Tensor& x, at::Tensor& residual, const at::Tensor& w, double eps,
                       at::ScalarType out_dtype) {
  if (!x.defined() || x.dim() < 1) throw ShapeError("add_rmsnorm: x must have at least one dimension");
  const auto rdt = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
#ifdef MX_WITH_CUDA
  const auto io = [](at::ScalarType t) { return t == at::kFloat || t == at::kBFloat16; };
  if (x.is_cuda() && io(x.scalar_type()) && io(out_dtype) && !at::GradMode::is_enabled() &&
      (!residual.defined() || (residual.scalar_type() == at::kFloat && residual.is_contiguous())))
    return add_rmsnorm_cuda(x, residual, w, eps, out_dtype);
#endif
  residual = residual.defined() ? residual + x.to(residual.scalar_type()) : x.to(rdt);
  return rmsnorm(residual, w, eps).to(out_dtype);
}

at::Tensor gated_group_rmsnorm(const at::Tensor& y, const at::Tensor& z, const at::Tensor& w, int64_t groups,
                               double eps) {
  if (!y.defined() || y.dim() < 1) throw ShapeError("gated_group_rmsnorm: y must have at least one dimension");
  const int64_t E = y.size(-1);
  if (!z.defined() || z.sizes() != y.sizes())
    throw ShapeError("gated_group_rmsnorm: z must have the shape of y " + detail::shape_str(y.sizes()));
  detail::check_shape(w, {E}, "gated_group_rmsnorm", "weight");
  if (groups < 1 || E % groups != 0)
    throw ShapeError(fmt::format("gated_group_rmsnorm: {} channels do not split into {} groups", E, groups));
  detail::check_same_device(y, z, "gated_group_rmsnorm", "z");
  detail::check_same_device(y, w, "gated_group_rmsnorm", "weight");
#ifdef MX_WITH_CUDA
  // The fused kernel has no backward: with gradients required, the ATen expressions below (autograd) run.
  if (y.is_cuda() && !detail::wants_grad({&y, &z})) return gated_group_rmsnorm_cuda(y, z, w, groups, eps);
#endif
  // ATen expressions: they run on any device.
  return ref::gated_group_rmsnorm(y, z, w, groups, eps);
}

}  // namespace mx::ops
