// Test / benchmark harness for the standalone kernel program (kernels/dev/mamba1_kernels.cu): device buffers,
// host <-> device copies in the activation type, a seeded RNG, error metrics against float64 references and a
// minimal JSON writer. Header-only, torch-free; compiles under the CPU emulator too (MX_CPU_EMU).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common.cuh"
#include "io_types.h"

namespace mx::dev {

using kern::IoType;

#define DEV_CHECK(expr)                                                                              \
  do {                                                                                               \
    const cudaError_t e_ = (expr);                                                                   \
    if (e_ != cudaSuccess) {                                                                         \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(2);                                                                                  \
    }                                                                                                \
  } while (0)

inline const char* io_name(IoType io) { return io == IoType::BF16 ? "bf16" : "fp32"; }
inline size_t io_size(IoType io) { return io == IoType::BF16 ? 2 : 4; }

// Owns device memory; filled with 0xFF bytes (NaN in fp32 and bf16) so unwritten outputs show up.
class DevBuf {
 public:
  DevBuf() = default;
  explicit DevBuf(size_t bytes, bool poison = true) : n_(bytes) {
    DEV_CHECK(cudaMalloc(&p_, std::max<size_t>(bytes, 16)));
    if (poison) DEV_CHECK(cudaMemset(p_, 0xFF, std::max<size_t>(bytes, 16)));
  }
  DevBuf(DevBuf&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(o.n_) {}
  DevBuf& operator=(DevBuf&& o) noexcept {
    std::swap(p_, o.p_);
    n_ = o.n_;
    return *this;
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() {
    if (p_) cudaFree(p_);
  }
  void* get() const { return p_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

inline double round_to(double v, IoType io) {
  return io == IoType::BF16 ? double(kern::bf16_to_float(kern::float_to_bf16(float(v)))) : double(float(v));
}
inline void round_all(std::vector<double>& v, IoType io) {
  for (auto& x : v) x = round_to(x, io);
}

// Host doubles -> device buffer of `io` elements (rounded as the conversion rounds).
inline DevBuf upload(const std::vector<double>& v, IoType io) {
  DevBuf d(v.size() * io_size(io), false);
  if (io == IoType::BF16) {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = kern::float_to_bf16(float(v[i]));
    DEV_CHECK(cudaMemcpy(d.get(), h.data(), h.size() * 2, cudaMemcpyHostToDevice));
  } else {
    std::vector<float> h(v.begin(), v.end());
    DEV_CHECK(cudaMemcpy(d.get(), h.data(), h.size() * 4, cudaMemcpyHostToDevice));
  }
  return d;
}
inline std::vector<double> download(const DevBuf& d, size_t n, IoType io) {
  std::vector<double> out(n);
  if (io == IoType::BF16) {
    std::vector<uint16_t> h(n);
    DEV_CHECK(cudaMemcpy(h.data(), d.get(), n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; ++i) out[i] = kern::bf16_to_float(h[i]);
  } else {
    std::vector<float> h(n);
    DEV_CHECK(cudaMemcpy(h.data(), d.get(), n * 4, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; ++i) out[i] = h[i];
  }
  return out;
}
inline std::vector<double> download_f64(const DevBuf& d, size_t n) {
  std::vector<double> out(n);
  DEV_CHECK(cudaMemcpy(out.data(), d.get(), n * 8, cudaMemcpyDeviceToHost));
  return out;
}

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  double normal() { return std::normal_distribution<double>(0.0, 1.0)(g); }
  double uniform(double a, double b) { return std::uniform_real_distribution<double>(a, b)(g); }
  std::vector<double> normals(size_t n, double scale = 1.0) {
    std::vector<double> v(n);
    for (auto& x : v) x = scale * normal();
    return v;
  }
};

// Error of `got` against the float64 reference `ref`.
struct Err {
  double max_abs = 0, ref_max = 0, ref_rms = 0, max_ulps = 0;
  bool finite = true;
  double rel_max() const { return ref_max > 0 ? max_abs / ref_max : max_abs; }  // max|err| / max|ref|
  double rel_rms() const { return ref_rms > 0 ? max_abs / ref_rms : max_abs; }  // max|err| / rms(ref)
};

// bf16 ulp of |x| (spacing of bf16 numbers around x): 2^(exponent - 7).
inline double bf16_ulp(double x) {
  x = std::fabs(x);
  if (x < 1e-30) return std::ldexp(1.0, -133);
  return std::ldexp(1.0, std::ilogb(x) - 7);
}

// `slack` is subtracted before dividing by the ulp (the fp32 arithmetic ahead of the final rounding).
inline Err compare(const std::vector<double>& got, const std::vector<double>& ref, double ulp_slack_rel = 0) {
  Err e;
  double ss = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    e.ref_max = std::max(e.ref_max, std::fabs(ref[i]));
    ss += ref[i] * ref[i];
  }
  e.ref_rms = ref.empty() ? 0 : std::sqrt(ss / double(ref.size()));
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(got[i] - ref[i]);
    if (!std::isfinite(got[i])) e.finite = false;
    e.max_abs = std::max(e.max_abs, d);
    e.max_ulps = std::max(e.max_ulps, std::max(0.0, d - ulp_slack_rel * e.ref_rms) / bf16_ulp(ref[i]));
  }
  if (!e.finite) e.max_abs = e.max_ulps = INFINITY;
  return e;
}

// Minimal JSON object builder (numbers, strings, nested raw JSON).
class Json {
 public:
  Json& num(const std::string& k, double v) {
    std::ostringstream o;
    if (std::isfinite(v)) {
      o.precision(6);
      o << v;
    } else {
      o << "null";
    }
    return raw(k, o.str());
  }
  Json& str(const std::string& k, const std::string& v) { return raw(k, "\"" + v + "\""); }
  Json& boolean(const std::string& k, bool v) { return raw(k, v ? "true" : "false"); }
  Json& raw(const std::string& k, const std::string& v) {
    body_ += (body_.empty() ? "" : ", ") + ("\"" + k + "\": ") + v;
    return *this;
  }
  std::string dump() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
};

inline std::string json_array(const std::vector<std::string>& items) {
  std::string s = "[";
  for (size_t i = 0; i < items.size(); ++i) s += (i ? ",\n  " : "\n  ") + items[i];
  return s + "\n]";
}

}  // namespace mx::dev
