// Mamba2 mixer (kernels.md §2 "Mamba2 mixer"):
//   [z (E) | xBC (E + 2GN) | dt (H)] = u·W_inᵀ
//   xBC = silu(conv(xBC) + b)  ->  x (H, P), B (G, N), C (G, N)
//   Δ = s · clamp(softplus(dt + dt_bias), dt_limit)   (fused into the scan)
//   y = ssd(x, Δ, a, B, C) + D·x;  y = GroupRMSNorm(y ⊙ silu(z))·w;  out = y·W_outᵀ
#include <ATen/ATen.h>
#include <fmt/format.h>

#include "mambaextend/model.h"
#include "mambaextend/ops.h"

namespace mx {

at::Tensor MambaLM::mamba2_mixer(int64_t layer, const at::Tensor& u, const at::Tensor& scale, LayerState& st) const {
  const auto p = fmt::format("layers.{}.mixer.", layer);
  auto w = [&](const char* n) -> const at::Tensor& { return w_.at(p + n); };
  auto opt = [&](const char* n) { auto it = w_.find(p + n); return it == w_.end() ? at::Tensor() : it->second; };
  const int64_t E = cfg_.d_inner, N = cfg_.d_state, G = cfg_.n_groups, H = cfg_.n_heads, P = cfg_.head_dim;
  const int64_t B = u.size(0), L = u.size(1);

  auto zxbcdt = at::linear(u, w("in_proj.weight"), opt("in_proj.bias"));     // (B, L, 2E + 2GN + H)
  auto z = zxbcdt.narrow(-1, 0, E);
  auto xBC = zxbcdt.narrow(-1, E, E + 2 * G * N);
  auto dt = zxbcdt.narrow(-1, 2 * E + 2 * G * N, H);                        // (B, L, H)
  xBC = ops::causal_conv1d(xBC, w("conv1d.weight2d"), opt("conv1d.bias"), st.conv, /*silu=*/true);
  auto x = xBC.narrow(-1, 0, E).reshape({B, L, H, P});
  auto Bm = xBC.narrow(-1, E, G * N).reshape({B, L, G, N});
  auto Cm = xBC.narrow(-1, E + G * N, G * N).reshape({B, L, G, N});
  auto y = ops::ssd_scan(x, dt, w("dt_bias"), scale, cfg_.dt_limit_min, cfg_.dt_limit_max, w("A"), Bm, Cm, w("D"),
                         st.ssm);                                            // (B, L, H, P)
  y = ops::gated_group_rmsnorm(y.reshape({B, L, E}), z, w("norm.weight"), G, cfg_.norm_eps);
  return at::linear(y.to(u.scalar_type()), w("out_proj.weight"), opt("out_proj.bias"));  // (B, L, D)
}

}  // namespace mx
