// Causal depthwise conv1d with carried state on CUDA, torch-free interface (ops.h causal_conv1d):
//   y[b,t,c] = bias[c] + Σ_{k<K} w[c,k] · xx[b, t+k, c],   xx = concat(state[b,c,0..K-2], x[b,·,c]) over time
// so w[c,K-1] multiplies the current token; the new state is the last K-1 entries of xx (oldest first).
// x and y are (B, L, C) with unit channel stride and int64 batch / time strides; weight (C, K), bias (C) and
// the state (B, C, K-1) are contiguous, all in the activation type (fp32 or bf16); math in fp32.
// Backward: dxx[j] = Σ_k w[k]·dy[j-k] (+ dstate_out[j-L] for j >= L) gives dx[t] = dxx[t+K-1] and
// dstate_in[m] = dxx[m]; dw[c,k] = Σ_t dy[t]·xx[t+k], dbias[c] = Σ_t dy[t] (fp32 atomics after a per-CTA sum).
// Kernel widths K from 2 to 8.
#pragma once
#include <cstdint>

#include "io_types.h"

namespace mx::kern {

struct Conv1dArgs {
  int64_t batch = 0, len = 0, channels = 0, width = 0;  // B, L, C, K
  IoType io = IoType::F32;
  const void* x = nullptr;
  int64_t x_sb = 0, x_sl = 0;
  const void* weight = nullptr;  // (C, K)
  const void* bias = nullptr;    // (C) or null
  const void* state_in = nullptr;  // (B, C, K-1)
  bool silu = false;               // forward only: y = silu(conv + bias) (the mixers' activation, fused)
};

// y (B, L, C) with strides y_sb, y_sl; state_out (B, C, K-1) may alias state_in (it is written after y).
cudaError_t conv1d_fwd(const Conv1dArgs& a, void* y, int64_t y_sb, int64_t y_sl, void* state_out,
                       cudaStream_t stream);

struct Conv1dBwdArgs {
  const void* dy = nullptr;  // (B, L, C), io type, strides dy_sb, dy_sl
  int64_t dy_sb = 0, dy_sl = 0;
  const float* dstate_out = nullptr;  // (B, C, K-1) fp32 or null
  void* dx = nullptr;                 // (B, L, C), io type, strides dx_sb, dx_sl
  int64_t dx_sb = 0, dx_sl = 0;
  float* dweight = nullptr;   // (C, K) fp32, zeroed here
  float* dbias = nullptr;     // (C) fp32 or null, zeroed here
  float* dstate_in = nullptr; // (B, C, K-1) fp32 or null
};

cudaError_t conv1d_bwd(const Conv1dArgs& a, const Conv1dBwdArgs& g, cudaStream_t stream);

}  // namespace mx::kern
