// Fused LM-head cross entropy on CUDA, torch-free interface: for every row of logits,
//   nll = logsumexp(row) − row[target] = −log_softmax(row)[target]
// in one pass over the row (online max / Σ exp(x − max) per thread in fp32, combined across the CTA), with
// lse = max + log(Σ) and the difference formed in fp64 from the exact max and target logit, so the result is
// as accurate as the fp32 sum of exponentials (~1e-6 relative), whatever the logits' magnitude.
// Rows are addressed as (groups, group_rows) with element strides, so a (B, n, V) block of logits, the (B, n)
// targets narrowed from the (B, L) ids and a (B, positions) output slice are read and written in place.
// Logits are fp32 or bf16 with a unit stride over the vocabulary (any row stride, any alignment of the rows'
// starts to the element size: 16-byte vector loads cover each row's aligned middle).
// Non-finite inputs follow the ATen expression logsumexp − gather: a NaN or +inf in the row gives NaN;
// −inf entries add nothing (a row of −inf only gives NaN); a −inf target logit gives +inf. A target outside
// [0, vocab) gives NaN (the caller validates the ids; a bad one must never read outside the row).
#pragma once
#include <cstdint>

#include "io_types.h"

namespace mx::kern {

struct LmNllArgs {
  int64_t groups = 0, group_rows = 0;  // rows = groups x group_rows; row (g, j)
  int64_t vocab = 0;                   // V >= 1
  IoType io = IoType::F32;
  const void* logits = nullptr;  // row (g, j) starts at element g·logits_sg + j·logits_sr
  int64_t logits_sg = 0, logits_sr = 0;
  const int64_t* targets = nullptr;  // targets[g·targets_sg + j·targets_sr]
  int64_t targets_sg = 0, targets_sr = 1;
  double* nll = nullptr;  // nll[g·nll_sg + j·nll_sr]
  int64_t nll_sg = 0, nll_sr = 1;
};

cudaError_t lm_nll_fwd(const LmNllArgs& a, cudaStream_t stream);

}  // namespace mx::kern
