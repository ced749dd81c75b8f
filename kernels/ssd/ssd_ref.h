// Float64 sequential reference of the SSD scan and its backward (ssd.h math), torch-free, for the standalone
// kernel program (kernels/dev/ssd_kernels.cu). Contiguous host arrays: x (B, L, H, P), dt (B, L, H),
// Bm, Cm (B, L, G, N), h (B, H, P, N). Same recurrence as src/ref/ssd_scan_ref.cpp / ssd_scan_bwd_ref.cpp
// (the backward keeps the state every 64 tokens and recomputes within each 64-token chunk).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace mx::kern::ref {

struct SsdRefIn {
  int64_t B = 0, L = 0, H = 0, P = 0, G = 0, N = 0;
  std::vector<double> x, dt, Bm, Cm, dt_bias, A, D, scale, h0;  // scale: empty, 1 or H values; h0 empty = 0
  double dt_min = 0, dt_max = INFINITY;
  double softplus(double v) const { return v > 20 ? v : std::log1p(std::exp(v)); }
  double sp(int64_t b, int64_t t, int64_t h) const { return softplus(dt[(b * L + t) * H + h] + dt_bias[h]); }
  double clamp(double v) const { return std::min(std::max(v, dt_min), dt_max); }
  double s(int64_t h) const { return scale.empty() ? 1.0 : scale[scale.size() > 1 ? h : 0]; }
};

// y (B, L, H, P); hT (B, H, P, N).
inline void ssd_ref_fwd(const SsdRefIn& in, std::vector<double>& y, std::vector<double>& hT) {
  const int64_t B = in.B, L = in.L, H = in.H, P = in.P, G = in.G, N = in.N, hpg = H / G;
  y.assign(B * L * H * P, 0.0);
  hT.assign(B * H * P * N, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / hpg;
      double* st = &hT[(b * H + h) * P * N];
      if (!in.h0.empty()) std::copy(&in.h0[(b * H + h) * P * N], &in.h0[(b * H + h + 1) * P * N], st);
      for (int64_t t = 0; t < L; ++t) {
        const double dt = in.s(h) * in.clamp(in.sp(b, t, h)), dA = std::exp(dt * in.A[h]);
        const double* xt = &in.x[((b * L + t) * H + h) * P];
        const double* Bt = &in.Bm[((b * L + t) * G + g) * N];
        const double* Ct = &in.Cm[((b * L + t) * G + g) * N];
        for (int64_t p = 0; p < P; ++p) {
          double acc = 0;
          for (int64_t n = 0; n < N; ++n) {
            double& v = st[p * N + n];
            v = dA * v + dt * xt[p] * Bt[n];
            acc += v * Ct[n];
          }
          y[((b * L + t) * H + h) * P + p] = acc + (in.D.empty() ? 0.0 : in.D[h]) * xt[p];
        }
      }
    }
}

struct SsdRefGrads {
  std::vector<double> dx, ddt, dB, dC, dh0, dscale;  // dscale per head (H)
};

inline SsdRefGrads ssd_ref_bwd(const SsdRefIn& in, const std::vector<double>& dy, const std::vector<double>& dhT) {
  const int64_t B = in.B, L = in.L, H = in.H, P = in.P, G = in.G, N = in.N, hpg = H / G, S = P * N;
  constexpr int64_t kC = 64;
  const int64_t nck = (L + kC - 1) / kC;
  SsdRefGrads r;
  r.dx.assign(B * L * H * P, 0.0);
  r.ddt.assign(B * L * H, 0.0);
  r.dB.assign(B * L * G * N, 0.0);
  r.dC.assign(B * L * G * N, 0.0);
  r.dh0.assign(B * H * S, 0.0);
  r.dscale.assign(H, 0.0);
  std::vector<double> ck(nck * S), hb((kC + 1) * S), dh(S);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / hpg;
      const double A = in.A[h], s = in.s(h), Dh = in.D.empty() ? 0.0 : in.D[h];
      auto step = [&](int64_t t, const double* hp, double* hn) {
        const double dt = s * in.clamp(in.sp(b, t, h)), a = std::exp(dt * A);
        const double* xt = &in.x[((b * L + t) * H + h) * P];
        const double* Bt = &in.Bm[((b * L + t) * G + g) * N];
        for (int64_t p = 0; p < P; ++p)
          for (int64_t n = 0; n < N; ++n) hn[p * N + n] = a * hp[p * N + n] + dt * xt[p] * Bt[n];
      };
      std::vector<double> cur(S, 0.0), nxt(S);
      if (!in.h0.empty()) std::copy(&in.h0[(b * H + h) * S], &in.h0[(b * H + h + 1) * S], cur.begin());
      for (int64_t c = 0; c < nck; ++c) {
        std::copy(cur.begin(), cur.end(), ck.begin() + c * S);
        for (int64_t t = c * kC; t < std::min(L, (c + 1) * kC); ++t) {
          step(t, cur.data(), nxt.data());
          cur.swap(nxt);
        }
      }
      if (dhT.empty()) std::fill(dh.begin(), dh.end(), 0.0);
      else std::copy(&dhT[(b * H + h) * S], &dhT[(b * H + h + 1) * S], dh.begin());
      for (int64_t c = nck - 1; c >= 0; --c) {
        const int64_t t0 = c * kC, t1 = std::min(L, t0 + kC);
        std::copy(ck.begin() + c * S, ck.begin() + (c + 1) * S, hb.begin());
        for (int64_t t = t0; t < t1; ++t) step(t, &hb[(t - t0) * S], &hb[(t - t0 + 1) * S]);
        for (int64_t t = t1 - 1; t >= t0; --t) {
          const double* hp = &hb[(t - t0) * S];
          const double* hc = &hb[(t - t0 + 1) * S];
          const double sp = in.sp(b, t, h), spc = in.clamp(sp), dt = s * spc, a = std::exp(dt * A);
          const double* xt = &in.x[((b * L + t) * H + h) * P];
          const double* dyt = &dy[((b * L + t) * H + h) * P];
          const double* Bt = &in.Bm[((b * L + t) * G + g) * N];
          const double* Ct = &in.Cm[((b * L + t) * G + g) * N];
          double* dBt = &r.dB[((b * L + t) * G + g) * N];
          double* dCt = &r.dC[((b * L + t) * G + g) * N];
          double ddt = 0;
          for (int64_t p = 0; p < P; ++p) {
            double dxp = Dh * dyt[p];
            for (int64_t n = 0; n < N; ++n) {
              const double dhn = dh[p * N + n] + dyt[p] * Ct[n];
              dCt[n] += dyt[p] * hc[p * N + n];
              ddt += dhn * (A * a * hp[p * N + n] + xt[p] * Bt[n]);
              dBt[n] += dhn * dt * xt[p];
              dxp += dhn * dt * Bt[n];
              dh[p * N + n] = dhn * a;
            }
            r.dx[((b * L + t) * H + h) * P + p] = dxp;
          }
          const double raw = in.dt[(b * L + t) * H + h] + in.dt_bias[h];
          const bool inside = sp >= in.dt_min && sp <= in.dt_max;
          const double dsp = raw > 20 ? 1.0 : 1.0 / (1.0 + std::exp(-raw));
          r.ddt[(b * L + t) * H + h] = inside ? ddt * s * dsp : 0.0;
          r.dscale[h] += ddt * spc;
        }
      }
      std::copy(dh.begin(), dh.end(), &r.dh0[(b * H + h) * S]);
    }
  return r;
}

}  // namespace mx::kern::ref
