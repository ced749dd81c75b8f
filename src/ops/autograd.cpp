// torch::autograd::Function wrappers of selective_scan, ssd_scan and causal_conv1d (src/ops/autograd.h).
// Each node takes the op's inputs and the incoming state, and returns (output, new state); its backward
// calls the CPU reference backward (src/ref/*_bwd_ref.cpp) with the upstream gradients of both outputs.
// Only the activations, the incoming state and the Δ scale get gradients; weight slots return undefined.
// This is the only translation unit that includes the custom-function header (it is heavy to compile).
// Devices: CPU inputs use the CPU references; with MX_WITH_CUDA, CUDA inputs of selective_scan and
// causal_conv1d and ssd_scan use the CUDA backward kernels (src/ops/*_cuda.cpp, same conventions).
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <string>

#include "mambaextend/error.h"
#include "ops/autograd.h"
#include "ref/ref_bwd.h"
#ifdef MX_WITH_CUDA
#include "ops/cuda_ops.h"
#include "ops/cuda_ops_ssd.h"
#endif

namespace mx::ops::detail {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool wants_grad(std::initializer_list<const at::Tensor*> ts) {
  if (!at::GradMode::is_enabled()) return false;
  for (const at::Tensor* t : ts)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

namespace {

// Refuses a device the backward of `op` cannot run on (CUDA is allowed where `cuda_ok`).
void require_backward_device(const at::Tensor& t, const char* op, bool cuda_ok) {
#ifdef MX_WITH_CUDA
  if (cuda_ok && t.is_cuda()) return;
#else
  (void)cuda_ok;
#endif
  if (!t.device().is_cpu())
    throw Error(std::string(op) + ": no backward (calibration by backpropagation) for device " + t.device().str() +
                " yet; run it on the CPU (--device cpu)");
}

// Gradient for input slot i only when autograd asks for it.
at::Tensor if_needed(AutogradContext* ctx, size_t i, const at::Tensor& g) {
  return ctx->needs_input_grad(i) ? g : at::Tensor();
}

struct SelectiveScanFn : torch::autograd::Function<SelectiveScanFn> {
  // Slots: 0 u, 1 delta_raw, 2 dt_bias, 3 dt_scale, 4 A, 5 Bm, 6 Cm, 7 D, 8 z, 9 h0.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& u, const at::Tensor& delta_raw,
                               const at::Tensor& dt_bias, const at::Tensor& dt_scale, const at::Tensor& A,
                               const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, const at::Tensor& z,
                               const at::Tensor& h0) {
    require_backward_device(u, "selective_scan", true);
    at::Tensor h = h0.clone();  // (B, E, N); the forward replaces it with the final state
    auto y = selective_scan_forward(u, delta_raw, dt_bias, dt_scale, A, Bm, Cm, D, z, h);
    ctx->save_for_backward({u, delta_raw, dt_bias, dt_scale, A, Bm, Cm, D, z, h0});
    return {y, h};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
#ifdef MX_WITH_CUDA
    auto g = s[0].is_cuda()
                 ? selective_scan_bwd_cuda(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], grads[0], grads[1])
                 : ref::selective_scan_bwd(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], grads[0], grads[1]);
#else
    auto g = ref::selective_scan_bwd(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], grads[0], grads[1]);
#endif
    return {if_needed(ctx, 0, g.du), if_needed(ctx, 1, g.ddelta_raw), at::Tensor(), if_needed(ctx, 3, g.dscale),
            at::Tensor(), if_needed(ctx, 5, g.dB), if_needed(ctx, 6, g.dC), at::Tensor(), if_needed(ctx, 8, g.dz),
            if_needed(ctx, 9, g.dh0)};
  }
};

struct SsdScanFn : torch::autograd::Function<SsdScanFn> {
  // Arguments: x, dt_raw, dt_bias, dt_scale, dt_min, dt_max, A, Bm, Cm, D, h0; tensor slots (needs_input_grad):
  // 0 x, 1 dt_raw, 2 dt_bias, 3 dt_scale, 4 A, 5 Bm, 6 Cm, 7 D, 8 h0.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& dt_raw,
                               const at::Tensor& dt_bias, const at::Tensor& dt_scale, double dt_min, double dt_max,
                               const at::Tensor& A, const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D,
                               const at::Tensor& h0) {
    require_backward_device(x, "ssd_scan", true);
    at::Tensor h = h0.clone();  // (B, H, P, N)
    at::Tensor saved;           // CUDA: the intermediates the backward would otherwise recompute (S_in, ...)
    auto y = ssd_scan_forward(x, dt_raw, dt_bias, dt_scale, dt_min, dt_max, A, Bm, Cm, D, h, &saved);
    ctx->save_for_backward({x, dt_raw, dt_bias, dt_scale, A, Bm, Cm, D, h0, saved});
    ctx->saved_data["dt_min"] = dt_min;
    ctx->saved_data["dt_max"] = dt_max;
    return {y, h};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const double lo = ctx->saved_data["dt_min"].toDouble(), hi = ctx->saved_data["dt_max"].toDouble();
#ifdef MX_WITH_CUDA
    auto g = s[0].is_cuda()
                 ? ssd_scan_bwd_cuda(s[0], s[1], s[2], s[3], lo, hi, s[4], s[5], s[6], s[7], s[8], grads[0], grads[1],
                                     s[9])
                 : ref::ssd_scan_bwd(s[0], s[1], s[2], s[3], lo, hi, s[4], s[5], s[6], s[7], s[8], grads[0], grads[1]);
#else
    auto g = ref::ssd_scan_bwd(s[0], s[1], s[2], s[3], lo, hi, s[4], s[5], s[6], s[7], s[8], grads[0], grads[1]);
#endif
    // One entry per forward argument (the two doubles included); needs_input_grad counts tensors only.
    return {if_needed(ctx, 0, g.dx), if_needed(ctx, 1, g.ddt_raw), at::Tensor(), if_needed(ctx, 3, g.dscale),
            at::Tensor(), at::Tensor(), at::Tensor(), if_needed(ctx, 5, g.dB), if_needed(ctx, 6, g.dC),
            at::Tensor(), if_needed(ctx, 8, g.dh0)};
  }
};

struct CausalConv1dFn : torch::autograd::Function<CausalConv1dFn> {
  // Slots: 0 x, 1 weight, 2 bias, 3 state.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               const at::Tensor& bias, const at::Tensor& state) {
    require_backward_device(x, "causal_conv1d", true);
    at::Tensor st = state.clone();  // (B, C, K-1)
    auto y = causal_conv1d_forward(x, weight, bias, st);
    ctx->save_for_backward({x, weight, state});
    return {y, st};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
#ifdef MX_WITH_CUDA
    auto g = s[0].is_cuda() ? causal_conv1d_bwd_cuda(s[0], s[1], s[2], grads[0], grads[1])
                            : ref::causal_conv1d_bwd(s[0], s[1], s[2], grads[0], grads[1]);
#else
    auto g = ref::causal_conv1d_bwd(s[0], s[1], s[2], grads[0], grads[1]);
#endif
    return {if_needed(ctx, 0, g.dx), at::Tensor(), at::Tensor(), if_needed(ctx, 3, g.dstate)};
  }
};

}  // namespace

at::Tensor selective_scan_autograd(const at::Tensor& u, const at::Tensor& delta_raw, const at::Tensor& dt_bias,
                                   const at::Tensor& dt_scale, const at::Tensor& A, const at::Tensor& Bm,
                                   const at::Tensor& Cm, const at::Tensor& D, const at::Tensor& z, at::Tensor& h) {
  auto out = SelectiveScanFn::apply(u, delta_raw, dt_bias, dt_scale, A, Bm, Cm, D, z, h);
  h = out[1];
  return out[0];
}

at::Tensor ssd_scan_autograd(const at::Tensor& x, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                             const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                             const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, at::Tensor& h) {
  auto out = SsdScanFn::apply(x, dt_raw, dt_bias, dt_scale, dt_min, dt_max, A, Bm, Cm, D, h);
  h = out[1];
  return out[0];
}

at::Tensor causal_conv1d_autograd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                  at::Tensor& state) {
  auto out = CausalConv1dFn::apply(x, weight, bias, state);
  state = out[1];
  return out[0];
}

}  // namespace mx::ops::detail
