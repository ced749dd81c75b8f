// Float64 chunked reference of the Mamba2 SSD scan (the ssd_minimal_discrete form of state-spaces/mamba,
// modules/ssd_minimal.py) as differentiable ATen expressions: the second, independent reference next to the
// sequential recurrence of ssd_scan_ref.cpp (ops.h ssd_scan semantics; kernels.md §3 "Mamba2 SSD").
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace mx::ref {

// Same arguments and result as ops::ssd_scan, computed in float64 over chunks of `chunk` tokens:
//   X = x·Δ, a = Δ·A;  per chunk: y_diag = (C·Bᵀ ⊙ exp(segsum(a)))·X, chunk states from exp(cs_end − cs)·X ⊗ B,
//   states passed between chunks by exp(cs_end), y_off = exp(cs)·C·S_in;  y = y_diag + y_off + D·x.
// Every step is an ATen op, so autograd differentiates it (x, dt_raw, Bm, Cm, dt_scale, h may require grad).
// `h` (B, H, P, N) is the initial state; it is replaced by a new tensor holding the final state (in h's dtype,
// connected to the graph), not written in place. The result has x's dtype. Memory O(L·chunk·H).
at::Tensor ssd_scan_chunked(const at::Tensor& x, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                            const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                            const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, at::Tensor& h,
                            int64_t chunk = 64);

}  // namespace mx::ref
