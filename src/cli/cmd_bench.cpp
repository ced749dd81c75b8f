// `mambaextend bench`: whole-model forward throughput at one context length, on a real checkpoint (--model) or
// a random model of a published shape (--shape mamba-130m …), with the selective scan's share of the time and
// the peak memory. Times are medians over --repeat runs after --warmup runs, with the device synchronised
// around each run. Writes JSON to --out.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <c10/core/GradMode.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "mambaextend/error.h"
#include "mambaextend/io.h"
#include "mambaextend/log.h"
#include "mambaextend/model.h"
#include "mambaextend/ops.h"
#include "mambaextend/random_model.h"
#ifdef MX_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace mx::cli {

namespace {

struct BenchArgs {
  std::string model, shape, device = "cpu", dtype = "fp32", out;
  int64_t length = 8192, segment_len = 0, repeat = 3, warmup = 1, seed = 0;
};

void sync(const c10::Device& d) {
#ifdef MX_WITH_CUDA
  if (d.is_cuda()) c10::cuda::device_synchronize();
#endif
}

template <typename F>
double median_ms(const c10::Device& d, int64_t warmup, int64_t repeat, F&& f) {
  for (int64_t i = 0; i < warmup; ++i) f();
  std::vector<double> ms;
  for (int64_t i = 0; i < repeat; ++i) {
    sync(d);
    const auto t0 = std::chrono::steady_clock::now();
    f();
    sync(d);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

double peak_memory_mb(const c10::Device& d) {
#ifdef MX_WITH_CUDA
  if (d.is_cuda()) {
    const auto st = c10::cuda::CUDACachingAllocator::getDeviceStats(d.index() < 0 ? 0 : d.index());
    return st.allocated_bytes[0].peak / 1048576.0;  // StatType::AGGREGATE
  }
#endif
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

void run_bench(const BenchArgs& a) {
  if (a.model.empty() == a.shape.empty()) throw UsageError("bench: give exactly one of --model DIR or --shape NAME");
  const c10::Device dev(a.device);
  if (dev.is_cuda() && !at::hasCUDA()) throw UsageError("bench: --device cuda but no CUDA device is available");
  const auto dtype = a.dtype == "bf16" ? at::kBFloat16 : at::kFloat;
  const Checkpoint ck = a.model.empty() ? random_checkpoint(preset_config(a.shape), a.seed, dtype) : load_checkpoint(a.model);
  const MambaLM model(ck, ModelOptions{dtype, dev});
  const auto& cfg = model.config();
  c10::NoGradGuard no_grad;
  const int64_t L = a.length, seg = a.segment_len > 0 ? a.segment_len : L;
  auto ids = at::randint(0, cfg.vocab_size_unpadded, {1, L}, at::TensorOptions().dtype(at::kLong)).to(dev);
  const int64_t tail = std::min<int64_t>(100, L);

  at::Tensor last_logits;
  const double fwd_ms = median_ms(dev, a.warmup, a.repeat, [&] {
    model.hidden_segmented(ids, seg, {}, [&](int64_t start, const at::Tensor& h) {
      const int64_t from = std::max<int64_t>(0, L - tail - start);
      if (from < h.size(1)) last_logits = model.logits(h.narrow(1, from, h.size(1) - from));
    });
  });
  const double peak_mb = peak_memory_mb(dev);

  // The scan alone, on inputs of one layer's shapes, times the number of layers.
  const auto o = at::TensorOptions().dtype(dtype).device(dev);
  const auto of = o.dtype(at::kFloat);
  double scan_ms = 0;
  if (cfg.arch == Arch::Mamba1) {
    const int64_t E = cfg.d_inner, N = cfg.d_state;
    auto u = at::randn({1, L, E}, o), dr = at::randn({1, L, E}, o) - 2, z = at::randn({1, L, E}, o);
    auto B = at::randn({1, L, N}, o), C = at::randn({1, L, N}, o);
    auto A = -at::rand({E, N}, of) - 0.1, D = at::ones({E}, of), bias = at::zeros({E}, of);
    scan_ms = cfg.n_layer * median_ms(dev, a.warmup, a.repeat, [&] {
      auto h = at::zeros({1, E, N}, of);
      ops::selective_scan(u, dr, bias, at::Tensor(), A, B, C, D, z, h);
    });
  } else {
    const int64_t H = cfg.n_heads, P = cfg.head_dim, G = cfg.n_groups, N = cfg.d_state;
    auto x = at::randn({1, L, H, P}, o), dt = at::randn({1, L, H}, o) - 2;
    auto B = at::randn({1, L, G, N}, o), C = at::randn({1, L, G, N}, o);
    auto A = -at::rand({H}, of) - 0.1, D = at::ones({H}, of), bias = at::zeros({H}, of);
    scan_ms = cfg.n_layer * median_ms(dev, a.warmup, a.repeat, [&] {
      auto h = at::zeros({1, H, P, N}, of);
      ops::ssd_scan(x, dt, bias, at::Tensor(), 0.0, INFINITY, A, B, C, D, h);
    });
  }
  nlohmann::json j = {{"model", a.model.empty() ? a.shape : a.model}, {"arch", arch_name(cfg.arch)},
                      {"n_layer", cfg.n_layer}, {"d_model", cfg.d_model}, {"n_params", ck.n_params},
                      {"length", L}, {"segment_len", seg}, {"device", dev.str()}, {"dtype", a.dtype},
                      {"repeat", a.repeat}, {"forward_ms", fwd_ms}, {"tokens_per_s", L / (fwd_ms / 1000.0)},
                      {"scan_ms", scan_ms}, {"scan_share", scan_ms / fwd_ms}, {"peak_memory_mb", peak_mb},
                      {"logits_finite", at::isfinite(last_logits).all().item<bool>()}};
  fmt::print("{:<14} L={:<7} {} {}  forward {:.2f} ms  {:.0f} tokens/s  scan {:.2f} ms ({:.0f}%)  peak {:.0f} MB\n",
             j["model"].get<std::string>(), L, dev.str(), a.dtype, fwd_ms, L / (fwd_ms / 1000.0), scan_ms,
             100.0 * scan_ms / fwd_ms, peak_mb);
  if (!a.out.empty()) write_file_atomic(a.out, j.dump(1) + "\n");
}

}  // namespace

void register_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* sub = app.add_subcommand("bench", "Time the whole-model forward at one context length");
  sub->add_option("--model", a->model, "model directory");
  sub->add_option("--shape", a->shape, "random model of a published shape (mamba-130m … mamba-2.8b, mamba2-130m … mamba2-2.7b)");
  sub->add_option("--length", a->length, "tokens")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  sub->add_option("--segment-len", a->segment_len, "segment length (0 = the whole sequence)")->capture_default_str();
  sub->add_option("--device", a->device, "cpu|cuda")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  sub->add_option("--dtype", a->dtype, "fp32|bf16")->capture_default_str()->check(CLI::IsMember({"fp32", "bf16"}));
  sub->add_option("--repeat", a->repeat, "timed runs")->capture_default_str()->check(CLI::Range(1, 1000));
  sub->add_option("--warmup", a->warmup, "untimed runs first")->capture_default_str()->check(CLI::Range(0, 100));
  sub->add_option("--seed", a->seed, "seed of the random model")->capture_default_str();
  sub->add_option("--out", a->out, "JSON results");
  sub->callback([a] { run_bench(*a); });
}

}  // namespace mx::cli
