// Causal depthwise conv1d with carried state, CPU reference (ops.h: causal_conv1d).
//   y[b,t,c] = bias[c] + Σ_{k<K} w[c,k] · xx[b, t+k, c],   xx = concat(state[b,c,0..K-2], x[b,·,c]) over time
// so w[c,K-1] multiplies the current token (kernels.md §1b "Conv"). With a zero state this is PyTorch's
// Conv1d(padding=K-1)[..., :L], the form HF and mamba_ssm use. The state becomes the last K-1 inputs.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>

#include "ref/ref.h"

namespace mx::ref {

namespace {
template <typename T>
void conv_loop(const T* x, const T* w, const T* bias, const T* st, T* y, int64_t B, int64_t L, int64_t C,
               int64_t K) {
  at::parallel_for(0, B * L, 64, [&](int64_t begin, int64_t end) {
    for (int64_t bt = begin; bt < end; ++bt) {
      const int64_t b = bt / L, t = bt % L;
      T* yrow = y + bt * C;
      for (int64_t c = 0; c < C; ++c) yrow[c] = bias ? bias[c] : T(0);
      for (int64_t k = 0; k < K; ++k) {
        const int64_t src = t + k - (K - 1);  // time index into x; negative: from the state
        if (src >= 0) {
          const T* xrow = x + (b * L + src) * C;
          for (int64_t c = 0; c < C; ++c) yrow[c] += w[c * K + k] * xrow[c];
        } else {
          const int64_t slot = (K - 1) + src;  // 0..K-2, oldest first
          for (int64_t c = 0; c < C; ++c) yrow[c] += w[c * K + k] * st[(b * C + c) * (K - 1) + slot];
        }
      }
    }
  });
}
}  // namespace

at::Tensor causal_conv1d(const at::Tensor& x_in, const at::Tensor& weight, const at::Tensor& bias,
                         at::Tensor& state) {
  const auto cdt = x_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t B = x_in.size(0), L = x_in.size(1), C = x_in.size(2), K = weight.size(1);
  auto x = x_in.to(cdt).contiguous();                // (B, L, C)
  auto w = weight.to(cdt).contiguous();              // (C, K)
  auto bs = bias.defined() ? bias.to(cdt).contiguous() : at::Tensor();
  auto st = state.to(cdt).contiguous();              // (B, C, K-1)
  auto y = at::empty({B, L, C}, x.options());
  AT_DISPATCH_FLOATING_TYPES(cdt, "causal_conv1d_ref", [&] {
    conv_loop<scalar_t>(x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                        bs.defined() ? bs.data_ptr<scalar_t>() : nullptr, st.data_ptr<scalar_t>(),
                        y.data_ptr<scalar_t>(), B, L, C, K);
  });
  // New state: the last K-1 inputs of concat(state, x), oldest first.
  auto xt = x.transpose(1, 2);                                     // (B, C, L)
  auto full = at::cat({st, xt}, 2);                                // (B, C, K-1+L)
  state = full.narrow(2, full.size(2) - (K - 1), K - 1).to(state.scalar_type()).contiguous();
  return y.to(x_in.scalar_type());
}

}  // namespace mx::ref
