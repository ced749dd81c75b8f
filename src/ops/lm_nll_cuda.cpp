// CUDA glue of the fused LM-head cross entropy (kernels/loss): validates, then launches one CTA per row on the
// current stream with the tensors' own strides (no copies for fp32 / bf16 logits).
#include <ATen/ATen.h>

#include <limits>

#include "loss/lm_nll.h"
#include "ops/check.h"
#include "ops/cuda_ops.h"
#include "ops/cuda_util.h"

namespace mx::ops {

void lm_nll_cuda(const at::Tensor& logits_in, const at::Tensor& targets_in, const at::Tensor& out_in) {
  using namespace cuda_detail;
  constexpr const char* op = "lm_nll";
  if (!logits_in.defined() || (logits_in.dim() != 2 && logits_in.dim() != 3))
    throw ShapeError("lm_nll: logits must be (groups, rows, V) or (rows, V)");
  const bool two = logits_in.dim() == 2;
  const auto logits = two ? logits_in.unsqueeze(0) : logits_in;  // (G, n, V)
  const int64_t G = logits.size(0), n = logits.size(1), V = logits.size(2);
  if (V < 1) throw ShapeError("lm_nll: the vocabulary dimension of the logits is empty");
  const auto targets = targets_in.defined() && two ? targets_in.unsqueeze(0) : targets_in;
  const auto out = out_in.defined() && two ? out_in.unsqueeze(0) : out_in;
  detail::check_shape(targets, {G, n}, op, "targets");
  detail::check_shape(out, {G, n}, op, "out");
  if (targets.scalar_type() != at::kLong) throw ShapeError("lm_nll: targets must be int64");
  if (out.scalar_type() != at::kDouble) throw ShapeError("lm_nll: out must be float64");
  if (!logits.is_cuda()) throw ShapeError("lm_nll: logits must be a CUDA tensor, got " + logits.device().str());
  detail::check_same_device(logits, targets, op, "targets");
  detail::check_same_device(logits, out, op, "out");
  if (G * n == 0) return;
  const c10::cuda::CUDAGuard guard(logits.device());
  const auto st = logits.scalar_type();
  if (st != at::kFloat && st != at::kBFloat16) {  // fp16 / fp64: the ATen expression, bad targets -> NaN
    const auto ok = targets.ge(0).logical_and(targets.lt(V));
    const auto t = targets.clamp(0, V - 1).unsqueeze(-1);
    const auto l = logits.to(at::kDouble);
    const auto nll = at::logsumexp(l, -1) - l.gather(-1, t).squeeze(-1);
    out.copy_(at::where(ok, nll, at::full({}, std::numeric_limits<double>::quiet_NaN(), nll.options())));
    return;
  }
  const auto lg = logits.stride(2) == 1 ? logits : logits.contiguous();
  kern::LmNllArgs a;
  a.groups = G, a.group_rows = n, a.vocab = V, a.io = io_type(st);
  a.logits = lg.data_ptr(), a.logits_sg = lg.stride(0), a.logits_sr = lg.stride(1);
  a.targets = targets.data_ptr<int64_t>(), a.targets_sg = targets.stride(0), a.targets_sr = targets.stride(1);
  a.nll = out.data_ptr<double>(), a.nll_sg = out.stride(0), a.nll_sr = out.stride(1);
  check(kern::lm_nll_fwd(a, stream()), op);
}

}  // namespace mx::ops
