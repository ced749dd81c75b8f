// The calibration objective and its gradient with respect to the Δ scales (calibrate.h).
//   calibration_nll: windows_nll (src/eval) over the set, reduced by the protocol (pg19: mean over scored
//                    tokens; proofpile: mean over windows of each window's mean).
//   nll_and_grad:    the same loss as Σ_w Σ_t weight_w·nll_wt and ∂loss/∂s by segment checkpointing
//                    (kernels.md §6 "Bounded memory"), one window at a time:
//     1. a forward without grad over segments of segment_len tokens stores every layer's state (conv window
//        and SSM state) at each segment start;
//     2. segments in reverse: recompute segment k with grad from its stored input state (made a leaf), take
//        the loss at its scored positions (LM head in blocks of kLogitRows rows, each backpropagated to the
//        hidden states at once so only one block of logits lives at a time), then backpropagate
//        loss_k + Σ_l <state_out_l, dstate_out_l> (dstate_out from segment k+1) into the scales and the
//        input state, whose gradient is passed on to segment k−1.
//     Peak memory: one segment's activations with graph + one logit block + the stored states (n_segments ×
//     n_layer × state size), independent of L apart from those small states. Cost ≈ one forward without grad
//     plus a forward and a backward with grad.
// The scales are leaves of the state dtype (fp32, fp64 in reference mode) multiplied by the fixed base factors;
// the weights never require grad, so no weight gradient is formed.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "mambaextend/calibrate.h"
#include "mambaextend/error.h"

namespace mx {

namespace {

constexpr int64_t kLogitRows = 512;  // positions per LM-head block: 512 x 50k x 4 B = 100 MB of logits

DtScales scales_from_leaves(const std::vector<at::Tensor>& leaves, const DtScales& base) {
  DtScales d;
  for (size_t l = 0; l < leaves.size(); ++l)
    d.per_layer.push_back(base.empty() ? leaves[l] : leaves[l] * base.per_layer[l].to(leaves[l].scalar_type()));
  return d;
}

State clone_state(const State& s) {
  State c;
  for (const auto& ls : s.layers) c.layers.push_back({ls.conv.clone(), ls.ssm.clone()});
  return c;
}

// Adds Σ_t weight·nll_t of one window to the scale leaves' .grad; returns Σ_t weight·nll_t (fp64).
double window_loss_grad(const MambaLM& model, const std::vector<at::Tensor>& leaves, const DtScales& base,
                        const ScoredWindow& w, double weight, const GradOptions& o) {
  const int64_t L = static_cast<int64_t>(w.ids.size());
  auto ids = at::empty({1, L}, at::TensorOptions().dtype(at::kLong));  // (1, L)
  std::memcpy(ids.data_ptr<int64_t>(), w.ids.data(), sizeof(int64_t) * static_cast<size_t>(L));
  const auto targets = ids.to(model.options().device);
  const int64_t seg = o.checkpointed ? std::max<int64_t>(1, o.segment_len) : L;
  const int64_t nseg = (L + seg - 1) / seg;
  const int64_t n_layer = model.config().n_layer;

  // 1. States at segment starts, without grad (the last segment's forward is not needed).
  std::vector<State> starts(static_cast<size_t>(nseg));
  {
    at::NoGradGuard no_grad;
    DtScales plain;
    for (const auto& t : scales_from_leaves(leaves, base).per_layer) plain.per_layer.push_back(t.detach());
    State st = model.initial_state(1);
    for (int64_t k = 0; k < nseg; ++k) {
      starts[k] = clone_state(st);
      if (k + 1 < nseg) model.hidden(ids.narrow(1, k * seg, seg), plain, &st);
    }
  }

  // 2. Segments in reverse.
  double loss = 0;
  std::vector<at::Tensor> dconv(n_layer), dssm(n_layer);  // ∂loss/∂(state out of segment k), from segment k+1
  for (int64_t k = nseg - 1; k >= 0; --k) {
    at::AutoGradMode grad_on(true);
    const int64_t start = k * seg, len = std::min(seg, L - start);
    State st = std::move(starts[k]);
    std::vector<at::Tensor> in_conv(n_layer), in_ssm(n_layer);
    for (int64_t l = 0; l < n_layer; ++l) {
      if (k > 0) {  // the first segment starts from zeros: no gradient needed there
        st.layers[l].conv = st.layers[l].conv.detach().requires_grad_(true);
        st.layers[l].ssm = st.layers[l].ssm.detach().requires_grad_(true);
      }
      in_conv[l] = st.layers[l].conv;
      in_ssm[l] = st.layers[l].ssm;
    }
    const auto h = model.hidden(ids.narrow(1, start, len), scales_from_leaves(leaves, base), &st);  // (1, len, D)

    at::Tensor total;  // the scalar to backpropagate through the segment
    auto add = [&](const at::Tensor& term) { total = total.defined() ? total + term : term; };
    const int64_t a0 = std::max(start, w.score_from), a1 = std::min(start + len, L - 1);
    if (a0 < a1) {
      const auto hd = h.detach().requires_grad_(true);
      for (int64_t a = a0; a < a1; a += kLogitRows) {
        const int64_t n = std::min(kLogitRows, a1 - a);
        const auto logits = model.logits(hd.narrow(1, a - start, n));          // (1, n, V_pad)
        const auto tgt = targets.narrow(1, a + 1, n).unsqueeze(-1);            // (1, n, 1)
        const auto nll = at::logsumexp(logits, -1) - logits.gather(-1, tgt).squeeze(-1);  // (1, n)
        const auto part = nll.sum() * weight;
        loss += part.item<double>();
        part.backward();
      }
      add((h * hd.grad()).sum());
    }
    for (int64_t l = 0; l < n_layer; ++l) {
      if (dconv[l].defined() && st.layers[l].conv.requires_grad()) add((st.layers[l].conv * dconv[l]).sum());
      if (dssm[l].defined() && st.layers[l].ssm.requires_grad()) add((st.layers[l].ssm * dssm[l]).sum());
    }
    if (total.defined() && total.requires_grad()) total.backward();
    for (int64_t l = 0; l < n_layer; ++l) {
      dconv[l] = k > 0 ? in_conv[l].grad() : at::Tensor();
      dssm[l] = k > 0 ? in_ssm[l].grad() : at::Tensor();
    }
  }
  return loss;
}

// Per-window weights so that Σ_w Σ_t weight_w·nll_wt is the protocol's mean.
std::vector<double> window_weights(const CalibrationSet& set, const std::vector<int64_t>& idx) {
  std::vector<double> wts;
  int64_t tokens = 0;
  for (int64_t i : idx) tokens += static_cast<int64_t>(set.windows[i].ids.size()) - 1 - set.windows[i].score_from;
  for (int64_t i : idx) {
    const auto& w = set.windows[i];
    const double n = static_cast<double>(static_cast<int64_t>(w.ids.size()) - 1 - w.score_from);
    wts.push_back(set.protocol == Protocol::PG19 ? 1.0 / static_cast<double>(tokens)
                                                 : 1.0 / (n * static_cast<double>(idx.size())));
  }
  return wts;
}

// A scale that does not fit the model's dtype (a perturbation that overflowed float32) cannot be evaluated:
// the objective is then NaN, which the optimisers record as a skipped iteration, rather than an error.
bool representable(const DtScales& scales) {
  for (const auto& t : scales.per_layer)
    if (!at::isfinite(t).all().item<bool>()) return false;
  return true;
}

std::vector<int64_t> all_or(const std::vector<int64_t>& idx, size_t n) {
  if (!idx.empty()) return idx;
  std::vector<int64_t> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = static_cast<int64_t>(i);
  return all;
}

}  // namespace

DtScales to_dt_scales(const std::vector<double>& s, const ScaleLayout& layout, const DtScales& base,
                      at::ScalarType dtype) {
  if (static_cast<int64_t>(s.size()) != layout.size())
    throw ShapeError(fmt::format("scales: {} values for {} layers x {}", s.size(), layout.n_layer, layout.width));
  DtScales d;
  for (int64_t l = 0; l < layout.n_layer; ++l) {
    auto t = at::empty({layout.width}, at::TensorOptions().dtype(at::kDouble));  // (w)
    std::memcpy(t.data_ptr<double>(), s.data() + l * layout.width, sizeof(double) * static_cast<size_t>(layout.width));
    if (!base.empty()) t = t * base.per_layer[l].to(at::kDouble);
    d.per_layer.push_back(t.to(dtype));
  }
  return d;
}

// Windows per forward of the objective for --eval-batch 0. CPU: as many as fill one segment (max(1, segment_len /
// L)). GPU: as many as keep one segment's forward at <= kGpuBatchTokens tokens (batch x min(segment_len, L)), split
// evenly (20 windows of 16k tokens at segment 16k: batches of 7, 7, 6), since larger batches fill the GPU (the scan
// then needs no time split) and the bound keeps activations to a few GB even for the 2.8b shapes.
constexpr int64_t kGpuBatchTokens = int64_t(1) << 17;

int64_t auto_eval_batch(const MambaLM& model, int64_t n_windows, int64_t length, int64_t segment_len) {
  const int64_t L = std::max<int64_t>(1, length), n = std::max<int64_t>(1, n_windows);
  if (!model.options().device.is_cuda()) return std::max<int64_t>(1, segment_len / L);
  const int64_t per_forward = std::clamp<int64_t>(kGpuBatchTokens / std::max<int64_t>(1, std::min(segment_len, L)), 1, n);
  const int64_t batches = (n + per_forward - 1) / per_forward;
  return (n + batches - 1) / batches;
}

double calibration_nll(const MambaLM& model, const DtScales& scales, const CalibrationSet& set,
                       const std::vector<int64_t>& idx_in, int64_t segment_len, int64_t batch) {
  const auto idx = all_or(idx_in, set.windows.size());
  if (idx.empty()) throw UsageError("calibration objective: no windows");
  if (!representable(scales)) return std::numeric_limits<double>::quiet_NaN();
  const int64_t b = batch > 0 ? batch
                              : auto_eval_batch(model, static_cast<int64_t>(idx.size()), set.length, segment_len);
  double sum = 0, sum_means = 0;
  int64_t tokens = 0;
  for (size_t i = 0; i < idx.size(); i += static_cast<size_t>(b)) {
    std::vector<const ScoredWindow*> ptrs;
    for (size_t j = i; j < std::min(idx.size(), i + static_cast<size_t>(b)); ++j) ptrs.push_back(&set.windows[idx[j]]);
    for (const auto& nll : windows_nll(model, scales, ptrs, segment_len)) {
      double s = 0;
      for (double x : nll) s += x;
      sum += s;
      tokens += static_cast<int64_t>(nll.size());
      sum_means += s / static_cast<double>(nll.size());
    }
  }
  return set.protocol == Protocol::PG19 ? sum / static_cast<double>(tokens)
                                        : sum_means / static_cast<double>(idx.size());
}

double nll_and_grad(const MambaLM& model, const std::vector<double>& s, const ScaleLayout& layout,
                    const DtScales& base, const CalibrationSet& set, const std::vector<int64_t>& idx_in,
                    const GradOptions& opts, std::vector<double>& grad) {
  const auto idx = all_or(idx_in, set.windows.size());
  if (idx.empty()) throw UsageError("calibration gradient: no windows");
  const auto sd = model.state_dtype();
  std::vector<at::Tensor> leaves;
  const DtScales plain = to_dt_scales(s, layout, base, sd);
  if (!representable(plain)) {
    grad.assign(static_cast<size_t>(layout.size()), 0.0);
    return std::numeric_limits<double>::quiet_NaN();
  }
  for (const auto& t : to_dt_scales(s, layout, DtScales{}, sd).per_layer)
    leaves.push_back(t.to(model.options().device).detach().requires_grad_(true));  // (w)
  DtScales base_dev;
  for (const auto& t : base.per_layer) base_dev.per_layer.push_back(t.to(model.options().device, sd));
  const auto wts = window_weights(set, idx);
  double loss = 0;
  for (size_t i = 0; i < idx.size(); ++i)
    loss += window_loss_grad(model, leaves, base_dev, set.windows[idx[i]], wts[i], opts);
  grad.assign(static_cast<size_t>(layout.size()), 0.0);
  for (int64_t l = 0; l < layout.n_layer; ++l) {
    const auto g = leaves[l].grad();
    if (!g.defined()) continue;  // no path from this layer's scale to the loss
    const auto gd = g.to(at::kCPU, at::kDouble).contiguous();
    std::memcpy(grad.data() + l * layout.width, gd.data_ptr<double>(), sizeof(double) * static_cast<size_t>(layout.width));
  }
  return loss;
}

}  // namespace mx
