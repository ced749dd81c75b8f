// Float64 CPU reference of the S6 forward and backward (s6.h has the math), torch-free plain loops over
// contiguous row-major arrays, for the standalone GPU tests (kernels/dev) and the GoogleTest CUDA tests.
// The backward walks time in reverse per (batch, channel), keeping that channel's L+1 states (L·N doubles),
// so memory stays O(L·N + B·L·N) however many channels there are. Single-threaded: meant for test sizes.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace mx::kern::ref {

struct S6Problem {
  int64_t B = 0, L = 0, E = 0, N = 0;
  std::vector<double> u, delta, z;  // (B, L, E); z empty = no gate
  std::vector<double> Bm, Cm;       // (B, L, N)
  std::vector<double> A;            // (E, N)
  std::vector<double> D, dt_bias;   // (E) or empty
  std::vector<double> dt_scale;     // (1) or (E) or empty (= 1)
  std::vector<double> h0;           // (B, E, N) or empty (= 0)
};

struct S6Fwd {
  std::vector<double> out;  // (B, L, E)
  std::vector<double> hT;   // (B, E, N)
};

struct S6Grads {
  std::vector<double> du, ddelta, dz;   // (B, L, E); dz empty without z
  std::vector<double> dB, dC;           // (B, L, N)
  std::vector<double> dA;               // (E, N)
  std::vector<double> dD, ddt_bias;     // (E)
  std::vector<double> ddt_scale;        // (E): Σ_t dΔ·softplus per channel (sum them for a scalar scale)
  std::vector<double> dh0;              // (B, E, N)
};

inline double ref_softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }
inline double ref_sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

namespace detail {
inline double scale_of(const S6Problem& p, int64_t e) {
  if (p.dt_scale.empty()) return 1.0;
  return p.dt_scale.size() == 1 ? p.dt_scale[0] : p.dt_scale[e];
}
// States h_t (t = -1 .. L-1) of channel (b, e): hs[(t + 1) * N + n]; also Δ_t per token. T is the arithmetic
// type: double for the reference, float for "what a plain sequential fp32 implementation gets".
template <typename T>
inline void channel_states(const S6Problem& p, int64_t b, int64_t e, std::vector<T>& hs, std::vector<T>& dt) {
  const int64_t L = p.L, E = p.E, N = p.N;
  hs.assign((L + 1) * N, T(0));
  dt.assign(L, T(0));
  if (!p.h0.empty())
    for (int64_t n = 0; n < N; ++n) hs[n] = T(p.h0[(b * E + e) * N + n]);
  const T s = T(scale_of(p, e)), bias = p.dt_bias.empty() ? T(0) : T(p.dt_bias[e]);
  for (int64_t t = 0; t < L; ++t) {
    const int64_t r = (b * L + t) * E + e;
    const T x = T(p.delta[r]) + bias;
    const T d = s * (x > T(20) ? x : std::log1p(std::exp(x)));
    dt[t] = d;
    for (int64_t n = 0; n < N; ++n)
      hs[(t + 1) * N + n] =
          std::exp(d * T(p.A[e * N + n])) * hs[t * N + n] + d * T(p.Bm[(b * L + t) * N + n]) * T(p.u[r]);
  }
}
}  // namespace detail

// T = double: the reference; T = float: a plain sequential fp32 evaluation of the same recurrence (the error
// any fp32-state implementation makes, e.g. src/ref in fp32), for context next to the kernel's error.
template <typename T = double>
inline S6Fwd s6_ref_fwd(const S6Problem& p) {
  const int64_t L = p.L, E = p.E, N = p.N;
  S6Fwd f;
  f.out.assign(p.B * L * E, 0.0);
  f.hT.assign(p.B * E * N, 0.0);
  std::vector<T> hs, dt;
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t e = 0; e < E; ++e) {
      detail::channel_states<T>(p, b, e, hs, dt);
      const T Dv = p.D.empty() ? T(0) : T(p.D[e]);
      for (int64_t t = 0; t < L; ++t) {
        const int64_t r = (b * L + t) * E + e;
        T y = Dv * T(p.u[r]);
        for (int64_t n = 0; n < N; ++n) y += T(p.Cm[(b * L + t) * N + n]) * hs[(t + 1) * N + n];
        if (!p.z.empty()) y *= T(p.z[r]) / (T(1) + std::exp(-T(p.z[r])));
        f.out[r] = double(y);
      }
      for (int64_t n = 0; n < N; ++n) f.hT[(b * E + e) * N + n] = double(hs[L * N + n]);
    }
  return f;
}

// dout (B, L, E); dhT (B, E, N) or empty.
inline S6Grads s6_ref_bwd(const S6Problem& p, const std::vector<double>& dout, const std::vector<double>& dhT) {
  const int64_t L = p.L, E = p.E, N = p.N;
  S6Grads gr;
  gr.du.assign(p.B * L * E, 0.0);
  gr.ddelta.assign(p.B * L * E, 0.0);
  if (!p.z.empty()) gr.dz.assign(p.B * L * E, 0.0);
  gr.dB.assign(p.B * L * N, 0.0);
  gr.dC.assign(p.B * L * N, 0.0);
  gr.dA.assign(E * N, 0.0);
  gr.dD.assign(E, 0.0);
  gr.ddt_bias.assign(E, 0.0);
  gr.ddt_scale.assign(E, 0.0);
  gr.dh0.assign(p.B * E * N, 0.0);
  std::vector<double> hs, dt, dhc(N);
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t e = 0; e < E; ++e) {
      detail::channel_states<double>(p, b, e, hs, dt);
      const double Dv = p.D.empty() ? 0.0 : p.D[e], s = detail::scale_of(p, e);
      const double bias = p.dt_bias.empty() ? 0.0 : p.dt_bias[e];
      for (int64_t n = 0; n < N; ++n) dhc[n] = dhT.empty() ? 0.0 : dhT[(b * E + e) * N + n];
      for (int64_t t = L - 1; t >= 0; --t) {
        const int64_t r = (b * L + t) * E + e, rn = (b * L + t) * N;
        const double uv = p.u[r], d = dt[t];
        double y = Dv * uv;
        for (int64_t n = 0; n < N; ++n) y += p.Cm[rn + n] * hs[(t + 1) * N + n];
        double g = dout[r];
        if (!p.z.empty()) {
          const double zv = p.z[r], sz = ref_sigmoid(zv);
          g = dout[r] * zv * sz;
          gr.dz[r] = dout[r] * y * sz * (1.0 + zv * (1.0 - sz));
        }
        double sB = 0.0, sA = 0.0;
        for (int64_t n = 0; n < N; ++n) {
          const double a = std::exp(d * p.A[e * N + n]);
          const double dh = dhc[n] + p.Cm[rn + n] * g;
          const double q = dh * a * hs[t * N + n];
          gr.dA[e * N + n] += q * d;
          sA += q * p.A[e * N + n];
          sB += p.Bm[rn + n] * dh;
          gr.dB[rn + n] += dh * d * uv;
          gr.dC[rn + n] += g * hs[(t + 1) * N + n];
          dhc[n] = dh * a;
        }
        const double x = p.delta[r] + bias;
        const double ddt = uv * sB + sA;
        const double ddr = ddt * s * (x > 20.0 ? 1.0 : ref_sigmoid(x));
        gr.du[r] = Dv * g + d * sB;
        gr.ddelta[r] = ddr;
        gr.dD[e] += g * uv;
        gr.ddt_bias[e] += ddr;
        gr.ddt_scale[e] += ddt * ref_softplus(x);
      }
      for (int64_t n = 0; n < N; ++n) gr.dh0[(b * E + e) * N + n] = dhc[n];
    }
  return gr;
}

}  // namespace mx::kern::ref
