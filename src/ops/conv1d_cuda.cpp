// CUDA glue of the causal depthwise conv1d (kernels/conv1d): ops::causal_conv1d on CUDA tensors and its
// backward (conventions of ref::causal_conv1d_bwd). x may be a strided view with a contiguous last dimension
// (the model's x is a narrow() of the in_proj output). Weight, bias and state are used in the activation type,
// as the model stores them; the state is updated in place when it already has that type and is contiguous.
// float64 and kernel widths outside 2..8 run the CPU reference on host copies (forward) or throw (backward).
#include <ATen/ATen.h>

#include "conv1d/conv1d.h"
#include "ops/check.h"
#include "ops/cuda_ops.h"
#include "ops/cuda_util.h"
#include "ref/ref.h"

namespace mx::ops {

namespace {
using namespace cuda_detail;
std::atomic<bool> g_warned_fallback{false};

bool supported(const at::Tensor& x, int64_t K) { return x.scalar_type() != at::kDouble && K >= 2 && K <= 8; }

kern::Conv1dArgs make_args(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, const at::Tensor& st) {
  kern::Conv1dArgs a;
  a.batch = x.size(0), a.len = x.size(1), a.channels = x.size(2), a.width = w.size(1);
  a.io = io_type(x.scalar_type());
  a.x = x.data_ptr(), a.x_sb = x.stride(0), a.x_sl = x.stride(1);
  a.weight = w.data_ptr(), a.bias = b.defined() ? b.data_ptr() : nullptr, a.state_in = st.data_ptr();
  return a;
}
}  // namespace

at::Tensor causal_conv1d_cuda(const at::Tensor& x_in, const at::Tensor& weight, const at::Tensor& bias,
                              at::Tensor& state, bool silu) {
  const int64_t B = x_in.size(0), L = x_in.size(1), C = x_in.size(2), K = weight.size(1);
  if (!supported(x_in, K)) {
    warn_once(g_warned_fallback, fmt::format("causal_conv1d: no CUDA kernel for {} with width {}; running the CPU "
                                             "reference on host copies", c10::toString(x_in.scalar_type()), K));
    auto sc = state.cpu();
    auto y = ref::causal_conv1d(x_in.cpu(), weight.cpu(), bias.defined() ? bias.cpu() : bias, sc);
    state.copy_(sc);
    return (silu ? at::silu(y) : y).to(x_in.device());
  }
  const c10::cuda::CUDAGuard guard(x_in.device());
  if (B == 0 || L == 0 || C == 0) return at::empty({B, L, C}, x_in.options());
  const auto io = io_dtype(x_in.scalar_type());
  auto x = act(x_in, io);
  auto w = weight.to(io).contiguous(), b = bias.defined() ? bias.to(io).contiguous() : bias;
  const bool direct = state.scalar_type() == io && state.is_contiguous();
  at::Tensor st = direct ? state : state.to(io).contiguous();  // (B, C, K-1)
  auto y = at::empty({B, L, C}, x.options());                  // (B, L, C)
  auto a = make_args(x, w, b, st);
  a.silu = silu;
  check(kern::conv1d_fwd(a, y.data_ptr(), y.stride(0), y.stride(1), st.data_ptr(), stream()), "causal_conv1d");
  if (!direct) state.copy_(st);
  return y.scalar_type() == x_in.scalar_type() ? y : y.to(x_in.scalar_type());
}

ref::CausalConv1dGrads causal_conv1d_bwd_cuda(const at::Tensor& x_in, const at::Tensor& weight,
                                              const at::Tensor& state_in, const at::Tensor& dy,
                                              const at::Tensor& dstate_out, CausalConv1dWeightGrads* weight_grads) {
  using detail::check_shape;
  constexpr const char* op = "causal_conv1d_bwd_cuda";
  check_shape(x_in, {-1, -1, -1}, op, "x");
  const int64_t B = x_in.size(0), L = x_in.size(1), C = x_in.size(2);
  check_shape(weight, {C, -1}, op, "weight");
  const int64_t K = weight.size(1);
  check_shape(state_in, {B, C, K - 1}, op, "state_in");
  if (dy.defined()) check_shape(dy, {B, L, C}, op, "dy");
  if (dstate_out.defined()) check_shape(dstate_out, {B, C, K - 1}, op, "dstate_out");
  if (!x_in.is_cuda()) throw ShapeError(std::string(op) + ": x must be a CUDA tensor, got " + x_in.device().str());
  for (const at::Tensor* t : {&weight, &state_in, &dy, &dstate_out}) detail::check_same_device(x_in, *t, op, "all inputs");
  if (!supported(x_in, K))
    throw UsageError(fmt::format("{}: no CUDA kernel for {} with width {} (use ref::causal_conv1d_bwd)", op,
                                 c10::toString(x_in.scalar_type()), K));
  if (B == 0 || L == 0 || C == 0) throw ShapeError(std::string(op) + ": empty input");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto io = io_dtype(x_in.scalar_type());
  auto x = act(x_in, io), w = weight.to(io).contiguous(), st = state_in.to(io).contiguous();
  auto dyc = dy.defined() ? act(dy, io) : at::zeros({B, L, C}, x.options());
  auto dso = dstate_out.defined() ? f32(dstate_out) : at::Tensor();
  auto dx = at::empty({B, L, C}, x.options());                                   // (B, L, C)
  auto f32o = x.options().dtype(at::kFloat);
  auto dw = at::empty({C, K}, f32o), db = at::empty({C}, f32o), dsi = at::empty({B, C, K - 1}, f32o);
  auto a = make_args(x, w, at::Tensor(), st);
  kern::Conv1dBwdArgs g;
  g.dy = dyc.data_ptr(), g.dy_sb = dyc.stride(0), g.dy_sl = dyc.stride(1), g.dstate_out = ptr<float>(dso);
  g.dx = dx.data_ptr(), g.dx_sb = dx.stride(0), g.dx_sl = dx.stride(1);
  g.dweight = dw.data_ptr<float>(), g.dbias = db.data_ptr<float>(), g.dstate_in = dsi.data_ptr<float>();
  check(kern::conv1d_bwd(a, g, stream()), op);
  ref::CausalConv1dGrads r;
  r.dx = dx.to(x_in.scalar_type());
  r.dstate = dsi.to(state_in.scalar_type());
  if (weight_grads) *weight_grads = {dw, db};
  return r;
}

}  // namespace mx::ops
