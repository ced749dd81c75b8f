// Float64 CPU reference of the fused LM-head cross entropy (lm_nll.h has the math), torch-free loops.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace mx::kern::ref {

// logits (rows, V) row-major; targets (rows). Returns nll (rows) = logsumexp(row) − row[target], NaN for a
// target outside [0, V) or a row holding NaN or +inf (as lm_nll.h specifies).
inline std::vector<double> lm_nll_ref(int64_t rows, int64_t V, const std::vector<double>& logits,
                                      const std::vector<int64_t>& targets) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> out(static_cast<size_t>(rows), nan);
  for (int64_t r = 0; r < rows; ++r) {
    const double* x = logits.data() + r * V;
    double m = -INFINITY;
    bool bad = false;
    for (int64_t i = 0; i < V; ++i) {
      if (std::isnan(x[i]) || x[i] == INFINITY) bad = true;
      m = std::max(m, x[i]);
    }
    const int64_t t = targets[r];
    if (bad || t < 0 || t >= V || m == -INFINITY) continue;
    double s = 0.0;
    for (int64_t i = 0; i < V; ++i) s += std::exp(x[i] - m);
    out[r] = m + std::log(s) - x[t];
  }
  return out;
}

}  // namespace mx::kern::ref
