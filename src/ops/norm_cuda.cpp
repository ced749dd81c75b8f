// CUDA glue of RMSNorm and the fused residual add + RMSNorm (kernels/norm). Math in fp32 for fp32 / bf16 /
// fp16 inputs (fp16 is read through an fp32 copy); float64 runs ref::rmsnorm (ATen expressions, any device).
#include <ATen/ATen.h>

#include "norm/norm.h"
#include "ops/check.h"
#include "ops/cuda_ops.h"
#include "ops/cuda_util.h"
#include "ref/ref.h"

namespace mx::ops {

namespace {
using namespace cuda_detail;

// y (rows, D) in y_dtype = rmsnorm(residual + x)·w; residual_out as in kern::AddNormArgs.
void launch(const at::Tensor& x2, const float* res_in, float* res_out, const at::Tensor& wf, double eps,
            const at::Tensor& y, const char* op) {
  kern::AddNormArgs a;
  a.rows = x2.size(0), a.dim = x2.size(1), a.x_io = io_type(x2.scalar_type()), a.x = x2.data_ptr();
  a.x_srow = x2.stride(0), a.residual_in = res_in, a.residual_out = res_out, a.weight = wf.data_ptr<float>();
  a.y_io = io_type(y.scalar_type()), a.y = y.data_ptr(), a.eps = float(eps);
  check(kern::add_rmsnorm_fwd(a, stream()), op);
}
}  // namespace

at::Tensor rmsnorm_cuda(const at::Tensor& x, const at::Tensor& w, double eps) {
  if (x.scalar_type() == at::kDouble) return ref::rmsnorm(x, w, eps);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t D = x.size(-1);
  const auto io = io_dtype(x.scalar_type());
  auto x2 = x.to(io).reshape({-1, D});
  if (x2.stride(1) != 1 || (x2.size(0) > 1 && x2.stride(0) < D)) x2 = x2.contiguous();  // (rows, D)
  auto y = at::empty(x.sizes(), x.options().dtype(io));
  if (x2.numel() > 0) launch(x2, nullptr, nullptr, f32(w), eps, y, "rmsnorm");
  return y.scalar_type() == x.scalar_type() ? y : y.to(x.scalar_type());
}

at::Tensor add_rmsnorm_cuda(const at::Tensor& x, at::Tensor& residual, const at::Tensor& w, double eps,
                            at::ScalarType out_dtype) {
  constexpr const char* op = "add_rmsnorm";
  if (!x.defined() || x.dim() < 1) throw ShapeError("add_rmsnorm: x must have at least one dimension");
  const int64_t D = x.size(-1);
  detail::check_shape(w, {D}, op, "weight");
  if (residual.defined() && (residual.sizes() != x.sizes() || residual.scalar_type() != at::kFloat ||
                             !residual.is_contiguous()))
    throw ShapeError(fmt::format("add_rmsnorm: residual must be a contiguous float32 tensor of shape {}, got {} {}",
                                 detail::shape_str(x.sizes()), c10::toString(residual.scalar_type()),
                                 detail::shape_str(residual.sizes())));
  if (!x.is_cuda()) throw ShapeError(std::string(op) + ": x must be a CUDA tensor, got " + x.device().str());
  detail::check_same_device(x, residual, op, "residual");
  detail::check_same_device(x, w, op, "weight");
  const c10::cuda::CUDAGuard guard(x.device());
  const auto io = io_dtype(x.scalar_type());
  auto x2 = x.to(io).reshape({-1, D});
  if (x2.stride(1) != 1 || (x2.size(0) > 1 && x2.stride(0) < D)) x2 = x2.contiguous();  // (rows, D)
  const bool had = residual.defined();
  if (!had) residual = at::empty(x.sizes(), x.options().dtype(at::kFloat));
  const auto yd = io_dtype(out_dtype);
  auto y = at::empty(x.sizes(), x.options().dtype(yd));
  if (x2.numel() > 0)
    launch(x2, had ? residual.data_ptr<float>() : nullptr, residual.data_ptr<float>(), f32(w), eps, y, op);
  return yd == out_dtype ? y : y.to(out_dtype);
}

}  // namespace mx::ops
