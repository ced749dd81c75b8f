// Mamba1 selective scan ("S6") on CUDA, torch-free interface (kernels.md §2 steps 4–7, §6 "CUDA: Mamba1").
//   Δ[b,t,e]  = s[e] · softplus(delta[b,t,e] + dt_bias[e])
//   h_t[e,n]  = exp(Δ·A[e,n]) · h_{t-1}[e,n] + Δ · B_t[n] · u_t[e]        (h_{-1} = h0, fp32)
//   out_t[e]  = (Σ_n C_t[n] h_t[e,n] + D[e] u_t[e]) · silu(z_t[e])          (no gate without z)
// Activations u, delta, z, out (B, L, E) and B, C (B, L, N) are fp32 or bf16 with a unit stride on the last
// dimension and any int64 batch / time strides; A (E, N), D, dt_bias (E), dt_scale (1 or E), h0 / hT
// (B, E, N) are fp32. State and arithmetic are fp32, indexing is 64-bit (L up to 2^31 and beyond).
// Supported d_state N: 8, 16, 32, 64, 128 (s6_supported_dstate).
//
// Forward: one CTA owns (batch, a block of channels, a time segment) and walks its tokens in tiles of
// kS6Chunk through shared memory; each thread runs the recurrence sequentially for one channel and 4 states.
// When batch·E is too small to fill the GPU, time is split into segments: a first pass computes each
// segment's end state from zero, a sequential combine gives every segment its true initial state, then the
// full pass runs all segments in parallel (exact up to reassociation; about 1.8x the exps).
// With `ckpt` set, the forward also stores the state before every kS6Chunk-th token, which the backward needs:
// (B, ceil(L / kS6Chunk), E, N) fp32.
//
// Backward: the same decomposition in reverse. Per chunk it recomputes the states from the checkpoint, runs
// dh_t = exp(Δ_{t+1}A)·dh_{t+1} + C_t·(dout_t·silu(z_t)) backwards and emits du, d(delta), dz per token, dB and dC
// reduced over the CTA's channels before fp32 atomics, and dA, dD, d(dt_bias), d(dt_scale) reduced in fp64.
#pragma once
#include <cstddef>
#include <cstdint>

#include "io_types.h"

namespace mx::kern {

constexpr int64_t kS6Chunk = 32;  // tokens per tile, and the checkpoint interval of the forward

struct S6Inputs {
  int64_t batch = 0, len = 0, dim = 0, dstate = 0;  // B, L, E, N
  IoType io = IoType::F32;                         // type of u, delta, z, B, C (and of out / du / ddelta / dz)
  const void* u = nullptr;
  int64_t u_sb = 0, u_sl = 0;  // element strides over batch and time
  const void* delta = nullptr;  // raw Δ, before bias / softplus / scale
  int64_t delta_sb = 0, delta_sl = 0;
  const void* z = nullptr;  // optional gate
  int64_t z_sb = 0, z_sl = 0;
  const void* B = nullptr;
  int64_t B_sb = 0, B_sl = 0;
  const void* C = nullptr;
  int64_t C_sb = 0, C_sl = 0;
  const float* A = nullptr;         // (E, N) contiguous
  const float* D = nullptr;         // (E) or null
  const float* dt_bias = nullptr;   // (E) or null
  const float* dt_scale = nullptr;  // (1) or (E) or null (= 1)
  int64_t dt_scale_stride = 0;      // 0: one scalar, 1: per channel
  int num_segments = 0;             // time segments: 0 = choose from the GPU size; > 0 forces (tests)
};

struct S6FwdArgs {
  const float* h0 = nullptr;  // (B, E, N) or null (zeros)
  float* hT = nullptr;        // (B, E, N) or null; may alias h0
  void* out = nullptr;        // (B, L, E) or null (only states / checkpoints wanted)
  int64_t out_sb = 0, out_sl = 0;
  float* ckpt = nullptr;      // (B, ceil(L / kS6Chunk), E, N) or null
};

struct S6BwdArgs {
  const float* h0 = nullptr;    // as in the forward
  const float* ckpt = nullptr;  // (B, ceil(L / kS6Chunk), E, N) from s6_fwd with the same inputs and h0
  const void* dout = nullptr;   // (B, L, E), io type
  int64_t dout_sb = 0, dout_sl = 0;
  const float* dhT = nullptr;   // (B, E, N) or null: gradient arriving at the final state
  void* du = nullptr;           // (B, L, E), io type
  int64_t du_sb = 0, du_sl = 0;
  void* ddelta = nullptr;       // (B, L, E), io type: gradient w.r.t. the raw delta
  int64_t ddelta_sb = 0, ddelta_sl = 0;
  void* dz = nullptr;           // (B, L, E), io type; required when z is given
  int64_t dz_sb = 0, dz_sl = 0;
  float* dB = nullptr;          // (B, L, N) contiguous fp32, zeroed here then accumulated
  float* dC = nullptr;          // (B, L, N) contiguous fp32, zeroed here then accumulated
  double* dA = nullptr;         // (E, N), zeroed here
  double* dD = nullptr;         // (E) or null, zeroed here
  double* ddt_bias = nullptr;   // (E) or null, zeroed here
  double* ddt_scale = nullptr;  // (E) per-channel sums Σ_t dΔ·softplus(·), zeroed here; sum them for a scalar s
  float* dh0 = nullptr;         // (B, E, N) or null
};

bool s6_supported_dstate(int64_t n);
int64_t s6_num_chunks(int64_t len);  // ceil(len / kS6Chunk): the checkpoint count per batch row

// Scratch bytes the launchers need (time segments); pass a buffer of at least that size (16-byte aligned).
size_t s6_fwd_workspace_bytes(const S6Inputs& in);
size_t s6_bwd_workspace_bytes(const S6Inputs& in);

// The number of time segments the forward uses for these inputs (benchmarks report it).
int s6_fwd_segments(const S6Inputs& in);

// Enqueue on `stream`. They return cudaErrorInvalidValue for arguments they cannot handle (unsupported N,
// a missing required pointer), otherwise the launch status.
cudaError_t s6_fwd(const S6Inputs& in, const S6FwdArgs& args, void* workspace, cudaStream_t stream);
cudaError_t s6_bwd(const S6Inputs& in, const S6BwdArgs& args, void* workspace, cudaStream_t stream);

}  // namespace mx::kern
