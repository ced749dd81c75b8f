// ops::ssd_scan (Mamba2): validates, then runs the CPU reference or the CUDA kernels (kernels/ssd).
#include "mambaextend/ops.h"
#include "ops/check.h"
#include "ops/autograd.h"
#include "ref/ref.h"
#ifdef MX_WITH_CUDA
#include "ops/cuda_ops_ssd.h"
#endif

namespace mx::ops {

at::Tensor ssd_scan(const at::Tensor& x, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                    const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                    const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, at::Tensor& h) {
  using detail::check_shape;
  constexpr const char* op = "ssd_scan";
  check_shape(x, {-1, -1, -1, -1}, op, "x");
  const int64_t B = x.size(0), L = x.size(1), H = x.size(2), P = x.size(3);
  check_shape(Bm, {B, L, -1, -1}, op, "B");
  const int64_t G = Bm.size(2), N = Bm.size(3);
  if (G < 1 || H % G != 0)
    throw ShapeError(fmt::format("ssd_scan: {} heads do not split into {} groups", H, G));
  check_shape(Cm, {B, L, G, N}, op, "C");
  check_shape(dt_raw, {B, L, H}, op, "dt_raw");
  check_shape(dt_bias, {H}, op, "dt_bias");
  check_shape(A, {H}, op, "A");
  check_shape(D, {H}, op, "D");
  check_shape(h, {B, H, P, N}, op, "h");
  detail::check_scale(dt_scale, H, op);
  if (!(dt_min <= dt_max)) throw ShapeError(fmt::format("ssd_scan: dt limits ({}, {}) are not ordered", dt_min, dt_max));
  for (const at::Tensor* t : std::initializer_list<const at::Tensor*>{&dt_raw, &dt_bias, &dt_scale, &A, &Bm, &Cm, &D, &h})
    detail::check_same_device(x, *t, op, "all inputs");
  if (detail::wants_grad({&x, &dt_raw, &dt_scale, &Bm, &Cm, &h}))  // CFBP only (ops/autograd.h)
    return detail::ssd_scan_autograd(x, dt_raw, dt_bias, dt_scale, dt_min, dt_max, A, Bm, Cm, D, h);
  return detail::ssd_scan_forward(x, dt_raw, dt_bias, dt_scale, dt_min, dt_max, A, Bm, Cm, D, h);
}

namespace detail {
at::Tensor ssd_scan_forward(const at::Tensor& x, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                            const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                            const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, at::Tensor& h,
                            at::Tensor* saved) {
#ifdef MX_WITH_CUDA
  if (x.is_cuda()) return ssd_scan_cuda(x, dt_raw, dt_bias, dt_scale, dt_min, dt_max, A, Bm, Cm, D, h, false, saved);
#else
  (void)saved;
#endif
  if (!x.device().is_cpu()) throw Error("ssd_scan: no implementation for device " + x.device().str());
  return ref::ssd_scan(x, dt_raw, dt_bias, dt_scale, dt_min, dt_max, A, Bm, Cm, D, h);
}
}  // namespace detail

}  // namespace mx::ops
