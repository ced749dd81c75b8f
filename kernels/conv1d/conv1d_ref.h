// Float64 CPU reference of the causal depthwise conv1d with state (conv1d.h has the math), torch-free loops
// over contiguous arrays, for the standalone GPU tests and the GoogleTest CUDA tests.
#pragma once
#include <cstdint>
#include <vector>

namespace mx::kern::ref {

struct Conv1dProblem {
  int64_t B = 0, L = 0, C = 0, K = 0;
  std::vector<double> x;       // (B, L, C)
  std::vector<double> weight;  // (C, K)
  std::vector<double> bias;    // (C) or empty
  std::vector<double> state;   // (B, C, K-1)
};

namespace detail {
inline double conv_xx(const Conv1dProblem& p, int64_t b, int64_t c, int64_t q) {  // concat(state, x)[q]
  return q < p.K - 1 ? p.state[(b * p.C + c) * (p.K - 1) + q] : p.x[(b * p.L + (q - (p.K - 1))) * p.C + c];
}
}  // namespace detail

// Returns y (B, L, C); new_state (B, C, K-1).
inline std::vector<double> conv1d_ref_fwd(const Conv1dProblem& p, std::vector<double>& new_state) {
  std::vector<double> y(p.B * p.L * p.C);
  new_state.assign(p.B * p.C * (p.K - 1), 0.0);
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t c = 0; c < p.C; ++c) {
      for (int64_t t = 0; t < p.L; ++t) {
        double acc = p.bias.empty() ? 0.0 : p.bias[c];
        for (int64_t k = 0; k < p.K; ++k) acc += p.weight[c * p.K + k] * detail::conv_xx(p, b, c, t + k);
        y[(b * p.L + t) * p.C + c] = acc;
      }
      for (int64_t m = 0; m < p.K - 1; ++m) new_state[(b * p.C + c) * (p.K - 1) + m] = detail::conv_xx(p, b, c, p.L + m);
    }
  return y;
}

struct Conv1dGrads {
  std::vector<double> dx, dweight, dbias, dstate_in;  // (B, L, C), (C, K), (C), (B, C, K-1)
};

// dy (B, L, C); dstate_out (B, C, K-1) or empty.
inline Conv1dGrads conv1d_ref_bwd(const Conv1dProblem& p, const std::vector<double>& dy,
                                  const std::vector<double>& dstate_out) {
  const int64_t B = p.B, L = p.L, C = p.C, K = p.K;
  Conv1dGrads g;
  g.dx.assign(B * L * C, 0.0);
  g.dweight.assign(C * K, 0.0);
  g.dbias.assign(C, 0.0);
  g.dstate_in.assign(B * C * (K - 1), 0.0);
  std::vector<double> dxx(L + K - 1);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      std::fill(dxx.begin(), dxx.end(), 0.0);
      for (int64_t t = 0; t < L; ++t) {
        const double d = dy[(b * L + t) * C + c];
        g.dbias[c] += d;
        for (int64_t k = 0; k < K; ++k) {
          dxx[t + k] += p.weight[c * K + k] * d;
          g.dweight[c * K + k] += d * detail::conv_xx(p, b, c, t + k);
        }
      }
      if (!dstate_out.empty())
        for (int64_t m = 0; m < K - 1; ++m) dxx[L + m] += dstate_out[(b * C + c) * (K - 1) + m];
      for (int64_t q = 0; q < L + K - 1; ++q) {
        if (q < K - 1) g.dstate_in[(b * C + c) * (K - 1) + q] = dxx[q];
        else g.dx[(b * L + q - (K - 1)) * C + c] = dxx[q];
      }
    }
  return g;
}

}  // namespace mx::kern::ref
