// The operations the Mamba mixers are built from. Each validates its arguments, then dispatches on the
// device of its inputs: the CPU implementation lives in src/ref/<op>_ref.cpp (plain loops, float32 or
// float64, the reference for the CUDA kernels), the CUDA one in kernels/ (when built with MAMBAEXTEND_CUDA).
// Layouts are batch-major, time-major: (B, L, channels).
// Gradients (CFBP, src/ops/autograd.h): with grad mode on and an activation, the state or the Δ scale requiring
// grad, the scan and conv ops record a graph node and replace their in/out state argument by a new tensor (the
// node's second output) instead of updating it; weights (A, D, dt_bias, conv weight and bias) get no gradient.
#pragma once
#include <ATen/core/Tensor.h>

namespace mx::ops {

// Causal depthwise conv1d over time, continuing from `state`:
//   y[b,t,c] = bias[c] + Σ_k w[c,k] · xx[b, t+k, c]   where xx = concat(state (K-1 oldest-first), x) over time
// x (B, L, C); weight (C, K); bias (C) or undefined; state (B, C, K-1), replaced by the last K-1 inputs.
// Returns the pre-activation (B, L, C) in x's dtype.
// silu: return silu(y) (one fused kernel on CUDA when no gradient is wanted).
at::Tensor causal_conv1d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::Tensor& state,
                         bool silu = false);

// Mamba1 selective scan with the Δ computation and the gate fused in:
//   Δ[b,t,e]  = s[e] · softplus(delta_raw[b,t,e] + dt_bias[e])       (s = dt_scale, broadcast from (1) or (E))
//   h_t[e,n]  = exp(Δ·A[e,n]) · h_{t-1}[e,n] + Δ · B_t[n] · u_t[e]
//   y_t[e]    = (Σ_n C_t[n] h_t[e,n] + D[e] u_t[e]) · silu(z_t[e])     (no gate when z is undefined)
// u, delta_raw, z: (B, L, E); A (E, N); Bm, Cm (B, L, N); D, dt_bias (E); dt_scale (1) or (E) or undefined;
// h (B, E, N): initial state in, final state out (fp32, or fp64 when u is fp64). Returns y (B, L, E).
at::Tensor selective_scan(const at::Tensor& u, const at::Tensor& delta_raw, const at::Tensor& dt_bias,
                          const at::Tensor& dt_scale, const at::Tensor& A, const at::Tensor& Bm,
                          const at::Tensor& Cm, const at::Tensor& D, const at::Tensor& z, at::Tensor& h);

// Mamba2 SSD scan (the recurrence; any chunked evaluation must equal it):
//   Δ[b,t,h]   = s[h] · clamp(softplus(dt_raw[b,t,h] + dt_bias[h]), dt_min, dt_max)
//   h_t[h,p,n] = exp(Δ·A[h]) · h_{t-1}[h,p,n] + Δ · x_t[h,p] · B_t[g(h),n]      g(h) = h / (H/G)
//   y_t[h,p]   = Σ_n C_t[g(h),n] h_t[h,p,n] + D[h] x_t[h,p]
// x (B, L, H, P); dt_raw (B, L, H); dt_bias, A, D (H); Bm, Cm (B, L, G, N); dt_scale (1) or (H) or undefined;
// h (B, H, P, N) in/out. Returns y (B, L, H, P).
at::Tensor ssd_scan(const at::Tensor& x, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                    const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                    const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, at::Tensor& h);

// RMSNorm over the last dimension, computed in fp32 (fp64 for fp64 inputs): x · rsqrt(mean(x²) + eps) · w.
at::Tensor rmsnorm(const at::Tensor& x, const at::Tensor& w, double eps);

// Residual add + RMSNorm, the pre-norm of every layer: residual <- residual + x (fp32, fp64 for fp64 x; an
// undefined residual starts at x), returns rmsnorm(residual)·w in out_dtype. On CUDA with grad mode off one fused
// kernel (kernels/norm, the same fp32 math) updates the residual in place; otherwise ATen expressions, out of place.
at::Tensor add_rmsnorm(const at::Tensor& x, at::Tensor& residual, const at::Tensor& w, double eps,
                       at::ScalarType out_dtype);

// Mamba2 gated group RMSNorm (norm_before_gate = False): g = y · silu(z); RMS over each of `groups` equal
// slices of the last dimension; · w. y, z (…, E); w (E).
at::Tensor gated_group_rmsnorm(const at::Tensor& y, const at::Tensor& z, const at::Tensor& w, int64_t groups,
                               double eps);

}  // namespace mx::ops
