// Shared constants of the S6 kernels (s6_fwd.cu, s6_bwd.cu): the CTA shape, per-N tiling, the time-segment
// plan and the N / io-type dispatch. See s6.h for the math and the layout of the arguments.
#pragma once
#include <algorithm>
#include <type_traits>

#include "common.cuh"
#include "s6/s6.h"

namespace mx::kern::s6 {

constexpr int kThreads = 128;            // threads per CTA
constexpr int kNS = 4;                   // states per thread (a sequential recurrence over 4 (e, n) pairs)
constexpr int kT = int(kS6Chunk);        // tokens per tile = checkpoint interval
constexpr int kT2 = 4;                   // backward: tokens whose states live in registers at once
constexpr int kNSub = kT / kT2;          // backward: register sub-tiles per tile
constexpr int kMinSegmentChunks = 64;    // a time segment spans at least 64 tiles (2048 tokens)
// Forward: the time-segment plan counts kFwdPlanCtasPerSm CTA slots per SM; the register budget (launch bounds)
// allows fwd_ctas_per_sm<IO>() CTAs per SM, and the first pass is cut into pieces to fill those (s6_fwd.cu). bf16
// runs 5 per SM (96 registers); fp32 keeps 4 (128: at 96 it spills and slows from 5.03 to 5.69 ms). Measured
// (H100, E = 5120, 64k, bf16): budget 4 5.06 ms; budget 5, S = 3, first pass in 2 pieces 4.57 ms; S = 4 4.64 ms;
// budget 6 4.78-4.84 ms (spills). MX_S6_FWD_CTAS_PER_SM overrides the bf16 budget for such experiments
// (scripts/bench_kernels_mamba1.sh MX_NVCC_FLAGS).
#ifndef MX_S6_FWD_CTAS_PER_SM
#define MX_S6_FWD_CTAS_PER_SM 5
#endif
constexpr int kFwdCtasPerSm = 4;  // fp32
constexpr int kFwdPlanCtasPerSm = 4;
template <typename IO>
constexpr int fwd_ctas_per_sm() {
  return std::is_same_v<IO, bf16> ? MX_S6_FWD_CTAS_PER_SM : kFwdCtasPerSm;
}
constexpr int kBwdFirstCtasPerSm = 4;  // the backward's first pass: 128 registers per thread
constexpr int kBwdCtasPerSm = 3;         // register budget of the backward: 168 registers per thread

// Tiling for a d_state of N: G threads share a channel (4 states each), EC channels per CTA.
template <int N>
struct Cfg {
  static_assert(N % kNS == 0 && N / kNS <= 32, "N must be a multiple of 4, at most 128");
  static constexpr int G = N / kNS;                             // threads per channel
  static constexpr int EC = kThreads / G;                        // channels per CTA
  static constexpr int PT = kT / G;                              // (token, channel) pairs per thread per tile
  static constexpr int BCV = (kT * N + kThreads - 1) / kThreads;  // B (and C) values per thread per tile
};

// How the time axis is split: S segments of seg_len tokens (a multiple of kT).
struct SegPlan {
  int S = 1;
  int64_t seg_len = 0;
};

// The scan is a sequential recurrence per (channel, state), so a CTA's speed is bound by latency: it takes
// several resident CTAs per multiprocessor to keep the pipes busy. When batch x channel blocks leave room
// for more (max_ctas_per_sm x #SM), time is split into segments (each at least kMinSegmentChunks tiles);
// a segment costs a first pass over its tokens (the exps again, no output).
inline SegPlan plan_segments(const S6Inputs& in, int64_t ctas_per_segment, int max_ctas_per_sm) {
  const int64_t nchunks = ceil_div(in.len, kT);
  int64_t S = 1;
  if (in.num_segments > 0) {
    S = std::min<int64_t>(in.num_segments, nchunks);
  } else {
    const int64_t slots = int64_t(max_ctas_per_sm) * device_sm_count();
    S = std::min<int64_t>(slots / std::max<int64_t>(ctas_per_segment, 1), nchunks / kMinSegmentChunks);
  }
  S = std::max<int64_t>(S, 1);
  SegPlan p;
  p.seg_len = ceil_div(nchunks, S) * kT;
  p.S = int(ceil_div(in.len, p.seg_len));
  return p;
}

template <int N>
inline int64_t channel_blocks(const S6Inputs& in) {
  return ceil_div(in.dim, Cfg<N>::EC);
}

// A time split whose first pass (the segment end states of the forward, the incoming gradients of the backward) runs
// over S-1 of the S segments, each cut into F pieces so that the first pass too fills its CTA slots (at most 8
// pieces of at least 8 tiles; the segment length is rounded up to a multiple of F tiles). The combine then walks the
// K = F·(S-1) pieces.
struct SplitPlan {
  SegPlan seg;
  int F = 1;
  int64_t K() const { return int64_t(F) * (seg.S - 1); }
};

// S from plan_segments over main_ctas_per_sm slots per SM, F to fill first_ctas_per_sm slots per SM.
inline SplitPlan plan_split(const S6Inputs& in, int64_t nblk, int main_ctas_per_sm, int first_ctas_per_sm) {
  SplitPlan p;
  p.seg = plan_segments(in, nblk, main_ctas_per_sm);
  if (p.seg.S > 1) {
    const int64_t slots = int64_t(first_ctas_per_sm) * device_sm_count(), nchunks = ceil_div(in.len, kT);
    int64_t F = std::min<int64_t>(slots / (nblk * (p.seg.S - 1)), 8);
    F = std::max<int64_t>(std::min<int64_t>(F, p.seg.seg_len / kT / 8), 1);
    p.seg.seg_len = ceil_div(nchunks, p.seg.S * F) * F * kT;
    p.seg.S = int(ceil_div(in.len, p.seg.seg_len));
    p.F = p.seg.S > 1 ? int(F) : 1;
  }
  return p;
}

// The split's workspace (none without a split): loc (B, K, E, N) f32, the first pass's state (forward) or carry
// (backward) out of each piece | init (B, S, E, N) f32, each segment's true one from the combine | Σ Δ (B, K, E) f64.
struct SplitWs {
  float* loc = nullptr;
  float* init = nullptr;
  double* sumdt = nullptr;
  size_t bytes = 0;
};
inline SplitWs split_ws(const S6Inputs& in, const SplitPlan& p, void* base) {
  SplitWs w;
  if (p.seg.S <= 1) return w;
  const int64_t K = p.K(), EN = in.dim * in.dstate;
  if (float* f = static_cast<float*>(base)) {
    w.loc = f;
    w.init = f + in.batch * K * EN;
    w.sumdt = reinterpret_cast<double*>(w.init + in.batch * p.seg.S * EN);
  }
  w.bytes = size_t(in.batch) * ((K + p.seg.S) * EN * sizeof(float) + K * in.dim * sizeof(double));
  return w;
}

template <int V>
struct IntTag {
  static constexpr int value = V;
};

// Calls f(IO{}, IntTag<N>{}) for the runtime io type and d_state; false if N is unsupported.
template <typename F>
bool dispatch(IoType io, int64_t n, F&& f) {
  auto with_io = [&](auto tag) {
    switch (n) {
      case 8: f(tag, IntTag<8>{}); return true;
      case 16: f(tag, IntTag<16>{}); return true;
      case 32: f(tag, IntTag<32>{}); return true;
      case 64: f(tag, IntTag<64>{}); return true;
      case 128: f(tag, IntTag<128>{}); return true;
      default: return false;
    }
  };
  return io == IoType::BF16 ? with_io(bf16{}) : with_io(float{});
}

// VW elements of an activation tensor as raw 32-bit words (bf16: two per word), loaded with one vector load
// per 16 bytes when `vec` (the launcher checked the alignment) or element by element (`n` valid elements).
template <typename IO, int VW>
struct Raw;
template <int VW>
struct Raw<float, VW> {
  uint32_t w[VW];
  MX_DEV float get(int v) const { return f_from_bits(w[v]); }
  MX_DEV void load(const float* p, bool vec, int n) {
    if (vec && VW % 4 == 0) {
#pragma unroll
      for (int i = 0; i < VW / 4; ++i) ld_u32x4(p + 4 * i, w + 4 * i);
    } else {
#pragma unroll
      for (int v = 0; v < VW; ++v) w[v] = v < n ? bits_from_f(p[v]) : 0u;
    }
  }
};
template <int VW>
struct Raw<bf16, VW> {
  static constexpr int NW = (VW + 1) / 2;
  uint32_t w[NW];
  MX_DEV float get(int v) const { return f_from_bits(v % 2 == 0 ? w[v / 2] << 16 : w[v / 2] & 0xffff0000u); }
  MX_DEV void load(const bf16* p, bool vec, int n) {
    if (vec && VW == 8) {
      ld_u32x4(p, w);
    } else {
#pragma unroll
      for (int i = 0; i < NW; ++i) {
        const uint32_t lo = 2 * i < n ? p[2 * i].bits : 0u, hi = 2 * i + 1 < n ? p[2 * i + 1].bits : 0u;
        w[i] = lo | (hi << 16);
      }
    }
  }
};

// Staging item `item` of a tile (items of VW consecutive channels of one token, CG per token): its token row (kT
// when there is no such item) and the number nv of its channels below E (0 for none); returns its first channel.
template <int CG, int VW>
MX_DEV int64_t staging_item(int item, int64_t e_blk, int64_t E, int& row, int& nv) {
  const int64_t ce = e_blk + (item % CG) * VW;
  row = item < kT * CG ? item / CG : kT;
  nv = row < kT && ce < E ? int(E - ce < VW ? E - ce : VW) : 0;
  return ce;
}

// Stores a tile's B and C items into shared memory (s_B, s_C: (kT, N) floats each): item j of this thread (tid + j·T
// of the 2·kT·N/8 items, B then C, 8 consecutive states each) holds token row bc_row[j] (kT: no item); rows past the
// tile's nt valid tokens are stored as zeros.
template <int N, int T, typename IO, int BI>
MX_DEV void store_bc_items(const Raw<IO, 8> (&nbc)[BI], const int (&bc_row)[BI], int tid, int nt, float* s_B,
                           float* s_C) {
#pragma unroll
  for (int j = 0; j < BI; ++j) {
    if (bc_row[j] >= kT) continue;
    const int item = tid + j * T, half = item % (kT * N / 8), isC = item / (kT * N / 8);
    float* dst = (isC ? s_C : s_B) + half * 8;
    const bool live = bc_row[j] < nt;
#pragma unroll
    for (int q = 0; q < 2; ++q)
      *reinterpret_cast<float4*>(dst + 4 * q) =
          live ? make_float4(nbc[j].get(4 * q), nbc[j].get(4 * q + 1), nbc[j].get(4 * q + 2), nbc[j].get(4 * q + 3))
               : make_float4(0.f, 0.f, 0.f, 0.f);
  }
}

}  // namespace mx::kern::s6
