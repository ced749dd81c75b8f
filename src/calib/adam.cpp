// CFBP: Adam over the Δ scales (calibrate.h; method.md §3, as the passkey script's AdamW with weight decay 0,
// constant learning rate, gradient-norm clipping, positivity), on the calibration NLL instead of passkey
// answers. Per step: the next `batch` windows of a seeded per-epoch permutation (the whole set when batch = 0),
// loss and ∂loss/∂s by segment checkpointing (backprop.cpp), optional PPL objective (∂exp(ℓ) = exp(ℓ)·∂ℓ),
// then in the optimised parameter θ (θ = s, or θ = log s with --parametrization log):
//   g ← g · min(1, clip / (‖g‖ + 1e-6))   (torch.nn.utils.clip_grad_norm_)
//   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  θ ← θ − lr · (m / (1−β1^n)) / (sqrt(v / (1−β2^n)) + ε)
//   projection: s = max(θ, floor);  log: θ ← max(θ, log floor), s = exp(θ)
// n counts the updates made. History entry k holds the loss of step k's batch at the scales before its
// update. A non-finite loss or gradient is a recorded, skipped step (no update, scales unchanged). The state (θ, m, v, n, the permutation and its position, the RNG) is one JSON object.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "calib/rng.h"
#include "mambaextend/calibrate.h"
#include "mambaextend/error.h"
#include "mambaextend/log.h"

namespace mx {

using nlohmann::json;

namespace {
json num(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }
}  // namespace

json AdamOptions::to_json() const {
  return {{"steps", steps},   {"epochs", epochs}, {"batch", batch}, {"lr", lr},     {"beta1", beta1},
          {"beta2", beta2},   {"eps", eps},       {"clip_grad_norm", clip}, {"floor", floor},
          {"parametrization", parametrization}, {"weight_decay", 0.0}, {"lr_schedule", "constant"}};
}

int64_t AdamOptions::total_steps(int64_t samples) const {
  const int64_t b = batch > 0 ? std::min(batch, samples) : samples;
  return epochs > 0 ? epochs * ((samples + b - 1) / b) : steps;
}

json adam_init(const std::vector<double>& s0, int64_t samples, uint64_t seed, const AdamOptions& o) {
  std::vector<double> theta(s0.size());
  for (size_t i = 0; i < s0.size(); ++i)
    theta[i] = o.parametrization == "log" ? std::log(std::max(s0[i], o.floor)) : s0[i];
  return {{"kind", "adam"}, {"iter", 0}, {"t", s0}, {"theta", theta}, {"m", std::vector<double>(s0.size(), 0.0)},
          {"v", std::vector<double>(s0.size(), 0.0)}, {"updates", 0}, {"samples", samples},
          {"order", std::vector<int64_t>()}, {"pos", 0}, {"rng", calib::rng_state(calib::Rng(seed))},
          {"history", json::array()}, {"skipped", 0}};
}

void adam_run(const LossGradFn& fg, const AdamOptions& o, json& st, const CheckpointFn& checkpoint) {
  if (o.parametrization != "projection" && o.parametrization != "log")
    throw UsageError("--parametrization '" + o.parametrization + "' must be projection or log");
  if (!(o.lr > 0)) throw UsageError(fmt::format("--lr {} must be positive", o.lr));
  if (!(o.floor > 0)) throw UsageError(fmt::format("the scale floor {} must be positive", o.floor));
  const bool logp = o.parametrization == "log";
  const int64_t samples = st.at("samples").get<int64_t>();
  const int64_t batch = o.batch > 0 ? std::min(o.batch, samples) : samples;
  const int64_t total = o.total_steps(samples);
  auto rng = calib::rng_from_state(st.at("rng").get<std::string>());
  auto theta = st.at("theta").get<std::vector<double>>();
  auto m = st.at("m").get<std::vector<double>>();
  auto v = st.at("v").get<std::vector<double>>();
  auto order = st.at("order").get<std::vector<int64_t>>();
  int64_t pos = st.at("pos").get<int64_t>();
  int64_t updates = st.at("updates").get<int64_t>();
  const size_t d = theta.size();
  auto scales_of = [&](const std::vector<double>& th) {
    std::vector<double> s(d);
    for (size_t i = 0; i < d; ++i) s[i] = logp ? std::exp(th[i]) : th[i];
    return s;
  };

  for (int64_t k = st.at("iter").get<int64_t>(); k < total; ++k) {
    if (order.empty() || pos >= samples) {  // a new epoch: a fresh permutation (Fisher–Yates)
      order.resize(static_cast<size_t>(samples));
      std::iota(order.begin(), order.end(), 0);
      if (batch < samples)
        for (int64_t i = samples - 1; i > 0; --i)
          std::swap(order[i], order[calib::uniform_below(rng, static_cast<uint64_t>(i) + 1)]);
      pos = 0;
    }
    const int64_t n = std::min(batch, samples - pos);
    std::vector<int64_t> idx(order.begin() + pos, order.begin() + pos + n);
    pos += n;
    const auto s = scales_of(theta);
    std::vector<double> g(d, 0.0);
    const double nll = fg(s, idx, g);
    double f = nll;
    if (o.ppl_objective) {
      f = std::exp(nll);
      for (auto& x : g) x *= f;
    }
    bool finite = std::isfinite(f);
    for (double x : g) finite = finite && std::isfinite(x);
    json h = {{"iter", k}, {"f", num(f)}, {"windows", n}};
    if (!finite) {
      h["skipped"] = true;
      h["reason"] = "non-finite loss or gradient";
      st["skipped"] = st["skipped"].get<int64_t>() + 1;
      log::warn(fmt::format("Adam step {}: loss {} or its gradient is not finite, step skipped", k, f));
    } else {
      if (logp)
        for (size_t i = 0; i < d; ++i) g[i] *= s[i];  // ∂/∂θ = ∂/∂s · s
      double norm = 0;
      for (double x : g) norm += x * x;
      norm = std::sqrt(norm);
      if (o.clip > 0) {
        const double coef = std::min(1.0, o.clip / (norm + 1e-6));
        for (auto& x : g) x *= coef;
      }
      ++updates;
      const double bc1 = 1.0 - std::pow(o.beta1, static_cast<double>(updates));
      const double bc2 = 1.0 - std::pow(o.beta2, static_cast<double>(updates));
      for (size_t i = 0; i < d; ++i) {
        m[i] = o.beta1 * m[i] + (1.0 - o.beta1) * g[i];
        v[i] = o.beta2 * v[i] + (1.0 - o.beta2) * g[i] * g[i];
        theta[i] -= o.lr * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + o.eps);
        theta[i] = std::max(theta[i], logp ? std::log(o.floor) : o.floor);
      }
      h["grad_norm"] = norm;
      h["skipped"] = false;
      log::info(fmt::format("Adam {}/{}: loss {:.6f} on {} window(s), |grad| {:.4g}", k + 1, total, f, n, norm));
    }
    st["history"].push_back(h);
    st["iter"] = k + 1;
    st["theta"] = theta;
    st["t"] = scales_of(theta);
    st["m"] = m;
    st["v"] = v;
    st["updates"] = updates;
    st["order"] = order;
    st["pos"] = pos;
    st["rng"] = calib::rng_state(rng);
    if (checkpoint && !checkpoint(st)) return;
  }
}

}  // namespace mx
