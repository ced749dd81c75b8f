// ops::rmsnorm and ops::gated_group_rmsnorm: validate, then dispatch (CUDA kernel for rmsnorm when built).
#include "mambaextend/ops.h"
#include "ops/check.h"
#include "ref/ref.h"
#ifdef MX_WITH_CUDA
#include "ops/cuda_ops.h"
#endif

namespace mx::ops {

at::Tensor rmsnorm(const at::Tensor& x, const at::Tensor& w, double eps) {
  if (!x.defined() || x.dim() < 1) throw ShapeError("rmsnorm: x must have at least one dimension");
  detail::check_shape(w, {x.size(-1)}, "rmsnorm", "weight");
  detail::check_same_device(x, w, "rmsnorm", "weight");
#ifdef MX_WITH_CUDA
  if (x.is_cuda()) return rmsnorm_cuda(x, w, eps);
#endif
  return ref::rmsnorm(x, w, eps);
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
  // ATen expressions: they run on any device (a fused CUDA kernel is issue 9's).
  return ref::gated_group_rmsnorm(y, z, w, groups, eps);
}

}  // namespace mx::ops
