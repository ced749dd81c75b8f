// Argument checks shared by the ops dispatchers: each names the op, the argument and expected vs actual.
#pragma once
#include <ATen/core/Tensor.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <vector>

#include "mambaextend/error.h"

namespace mx::ops::detail {

inline std::string shape_str(at::IntArrayRef s) { return fmt::format("({})", fmt::join(s, ", ")); }

// Checks `t` is defined with exactly `expected` sizes (-1 = any).
inline void check_shape(const at::Tensor& t, std::vector<int64_t> expected, const char* op, const char* name) {
  if (!t.defined()) throw ShapeError(fmt::format("{}: argument {} is missing", op, name));
  bool ok = t.dim() == static_cast<int64_t>(expected.size());
  for (size_t i = 0; ok && i < expected.size(); ++i) ok = expected[i] < 0 || t.size(i) == expected[i];
  if (!ok)
    throw ShapeError(fmt::format("{}: argument {} has shape {}, expected {}", op, name, shape_str(t.sizes()),
                                 shape_str(expected)));
}

// A Δ-scale argument: undefined, (1) or (width).
inline void check_scale(const at::Tensor& s, int64_t width, const char* op) {
  if (!s.defined()) return;
  if (s.dim() != 1 || (s.size(0) != 1 && s.size(0) != width))
    throw ShapeError(fmt::format("{}: dt_scale has shape {}, expected (1) or ({})", op, shape_str(s.sizes()), width));
}

inline void check_same_device(const at::Tensor& ref, const at::Tensor& t, const char* op, const char* name) {
  if (t.defined() && t.device() != ref.device())
    throw ShapeError(fmt::format("{}: argument {} is on {}, expected {}", op, name, t.device().str(),
                                 ref.device().str()));
}

}  // namespace mx::ops::detail
