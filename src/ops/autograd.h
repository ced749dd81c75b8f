// Differentiable versions of the scan and conv ops, for CFBP (method.md §3). The public ops in
// include/mambaextend/ops.h call them only when grad mode is on and an input requires grad; otherwise they
// run exactly the no-grad path. In the autograd path the in/out state argument is functional: it is
// replaced by a new tensor that is an output of the graph node, so ∂loss/∂(final state) flows back to the
// initial state (segments chain, kernels.md §6).
// The backward passes are the CPU references of src/ref/*_bwd_ref.cpp; gradients are formed for the
// activations, the state and the Δ scale only (weights never require grad).
#pragma once
#include <ATen/core/Tensor.h>

#include <initializer_list>

namespace mx::ops::detail {

// True when grad mode is enabled and any defined tensor in `ts` requires grad.
bool wants_grad(std::initializer_list<const at::Tensor*> ts);

// The no-grad forward dispatchers (CPU reference or CUDA), defined next to each op in src/ops/<op>.cpp.
at::Tensor selective_scan_forward(const at::Tensor& u, const at::Tensor& delta_raw, const at::Tensor& dt_bias,
                                  const at::Tensor& dt_scale, const at::Tensor& A, const at::Tensor& Bm,
                                  const at::Tensor& Cm, const at::Tensor& D, const at::Tensor& z, at::Tensor& h);
// `saved` (autograd): receives what the backward can reuse instead of recomputing (the CUDA kernels' intermediates;
// left undefined by the CPU reference).
at::Tensor ssd_scan_forward(const at::Tensor& x, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                            const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                            const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, at::Tensor& h,
                            at::Tensor* saved = nullptr);
at::Tensor causal_conv1d_forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                 at::Tensor& state);

// Autograd versions (src/ops/autograd.cpp): same arguments and results as the ops; `h` / `state` is replaced
// by the graph's new-state output.
at::Tensor selective_scan_autograd(const at::Tensor& u, const at::Tensor& delta_raw, const at::Tensor& dt_bias,
                                   const at::Tensor& dt_scale, const at::Tensor& A, const at::Tensor& Bm,
                                   const at::Tensor& Cm, const at::Tensor& D, const at::Tensor& z, at::Tensor& h);
at::Tensor ssd_scan_autograd(const at::Tensor& x, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                             const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                             const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, at::Tensor& h);
at::Tensor causal_conv1d_autograd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                  at::Tensor& state);

}  // namespace mx::ops::detail
