// ops::selective_scan (Mamba1): validates, then runs the CPU reference or the CUDA kernel (kernels/s6).
#include "mambaextend/ops.h"
#include "ops/check.h"
#include "ops/autograd.h"
#include "ref/ref.h"
#ifdef MX_WITH_CUDA
#include "ops/cuda_ops.h"
#endif

namespace mx::ops {

at::Tensor selective_scan(const at::Tensor& u, const at::Tensor& delta_raw, const at::Tensor& dt_bias,
                          const at::Tensor& dt_scale, const at::Tensor& A, const at::Tensor& Bm,
                          const at::Tensor& Cm, const at::Tensor& D, const at::Tensor& z, at::Tensor& h) {
  using detail::check_shape;
  constexpr const char* op = "selective_scan";
  check_shape(u, {-1, -1, -1}, op, "u");
  const int64_t B = u.size(0), L = u.size(1), E = u.size(2);
  check_shape(A, {E, -1}, op, "A");
  const int64_t N = A.size(1);
  check_shape(delta_raw, {B, L, E}, op, "delta_raw");
  check_shape(dt_bias, {E}, op, "dt_bias");
  check_shape(Bm, {B, L, N}, op, "B");
  check_shape(Cm, {B, L, N}, op, "C");
  check_shape(D, {E}, op, "D");
  if (z.defined()) check_shape(z, {B, L, E}, op, "z");
  check_shape(h, {B, E, N}, op, "h");
  detail::check_scale(dt_scale, E, op);
  for (const at::Tensor* t : std::initializer_list<const at::Tensor*>{&delta_raw, &dt_bias, &dt_scale, &A, &Bm, &Cm, &D, &z, &h})
    detail::check_same_device(u, *t, op, "all inputs");
  if (detail::wants_grad({&u, &delta_raw, &dt_scale, &Bm, &Cm, &z, &h}))  // CFBP only (ops/autograd.h)
    return detail::selective_scan_autograd(u, delta_raw, dt_bias, dt_scale, A, Bm, Cm, D, z, h);
  return detail::selective_scan_forward(u, delta_raw, dt_bias, dt_scale, A, Bm, Cm, D, z, h);
}

namespace detail {
at::Tensor selective_scan_forward(const at::Tensor& u, const at::Tensor& delta_raw, const at::Tensor& dt_bias,
                                  const at::Tensor& dt_scale, const at::Tensor& A, const at::Tensor& Bm,
                                  const at::Tensor& Cm, const at::Tensor& D, const at::Tensor& z, at::Tensor& h) {
  constexpr const char* op = "selective_scan";
#ifdef MX_WITH_CUDA
  if (u.is_cuda()) return selective_scan_cuda(u, delta_raw, dt_bias, dt_scale, A, Bm, Cm, D, z, h);
#endif
  if (!u.device().is_cpu()) throw Error(std::string(op) + ": no implementation for device " + u.device().str());
  return ref::selective_scan(u, delta_raw, dt_bias, dt_scale, A, Bm, Cm, D, z, h);
}
}  // namespace detail

}  // namespace mx::ops
