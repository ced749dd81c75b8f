// Mamba2 SSD scan, CPU reference in its recurrent form (ops.h: ssd_scan; kernels.md §2 Mamba2 steps 3–5):
//   Δ = s · clamp(softplus(dt_raw + dt_bias), dt_min, dt_max);  h_t = exp(Δ·a_h)·h_{t-1} + Δ·x_t ⊗ B_t;
//   y_t = h_t·C_t + D·x_t,   head h reading group g = h / (H/G).
// A sequential loop over time per (batch, head): float64 for float64 inputs, float32 otherwise. The chunked
// (matrix) form computes the same function up to reassociation.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ref/ref.h"

namespace mx::ref {

namespace {
template <typename T>
void ssd_loop(const T* x, const T* draw, const T* bias, const T* scale, bool scale_per_head, T dt_min, T dt_max,
              const T* A, const T* Bm, const T* Cm, const T* D, T* h, T* y, int64_t B, int64_t L, int64_t H,
              int64_t P, int64_t G, int64_t N) {
  const int64_t heads_per_group = H / G;
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> st(P * N);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / H, hd = task % H, g = hd / heads_per_group;
      T* hp = h + (b * H + hd) * P * N;
      std::copy(hp, hp + P * N, st.begin());
      const T s = scale ? (scale_per_head ? scale[hd] : scale[0]) : T(1);
      for (int64_t t = 0; t < L; ++t) {
        const int64_t bt = b * L + t;
        T dt = softplus(draw[bt * H + hd] + bias[hd]);
        dt = std::min(std::max(dt, dt_min), dt_max);
        dt *= s;
        const T dA = std::exp(dt * A[hd]);
        const T* xt = x + (bt * H + hd) * P;
        const T* Bt = Bm + (bt * G + g) * N;
        const T* Ct = Cm + (bt * G + g) * N;
        T* yt = y + (bt * H + hd) * P;
        for (int64_t p = 0; p < P; ++p) {
          const T dx = dt * xt[p];
          T* sp = st.data() + p * N;
          T acc = 0;
          for (int64_t n = 0; n < N; ++n) {
            sp[n] = dA * sp[n] + dx * Bt[n];
            acc += sp[n] * Ct[n];
          }
          yt[p] = acc + D[hd] * xt[p];
        }
      }
      std::copy(st.begin(), st.end(), hp);
    }
  });
}
}  // namespace

at::Tensor ssd_scan(const at::Tensor& x_in, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                    const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                    const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, at::Tensor& h) {
  const auto cdt = x_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t B = x_in.size(0), L = x_in.size(1), H = x_in.size(2), P = x_in.size(3);
  const int64_t G = Bm.size(2), N = Bm.size(3);
  auto c = [&](const at::Tensor& t) { return t.defined() ? t.to(cdt).contiguous() : at::Tensor(); };
  auto x = c(x_in), dr = c(dt_raw), bias = c(dt_bias), s = c(dt_scale), a = c(A), bm = c(Bm), cm = c(Cm), d = c(D);
  auto hs = h.to(cdt).contiguous().clone();  // (B, H, P, N)
  auto y = at::empty({B, L, H, P}, x.options());
  AT_DISPATCH_FLOATING_TYPES(cdt, "ssd_scan_ref", [&] {
    auto p = [](const at::Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    ssd_loop<scalar_t>(p(x), p(dr), p(bias), p(s), s.defined() && s.numel() > 1, static_cast<scalar_t>(dt_min),
                       static_cast<scalar_t>(dt_max), p(a), p(bm), p(cm), p(d), p(hs), p(y), B, L, H, P, G, N);
  });
  h = hs.to(h.scalar_type());
  return y.to(x_in.scalar_type());
}

}  // namespace mx::ref
