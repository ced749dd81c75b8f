// CPU reference backward passes of the scan and conv ops (include/mambaextend/ops.h), used by the autograd
// wrappers in src/ops/autograd.cpp for CFBP (method.md §3, kernels.md §6). Plain loops in float64 for float64
// inputs, float32 otherwise; reductions over time (dscale) are accumulated in float64.
// Gradients are formed only for what calibration needs: the activations (so that ∂/∂s flows through earlier
// layers), the initial state (so that segments chain: dh0 of segment k is dhT of segment k-1) and the Δ
// scale. Weights (A, D, dt_bias, conv weight/bias) get no gradient: they never require one.
// An undefined upstream gradient (dy or dhT) counts as zeros.
#pragma once
#include <ATen/core/Tensor.h>

namespace mx::ref {

struct SelectiveScanGrads {
  at::Tensor du, ddelta_raw, dB, dC, dz, dh0, dscale;  // shapes and dtypes of u, delta_raw, Bm, Cm, z, h0, dt_scale
};
// Backward of ops::selective_scan: h0 is the state the forward started from; dy (B, L, E) is ∂loss/∂y and
// dhT (B, E, N) is ∂loss/∂(final state). Recomputes the forward from h0 with a state checkpoint every 64
// tokens, then walks each 64-token chunk in reverse: memory O(L/64 · E · N + L · N).
SelectiveScanGrads selective_scan_bwd(const at::Tensor& u, const at::Tensor& delta_raw, const at::Tensor& dt_bias,
                                      const at::Tensor& dt_scale, const at::Tensor& A, const at::Tensor& Bm,
                                      const at::Tensor& Cm, const at::Tensor& D, const at::Tensor& z,
                                      const at::Tensor& h0, const at::Tensor& dy, const at::Tensor& dhT);

struct SsdScanGrads {
  at::Tensor dx, ddt_raw, dB, dC, dh0, dscale;  // shapes and dtypes of x, dt_raw, Bm, Cm, h0, dt_scale
};
// Backward of ops::ssd_scan (same scheme as selective_scan_bwd, per (batch, head)). The clamp to
// [dt_min, dt_max] passes the gradient where dt_min <= softplus <= dt_max (as torch.clamp does).
SsdScanGrads ssd_scan_bwd(const at::Tensor& x, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                          const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                          const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, const at::Tensor& h0,
                          const at::Tensor& dy, const at::Tensor& dhT);

struct CausalConv1dGrads {
  at::Tensor dx, dstate;  // (B, L, C) and (B, C, K-1), dtypes of x and of the state
};
// Backward of ops::causal_conv1d with respect to x and the incoming state; dstate_out (B, C, K-1) is the
// gradient on the state the forward left behind (the last K-1 inputs).
CausalConv1dGrads causal_conv1d_bwd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& state_in,
                                    const at::Tensor& dy, const at::Tensor& dstate_out);

}  // namespace mx::ref
