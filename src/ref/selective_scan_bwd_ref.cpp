// Mamba1 selective scan backward, CPU reference (ref_bwd.h). Forward, per (b, e) and state index n:
//   sp_t = softplus(r_t + bias);  Δ_t = s·sp_t;  a_t = exp(Δ_t·A_n);  h_t = a_t·h_{t-1} + Δ_t·B_t·u_t
//   y'_t = Σ_n C_t·h_t + D·u_t;   y_t = y'_t·silu(z_t)
// Reverse-mode, walking t from L-1 to 0 with dh = ∂loss/∂h_t (starting from dhT):
//   g_t = dy_t·silu(z_t);  dz_t = dy_t·y'_t·silu'(z_t);  dh += g_t·C_t
//   dC_t += g_t·h_t;  dΔ_t += Σ_n dh·(A·a_t·h_{t-1} + B_t·u_t);  dB_t += dh·Δ_t·u_t;
//   du_t = D·g_t + Σ_n dh·Δ_t·B_t;  dh ← dh·a_t
//   ds += dΔ_t·sp_t (float64);  dr_t = dΔ_t·s·softplus'(r_t + bias)
// The forward is recomputed from h0: one pass stores the state every kChunk tokens, then each chunk is
// recomputed into a small buffer and walked backwards. Parallel over (batch, block of channels) like the
// forward; dB and dC (sums over channels) go to per-task partial buffers summed at the end, so the result
// does not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

#include "ref/ref.h"
#include "ref/ref_bwd.h"

namespace mx::ref {

namespace {
constexpr int64_t kChannelBlock = 32;
constexpr int64_t kChunk = 64;

template <typename T>
inline T dsoftplus(T x) {  // derivative of softplus with PyTorch's threshold 20 (identity above)
  return x > T(20) ? T(1) : T(1) / (T(1) + std::exp(-x));
}

template <typename T>
struct ScanPtrs {
  const T *u, *draw, *bias, *scale, *A, *Bm, *Cm, *D, *z, *h0, *dy, *dhT;
  T *du, *ddraw, *dBp, *dCp, *dz, *dh0;  // dBp, dCp: (B, nblk, L, N) partials
  double* ds;                             // (B, E) partials
  bool scale_per_channel;
};

template <typename T>
void scan_bwd_loop(const ScanPtrs<T>& q, int64_t B, int64_t L, int64_t E, int64_t N) {
  const int64_t nblk = (E + kChannelBlock - 1) / kChannelBlock;
  const int64_t nchunks = (L + kChunk - 1) / kChunk;
  at::parallel_for(0, B * nblk, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nblk, blk = task % nblk, e0 = blk * kChannelBlock;
      const int64_t ne = std::min(kChannelBlock, E - e0);
      const int64_t S = ne * N;  // state values of this block
      auto dt_of = [&](int64_t t, int64_t i, T* sp_out) {
        const int64_t e = e0 + i;
        const T s = q.scale ? (q.scale_per_channel ? q.scale[e] : q.scale[0]) : T(1);
        const T sp = softplus(q.draw[(b * L + t) * E + e] + q.bias[e]);
        if (sp_out) *sp_out = sp;
        return s * sp;
      };
      auto step = [&](int64_t t, const T* hprev, T* hnext) {  // h_t from h_{t-1} for the block
        const T* Bt = q.Bm + (b * L + t) * N;
        for (int64_t i = 0; i < ne; ++i) {
          const T dt = dt_of(t, i, nullptr);
          const T du = dt * q.u[(b * L + t) * E + e0 + i];
          const T* Arow = q.A + (e0 + i) * N;
          for (int64_t n = 0; n < N; ++n) hnext[i * N + n] = std::exp(dt * Arow[n]) * hprev[i * N + n] + du * Bt[n];
        }
      };
      // Pass 1: the state at the start of every chunk.
      std::vector<T> ck(nchunks * S);
      std::vector<T> h(S), tmp(S);
      for (int64_t i = 0; i < ne; ++i)
        for (int64_t n = 0; n < N; ++n) h[i * N + n] = q.h0[(b * E + e0 + i) * N + n];
      for (int64_t c = 0; c < nchunks; ++c) {
        std::copy(h.begin(), h.end(), ck.begin() + c * S);
        for (int64_t t = c * kChunk; t < std::min(L, (c + 1) * kChunk); ++t) {
          step(t, h.data(), tmp.data());
          h.swap(tmp);
        }
      }
      // Pass 2: chunks in reverse.
      std::vector<T> dh(S, T(0));
      if (q.dhT)
        for (int64_t i = 0; i < ne; ++i)
          for (int64_t n = 0; n < N; ++n) dh[i * N + n] = q.dhT[(b * E + e0 + i) * N + n];
      std::vector<double> ds_local(ne, 0.0);
      std::vector<T> hbuf((kChunk + 1) * S);  // hbuf[j] = state after token t0 + j - 1
      T* dBp = q.dBp + (b * nblk + blk) * L * N;
      T* dCp = q.dCp + (b * nblk + blk) * L * N;
      for (int64_t c = nchunks - 1; c >= 0; --c) {
        const int64_t t0 = c * kChunk, t1 = std::min(L, t0 + kChunk);
        std::copy(ck.begin() + c * S, ck.begin() + (c + 1) * S, hbuf.begin());
        for (int64_t t = t0; t < t1; ++t) step(t, hbuf.data() + (t - t0) * S, hbuf.data() + (t - t0 + 1) * S);
        for (int64_t t = t1 - 1; t >= t0; --t) {
          const T* hprev = hbuf.data() + (t - t0) * S;
          const T* hcur = hbuf.data() + (t - t0 + 1) * S;
          const T* Bt = q.Bm + (b * L + t) * N;
          const T* Ct = q.Cm + (b * L + t) * N;
          T* dBt = dBp + t * N;
          T* dCt = dCp + t * N;
          for (int64_t i = 0; i < ne; ++i) {
            const int64_t e = e0 + i, row = (b * L + t) * E + e;
            T sp;
            const T dt = dt_of(t, i, &sp);
            const T ut = q.u[row];
            const T* Arow = q.A + e * N;
            const T* hp = hprev + i * N;
            const T* hc = hcur + i * N;
            T* dhr = dh.data() + i * N;
            T gy = q.dy ? q.dy[row] : T(0);
            if (q.z) {
              T yp = q.D[e] * ut;
              for (int64_t n = 0; n < N; ++n) yp += Ct[n] * hc[n];
              const T zz = q.z[row], sig = T(1) / (T(1) + std::exp(-zz));
              q.dz[row] = gy * yp * sig * (T(1) + zz * (T(1) - sig));
              gy *= zz * sig;
            }
            T du = q.D[e] * gy, ddt = 0;
            for (int64_t n = 0; n < N; ++n) {
              const T dhn = dhr[n] + gy * Ct[n];
              const T a = std::exp(dt * Arow[n]);
              dCt[n] += gy * hc[n];
              ddt += dhn * (Arow[n] * a * hp[n] + Bt[n] * ut);
              dBt[n] += dhn * dt * ut;
              du += dhn * dt * Bt[n];
              dhr[n] = dhn * a;
            }
            q.du[row] = du;
            const T s = q.scale ? (q.scale_per_channel ? q.scale[e] : q.scale[0]) : T(1);
            q.ddraw[row] = ddt * s * dsoftplus(q.draw[row] + q.bias[e]);
            ds_local[i] += static_cast<double>(ddt) * static_cast<double>(sp);
          }
        }
      }
      for (int64_t i = 0; i < ne; ++i) {
        for (int64_t n = 0; n < N; ++n) q.dh0[(b * E + e0 + i) * N + n] = dh[i * N + n];
        q.ds[b * E + e0 + i] = ds_local[i];
      }
    }
  });
}
}  // namespace

SelectiveScanGrads selective_scan_bwd(const at::Tensor& u_in, const at::Tensor& delta_raw, const at::Tensor& dt_bias,
                                      const at::Tensor& dt_scale, const at::Tensor& A, const at::Tensor& Bm_in,
                                      const at::Tensor& Cm_in, const at::Tensor& D, const at::Tensor& z_in,
                                      const at::Tensor& h0_in, const at::Tensor& dy_in, const at::Tensor& dhT_in) {
  const auto cdt = u_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t B = u_in.size(0), L = u_in.size(1), E = u_in.size(2), N = A.size(1);
  const int64_t nblk = (E + kChannelBlock - 1) / kChannelBlock;
  auto c = [&](const at::Tensor& t) { return t.defined() ? t.to(cdt).contiguous() : at::Tensor(); };
  auto u = c(u_in), dr = c(delta_raw), bias = c(dt_bias), s = c(dt_scale), a = c(A), bm = c(Bm_in), cm = c(Cm_in),
       d = c(D), z = c(z_in), h0 = c(h0_in), dy = c(dy_in), dhT = c(dhT_in);
  const auto o = u.options();
  auto du = at::empty({B, L, E}, o), ddr = at::empty({B, L, E}, o);
  auto dz = z.defined() ? at::empty({B, L, E}, o) : at::Tensor();
  auto dBp = at::zeros({B, nblk, L, N}, o), dCp = at::zeros({B, nblk, L, N}, o);
  auto dh0 = at::empty({B, E, N}, o);
  auto ds = at::zeros({B, E}, o.dtype(at::kDouble));  // (B, E) float64 partials
  AT_DISPATCH_FLOATING_TYPES(cdt, "selective_scan_bwd_ref", [&] {
    auto p = [](const at::Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    ScanPtrs<scalar_t> q{p(u), p(dr), p(bias), p(s), p(a), p(bm), p(cm), p(d), p(z), p(h0), p(dy), p(dhT),
                         p(du), p(ddr), p(dBp), p(dCp), p(dz), p(dh0), ds.data_ptr<double>(),
                         s.defined() && s.numel() > 1};
    scan_bwd_loop<scalar_t>(q, B, L, E, N);
  });
  SelectiveScanGrads g;
  g.du = du.to(u_in.scalar_type());
  g.ddelta_raw = ddr.to(delta_raw.scalar_type());
  g.dB = dBp.sum(1).to(Bm_in.scalar_type());  // (B, L, N)
  g.dC = dCp.sum(1).to(Cm_in.scalar_type());
  if (z_in.defined()) g.dz = dz.to(z_in.scalar_type());
  g.dh0 = dh0.to(h0_in.scalar_type());
  if (dt_scale.defined()) {
    auto dse = ds.sum(0);  // (E)
    g.dscale = (dt_scale.numel() > 1 ? dse : dse.sum().reshape({1})).to(dt_scale.scalar_type());
  }
  return g;
}

}  // namespace mx::ref
