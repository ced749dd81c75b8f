// CUDA implementations of the Mamba2 ops (src/ops/ssd_scan_cuda.cpp, src/ops/gated_norm_cuda.cpp; compiled only
// with MX_WITH_CUDA). Arguments are those of ops::ssd_scan / ops::gated_group_rmsnorm (validated by the ops
// dispatchers) and, for the backward, the conventions of ref::ssd_scan_bwd (ref/ref_bwd.h). Activations run in
// fp32 or bf16 (fp16 is computed in fp32); float64 (the reference mode) and shapes the kernels do not cover
// (head dim other than 64, d_state outside {64, 128, 256}) fall back to the CPU reference on host copies with a
// one-time warning (forward) or throw UsageError (backward).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "ref/ref_bwd.h"

namespace mx::ops {

// ops::ssd_scan on CUDA tensors; `h` (B, H, P, N) is the initial state in and the final state out (updated in
// place when it is a contiguous fp32 tensor). force_chunked (tests): use the chunked kernels even for the short
// sequences that otherwise take the recurrent kernel. With `saved` non-null the forward also keeps what the
// backward would otherwise recompute (kern::SsdFwdOut::saved: Δ, its cumsum, CB and S_in, as a byte tensor) for
// ssd_scan_bwd_cuda; it stays undefined where the CPU reference runs.
at::Tensor ssd_scan_cuda(const at::Tensor& x, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                         const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                         const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, at::Tensor& h,
                         bool force_chunked = false, at::Tensor* saved = nullptr);

// Backward of ops::ssd_scan (ref::ssd_scan_bwd semantics: dx, ddt_raw, dB, dC, dh0 and dscale in the shapes and
// dtypes of x, dt_raw, Bm, Cm, h0, dt_scale; undefined dy / dhT count as zeros; h0 undefined = zeros). `saved`:
// from ssd_scan_cuda on the same inputs, or undefined (the backward recomputes it).
ref::SsdScanGrads ssd_scan_bwd_cuda(const at::Tensor& x, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                                    const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                                    const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D,
                                    const at::Tensor& h0, const at::Tensor& dy, const at::Tensor& dhT,
                                    const at::Tensor& saved = at::Tensor());

// ops::gated_group_rmsnorm on CUDA tensors (no autograd: the dispatcher keeps the ATen expression when
// gradients are required). fp32 / bf16 y; other dtypes run the ATen reference on the device.
at::Tensor gated_group_rmsnorm_cuda(const at::Tensor& y, const at::Tensor& z, const at::Tensor& w, int64_t groups,
                                    double eps);

}  // namespace mx::ops
