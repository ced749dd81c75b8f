// CUDA glue of Mamba2's gated group RMSNorm (kernels/ssd/gated_norm): ops::gated_group_rmsnorm on CUDA tensors
// without autograd. y and z are viewed as (rows, E) with their own row strides (the model's z is a narrow() of
// the in_proj output: no copy); w is used in fp32. Other dtypes than fp32 / bf16 run the ATen reference on the
// device. The result has y's dtype.
#include <ATen/ATen.h>

#include "ops/cuda_ops_ssd.h"
#include "ops/cuda_util.h"
#include "ref/ref.h"
#include "ssd/gated_norm.h"

namespace mx::ops {

at::Tensor gated_group_rmsnorm_cuda(const at::Tensor& y_in, const at::Tensor& z_in, const at::Tensor& w,
                                    int64_t groups, double eps) {
  using namespace cuda_detail;
  const auto st = y_in.scalar_type();
  if (st != at::kFloat && st != at::kBFloat16) return ref::gated_group_rmsnorm(y_in, z_in, w, groups, eps);
  const c10::cuda::CUDAGuard guard(y_in.device());
  const int64_t E = y_in.size(-1);
  auto rows_of = [&](const at::Tensor& t) {
    auto r = (t.scalar_type() == st ? t : t.to(st)).reshape({-1, E});  // a view when the strides allow it
    return r.stride(1) == 1 ? r : r.contiguous();
  };
  auto y = rows_of(y_in), z = rows_of(z_in);  // (rows, E)
  auto wf = f32(w);                           // (E)
  auto out = at::empty({y.size(0), E}, y.options());
  kern::GatedNormArgs a;
  a.rows = y.size(0), a.dim = E, a.groups = groups, a.io = io_type(st);
  a.y = y.data_ptr(), a.y_srow = y.stride(0), a.z = z.data_ptr(), a.z_srow = z.stride(0);
  a.w = wf.data_ptr<float>(), a.out = out.data_ptr(), a.out_srow = out.stride(0), a.eps = static_cast<float>(eps);
  check(kern::gated_group_rmsnorm_fwd(a, stream()), "gated_group_rmsnorm");
  return out.reshape(y_in.sizes());
}

}  // namespace mx::ops
