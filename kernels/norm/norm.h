// Fused residual add + RMSNorm on CUDA, torch-free interface (kernels.md §1b "Residual stream"):
//   r = residual_in + x   (fp32; r = x without residual_in),   y = r · rsqrt(mean(r²) + eps) · w
// as mamba_ssm's fused add+norm computes it: the fp32 sum is normalised in fp32, then cast to the output
// type. x is fp32 or bf16 (rows, D) with a row stride; residual_in / residual_out (rows, D) contiguous fp32
// (out may alias in); w (D) fp32; y (rows, D) contiguous, fp32 or bf16. One CTA of 256 threads per row.
#pragma once
#include <cstdint>

#include "io_types.h"

namespace mx::kern {

struct AddNormArgs {
  int64_t rows = 0, dim = 0;
  IoType x_io = IoType::F32;
  const void* x = nullptr;
  int64_t x_srow = 0;
  const float* residual_in = nullptr;  // or null
  float* residual_out = nullptr;       // or null
  const float* weight = nullptr;
  IoType y_io = IoType::F32;
  void* y = nullptr;
  float eps = 1e-5f;
};

cudaError_t add_rmsnorm_fwd(const AddNormArgs& a, cudaStream_t stream);

}  // namespace mx::kern
