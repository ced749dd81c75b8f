// Standalone test + benchmark of the Mamba1 CUDA kernels (s6, conv1d, add+RMSNorm), built by nvcc alone:
//   nvcc -std=c++17 -O3 -arch=sm_90 --expt-relaxed-constexpr -I kernels kernels/dev/mamba1_kernels.cu
//        kernels/s6/s6_fwd.cu kernels/s6/s6_bwd.cu kernels/conv1d/conv1d.cu kernels/norm/norm.cu -o mamba1_kernels
//   ./mamba1_kernels --test [--quick | --tiny] [--bench [--fwd-only]] [--profile] [--out DIR] [--seed S]
// --test checks every kernel against its float64 CPU reference on fresh random inputs (test_s6.h,
// test_conv_norm.h); --quick keeps the small shapes only (the CPU emulator), --tiny a handful of them
// (compute-sanitizer);
// --bench times the kernels (bench_mamba1.h; --fwd-only: the S6 forward rows only); --profile runs one S6
// forward and backward at E = 5120, L = 64k, bf16 (for ncu). Prints a table; writes DIR/mamba1_kernels.json. Exit status 1 if a check failed.
// The same file builds against the CPU emulator (g++ -std=c++20 -DMX_CPU_EMU -x c++ ...; --test --quick).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "dev/bench_mamba1.h"
#include "dev/harness.h"
#include "dev/test_conv_norm.h"
#include "dev/test_s6.h"

using namespace mx::dev;

namespace {

std::vector<S6Case> s6_cases(bool quick) {
  std::vector<S6Case> cs;
  const std::vector<int64_t> lens = quick ? std::vector<int64_t>{1, 7, 128, 300}
                                          : std::vector<int64_t>{1, 7, 128, 2048, 4097, 65536};
  int k = 0;
  for (IoType io : {IoType::F32, IoType::BF16})
    for (int64_t L : lens) {
      S6Case c;
      c.io = io, c.L = L, c.E = 40, c.N = 16, c.B = L <= 4097 ? 2 : 1;
      c.z = k % 4 != 3;
      c.scale = k % 3;
      c.h0 = k % 2 == 0;
      c.dhT = k % 4 < 2;
      c.strided = k % 3 == 1;
      cs.push_back(c);
      ++k;
    }
  // Forced time segments (the automatic plan splits only when the channel blocks leave SMs idle).
  for (IoType io : {IoType::F32, IoType::BF16}) {
    S6Case c;
    c.io = io, c.L = quick ? 300 : 4097, c.E = 70, c.B = 2, c.scale = 2, c.h0 = true, c.dhT = true, c.segments = 3;
    c.strided = io == IoType::BF16;
    cs.push_back(c);
  }
  // Aligned (vector access) and strided (element access) rows, with and without segments; E = 24 leaves most of
  // a block (32 channels) empty, E = 44 ends in a partial 8-channel group.
  for (int k = 0; k < 4; ++k) {
    S6Case c;
    c.io = k % 2 ? IoType::BF16 : IoType::F32, c.L = quick ? 300 : 4097, c.E = k < 2 ? 24 : 44, c.B = 2;
    c.scale = 2, c.h0 = true, c.dhT = true, c.segments = k < 2 ? 0 : 3, c.strided = k == 1;
    cs.push_back(c);
  }
  // One channel block: the automatic plan splits time and cuts the first pass into pieces (F > 1).
  {
    S6Case c;
    c.io = IoType::BF16, c.L = 4200, c.E = 8, c.B = 1, c.scale = 2, c.h0 = true, c.dhT = true;
    cs.push_back(c);
  }
  // Other state sizes (tiny models use 64 and 128), odd channel counts.
  for (int64_t N : {8, 32, 64, 128}) {
    S6Case c;
    c.L = quick ? 70 : 300, c.E = 37, c.N = N, c.B = 1, c.scale = 1, c.h0 = true, c.dhT = true;
    c.segments = N == 32 ? 2 : 0;
    cs.push_back(c);
  }
  if (quick) return cs;
  // The 2.8b channel count, short (every channel block), and the long case with scale and h0 both on.
  S6Case wide;
  wide.L = 257, wide.E = 5120, wide.B = 1, wide.scale = 2, wide.h0 = true, wide.dhT = true;
  cs.push_back(wide);
  S6Case lng;
  lng.L = 65536, lng.E = 40, lng.B = 1, lng.scale = 2, lng.h0 = true, lng.dhT = true, lng.strided = true;
  cs.push_back(lng);
  return cs;
}

std::vector<ConvCase> conv_cases(bool quick) {
  std::vector<ConvCase> cs;
  const std::vector<int64_t> lens = quick ? std::vector<int64_t>{1, 7, 128, 300}
                                          : std::vector<int64_t>{1, 2, 7, 128, 2048, 4097, 65536};
  int k = 0;
  for (IoType io : {IoType::F32, IoType::BF16})
    for (int64_t L : lens) {
      ConvCase c;
      c.io = io, c.L = L, c.C = 100, c.K = 4, c.B = L <= 4097 ? 2 : 1, c.bias = k % 3 != 2, c.strided = k % 2 == 1;
      cs.push_back(c);
      ++k;
    }
  for (int64_t K : {2, 3, 8}) {
    ConvCase c;
    c.L = 7, c.C = 33, c.K = K, c.B = 2;
    cs.push_back(c);
    c.L = 129;
    cs.push_back(c);
  }
  return cs;
}

std::vector<NormCase> norm_cases(bool quick) {
  std::vector<NormCase> cs;
  int k = 0;
  for (int64_t D : {100, 768, 2560})
    for (int64_t rows : {1, 7, quick ? 33 : 300}) {
      NormCase c;
      c.rows = rows, c.D = D, c.residual = k % 3 != 1;
      c.x_io = k % 2 ? IoType::BF16 : IoType::F32;
      c.y_io = k % 4 < 2 ? IoType::BF16 : IoType::F32;
      cs.push_back(c);
      ++k;
    }
  return cs;
}

std::string s6_name(const S6Case& c) {
  char b[160];
  std::snprintf(b, sizeof(b), "s6 %s B%lld L%lld E%lld N%lld z%d s%d h0%d dhT%d seg%d str%d", io_name(c.io),
                (long long)c.B, (long long)c.L, (long long)c.E, (long long)c.N, c.z, c.scale, c.h0, c.dhT, c.segments,
                c.strided);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  bool test = false, quick = false, tiny = false, bench = false, profile = false, fwd_only = false;
  std::string out_dir;
  uint64_t seed = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()) % 1000000007ull;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--test") test = true;
    else if (a == "--quick") quick = true;
    else if (a == "--tiny") tiny = quick = true;
    else if (a == "--bench") bench = true;
    else if (a == "--fwd-only") fwd_only = true;
    else if (a == "--profile") profile = true;
    else if (a == "--out" && i + 1 < argc) out_dir = argv[++i];
    else if (a == "--seed" && i + 1 < argc) seed = std::stoull(argv[++i]);
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  std::string device = "cpu-emulator";
#ifndef MX_CPU_EMU
  {
    cudaDeviceProp prop;
    DEV_CHECK(cudaGetDeviceProperties(&prop, 0));
    device = prop.name;
  }
#endif
  std::printf("device: %s  seed: %llu\n", device.c_str(), (unsigned long long)seed);
  std::vector<std::string> tests_json, bench_json;
  bool all_pass = true;
  int n_fail = 0;
  if (test) {
    uint64_t s = seed;
    auto line = [&](const std::string& name, bool pass, const std::string& worst) {
      std::printf("%-4s %-70s worst %s\n", pass ? "ok" : "FAIL", name.c_str(), worst.c_str());
      std::fflush(stdout);
      if (!pass) all_pass = false, ++n_fail;
    };
    auto pick = [&](auto v, std::vector<size_t> idx) {  // --tiny: a few of the quick cases
      if (!tiny) return v;
      decltype(v) out;
      for (size_t i : idx)
        if (i < v.size()) out.push_back(v[i]);
      return out;
    };
    for (const auto& c : pick(s6_cases(quick), {3, 7, 9, 11})) {
      const auto r = run_s6_case(c, ++s);
      tests_json.push_back(r.json);
      line(s6_name(c), r.pass, r.worst);
    }
    for (const auto& c : pick(conv_cases(quick), {2, 7, 10})) {
      const auto r = run_conv_case(c, ++s);
      tests_json.push_back(r.json);
      char b[128];
      std::snprintf(b, sizeof(b), "conv1d %s B%lld L%lld C%lld K%lld bias%d str%d", io_name(c.io), (long long)c.B,
                    (long long)c.L, (long long)c.C, (long long)c.K, c.bias, c.strided);
      line(b, r.pass, r.worst);
    }
    for (const auto& c : pick(norm_cases(quick), {2, 5})) {
      const auto r = run_norm_case(c, ++s);
      tests_json.push_back(r.json);
      char b[128];
      std::snprintf(b, sizeof(b), "add_rmsnorm x%s y%s rows%lld D%lld res%d", io_name(c.x_io), io_name(c.y_io),
                    (long long)c.rows, (long long)c.D, c.residual);
      line(b, r.pass, r.worst);
    }
    std::printf("tests: %zu run, %d failed\n", tests_json.size(), n_fail);
  }
#ifndef MX_CPU_EMU
  if (bench) {
    std::vector<BenchRow> rows;
    auto add = [&](std::vector<BenchRow> r) {
      for (auto& x : r) {
        std::printf("%s\n", x.line.c_str());
        std::fflush(stdout);
        bench_json.push_back(x.json);
        rows.push_back(x);
      }
    };
    // mamba_ssm's selective_scan_cuda on an H100 (kernels.md §3 [measured]), at 64k and 128k.
    const bool bwd = !fwd_only;
    add(bench_s6(1, 65536, 5120, 16, IoType::BF16, 0, 10, 7.53, 24.9, bwd));   // the automatic plan
    for (int segments : {1, 2, 3}) add(bench_s6(1, 65536, 5120, 16, IoType::BF16, segments, 10, 7.53, 0, false));
    add(bench_s6(1, 16384, 5120, 16, IoType::BF16, 0, 20, 0, 0, bwd));
    add(bench_s6(1, 131072, 5120, 16, IoType::BF16, 0, 5, 15.1, 50.9, bwd));
    add(bench_s6(1, 16384, 5120, 16, IoType::F32, 0, 20, 0, 0, bwd));
    add(bench_s6(1, 65536, 5120, 16, IoType::F32, 0, 10, 13.05, 27.9, bwd));
    add(bench_s6(1, 131072, 5120, 16, IoType::F32, 0, 5, 26.3, 56.9, bwd));
    add(bench_s6(1, 65536, 1536, 16, IoType::BF16, 1, 10, 0, 0, bwd));  // mamba-130m shape, no time split
    add(bench_s6(1, 65536, 1536, 16, IoType::BF16, 0, 10, 0, 0, bwd));  // ... with the automatic split
    // The calibration objective's batch (4 windows of 16k, mamba-130m): the automatic plan and unsplit.
    add(bench_s6(4, 16384, 1536, 16, IoType::BF16, 0, 10, 0, 0, bwd));
    add(bench_s6(4, 16384, 1536, 16, IoType::BF16, 1, 10, 0, 0, false));
    if (bwd) add(bench_conv_norm(65536, 5120, 2560, IoType::BF16, 10));
    std::printf("\nSummary (ms, median):\n");
    for (const auto& r : rows) std::printf("  %s\n", r.line.c_str());
  }
  if (profile) {
    auto r = bench_s6(1, 65536, 5120, 16, IoType::BF16, 0, 1, 0, 0);
    for (auto& x : r) std::printf("%s\n", x.line.c_str());
  }
#else
  (void)bench;
  (void)profile;
  (void)fwd_only;
#endif
  if (!out_dir.empty()) {
    std::ofstream f(out_dir + "/mamba1_kernels.json");
    f << "{\"device\": \"" << device << "\", \"seed\": " << seed << ", \"all_pass\": " << (all_pass ? "true" : "false")
      << ",\n\"tests\": " << json_array(tests_json) << ",\n\"bench\": " << json_array(bench_json) << "}\n";
  }
  return all_pass ? 0 : 1;
}
