// Mamba2 SSD scan on CUDA, torch-free interface (kernels.md §2 Mamba2 steps 3–5, §3 "Mamba2 SSD"; ops.h ssd_scan):
//   Δ[b,t,h]   = s[h] · clamp(softplus(dt[b,t,h] + dt_bias[h]), dt_min, dt_max)
//   h_t[h,p,n] = exp(Δ·A[h]) · h_{t-1}[h,p,n] + Δ · x_t[h,p] · B_t[g(h),n]          g(h) = h / (H/G)
//   y_t[h,p]   = Σ_n C_t[g(h),n] · h_t[h,p,n] + D[h] · x_t[h,p]
// x, dt (B, L, H[, P]) and B, C (B, L, G, N) are fp32 or bf16 (the io type) with a unit stride on the last
// dimension and int64 strides elsewhere; vector loads need 16-byte aligned rows (pointers and strides of x, B,
// C, dy multiples of 8 elements). dt_bias, A, D, dt_scale and the states h0 / hT (B, H, P, N) are fp32.
// Head dim P = 64; d_state N ∈ {64, 128, 256} (ssd_supported).
//
// Evaluation: chunks of kSsdChunk = 256 tokens (the last one zero-padded), all intermediates fp32:
//   1. Δ and the chunk-local cumulative sum of Δ·A (fp32, (B, H, L_pad));
//   2. CB = C·Bᵀ per chunk and group (256×256, lower triangle, fp32);
//   3. chunk states S_c = Σ_s exp(cs_end − cs_s)·Δ_s·x_s ⊗ B_s (fp32);
//   4. state passing S_in[c+1] = exp(cs_end)·S_in[c] + S_c, sequential over chunks, in place, fp32;
//   5. y = exp(cs_t)·C_t·S_inᵀ + Σ_{s≤t} CB_ts·exp(cs_t − cs_s)·Δ_s·x_s + D·x.
// The products run on tensor cores (mma.sync m16n8k16, bf16 operands, fp32 accumulation; tiles arrive by
// cp.async and are read with ldmatrix) for bf16 inputs and in plain fp32 FMA for fp32 inputs (true fp32, no
// TF32). Operands of a product are rounded to bf16 once (states S_in, the decayed CB tile, the Δ-weighted x);
// everything carried between chunks stays fp32, and the chunk-local cumsum is a double-float so that decays
// between nearby tokens keep full precision however large the cumsum grows.
// Sequences of at most kSsdRecurrentMaxLen tokens (decoding steps) take a direct recurrent kernel instead.
// The backward recomputes 1–4 unless the forward kept them for it (SsdFwdOut::saved -> SsdBwdArgs::saved:
// Δ, the cumsum, CB and S_in, with S_in in bf16 for bf16 I/O; ssd_saved_bytes). It then runs the state passing in
// reverse for the gradients of the states, and forms dx, dB, dC, d(dt) (through the clamp and softplus),
// d(scale) (fp64, per head) and dh0 from dy and dhT.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "io_types.h"

namespace mx::kern {

constexpr int64_t kSsdChunk = 256;
constexpr int64_t kSsdHeadDim = 64;
constexpr int64_t kSsdRecurrentMaxLen = 32;

struct SsdArgs {
  int64_t batch = 0, len = 0, heads = 0, head_dim = 0, groups = 0, dstate = 0;  // B, L, H, P, G, N
  IoType io = IoType::F32;  // type of x, dt, B, C (and of y, dy, dx)
  const void* x = nullptr;  // (B, L, H, P)
  int64_t x_sb = 0, x_sl = 0, x_sh = 0;
  const void* dt = nullptr;  // (B, L, H) raw dt, before bias / softplus / clamp / scale
  int64_t dt_sb = 0, dt_sl = 0, dt_sh = 0;
  const void* Bm = nullptr;  // (B, L, G, N)
  int64_t B_sb = 0, B_sl = 0, B_sg = 0;
  const void* Cm = nullptr;  // (B, L, G, N)
  int64_t C_sb = 0, C_sl = 0, C_sg = 0;
  const float* dt_bias = nullptr;  // (H) or null
  const float* A = nullptr;        // (H), the decay rate (negative: −exp(A_log))
  const float* D = nullptr;        // (H) or null
  const float* dt_scale = nullptr;  // (1) or (H) or null (= 1)
  bool scale_per_head = false;
  float dt_min = 0.f, dt_max = INFINITY;
  const float* h0 = nullptr;  // (B, H, P, N) contiguous, or null (zeros)
  bool force_chunked = false;  // tests: use the chunked path even for short sequences
};

struct SsdFwdOut {
  void* y = nullptr;  // (B, L, H, P), io type
  int64_t y_sb = 0, y_sl = 0, y_sh = 0;
  float* hT = nullptr;  // (B, H, P, N) contiguous or null; may alias h0
  // Optional: a buffer of ssd_saved_bytes (16-byte aligned) that receives what the backward would otherwise
  // recompute (stages 1–4: Δ and its cumsum, CB, and S_in, the state entering each chunk, in bf16 for bf16 I/O);
  // pass it to ssd_bwd (SsdBwdArgs::saved). Setting it takes the chunked path even for short sequences.
  void* saved = nullptr;
};

struct SsdBwdArgs {
  const void* dy = nullptr;  // (B, L, H, P), io type (required; pass zeros for none)
  int64_t dy_sb = 0, dy_sl = 0, dy_sh = 0;
  const float* dhT = nullptr;  // (B, H, P, N) contiguous or null (zeros)
  const void* saved = nullptr;  // SsdFwdOut::saved of ssd_fwd on the same inputs, or null: recomputed
  void* dx = nullptr;          // (B, L, H, P), io type
  int64_t dx_sb = 0, dx_sl = 0, dx_sh = 0;
  float* ddt = nullptr;     // (B, L, H) contiguous: gradient w.r.t. the raw dt
  float* dB = nullptr;      // (B, L, G, N) contiguous
  float* dC = nullptr;      // (B, L, G, N) contiguous
  float* dh0 = nullptr;     // (B, H, P, N) contiguous or null
  double* dscale = nullptr;  // (H) or null: Σ_{b,t} dΔ·clamp(softplus(·)) per head, zeroed here (sum them for a
                             // scalar scale)
};

bool ssd_supported(int64_t head_dim, int64_t dstate);

// Scratch bytes of the launchers (16-byte aligned buffer of at least that size; 0 for the recurrent path), for
// calls without or with SsdFwdOut::saved / SsdBwdArgs::saved (less scratch: the intermediates live there).
size_t ssd_fwd_workspace_bytes(const SsdArgs& a, bool with_saved = false);
size_t ssd_bwd_workspace_bytes(const SsdArgs& a, bool with_saved = false);
// Bytes of SsdFwdOut::saved / SsdBwdArgs::saved.
size_t ssd_saved_bytes(const SsdArgs& a);

// Enqueue on `stream`. cudaErrorInvalidValue for unsupported shapes or missing pointers, else the launch status.
cudaError_t ssd_fwd(const SsdArgs& a, const SsdFwdOut& o, void* workspace, cudaStream_t stream);
cudaError_t ssd_bwd(const SsdArgs& a, const SsdBwdArgs& g, void* workspace, cudaStream_t stream);

// Profiling only: when set, called on the launch stream after each kernel of ssd_fwd / ssd_bwd with its name.
using SsdStageHook = void (*)(const char* stage, cudaStream_t stream);
void ssd_set_stage_hook(SsdStageHook hook);
SsdStageHook ssd_stage_hook();

}  // namespace mx::kern
