// Mamba2's gated group RMSNorm on CUDA, torch-free interface (ops.h gated_group_rmsnorm, norm_before_gate =
// False; kernels.md §1b):  g = y · silu(z);  out = g · rsqrt(mean over its group of g² + eps) · w,
// groups = `groups` equal slices of the last dimension. y, z and out are fp32 or bf16 (the io type) rows of
// `dim` elements with a row stride (unit element stride); w (dim) fp32. Math in fp32; one CTA per (row, group).
#pragma once
#include <cstdint>

#include "io_types.h"

namespace mx::kern {

struct GatedNormArgs {
  int64_t rows = 0, dim = 0, groups = 1;
  IoType io = IoType::F32;
  const void* y = nullptr;
  int64_t y_srow = 0;
  const void* z = nullptr;
  int64_t z_srow = 0;
  const float* w = nullptr;
  void* out = nullptr;
  int64_t out_srow = 0;
  float eps = 1e-5f;
};

cudaError_t gated_group_rmsnorm_fwd(const GatedNormArgs& a, cudaStream_t stream);

}  // namespace mx::kern
