// Mamba1 selective scan, CPU reference (ops.h: selective_scan; kernels.md §2 steps 4–7):
//   Δ = s ⊙ softplus(delta_raw + dt_bias);  h_t = exp(Δ·A) ⊙ h_{t-1} + Δ·B_t·u_t;  y_t = C_t·h_t + D·u_t;
//   y_t ← y_t · silu(z_t).
// Mirrors mamba_ssm's selective_scan_ref (a sequential loop over time) with the scale of MambaExtend applied
// after the softplus. Arithmetic in float64 for float64 inputs, float32 otherwise; the state h is carried in
// and out (fp32 / fp64). Parallel over (batch, blocks of channels); each task walks time once, keeping its
// block's (channels x N) state in a local buffer.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

#include "ref/ref.h"

namespace mx::ref {

namespace {
constexpr int64_t kChannelBlock = 32;

template <typename T>
void scan_loop(const T* u, const T* draw, const T* bias, const T* scale, bool scale_per_channel, const T* A,
               const T* Bm, const T* Cm, const T* D, const T* z, T* h, T* y, int64_t B, int64_t L, int64_t E,
               int64_t N) {
  const int64_t nblk = (E + kChannelBlock - 1) / kChannelBlock;
  at::parallel_for(0, B * nblk, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> hs(kChannelBlock * N);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nblk, e0 = (task % nblk) * kChannelBlock;
      const int64_t ne = std::min(kChannelBlock, E - e0);
      for (int64_t i = 0; i < ne; ++i)
        for (int64_t n = 0; n < N; ++n) hs[i * N + n] = h[(b * E + e0 + i) * N + n];
      for (int64_t t = 0; t < L; ++t) {
        const int64_t row = (b * L + t) * E + e0;
        const T* Bt = Bm + (b * L + t) * N;
        const T* Ct = Cm + (b * L + t) * N;
        for (int64_t i = 0; i < ne; ++i) {
          const int64_t e = e0 + i;
          const T s = scale ? (scale_per_channel ? scale[e] : scale[0]) : T(1);
          const T dt = s * softplus(draw[row + i] + bias[e]);
          const T ut = u[row + i];
          const T du = dt * ut;
          T acc = 0;
          T* hrow = hs.data() + i * N;
          const T* Arow = A + e * N;
          for (int64_t n = 0; n < N; ++n) {
            hrow[n] = std::exp(dt * Arow[n]) * hrow[n] + du * Bt[n];
            acc += Ct[n] * hrow[n];
          }
          T out = acc + D[e] * ut;
          if (z) {
            const T zz = z[row + i];
            out *= zz / (T(1) + std::exp(-zz));
          }
          y[row + i] = out;
        }
      }
      for (int64_t i = 0; i < ne; ++i)
        for (int64_t n = 0; n < N; ++n) h[(b * E + e0 + i) * N + n] = hs[i * N + n];
    }
  });
}
}  // namespace

at::Tensor selective_scan(const at::Tensor& u_in, const at::Tensor& delta_raw, const at::Tensor& dt_bias,
                          const at::Tensor& dt_scale, const at::Tensor& A, const at::Tensor& Bm,
                          const at::Tensor& Cm, const at::Tensor& D, const at::Tensor& z, at::Tensor& h) {
  const auto cdt = u_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t B = u_in.size(0), L = u_in.size(1), E = u_in.size(2), N = A.size(1);
  auto c = [&](const at::Tensor& t) { return t.defined() ? t.to(cdt).contiguous() : at::Tensor(); };
  auto u = c(u_in), dr = c(delta_raw), bias = c(dt_bias), s = c(dt_scale), a = c(A), bm = c(Bm), cm = c(Cm),
       d = c(D), zz = c(z);
  auto hs = h.to(cdt).contiguous().clone();  // (B, E, N)
  auto y = at::empty({B, L, E}, u.options());
  AT_DISPATCH_FLOATING_TYPES(cdt, "selective_scan_ref", [&] {
    auto p = [](const at::Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    scan_loop<scalar_t>(p(u), p(dr), p(bias), p(s), s.defined() && s.numel() > 1, p(a), p(bm), p(cm), p(d), p(zz),
                        p(hs), p(y), B, L, E, N);
  });
  h = hs.to(h.scalar_type());
  return y.to(u_in.scalar_type());
}

}  // namespace mx::ref
