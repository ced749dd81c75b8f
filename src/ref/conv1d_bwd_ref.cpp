// Causal depthwise conv1d backward, CPU reference (ref_bwd.h), with respect to the input and the incoming
// state. With xx = concat(state_in (K-1), x (L)) over time (length L+K-1):
//   y[t]          = bias + Σ_k w[k]·xx[t+k]              t in [0, L)
//   state_out[i]  = xx[L+i]                              i in [0, K-1)
// so  dxx[j] = Σ_k w[k]·dy[j-k] (over 0 <= j-k < L)  +  dstate_out[j-L] (for j >= L),
// and dstate_in = dxx[0 .. K-2], dx = dxx[K-1 ..].
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "ref/ref_bwd.h"

namespace mx::ref {

namespace {
template <typename T>
void conv_bwd_loop(const T* w, const T* dy, const T* dso, T* dx, T* dsi, int64_t B, int64_t L, int64_t C, int64_t K) {
  const int64_t J = L + K - 1;
  at::parallel_for(0, B * J, 64, [&](int64_t begin, int64_t end) {
    for (int64_t bj = begin; bj < end; ++bj) {
      const int64_t b = bj / J, j = bj % J;
      // Destination row: dstate_in for j < K-1 (strided (B, C, K-1)), dx otherwise.
      for (int64_t c = 0; c < C; ++c) {
        T acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t t = j - k;
          if (t >= 0 && t < L) acc += w[c * K + k] * dy[(b * L + t) * C + c];
        }
        if (j >= L && dso) acc += dso[(b * C + c) * (K - 1) + (j - L)];
        if (j < K - 1)
          dsi[(b * C + c) * (K - 1) + j] = acc;
        else
          dx[(b * L + (j - (K - 1))) * C + c] = acc;
      }
    }
  });
}
}  // namespace

CausalConv1dGrads causal_conv1d_bwd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& state_in,
                                    const at::Tensor& dy_in, const at::Tensor& dstate_out) {
  const auto cdt = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t B = x.size(0), L = x.size(1), C = x.size(2), K = weight.size(1);
  auto w = weight.to(cdt).contiguous();                                           // (C, K)
  auto dy = dy_in.defined() ? dy_in.to(cdt).contiguous() : at::zeros({B, L, C}, x.options().dtype(cdt));
  auto dso = dstate_out.defined() ? dstate_out.to(cdt).contiguous() : at::Tensor();  // (B, C, K-1)
  auto dx = at::empty({B, L, C}, dy.options());
  auto dsi = at::empty({B, C, K - 1}, dy.options());
  AT_DISPATCH_FLOATING_TYPES(cdt, "causal_conv1d_bwd_ref", [&] {
    conv_bwd_loop<scalar_t>(w.data_ptr<scalar_t>(), dy.data_ptr<scalar_t>(),
                            dso.defined() ? dso.data_ptr<scalar_t>() : nullptr, dx.data_ptr<scalar_t>(),
                            dsi.data_ptr<scalar_t>(), B, L, C, K);
  });
  return {dx.to(x.scalar_type()), dsi.to(state_in.scalar_type())};
}

}  // namespace mx::ref
