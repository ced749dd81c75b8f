// MambaLM: embedding -> n_layer x [r += h; u = RMSNorm(r)·w; h = mixer(u)] -> r += h -> norm_f -> LM head.
// The residual stream r is fp32 (fp64 in reference mode) as in mamba_ssm (residual_in_fp32) and HF; the
// mixers are in mamba1_mixer.cpp / mamba2_mixer.cpp. Every entry point (full sequence, segments, one-token
// step) runs this one hidden() with a State, so they agree up to floating-point reassociation.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cstring>

#include "mambaextend/error.h"
#include "mambaextend/model.h"
#include "mambaextend/ops.h"

namespace mx {

namespace {
// Small per-channel parameters that design.md keeps in fp32 whatever the weight dtype.
bool is_fp32_param(const std::string& name) {
  for (const char* suffix : {"A_log", "mixer.D", "dt_bias", "dt_proj.bias", "norm.weight", "norm_f.weight"})
    if (name.size() >= std::strlen(suffix) && name.compare(name.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
      return true;
  return false;
}
// A small host tensor (ids, Δ scales) onto the model's device. To a GPU it goes through pinned memory without
// blocking: ATen's plain copy from pageable memory synchronises the stream, which drained the GPU's queue once
// per layer and segment and left it idle while the host enqueued the next kernels. Tensors that require grad
// (CFBP's leaves live on the device already) take the plain, differentiable copy.
at::Tensor to_device(const at::Tensor& t, c10::Device dev, at::ScalarType dtype) {
  if (!dev.is_cuda() || !t.is_cpu() || t.requires_grad()) return t.to(dev, dtype);
  return t.to(dtype).contiguous().pin_memory().to(dev, dtype, /*non_blocking=*/true);
}
}  // namespace

MambaLM::MambaLM(const Checkpoint& ckpt, ModelOptions opts) : cfg_(ckpt.config), opts_(opts) {
  if (opts_.dtype != at::kFloat && opts_.dtype != at::kDouble && opts_.dtype != at::kBFloat16)
    throw UsageError(fmt::format("model dtype must be float32, float64 or bfloat16, got {}",
                                 c10::toString(opts_.dtype)));
  const auto sd = state_dtype();
  for (const auto& [name, t] : ckpt.tensors) {
    const auto dt = is_fp32_param(name) ? sd : opts_.dtype;
    w_[name] = t.to(opts_.device, dt).contiguous();
  }
  // Precompute A = -exp(A_log) in the state dtype (kernels.md §1b "A and D").
  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    const auto p = fmt::format("layers.{}.mixer.", l);
    w_[p + "A"] = -at::exp(w_.at(p + "A_log").to(sd));
    const auto cw = w_.at(p + "conv1d.weight");             // (C, 1, K)
    w_[p + "conv1d.weight2d"] = cw.reshape({cw.size(0), cw.size(2)}).contiguous();  // (C, K)
  }
  if (!w_.count("lm_head.weight")) w_["lm_head.weight"] = w_.at("embedding.weight");  // tied
}

at::ScalarType MambaLM::state_dtype() const { return opts_.dtype == at::kDouble ? at::kDouble : at::kFloat; }

const at::Tensor& MambaLM::weight(const std::string& name) const {
  auto it = w_.find(name);
  if (it == w_.end()) throw CheckpointError("model has no weight named " + name);
  return it->second;
}

State MambaLM::initial_state(int64_t batch) const {
  State s;
  const auto act = at::TensorOptions().dtype(opts_.dtype).device(opts_.device);
  const auto st = act.dtype(state_dtype());
  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    LayerState ls;
    ls.conv = at::zeros({batch, cfg_.conv_dim(), cfg_.d_conv - 1}, act);
    ls.ssm = cfg_.arch == Arch::Mamba1 ? at::zeros({batch, cfg_.d_inner, cfg_.d_state}, st)
                                       : at::zeros({batch, cfg_.n_heads, cfg_.head_dim, cfg_.d_state}, st);
    s.layers.push_back(std::move(ls));
  }
  return s;
}

at::Tensor MambaLM::mixer(int64_t layer, const at::Tensor& u, const at::Tensor& scale, LayerState& st) const {
  return cfg_.arch == Arch::Mamba1 ? mamba1_mixer(layer, u, scale, st) : mamba2_mixer(layer, u, scale, st);
}

at::Tensor MambaLM::hidden(const at::Tensor& ids, const DtScales& scales, State* state) const {
  if (ids.dim() != 2) throw ShapeError("model input ids must be (batch, length), got " + std::to_string(ids.dim()) + " dims");
  if (ids.size(1) == 0) throw ShapeError("model input has length 0");
  const int64_t V = cfg_.vocab_size;
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= V) throw ShapeError(fmt::format("token id {} is outside the vocabulary [0, {})", lo < 0 ? lo : hi, V));
  }
  if (!scales.empty()) check_scales(cfg_, scales, "dt scales");
  State local;
  State& st = state ? *state : local;
  if (st.empty()) st = initial_state(ids.size(0));
  if (static_cast<int64_t>(st.layers.size()) != cfg_.n_layer || st.layers[0].conv.size(0) != ids.size(0))
    throw ShapeError("model state does not match the model or the batch size");

  const auto sd = state_dtype();
  auto x = at::embedding(w_.at("embedding.weight"), to_device(ids, opts_.device, at::kLong));  // (B, L, D)
  // r += h; RMSNorm(r)·w in the activation dtype (ops::add_rmsnorm: one fused kernel on CUDA without gradients).
  at::Tensor residual;  // (B, L, D) in the state dtype
  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    auto u = ops::add_rmsnorm(x, residual, w_.at(fmt::format("layers.{}.norm.weight", l)), cfg_.norm_eps, opts_.dtype);
    const at::Tensor s = scales.empty() ? at::Tensor() : to_device(scales.per_layer[l], opts_.device, sd);
    x = mixer(l, u, s, st.layers[l]);
  }
  return ops::add_rmsnorm(x, residual, w_.at("norm_f.weight"), cfg_.norm_eps, opts_.dtype);
}

at::Tensor MambaLM::head_logits(const at::Tensor& hidden) const {
  return at::matmul(hidden.to(opts_.dtype), w_.at("lm_head.weight").t());
}

at::Tensor MambaLM::logits(const at::Tensor& hidden) const { return head_logits(hidden).to(state_dtype()); }

at::Tensor MambaLM::forward(const at::Tensor& ids, const DtScales& scales, State* state) const {
  return logits(hidden(ids, scales, state));
}

at::Tensor MambaLM::step(const at::Tensor& ids, State& state, const DtScales& scales) const {
  if (ids.dim() != 1) throw ShapeError("step() takes ids of shape (batch)");
  if (state.empty()) throw ShapeError("step() needs a state: prefill with forward(ids, scales, &state) or initial_state()");
  return forward(ids.unsqueeze(1), scales, &state).squeeze(1);
}

void MambaLM::hidden_segmented(const at::Tensor& ids, int64_t segment_len, const DtScales& scales,
                               const std::function<void(int64_t, const at::Tensor&)>& on_segment,
                               State* state) const {
  if (segment_len < 1) throw UsageError("segment length must be at least 1");
  State local;
  State& st = state ? *state : local;
  const int64_t L = ids.size(1);
  for (int64_t start = 0; start < L; start += segment_len) {
    const int64_t len = std::min(segment_len, L - start);
    on_segment(start, hidden(ids.narrow(1, start, len), scales, &st));
  }
}

}  // namespace mx
