// CUDA implementations of the ops (src/ops/*_cuda.cpp, compiled only when the kernels are built, i.e. with
// MX_WITH_CUDA). Each takes the arguments of its ops:: / ref:: counterpart, already validated by src/ops/<op>.cpp
// for the forward ops, fills the torch-free params of kernels/<op>/<op>.h and launches on the current CUDA
// stream. Activations run in fp32 or bf16 (fp16 is computed in fp32); float64 (the reference mode) and
// shapes the kernels do not cover fall back to the CPU reference on host copies, with a one-time warning.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include "ref/ref_bwd.h"

namespace mx::ops {

// ---- forward ops (ops.h semantics; `h` / `state` are updated in place)
at::Tensor selective_scan_cuda(const at::Tensor& u, const at::Tensor& delta_raw, const at::Tensor& dt_bias,
                               const at::Tensor& dt_scale, const at::Tensor& A, const at::Tensor& Bm,
                               const at::Tensor& Cm, const at::Tensor& D, const at::Tensor& z, at::Tensor& h);
at::Tensor causal_conv1d_cuda(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                              at::Tensor& state, bool silu = false);
at::Tensor rmsnorm_cuda(const at::Tensor& x, const at::Tensor& w, double eps);

// Fused residual add + RMSNorm (kernels/norm): residual ← residual + x (fp32; created from x when undefined),
// returns rmsnorm(residual)·w in out_dtype. x (…, D); residual (…, D) fp32 contiguous or undefined; w (D).
at::Tensor add_rmsnorm_cuda(const at::Tensor& x, at::Tensor& residual, const at::Tensor& w, double eps,
                            at::ScalarType out_dtype);

// Fused LM-head cross entropy (kernels/loss): out[g, j] = logsumexp(logits[g, j, :]) − logits[g, j, targets[g, j]],
// float64, written in place. logits (G, n, V) or (n, V), fp32 or bf16 (other dtypes run the ATen expression on
// the device) with a unit stride over V and any other strides; targets (G, n) / (n) int64; out (G, n) / (n)
// float64, any strides (a view into a larger buffer). One CUDA device. No host synchronisation. A target outside
// [0, V) gives NaN (never an out-of-bounds read), as do NaN / +inf logits in the row (kernels/loss/lm_nll.h).
void lm_nll_cuda(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& out);

// ---- backward passes (the conventions of ref::selective_scan_bwd / ref::causal_conv1d_bwd in ref/ref_bwd.h:
// gradients in the shapes and dtypes of the inputs; an undefined dy / dhT / dstate_out counts as zeros).
// h0 may be undefined (zeros; dh0 is then fp32). Runs the forward once more to store state checkpoints
// (B, ceil(L/32), E, N) fp32, then the backward kernel.
struct SelectiveScanWeightGrads {
  at::Tensor dA, dD, ddt_bias;  // (E, N), (E), (E), float64 (reduced in fp64)
};
ref::SelectiveScanGrads selective_scan_bwd_cuda(const at::Tensor& u, const at::Tensor& delta_raw,
                                                const at::Tensor& dt_bias, const at::Tensor& dt_scale,
                                                const at::Tensor& A, const at::Tensor& Bm, const at::Tensor& Cm,
                                                const at::Tensor& D, const at::Tensor& z, const at::Tensor& h0,
                                                const at::Tensor& dy, const at::Tensor& dhT,
                                                SelectiveScanWeightGrads* weight_grads = nullptr);

struct CausalConv1dWeightGrads {
  at::Tensor dweight, dbias;  // (C, K), (C), float32
};
ref::CausalConv1dGrads causal_conv1d_bwd_cuda(const at::Tensor& x, const at::Tensor& weight,
                                              const at::Tensor& state_in, const at::Tensor& dy,
                                              const at::Tensor& dstate_out,
                                              CausalConv1dWeightGrads* weight_grads = nullptr);

}  // namespace mx::ops
