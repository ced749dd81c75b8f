// Causal depthwise conv1d forward / backward (conv1d.h has the math). A CTA is 32 channels x 8 runs of kRun
// consecutive tokens; each thread slides a K-wide window over its run, so every input is read about once
// and loads are coalesced over channels. The backward sums dw / dbias over the CTA's 8 runs in shared memory
// before one fp32 atomic per (channel, tap).
#include <type_traits>

#include "common.cuh"
#include "conv1d/conv1d.h"

namespace mx::kern::conv {
namespace {

constexpr int kLanes = 32, kRuns = 8, kRun = 32;

template <typename IO, int K>
__global__ void __launch_bounds__(kLanes* kRuns) conv1d_fwd_kernel(Conv1dArgs a, IO* y, int64_t y_sb, int64_t y_sl) {
  const int64_t b = blockIdx.z, C = a.channels, L = a.len;
  const int64_t c = int64_t(blockIdx.x) * kLanes + threadIdx.x;
  const int64_t t0 = (int64_t(blockIdx.y) * kRuns + threadIdx.y) * kRun;
  if (c >= C || t0 >= L) return;
  const IO* x = static_cast<const IO*>(a.x) + b * a.x_sb + c;
  const IO* st = static_cast<const IO*>(a.state_in) + (b * C + c) * (K - 1);
  const IO* wp = static_cast<const IO*>(a.weight) + c * K;
  float w[K], win[K - 1];
#pragma unroll
  for (int k = 0; k < K; ++k) w[k] = load_f(wp, k);
  const float bias = a.bias ? load_f(static_cast<const IO*>(a.bias), c) : 0.f;
#pragma unroll
  for (int m = 0; m < K - 1; ++m) {
    const int64_t q = t0 + m;  // index into xx = concat(state, x)
    win[m] = q < K - 1 ? load_f(st, q) : load_f(x, (q - (K - 1)) * a.x_sl);
  }
  IO* yp = y + b * y_sb + c;
  const int64_t t_end = t0 + kRun < L ? t0 + kRun : L;
  for (int64_t t = t0; t < t_end; ++t) {
    const float xn = load_f(x, t * a.x_sl);
    float acc = fmaf(w[K - 1], xn, bias);
#pragma unroll
    for (int k = 0; k < K - 1; ++k) acc = fmaf(w[k], win[k], acc);
    store_f(yp, t * y_sl, a.silu ? silu_f(acc) : acc);
#pragma unroll
    for (int k = 0; k < K - 2; ++k) win[k] = win[k + 1];
    win[K - 2] = xn;
  }
}

// New state = the last K-1 entries of concat(state, x); read before written, so it may be in place.
template <typename IO, int K>
__global__ void conv1d_state_kernel(Conv1dArgs a, IO* state_out) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= a.batch * a.channels) return;
  const int64_t b = idx / a.channels, c = idx % a.channels, L = a.len;
  const IO* x = static_cast<const IO*>(a.x) + b * a.x_sb + c;
  const IO* st = static_cast<const IO*>(a.state_in) + idx * (K - 1);
  float v[K - 1];
#pragma unroll
  for (int m = 0; m < K - 1; ++m) {
    const int64_t q = L + m;
    v[m] = q < K - 1 ? load_f(st, q) : load_f(x, (q - (K - 1)) * a.x_sl);
  }
#pragma unroll
  for (int m = 0; m < K - 1; ++m) store_f(state_out + idx * (K - 1), m, v[m]);
}

template <typename IO, int K>
__global__ void __launch_bounds__(kLanes* kRuns) conv1d_bwd_kernel(Conv1dArgs a, Conv1dBwdArgs gr) {
  float* s_part = reinterpret_cast<float*>(dynamic_smem());  // (kRuns, K + 1, kLanes) per-run partial sums
  const int64_t b = blockIdx.z, C = a.channels, L = a.len;
  const int64_t c = int64_t(blockIdx.x) * kLanes + threadIdx.x;
  const int64_t p0 = (int64_t(blockIdx.y) * kRuns + threadIdx.y) * kRun;
  const bool cv = c < C;
  float dw[K + 1];  // dw[0..K-1], dbias
#pragma unroll
  for (int k = 0; k <= K; ++k) dw[k] = 0.f;
  if (cv && p0 < L + K - 1) {
    const IO* x = static_cast<const IO*>(a.x) + b * a.x_sb + c;
    const IO* st = static_cast<const IO*>(a.state_in) + (b * C + c) * (K - 1);
    const IO* dy = static_cast<const IO*>(gr.dy) + b * gr.dy_sb + c;
    const IO* wp = static_cast<const IO*>(a.weight) + c * K;
    float w[K];
#pragma unroll
    for (int k = 0; k < K; ++k) w[k] = load_f(wp, k);
    auto dy_at = [&](int64_t t) { return (t >= 0 && t < L) ? load_f(dy, t * gr.dy_sl) : 0.f; };
    auto xx_at = [&](int64_t q) { return q < K - 1 ? load_f(st, q) : load_f(x, (q - (K - 1)) * a.x_sl); };

    // dxx[p] = Σ_k w[k]·dy[p-k] (+ dstate_out[p-L]); window dyw[k] = dy[p-k]
    float dyw[K];
#pragma unroll
    for (int k = 1; k < K; ++k) dyw[k] = dy_at(p0 - k);
    const int64_t p_end = p0 + kRun < L + K - 1 ? p0 + kRun : L + K - 1;
    IO* dx = static_cast<IO*>(gr.dx) + b * gr.dx_sb + c;
    for (int64_t p = p0; p < p_end; ++p) {
      dyw[0] = dy_at(p);
      float acc = 0.f;
#pragma unroll
      for (int k = 0; k < K; ++k) acc = fmaf(w[k], dyw[k], acc);
      if (p >= L && gr.dstate_out) acc += gr.dstate_out[(b * C + c) * (K - 1) + (p - L)];
      if (p >= K - 1) {
        store_f(dx, (p - (K - 1)) * gr.dx_sl, acc);
      } else if (gr.dstate_in) {
        gr.dstate_in[(b * C + c) * (K - 1) + p] = acc;
      }
#pragma unroll
      for (int k = K - 1; k > 0; --k) dyw[k] = dyw[k - 1];
    }

    // dw[k] += dy[t]·xx[t+k], dbias += dy[t], for t in the run; window xw[k] = xx[t+k]
    const int64_t t_end = p0 + kRun < L ? p0 + kRun : L;
    if (p0 < t_end) {
      float xw[K];
#pragma unroll
      for (int k = 0; k < K - 1; ++k) xw[k] = xx_at(p0 + k);
      for (int64_t t = p0; t < t_end; ++t) {
        xw[K - 1] = xx_at(t + K - 1);
        const float d = load_f(dy, t * gr.dy_sl);
#pragma unroll
        for (int k = 0; k < K; ++k) dw[k] = fmaf(d, xw[k], dw[k]);
        dw[K] += d;
#pragma unroll
        for (int k = 0; k < K - 1; ++k) xw[k] = xw[k + 1];
      }
    }
  }
#pragma unroll
  for (int k = 0; k <= K; ++k) s_part[(threadIdx.y * (K + 1) + k) * kLanes + threadIdx.x] = dw[k];
  __syncthreads();
  if (threadIdx.y == 0 && cv) {
#pragma unroll
    for (int k = 0; k <= K; ++k) {
      float s = 0.f;
      for (int r = 0; r < kRuns; ++r) s += s_part[(r * (K + 1) + k) * kLanes + threadIdx.x];
      if (k < K) {
        atomicAdd(gr.dweight + c * K + k, s);
      } else if (gr.dbias) {
        atomicAdd(gr.dbias + c, s);
      }
    }
  }
}

template <typename IO, int K>
cudaError_t launch_fwd(const Conv1dArgs& a, void* y, int64_t y_sb, int64_t y_sl, void* state_out, cudaStream_t stream) {
  const dim3 grid(unsigned(ceil_div(a.channels, kLanes)), unsigned(ceil_div(a.len, kRuns * kRun)), unsigned(a.batch));
  auto kf = conv1d_fwd_kernel<IO, K>;
  MX_LAUNCH(kf, grid, dim3(kLanes, kRuns), 0, stream, a, static_cast<IO*>(y), y_sb, y_sl);
  if (state_out) {
    auto ks = conv1d_state_kernel<IO, K>;
    MX_LAUNCH(ks, dim3(unsigned(ceil_div(a.batch * a.channels, 256))), dim3(256), 0, stream, a,
              static_cast<IO*>(state_out));
  }
  return cudaGetLastError();
}

template <typename IO, int K>
cudaError_t launch_bwd(const Conv1dArgs& a, const Conv1dBwdArgs& g, cudaStream_t stream) {
  cudaError_t err = cudaMemsetAsync(g.dweight, 0, sizeof(float) * a.channels * K, stream);
  if (err == cudaSuccess && g.dbias) err = cudaMemsetAsync(g.dbias, 0, sizeof(float) * a.channels, stream);
  if (err != cudaSuccess) return err;
  const dim3 grid(unsigned(ceil_div(a.channels, kLanes)), unsigned(ceil_div(a.len + K - 1, kRuns * kRun)),
                  unsigned(a.batch));
  auto kb = conv1d_bwd_kernel<IO, K>;
  MX_LAUNCH(kb, grid, dim3(kLanes, kRuns), sizeof(float) * kRuns * (K + 1) * kLanes, stream, a, g);
  return cudaGetLastError();
}

template <typename F>
bool dispatch(IoType io, int64_t width, F&& f) {
  auto with_io = [&](auto tag) {
    switch (width) {
      case 2: f(tag, std::integral_constant<int, 2>{}); return true;
      case 3: f(tag, std::integral_constant<int, 3>{}); return true;
      case 4: f(tag, std::integral_constant<int, 4>{}); return true;
      case 5: f(tag, std::integral_constant<int, 5>{}); return true;
      case 6: f(tag, std::integral_constant<int, 6>{}); return true;
      case 7: f(tag, std::integral_constant<int, 7>{}); return true;
      case 8: f(tag, std::integral_constant<int, 8>{}); return true;
      default: return false;
    }
  };
  return io == IoType::BF16 ? with_io(bf16{}) : with_io(float{});
}

}  // namespace
}  // namespace mx::kern::conv

namespace mx::kern {

cudaError_t conv1d_fwd(const Conv1dArgs& a, void* y, int64_t y_sb, int64_t y_sl, void* state_out,
                       cudaStream_t stream) {
  if (!a.x || !a.weight || !a.state_in || !y || a.batch < 1 || a.len < 1 || a.channels < 1)
    return cudaErrorInvalidValue;
  cudaError_t err = cudaErrorInvalidValue;
  conv::dispatch(a.io, a.width, [&](auto io, auto kc) {
    err = conv::launch_fwd<decltype(io), decltype(kc)::value>(a, y, y_sb, y_sl, state_out, stream);
  });
  return err;
}

cudaError_t conv1d_bwd(const Conv1dArgs& a, const Conv1dBwdArgs& g, cudaStream_t stream) {
  if (!a.x || !a.weight || !a.state_in || !g.dy || !g.dx || !g.dweight || a.batch < 1 || a.len < 1 || a.channels < 1)
    return cudaErrorInvalidValue;
  cudaError_t err = cudaErrorInvalidValue;
  conv::dispatch(a.io, a.width, [&](auto io, auto kc) {
    err = conv::launch_bwd<decltype(io), decltype(kc)::value>(a, g, stream);
  });
  return err;
}

}  // namespace mx::kern
