// CUDA glue of the Mamba2 SSD scan (kernels/ssd): ops::ssd_scan on CUDA tensors and its backward. The model's
// x, B, C are narrow()s of the conv output and dt a narrow() of the in_proj output: they are passed as strided
// views (no copy) when the last dimension is contiguous and rows are 16-byte aligned, as the kernels' vector
// loads need; otherwise they are made contiguous first. Workspace comes from the caching allocator.
// float64 and unsupported shapes run the CPU reference on host copies (forward and backward, warned once).
#include <ATen/ATen.h>

#include "ops/check.h"
#include "ops/cuda_ops_ssd.h"
#include "ops/cuda_util.h"
#include "ref/ref.h"
#include "ssd/ssd.h"

namespace mx::ops {

namespace {
using namespace cuda_detail;

std::atomic<bool> g_warned_fallback{false};
std::atomic<bool> g_warned_bwd_fallback{false};

bool supported(const at::Tensor& x, const at::Tensor& Bm) {
  return x.scalar_type() != at::kDouble && kern::ssd_supported(x.size(3), Bm.size(3));
}

// Activation in the kernels' io type usable by the 16-byte vector loads: unit last stride, other strides
// multiples of 8 elements, 16-byte aligned data.
at::Tensor vec_act(const at::Tensor& t, at::ScalarType io) {
  auto r = t.scalar_type() == io ? t : t.to(io);
  bool ok = r.stride(-1) == 1 && reinterpret_cast<uintptr_t>(r.data_ptr()) % 16 == 0;
  for (int64_t d = 0; ok && d + 1 < r.dim(); ++d) ok = r.size(d) == 1 || r.stride(d) % 8 == 0;
  return ok ? r : r.contiguous();
}

struct Prepared {
  at::ScalarType io;
  at::Tensor x, dt, Bm, Cm, bias, A, D, scale;  // kept alive for the launch
  kern::SsdArgs a;
};

Prepared prepare(const at::Tensor& x, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                 const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                 const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D) {
  Prepared p;
  p.io = io_dtype(x.scalar_type());
  p.x = vec_act(x, p.io), p.Bm = vec_act(Bm, p.io), p.Cm = vec_act(Cm, p.io), p.dt = act(dt_raw, p.io);
  p.bias = f32(dt_bias), p.A = f32(A), p.D = f32(D), p.scale = f32(dt_scale);
  auto& a = p.a;
  a.batch = x.size(0), a.len = x.size(1), a.heads = x.size(2), a.head_dim = x.size(3);
  a.groups = Bm.size(2), a.dstate = Bm.size(3);
  a.io = io_type(p.io);
  a.x = p.x.data_ptr(), a.x_sb = p.x.stride(0), a.x_sl = p.x.stride(1), a.x_sh = p.x.stride(2);
  a.dt = p.dt.data_ptr(), a.dt_sb = p.dt.stride(0), a.dt_sl = p.dt.stride(1), a.dt_sh = p.dt.stride(2);
  a.Bm = p.Bm.data_ptr(), a.B_sb = p.Bm.stride(0), a.B_sl = p.Bm.stride(1), a.B_sg = p.Bm.stride(2);
  a.Cm = p.Cm.data_ptr(), a.C_sb = p.Cm.stride(0), a.C_sl = p.Cm.stride(1), a.C_sg = p.Cm.stride(2);
  a.dt_bias = ptr<float>(p.bias), a.A = ptr<float>(p.A), a.D = ptr<float>(p.D), a.dt_scale = ptr<float>(p.scale);
  a.scale_per_head = p.scale.defined() && p.scale.numel() > 1;
  a.dt_min = static_cast<float>(dt_min), a.dt_max = static_cast<float>(dt_max);
  return p;
}

at::Tensor workspace(size_t bytes, const at::Tensor& like) {
  return at::empty({int64_t(std::max<size_t>(bytes, 16))}, like.options().dtype(at::kByte));
}
}  // namespace

at::Tensor ssd_scan_cuda(const at::Tensor& x_in, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                         const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                         const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D, at::Tensor& h,
                         bool force_chunked, at::Tensor* saved) {
  const int64_t B = x_in.size(0), L = x_in.size(1), H = x_in.size(2), P = x_in.size(3);
  if (!supported(x_in, Bm)) {
    warn_once(g_warned_fallback,
              fmt::format("ssd_scan: no CUDA kernel for {} with head dim {} and d_state {}; running the CPU "
                          "reference on host copies", c10::toString(x_in.scalar_type()), P, Bm.size(3)));
    auto c = [](const at::Tensor& t) { return t.defined() ? t.cpu() : t; };
    auto hc = h.cpu();
    auto y = ref::ssd_scan(c(x_in), c(dt_raw), c(dt_bias), c(dt_scale), dt_min, dt_max, c(A), c(Bm), c(Cm), c(D), hc);
    h.copy_(hc);
    return y.to(x_in.device());
  }
  const c10::cuda::CUDAGuard guard(x_in.device());
  if (B == 0 || L == 0 || H == 0) return at::empty({B, L, H, P}, x_in.options());
  Prepared p = prepare(x_in, dt_raw, dt_bias, dt_scale, dt_min, dt_max, A, Bm, Cm, D);
  p.a.force_chunked = force_chunked;
  const bool direct = h.scalar_type() == at::kFloat && h.is_contiguous();
  at::Tensor hs = direct ? h : h.to(at::kFloat).contiguous();  // (B, H, P, N) fp32
  p.a.h0 = hs.data_ptr<float>();
  auto y = at::empty({B, L, H, P}, p.x.options());  // (B, L, H, P)
  kern::SsdFwdOut o;
  o.y = y.data_ptr(), o.y_sb = y.stride(0), o.y_sl = y.stride(1), o.y_sh = y.stride(2);
  o.hT = hs.data_ptr<float>();
  if (saved) {
    *saved = workspace(kern::ssd_saved_bytes(p.a), p.x);
    o.saved = saved->data_ptr();
  }
  auto ws = workspace(kern::ssd_fwd_workspace_bytes(p.a, saved != nullptr), p.x);
  check(kern::ssd_fwd(p.a, o, ws.data_ptr(), stream()), "ssd_scan");
  if (!direct) h.copy_(hs);
  return y.scalar_type() == x_in.scalar_type() ? y : y.to(x_in.scalar_type());
}

ref::SsdScanGrads ssd_scan_bwd_cuda(const at::Tensor& x_in, const at::Tensor& dt_raw, const at::Tensor& dt_bias,
                                    const at::Tensor& dt_scale, double dt_min, double dt_max, const at::Tensor& A,
                                    const at::Tensor& Bm, const at::Tensor& Cm, const at::Tensor& D,
                                    const at::Tensor& h0, const at::Tensor& dy, const at::Tensor& dhT,
                                    const at::Tensor& saved) {
  using detail::check_shape;
  constexpr const char* op = "ssd_scan_bwd_cuda";
  check_shape(x_in, {-1, -1, -1, -1}, op, "x");
  const int64_t B = x_in.size(0), L = x_in.size(1), H = x_in.size(2), P = x_in.size(3);
  check_shape(Bm, {B, L, -1, -1}, op, "B");
  const int64_t G = Bm.size(2), N = Bm.size(3);
  if (G < 1 || H % G != 0) throw ShapeError(fmt::format("{}: {} heads do not split into {} groups", op, H, G));
  check_shape(Cm, {B, L, G, N}, op, "C");
  check_shape(dt_raw, {B, L, H}, op, "dt_raw");
  check_shape(A, {H}, op, "A");
  if (dt_bias.defined()) check_shape(dt_bias, {H}, op, "dt_bias");
  if (D.defined()) check_shape(D, {H}, op, "D");
  detail::check_scale(dt_scale, H, op);
  if (h0.defined()) check_shape(h0, {B, H, P, N}, op, "h0");
  if (dy.defined()) check_shape(dy, {B, L, H, P}, op, "dy");
  if (dhT.defined()) check_shape(dhT, {B, H, P, N}, op, "dhT");
  if (!x_in.is_cuda()) throw ShapeError(std::string(op) + ": x must be a CUDA tensor, got " + x_in.device().str());
  for (const at::Tensor* t : {&dt_raw, &dt_bias, &dt_scale, &A, &Bm, &Cm, &D, &h0, &dy, &dhT, &saved})
    detail::check_same_device(x_in, *t, op, "all inputs");
  if (!supported(x_in, Bm)) {
    warn_once(g_warned_bwd_fallback,
              fmt::format("{}: no CUDA kernel for {} with head dim {} and d_state {}; running the CPU reference "
                          "on host copies", op, c10::toString(x_in.scalar_type()), P, N));
    auto c = [](const at::Tensor& t) { return t.defined() ? t.cpu() : t; };
    auto g = ref::ssd_scan_bwd(c(x_in), c(dt_raw), c(dt_bias), c(dt_scale), dt_min, dt_max, c(A), c(Bm), c(Cm), c(D),
                               c(h0), c(dy), c(dhT));
    auto back = [&](const at::Tensor& t) { return t.defined() ? t.to(x_in.device()) : t; };
    return {back(g.dx), back(g.ddt_raw), back(g.dB), back(g.dC), back(g.dh0), back(g.dscale)};
  }
  if (B == 0 || L == 0 || H == 0) throw ShapeError(std::string(op) + ": empty input");
  const c10::cuda::CUDAGuard guard(x_in.device());
  Prepared p = prepare(x_in, dt_raw, dt_bias, dt_scale, dt_min, dt_max, A, Bm, Cm, D);
  at::Tensor h0f = h0.defined() ? f32(h0) : at::Tensor();
  p.a.h0 = ptr<float>(h0f);
  at::Tensor dyc = dy.defined() ? vec_act(dy, p.io) : at::zeros({B, L, H, P}, p.x.options());
  at::Tensor dhTf = dhT.defined() ? f32(dhT) : at::Tensor();
  const auto f32o = p.x.options().dtype(at::kFloat);
  auto dx = at::empty({B, L, H, P}, p.x.options());                                      // (B, L, H, P)
  auto ddt = at::empty({B, L, H}, f32o);                                                  // (B, L, H)
  auto dB = at::empty({B, L, G, N}, f32o), dC = at::empty({B, L, G, N}, f32o);           // (B, L, G, N)
  auto dh0 = at::empty({B, H, P, N}, f32o);                                               // (B, H, P, N)
  auto ds = at::empty({H}, f32o.dtype(at::kDouble));                                      // (H)
  kern::SsdBwdArgs g;
  g.dy = dyc.data_ptr(), g.dy_sb = dyc.stride(0), g.dy_sl = dyc.stride(1), g.dy_sh = dyc.stride(2);
  g.dhT = ptr<float>(dhTf);
  g.dx = dx.data_ptr(), g.dx_sb = dx.stride(0), g.dx_sl = dx.stride(1), g.dx_sh = dx.stride(2);
  g.ddt = ddt.data_ptr<float>(), g.dB = dB.data_ptr<float>(), g.dC = dC.data_ptr<float>();
  g.dh0 = dh0.data_ptr<float>(), g.dscale = ds.data_ptr<double>();
  if (saved.defined()) {
    const auto want = int64_t(kern::ssd_saved_bytes(p.a));
    if (saved.scalar_type() != at::kByte || saved.numel() < want)
      throw ShapeError(fmt::format("{}: `saved` must be the forward's byte buffer of {} bytes, got {} of {}", op, want,
                                   saved.numel(), c10::toString(saved.scalar_type())));
    g.saved = saved.data_ptr();
  }
  auto ws = workspace(kern::ssd_bwd_workspace_bytes(p.a, saved.defined()), p.x);
  check(kern::ssd_bwd(p.a, g, ws.data_ptr(), stream()), op);
  ref::SsdScanGrads r;
  r.dx = dx.to(x_in.scalar_type());
  r.ddt_raw = ddt.to(dt_raw.scalar_type());
  r.dB = dB.to(Bm.scalar_type());
  r.dC = dC.to(Cm.scalar_type());
  r.dh0 = h0.defined() ? dh0.to(h0.scalar_type()) : dh0;
  if (dt_scale.defined()) r.dscale = (dt_scale.numel() > 1 ? ds : ds.sum().reshape({1})).to(dt_scale.scalar_type());
  return r;
}

}  // namespace mx::ops
