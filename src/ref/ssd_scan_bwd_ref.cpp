// Mamba2 SSD scan backward, CPU reference in the recurrent form (ref_bwd.h). Forward per (b, head h):
//   sp_t = softplus(r_t + bias);  Δ_t = s·clamp(sp_t, dt_min, dt_max);  a_t = exp(Δ_t·A)
//   h_t[p,n] = a_t·h_{t-1}[p,n] + Δ_t·x_t[p]·B_t[n];   y_t[p] = Σ_n C_t[n]·h_t[p,n] + D·x_t[p]
// Reverse-mode from dh = dhT, t = L-1 .. 0:
//   dh += dy_t ⊗ C_t;  dC_t += Σ_p dy_t[p]·h_t[p,:];  dΔ_t = Σ_{p,n} dh·(A·a_t·h_{t-1} + x_t[p]·B_t[n]);
//   dB_t += Σ_p dh[p,:]·Δ_t·x_t[p];  dx_t[p] = D·dy_t[p] + Σ_n dh[p,n]·Δ_t·B_t[n];  dh ← dh·a_t
//   ds += dΔ_t·clamp(sp_t) (float64);  dr_t = dΔ_t·s·[dt_min <= sp_t <= dt_max]·softplus'(r_t + bias)
// Recompute scheme as in selective_scan_bwd_ref.cpp: the state every kChunk tokens, then chunk by chunk in
// reverse. Parallel over (batch, head); dB/dC per head into partial buffers summed over the heads of a group.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ref/ref.h"
#include "ref/ref_bwd.h"

namespace mx::ref {

namespace {
constexpr int64_t kChunk = 64;

template <typename T>
inline T dsoftplus(T x) {
  return x > T(20) ? T(1) : T(1) / (T(1) + std::exp(-x));
}

template <typename T>
struct SsdPtrs {
  const T *x, *draw, *bias, *scale, *A, *Bm, *Cm, *D, *h0, *dy, *dhT;
  T *dx, *ddraw, *dBp, *dCp, *dh0;  // dBp, dCp: (B, H, L, N) partials
  double* ds;                       // (B, H)
  bool scale_per_head;
  T dt_min, dt_max;
};

template <typename T>
void ssd_bwd_loop(const SsdPtrs<T>& q, int64_t B, int64_t L, int64_t H, int64_t P, int64_t G, int64_t N) {
  const int64_t heads_per_group = H / G;
  const int64_t nchunks = (L + kChunk - 1) / kChunk;
  const int64_t S = P * N;
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / H, hd = task % H, g = hd / heads_per_group;
      const T s = q.scale ? (q.scale_per_head ? q.scale[hd] : q.scale[0]) : T(1);
      const T A = q.A[hd];
      auto sp_of = [&](int64_t t) { return softplus(q.draw[(b * L + t) * H + hd] + q.bias[hd]); };
      auto clamp = [&](T v) { return std::min(std::max(v, q.dt_min), q.dt_max); };
      auto step = [&](int64_t t, const T* hprev, T* hnext) {
        const int64_t bt = b * L + t;
        const T dt = s * clamp(sp_of(t));
        const T a = std::exp(dt * A);
        const T* xt = q.x + (bt * H + hd) * P;
        const T* Bt = q.Bm + (bt * G + g) * N;
        for (int64_t p = 0; p < P; ++p) {
          const T dxp = dt * xt[p];
          for (int64_t n = 0; n < N; ++n) hnext[p * N + n] = a * hprev[p * N + n] + dxp * Bt[n];
        }
      };
      std::vector<T> ck(nchunks * S), h(S), tmp(S);
      std::copy(q.h0 + task * S, q.h0 + (task + 1) * S, h.begin());
      for (int64_t c = 0; c < nchunks; ++c) {
        std::copy(h.begin(), h.end(), ck.begin() + c * S);
        for (int64_t t = c * kChunk; t < std::min(L, (c + 1) * kChunk); ++t) {
          step(t, h.data(), tmp.data());
          h.swap(tmp);
        }
      }
      std::vector<T> dh(S, T(0));
      if (q.dhT) std::copy(q.dhT + task * S, q.dhT + (task + 1) * S, dh.begin());
      double ds_local = 0.0;
      std::vector<T> hbuf((kChunk + 1) * S);
      T* dBp = q.dBp + task * L * N;
      T* dCp = q.dCp + task * L * N;
      for (int64_t c = nchunks - 1; c >= 0; --c) {
        const int64_t t0 = c * kChunk, t1 = std::min(L, t0 + kChunk);
        std::copy(ck.begin() + c * S, ck.begin() + (c + 1) * S, hbuf.begin());
        for (int64_t t = t0; t < t1; ++t) step(t, hbuf.data() + (t - t0) * S, hbuf.data() + (t - t0 + 1) * S);
        for (int64_t t = t1 - 1; t >= t0; --t) {
          const int64_t bt = b * L + t;
          const T* hprev = hbuf.data() + (t - t0) * S;
          const T* hcur = hbuf.data() + (t - t0 + 1) * S;
          const T sp = sp_of(t), spc = clamp(sp), dt = s * spc, a = std::exp(dt * A);
          const T* xt = q.x + (bt * H + hd) * P;
          const T* dyt = q.dy ? q.dy + (bt * H + hd) * P : nullptr;
          const T* Bt = q.Bm + (bt * G + g) * N;
          const T* Ct = q.Cm + (bt * G + g) * N;
          T* dxt = q.dx + (bt * H + hd) * P;
          T* dBt = dBp + t * N;
          T* dCt = dCp + t * N;
          T ddt = 0;
          for (int64_t p = 0; p < P; ++p) {
            const T gy = dyt ? dyt[p] : T(0);
            const T* hp = hprev + p * N;
            const T* hc = hcur + p * N;
            T* dhr = dh.data() + p * N;
            T dxp = q.D[hd] * gy;
            const T dtx = dt * xt[p];
            for (int64_t n = 0; n < N; ++n) {
              const T dhn = dhr[n] + gy * Ct[n];
              dCt[n] += gy * hc[n];
              ddt += dhn * (A * a * hp[n] + xt[p] * Bt[n]);
              dBt[n] += dhn * dtx;
              dxp += dhn * dt * Bt[n];
              dhr[n] = dhn * a;
            }
            dxt[p] = dxp;
          }
          const bool inside = sp >= q.dt_min && sp <= q.dt_max;
          q.ddraw[bt * H + hd] = inside ? ddt * s * dsoftplus(q.draw[bt * H + hd] + q.bias[hd]) : T(0);
          ds_local += static_cast<double>(ddt) * static_cast<double>(spc);
        }
      }
      std::copy(dh.begin(), dh.end(), q.dh0 + task * S);
      q.ds[task] = ds_local;
    }
  });
}
}  // namespace

SsdScanGrads ssd_scan_bwd(const at::Tensor& x_in, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                          const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                          const at::Tensor& Bm_in, const at::Tensor& Cm_in, const at::Tensor& D,
                          const at::Tensor& h0_in, const at::Tensor& dy_in, const at::Tensor& dhT_in) {
  const auto cdt = x_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t B = x_in.size(0), L = x_in.size(1), H = x_in.size(2), P = x_in.size(3);
  const int64_t G = Bm_in.size(2), N = Bm_in.size(3);
  auto c = [&](const at::Tensor& t) { return t.defined() ? t.to(cdt).contiguous() : at::Tensor(); };
  auto x = c(x_in), dr = c(dt_raw), bias = c(dt_bias), s = c(dt_scale), a = c(A), bm = c(Bm_in), cm = c(Cm_in),
       d = c(D), h0 = c(h0_in), dy = c(dy_in), dhT = c(dhT_in);
  const auto o = x.options();
  auto dx = at::empty({B, L, H, P}, o), ddr = at::empty({B, L, H}, o);
  auto dBp = at::zeros({B, H, L, N}, o), dCp = at::zeros({B, H, L, N}, o);
  auto dh0 = at::empty({B, H, P, N}, o);
  auto ds = at::zeros({B, H}, o.dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(cdt, "ssd_scan_bwd_ref", [&] {
    auto p = [](const at::Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    SsdPtrs<scalar_t> q{p(x), p(dr), p(bias), p(s), p(a), p(bm), p(cm), p(d), p(h0), p(dy), p(dhT),
                        p(dx), p(ddr), p(dBp), p(dCp), p(dh0), ds.data_ptr<double>(),
                        s.defined() && s.numel() > 1, static_cast<scalar_t>(dt_min), static_cast<scalar_t>(dt_max)};
    ssd_bwd_loop<scalar_t>(q, B, L, H, P, G, N);
  });
  // Sum the per-head partials over the heads of each group: (B, H, L, N) -> (B, L, G, N).
  auto group_sum = [&](const at::Tensor& part) { return part.reshape({B, G, H / G, L, N}).sum(2).permute({0, 2, 1, 3}); };
  SsdScanGrads g;
  g.dx = dx.to(x_in.scalar_type());
  g.ddt_raw = ddr.to(dt_raw.scalar_type());
  g.dB = group_sum(dBp).contiguous().to(Bm_in.scalar_type());
  g.dC = group_sum(dCp).contiguous().to(Cm_in.scalar_type());
  g.dh0 = dh0.to(h0_in.scalar_type());
  if (dt_scale.defined()) {
    auto dsh = ds.sum(0);  // (H)
    g.dscale = (dt_scale.numel() > 1 ? dsh : dsh.sum().reshape({1})).to(dt_scale.scalar_type());
  }
  return g;
}

}  // namespace mx::ref
