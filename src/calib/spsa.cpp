// CFZO: seeded SPSA over the Δ scales (calibrate.h; method.md §2 "Recommended clean CFZO"). Iteration k:
//   c_k = c0 / (1 + k)^γ,  a_k = a0·cos(kπ / P) (P = 198, the Proof-Pile script's) or a0,  δ ∈ {±1}^d (Rademacher)
//   t± = max(t ± c_k·δ, floor);  ĝ = (f(t+) − f(t−)) / (2c_k) · δ;  t_new = max(t − a_k·ĝ, floor)
//   next t = the best of t_new, t+, t− (the scripts' acceptance, evaluated here on the calibration set only)
// The result is the best point accepted over the run, the initial point included, so the output never scores
// worse than the start on the calibration set. Differences from the official scripts (method.md §7): seeded,
// the objective is the mean NLL by default, f(t) is never measured on test data, and the output holds the
// best point's own objective (not f₊ of the last iteration).
// Non-finite objectives: a NaN/inf f(t+) or f(t−) gives no gradient, so the iteration is recorded as skipped
// and t is kept; a NaN/inf f(t_new) is recorded and t_new is not accepted. Scales are never NaN.
// The state is one JSON object (point, objective, best point, RNG state, history) so a run can resume.
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "calib/rng.h"
#include "mambaextend/calibrate.h"
#include "mambaextend/error.h"
#include "mambaextend/log.h"

namespace mx {

using nlohmann::json;

namespace {
constexpr double kPi = 3.14159265358979323846;

json num(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }
double get_num(const json& j) { return j.is_null() ? std::numeric_limits<double>::quiet_NaN() : j.get<double>(); }
}  // namespace

json SpsaOptions::to_json() const {
  return {{"iterations", iterations}, {"c0", c0}, {"gamma", gamma}, {"a0", a0}, {"a_schedule", a_schedule},
          {"a_period", a_period}, {"floor", floor}, {"perturbation", "rademacher"},
          {"c_k", "c0 / (1 + k)^gamma"},
          {"a_k", a_schedule == "cosine" ? "a0 * cos(k * pi / a_period)" : "a0"},
          {"parametrization", parametrization},
          {"theta", parametrization == "log" ? "log s (perturbation and step multiplicative)" : "s"},
          {"acceptance", "next t = best of t_new, t+, t- on the calibration set; result = best accepted point"}};
}

json spsa_init(const std::vector<double>& s0, double f0, uint64_t seed) {
  return {{"kind", "spsa"}, {"iter", 0}, {"t", s0}, {"f", num(f0)}, {"best_t", s0}, {"best_f", num(f0)},
          {"rng", calib::rng_state(calib::Rng(seed))}, {"history", json::array()}, {"skipped", 0}};
}

void spsa_run(const ObjectiveFn& f, const SpsaOptions& o, json& st, const CheckpointFn& checkpoint) {
  if (o.iterations < 0) throw UsageError(fmt::format("--iterations {} must be >= 0", o.iterations));
  if (!(o.c0 > 0)) throw UsageError(fmt::format("SPSA c0 = {} must be positive", o.c0));
  if (!(o.floor > 0)) throw UsageError(fmt::format("the scale floor {} must be positive", o.floor));
  if (o.parametrization != "projection" && o.parametrization != "log")
    throw UsageError("--parametrization '" + o.parametrization + "' must be projection or log");
  if (o.a_schedule != "cosine" && o.a_schedule != "constant")
    throw UsageError("SPSA a-schedule '" + o.a_schedule + "' must be cosine or constant");
  auto rng = calib::rng_from_state(st.at("rng").get<std::string>());
  auto t = st.at("t").get<std::vector<double>>();
  double ft = get_num(st.at("f"));
  auto best_t = st.at("best_t").get<std::vector<double>>();
  double best_f = get_num(st.at("best_f"));
  const size_t d = t.size();
  const auto clamp_floor = [&](double v) { return std::max(v, o.floor); };
  // The perturbation and the step act on θ = t (projection) or θ = log t (log: multiplicative moves).
  const bool logp = o.parametrization == "log";
  const auto to_theta = [&](double v) { return logp ? std::log(v) : v; };
  const auto from_theta = [&](double th) { return clamp_floor(logp ? std::exp(th) : th); };

  for (int64_t k = st.at("iter").get<int64_t>(); k < o.iterations; ++k) {
    const double c = o.c0 / std::pow(1.0 + static_cast<double>(k), o.gamma);
    const double a = o.a_schedule == "cosine" ? o.a0 * std::cos(static_cast<double>(k) * kPi / o.a_period) : o.a0;
    std::vector<double> delta(d), tp(d), tm(d);
    for (size_t i = 0; i < d; ++i) {
      delta[i] = calib::rademacher(rng);
      tp[i] = from_theta(to_theta(t[i]) + c * delta[i]);
      tm[i] = from_theta(to_theta(t[i]) - c * delta[i]);
    }
    const double fp = f(tp), fm = f(tm);
    json h = {{"iter", k}, {"c", c}, {"a", a}, {"f_plus", num(fp)}, {"f_minus", num(fm)}};
    if (!std::isfinite(fp) || !std::isfinite(fm)) {
      h["f"] = num(ft);
      h["skipped"] = true;
      h["reason"] = "non-finite objective at a perturbed point";
      st["skipped"] = st["skipped"].get<int64_t>() + 1;
      log::warn(fmt::format("SPSA iteration {}: f(t+) = {}, f(t-) = {}: not finite, iteration skipped", k, fp, fm));
    } else {
      std::vector<double> tn(d);
      const double gscale = (fp - fm) / (2.0 * c);
      for (size_t i = 0; i < d; ++i) tn[i] = from_theta(to_theta(t[i]) - a * gscale * delta[i]);
      const double fn = f(tn);
      // Best of t_new, t+, t- (a non-finite f(t_new) is never chosen).
      std::string acc = "new";
      std::vector<double>* next = &tn;
      double fnext = std::isfinite(fn) ? fn : std::numeric_limits<double>::infinity();
      if (fp < fnext) { next = &tp; fnext = fp; acc = "plus"; }
      if (fm < fnext) { next = &tm; fnext = fm; acc = "minus"; }
      t = *next;
      ft = fnext;
      if (!std::isfinite(best_f) || ft < best_f) {
        best_t = t;
        best_f = ft;
      }
      h["f_new"] = num(fn);
      h["f"] = num(ft);
      h["accepted"] = acc;
      h["skipped"] = false;
      log::info(fmt::format("SPSA {}/{}: f(t+) {:.6f}  f(t-) {:.6f}  f(t_new) {:.6f}  -> {} {:.6f} (best {:.6f})", k + 1,
                            o.iterations, fp, fm, fn, acc, ft, best_f));
    }
    st["history"].push_back(h);
    st["iter"] = k + 1;
    st["t"] = t;
    st["f"] = num(ft);
    st["best_t"] = best_t;
    st["best_f"] = num(best_f);
    st["rng"] = calib::rng_state(rng);
    if (checkpoint && !checkpoint(st)) return;
  }
}

std::vector<double> state_scales(const json& st) {
  const auto kind = st.at("kind").get<std::string>();
  return st.at(kind == "spsa" ? "best_t" : "t").get<std::vector<double>>();
}

}  // namespace mx
