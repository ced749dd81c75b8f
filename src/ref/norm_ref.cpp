// RMSNorm and Mamba2's gated group RMSNorm, CPU reference, as ATen expressions in fp32 (fp64 for fp64 input):
//   rmsnorm(x) = x · rsqrt(mean(x²) + eps) · w   (mamba_ssm's fused add+norm normalises the fp32 sum; eps 1e-5)
//   gated(y, z) = groupwise rmsnorm(y · silu(z)) · w, RMS over each of G slices of size E/G
//   (norm_before_gate = False, mamba_ssm RMSNormGated with group_size = E/G; kernels.md §1b).
#include <ATen/ATen.h>

#include "ref/ref.h"

namespace mx::ref {

at::Tensor rmsnorm(const at::Tensor& x, const at::Tensor& w, double eps) {
  const auto cdt = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto xf = x.to(cdt);
  auto r = at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return (xf * r * w.to(cdt)).to(x.scalar_type());
}

at::Tensor gated_group_rmsnorm(const at::Tensor& y, const at::Tensor& z, const at::Tensor& w, int64_t groups,
                               double eps) {
  const auto cdt = y.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto g = y.to(cdt) * at::silu(z.to(cdt));
  auto sizes = g.sizes().vec();
  const int64_t E = sizes.back();
  auto grouped_sizes = sizes;
  grouped_sizes.back() = groups;
  grouped_sizes.push_back(E / groups);
  auto gg = g.reshape(grouped_sizes);                                   // (..., G, E/G)
  auto r = at::rsqrt(gg.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return ((gg * r).reshape(sizes) * w.to(cdt)).to(y.scalar_type());
}

}  // namespace mx::ref
