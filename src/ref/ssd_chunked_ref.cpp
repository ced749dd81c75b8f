// Float64 chunked SSD reference (ssd_chunked_ref.h): ssd_minimal_discrete in ATen ops, with the Δ computation
// of ops::ssd_scan (bias, softplus, clamp, scale), groups expanded to heads, the sequence zero-padded to whole
// chunks (Δ = 0 there: no decay, no input), and the inter-chunk recurrence written as a loop over chunks
// (ssd_minimal uses an (nc+1)² decay matrix, quadratic in the number of chunks) so that long sequences fit.
#include "ref/ssd_chunked_ref.h"

#include <ATen/ATen.h>

#include <limits>

namespace mx::ref {

namespace {
// segsum(a)[..., i, j] = Σ_{k=j+1..i} a_k for i >= j, −inf above the diagonal (numerically stable form).
at::Tensor segsum(const at::Tensor& a) {
  const int64_t T = a.size(-1);
  auto opts = a.options().dtype(at::kBool);
  auto x = a.unsqueeze(-1).repeat_interleave(T, -1);  // x[..., d, e] = a[d]
  auto strict = at::ones({T, T}, opts).tril(-1);
  x = x.masked_fill(strict.logical_not(), 0.0);
  auto s = x.cumsum(-2);
  auto lower = at::ones({T, T}, opts).tril(0);
  return s.masked_fill(lower.logical_not(), -std::numeric_limits<double>::infinity());
}
}  // namespace

at::Tensor ssd_scan_chunked(const at::Tensor& x_in, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                            const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                            const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, at::Tensor& h,
                            int64_t chunk) {
  const auto f64 = at::kDouble;
  const int64_t Bsz = x_in.size(0), L = x_in.size(1), H = x_in.size(2), P = x_in.size(3);
  const int64_t G = Bm.size(2), N = Bm.size(3), hpg = H / G;
  const int64_t nc = (L + chunk - 1) / chunk, Lp = nc * chunk;
  auto x = x_in.to(f64);
  auto dt = at::softplus(dt_raw.to(f64) + dt_bias.to(f64));  // (B, L, H), PyTorch threshold 20
  dt = at::clamp(dt, dt_min, dt_max);
  if (dt_scale.defined()) dt = dt * dt_scale.to(f64);
  auto a = dt * A.to(f64);                                               // (B, L, H)
  auto X = x * dt.unsqueeze(-1);                                         // (B, L, H, P)
  auto Bh = Bm.to(f64).repeat_interleave(hpg, 2), Ch = Cm.to(f64).repeat_interleave(hpg, 2);  // (B, L, H, N)
  if (Lp > L) {
    const int64_t pad = Lp - L;
    X = at::constant_pad_nd(X, {0, 0, 0, 0, 0, pad});
    a = at::constant_pad_nd(a, {0, 0, 0, pad});
    Bh = at::constant_pad_nd(Bh, {0, 0, 0, 0, 0, pad});
    Ch = at::constant_pad_nd(Ch, {0, 0, 0, 0, 0, pad});
  }
  X = X.reshape({Bsz, nc, chunk, H, P});
  Bh = Bh.reshape({Bsz, nc, chunk, H, N});
  Ch = Ch.reshape({Bsz, nc, chunk, H, N});
  auto ac = a.reshape({Bsz, nc, chunk, H}).permute({0, 3, 1, 2});  // (B, H, nc, Q)
  auto cs = ac.cumsum(-1);                                          // (B, H, nc, Q)

  // 1. Within chunks: y_diag[l] = Σ_{s<=l} (C_l·B_s)·exp(cs_l − cs_s)·X_s.
  auto Lmat = at::exp(segsum(ac));                                  // (B, H, nc, Q, Q)
  auto CB = at::einsum("bclhn,bcshn->bhcls", {Ch, Bh});             // (B, H, nc, Q, Q)
  auto y_diag = at::einsum("bhcls,bcshp->bclhp", {CB * Lmat, X});   // (B, nc, Q, H, P)

  // 2. Chunk states S_c = Σ_s exp(cs_end − cs_s)·X_s ⊗ B_s.
  auto decay_states = at::exp(cs.narrow(-1, chunk - 1, 1) - cs);     // (B, H, nc, Q)
  auto states = at::einsum("bclhn,bhcl,bclhp->bchpn", {Bh, decay_states, X});  // (B, nc, H, P, N)

  // 3. Between chunks: S_in[0] = h, S_in[c+1] = exp(cs_end(c))·S_in[c] + S_c.
  auto chunk_decay = at::exp(cs.select(-1, chunk - 1));             // (B, H, nc)
  at::Tensor s = h.to(f64);                                          // (B, H, P, N)
  std::vector<at::Tensor> s_in;
  s_in.reserve(nc);
  for (int64_t c = 0; c < nc; ++c) {
    s_in.push_back(s);
    s = chunk_decay.select(-1, c).unsqueeze(-1).unsqueeze(-1) * s + states.select(1, c);
  }
  auto S_in = at::stack(s_in, 1);                                    // (B, nc, H, P, N)

  // 4. From the incoming state: y_off[l] = exp(cs_l)·C_l·S_in.
  auto y_off = at::einsum("bclhn,bchpn,bhcl->bclhp", {Ch, S_in, at::exp(cs)});  // (B, nc, Q, H, P)

  auto y = (y_diag + y_off).reshape({Bsz, Lp, H, P}).narrow(1, 0, L);
  if (D.defined()) y = y + x * D.to(f64).view({1, 1, H, 1});
  h = s.to(h.scalar_type());
  return y.to(x_in.scalar_type());
}

}  // namespace mx::ref
