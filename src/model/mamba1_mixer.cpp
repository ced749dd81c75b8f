// Mamba1 mixer (kernels.md §2 "Mamba1 mixer"), shapes per batch b and token t:
//   [x, z] = u·W_inᵀ                   (B, L, 2E)
//   x = silu(conv(x) + b_conv)          causal depthwise, K taps, state carried
//   [δ_lo, B, C] = x·W_xᵀ               (B, L, R + 2N)
//   Δ = s ⊙ softplus(δ_lo·W_dtᵀ + b_dt) (fused into the scan)
//   y = scan(x, Δ, A, B, C, D) ⊙ silu(z);  out = y·W_outᵀ
#include <ATen/ATen.h>
#include <fmt/format.h>

#include "mambaextend/model.h"
#include "mambaextend/ops.h"

namespace mx {

at::Tensor MambaLM::mamba1_mixer(int64_t layer, const at::Tensor& u, const at::Tensor& scale, LayerState& st) const {
  const auto p = fmt::format("layers.{}.mixer.", layer);
  auto w = [&](const char* n) -> const at::Tensor& { return w_.at(p + n); };
  auto opt = [&](const char* n) { auto it = w_.find(p + n); return it == w_.end() ? at::Tensor() : it->second; };
  const int64_t E = cfg_.d_inner, N = cfg_.d_state, R = cfg_.dt_rank;

  auto xz = at::linear(u, w("in_proj.weight"), opt("in_proj.bias"));        // (B, L, 2E)
  auto x = xz.narrow(-1, 0, E);
  auto z = xz.narrow(-1, E, E);
  x = ops::causal_conv1d(x, w("conv1d.weight2d"), opt("conv1d.bias"), st.conv, /*silu=*/true);  // (B, L, E)
  auto xdbl = at::linear(x, w("x_proj.weight"));                              // (B, L, R + 2N)
  auto dt_low = xdbl.narrow(-1, 0, R);
  auto Bm = xdbl.narrow(-1, R, N);                                            // (B, L, N)
  auto Cm = xdbl.narrow(-1, R + N, N);                                        // (B, L, N)
  auto delta_raw = at::linear(dt_low, w("dt_proj.weight"));                   // (B, L, E), bias in the scan
  auto y = ops::selective_scan(x, delta_raw, w("dt_proj.bias"), scale, w("A"), Bm, Cm, w("D"), z, st.ssm);
  return at::linear(y.to(u.scalar_type()), w("out_proj.weight"), opt("out_proj.bias"));  // (B, L, D)
}

}  // namespace mx
