// The Mamba1 / Mamba2 language model: embedding -> n_layer x (residual add + RMSNorm + mixer) -> norm_f ->
// LM head (tied or untied). One implementation serves three entry points:
//   forward(ids)               full sequence from a zero state (conv padding = zeros, h0 = 0)
//   forward(ids, &state)       the same, starting from and updating `state`: chaining calls over
//                              consecutive segments equals one call over the whole sequence
//   step(id, state)            one token (the recurrent step), which is forward() with L = 1
// Δ scales (MambaExtend): per layer l, Δ = s_l ⊙ softplus(·), applied after the softplus (and after Mamba2's
// dt_limit clamp, as kernels.md §2 writes it), used in the decay exp(Δ·A) and in the input Δ·B·x alike.
// Numerics: the residual stream, Δ, A, D and the SSM state are fp32 (fp64 in reference mode); weights and
// activations follow ModelOptions::dtype.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "mambaextend/checkpoint.h"
#include "mambaextend/config.h"

namespace mx {

// Per-layer Δ scales. Empty = all ones. Otherwise one tensor per layer, shape (1) for a layer scalar or
// (scale_width) = (d_inner) for Mamba1 / (n_heads) for Mamba2; float32 or float64, any device.
struct DtScales {
  std::vector<at::Tensor> per_layer;
  bool empty() const { return per_layer.empty(); }
  // All ones, one scalar per layer (granularity "layer") or one value per channel/head ("channel").
  static DtScales ones(const ModelConfig& cfg, bool per_channel, at::ScalarType dtype = at::kFloat);
};
// Throws ShapeError unless `s` fits `cfg` (n_layer entries, each of size 1 or scale_width, positive, finite).
void check_scales(const ModelConfig& cfg, const DtScales& s, const std::string& where);

// Recurrent state of one layer, carried across segments / decoding steps.
struct LayerState {
  at::Tensor conv;  // (B, conv_dim, K-1): the last K-1 conv inputs, oldest first, activation dtype
  at::Tensor ssm;   // Mamba1 (B, E, N); Mamba2 (B, H, P, N); fp32 (fp64 in reference mode)
};
struct State {
  std::vector<LayerState> layers;
  bool empty() const { return layers.empty(); }
};

struct ModelOptions {
  at::ScalarType dtype = at::kFloat;  // weights/activations: kFloat, kDouble (reference), kBFloat16
  c10::Device device = c10::Device(c10::kCPU);
};

class MambaLM {
 public:
  MambaLM(const Checkpoint& ckpt, ModelOptions opts = {});

  const ModelConfig& config() const { return cfg_; }
  const ModelOptions& options() const { return opts_; }
  at::ScalarType state_dtype() const;  // kFloat, or kDouble in reference mode

  // A zero state for `batch` sequences.
  State initial_state(int64_t batch) const;

  // ids (B, L) int64 -> final hidden states after norm_f, (B, L, D) in the activation dtype.
  // With `state` non-null (possibly empty: then it is zero-initialised) the scan starts from it and it is
  // updated to the state after the last token.
  at::Tensor hidden(const at::Tensor& ids, const DtScales& scales = {}, State* state = nullptr) const;
  // hidden (…, D) -> logits (…, V_pad), fp32 (fp64 in reference mode): head_logits() in the state dtype.
  at::Tensor logits(const at::Tensor& hidden) const;
  // hidden (…, D) -> logits (…, V_pad) in the activation dtype, as the LM-head GEMM writes them (bf16 for a
  // bf16 model: no fp32 copy; the fused cross entropy of windows_nll reads these on CUDA).
  at::Tensor head_logits(const at::Tensor& hidden) const;
  // hidden() followed by logits() over every position: (B, L, V_pad).
  at::Tensor forward(const at::Tensor& ids, const DtScales& scales = {}, State* state = nullptr) const;
  // One decoding step: ids (B) -> logits (B, V_pad); `state` must not be empty.
  at::Tensor step(const at::Tensor& ids, State& state, const DtScales& scales = {}) const;

  // Segmented forward over a long sequence, bounded memory: runs hidden() over consecutive segments of at
  // most `segment_len` tokens, carrying the state, and calls on_segment(start, hidden_of_segment) for each.
  void hidden_segmented(const at::Tensor& ids, int64_t segment_len, const DtScales& scales,
                        const std::function<void(int64_t, const at::Tensor&)>& on_segment,
                        State* state = nullptr) const;

  // Weights in the model's dtype and device, by canonical name (see checkpoint.h).
  const at::Tensor& weight(const std::string& name) const;

 private:
  at::Tensor mixer(int64_t layer, const at::Tensor& u, const at::Tensor& scale, LayerState& st) const;
  at::Tensor mamba1_mixer(int64_t layer, const at::Tensor& u, const at::Tensor& scale, LayerState& st) const;
  at::Tensor mamba2_mixer(int64_t layer, const at::Tensor& u, const at::Tensor& scale, LayerState& st) const;

  ModelConfig cfg_;
  ModelOptions opts_;
  std::map<std::string, at::Tensor> w_;
};

}  // namespace mx
