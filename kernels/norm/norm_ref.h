// Float64 CPU reference of the fused residual add + RMSNorm (norm.h has the math), torch-free loops.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace mx::kern::ref {

// x (rows, D); residual (rows, D) or empty; w (D). Returns y; residual_out gets r = residual + x.
inline std::vector<double> add_rmsnorm_ref(int64_t rows, int64_t D, const std::vector<double>& x,
                                           const std::vector<double>& residual, const std::vector<double>& w,
                                           double eps, std::vector<double>& residual_out) {
  std::vector<double> y(rows * D);
  residual_out.assign(rows * D, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t i = 0; i < D; ++i) {
      const double v = x[r * D + i] + (residual.empty() ? 0.0 : residual[r * D + i]);
      residual_out[r * D + i] = v;
      ss += v * v;
    }
    const double rstd = 1.0 / std::sqrt(ss / double(D) + eps);
    for (int64_t i = 0; i < D; ++i) y[r * D + i] = residual_out[r * D + i] * rstd * w[i];
  }
  return y;
}

}  // namespace mx::kern::ref
