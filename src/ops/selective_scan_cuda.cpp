// CUDA glue of the Mamba1 selective scan (kernels/s6): ops::selective_scan on CUDA tensors and its backward.
// Arguments are those of ops::selective_scan (validated by src/ops/selective_scan.cpp) and
// ref::selective_scan_bwd. Activations are passed to the kernel as strided views when their last dimension is
// contiguous (the model's z, B, C are narrow()s of wider projections), so nothing is copied for fp32 / bf16.
// float64 inputs and state sizes the kernel does not cover (s6_supported_dstate) run the CPU reference on
// host copies instead (forward), or throw (backward: use the CPU reference directly).
#include <ATen/ATen.h>

#include <cstdint>

#include "s6/s6.h"
#include "ops/cuda_ops.h"
#include "ops/cuda_util.h"
#include "ops/check.h"
#include "ref/ref.h"

namespace mx::ops {

namespace {
using namespace cuda_detail;

struct Prepared {
  at::ScalarType io;
  at::Tensor u, delta, z, Bm, Cm, A, D, bias, scale;  // kept alive for the launch
  kern::S6Inputs in;
};

Prepared prepare(const at::Tensor& u, const at::Tensor& delta_raw, const at::Tensor& dt_bias,
                 const at::Tensor& dt_scale, const at::Tensor& A, const at::Tensor& Bm, const at::Tensor& Cm,
                 const at::Tensor& D, const at::Tensor& z) {
  Prepared p;
  p.io = io_dtype(u.scalar_type());
  p.u = act(u, p.io), p.delta = act(delta_raw, p.io), p.Bm = act(Bm, p.io), p.Cm = act(Cm, p.io);
  if (z.defined()) p.z = act(z, p.io);
  p.A = f32(A), p.D = f32(D), p.bias = f32(dt_bias), p.scale = f32(dt_scale);
  auto& in = p.in;
  in.batch = u.size(0), in.len = u.size(1), in.dim = u.size(2), in.dstate = A.size(1);
  in.io = io_type(p.io);
  in.u = p.u.data_ptr(), in.u_sb = p.u.stride(0), in.u_sl = p.u.stride(1);
  in.delta = p.delta.data_ptr(), in.delta_sb = p.delta.stride(0), in.delta_sl = p.delta.stride(1);
  if (z.defined()) in.z = p.z.data_ptr(), in.z_sb = p.z.stride(0), in.z_sl = p.z.stride(1);
  in.B = p.Bm.data_ptr(), in.B_sb = p.Bm.stride(0), in.B_sl = p.Bm.stride(1);
  in.C = p.Cm.data_ptr(), in.C_sb = p.Cm.stride(0), in.C_sl = p.Cm.stride(1);
  in.A = ptr<float>(p.A), in.D = ptr<float>(p.D), in.dt_bias = ptr<float>(p.bias), in.dt_scale = ptr<float>(p.scale);
  in.dt_scale_stride = p.scale.defined() && p.scale.numel() > 1 ? 1 : 0;
  return p;
}

at::Tensor workspace(size_t bytes, const at::Tensor& like) {
  return bytes ? at::empty({int64_t(bytes)}, like.options().dtype(at::kByte)) : at::Tensor();
}

std::atomic<bool> g_warned_fallback{false};
}  // namespace

at::Tensor selective_scan_cuda(const at::Tensor& u, const at::Tensor& delta_raw, const at::Tensor& dt_bias,
                               const at::Tensor& dt_scale, const at::Tensor& A, const at::Tensor& Bm,
                               const at::Tensor& Cm, const at::Tensor& D, const at::Tensor& z, at::Tensor& h) {
  const int64_t B = u.size(0), L = u.size(1), E = u.size(2), N = A.size(1);
  if (u.scalar_type() == at::kDouble || !kern::s6_supported_dstate(N)) {
    warn_once(g_warned_fallback, fmt::format("selective_scan: no CUDA kernel for {} with d_state {}; running the "
                                             "CPU reference on host copies", c10::toString(u.scalar_type()), N));
    auto cpu = [](const at::Tensor& t) { return t.defined() ? t.cpu() : t; };
    auto hc = h.cpu();
    auto y = ref::selective_scan(cpu(u), cpu(delta_raw), cpu(dt_bias), cpu(dt_scale), cpu(A), cpu(Bm), cpu(Cm),
                                 cpu(D), cpu(z), hc);
    h.copy_(hc);
    return y.to(u.device());
  }
  const c10::cuda::CUDAGuard guard(u.device());
  if (B == 0 || L == 0 || E == 0) return at::empty({B, L, E}, u.options());
  Prepared p = prepare(u, delta_raw, dt_bias, dt_scale, A, Bm, Cm, D, z);
  // The state is updated in place when it is already fp32 and contiguous (the model's), else via a copy.
  const bool direct = h.scalar_type() == at::kFloat && h.is_contiguous() &&
                      reinterpret_cast<uintptr_t>(h.data_ptr()) % 16 == 0;  // the kernel stores float4s
  at::Tensor hs = direct ? h : h.to(at::kFloat).contiguous();  // (B, E, N)
  auto out = at::empty({B, L, E}, u.options().dtype(p.io));   // (B, L, E)
  auto ws = workspace(kern::s6_fwd_workspace_bytes(p.in), u);
  kern::S6FwdArgs args;
  args.h0 = hs.data_ptr<float>(), args.hT = hs.data_ptr<float>();
  args.out = out.data_ptr(), args.out_sb = out.stride(0), args.out_sl = out.stride(1);
  check(kern::s6_fwd(p.in, args, ws.defined() ? ws.data_ptr() : nullptr, stream()), "selective_scan");
  if (!direct) h.copy_(hs);
  return out.scalar_type() == u.scalar_type() ? out : out.to(u.scalar_type());
}

ref::SelectiveScanGrads selective_scan_bwd_cuda(const at::Tensor& u, const at::Tensor& delta_raw,
                                                const at::Tensor& dt_bias, const at::Tensor& dt_scale,
                                                const at::Tensor& A, const at::Tensor& Bm, const at::Tensor& Cm,
                                                const at::Tensor& D, const at::Tensor& z, const at::Tensor& h0,
                                                const at::Tensor& dy, const at::Tensor& dhT,
                                                SelectiveScanWeightGrads* weight_grads) {
  using detail::check_shape;
  constexpr const char* op = "selective_scan_bwd_cuda";
  check_shape(u, {-1, -1, -1}, op, "u");
  const int64_t B = u.size(0), L = u.size(1), E = u.size(2);
  check_shape(A, {E, -1}, op, "A");
  const int64_t N = A.size(1);
  check_shape(delta_raw, {B, L, E}, op, "delta_raw");
  check_shape(dt_bias, {E}, op, "dt_bias");
  check_shape(Bm, {B, L, N}, op, "B");
  check_shape(Cm, {B, L, N}, op, "C");
  check_shape(D, {E}, op, "D");
  if (z.defined()) check_shape(z, {B, L, E}, op, "z");
  if (h0.defined()) check_shape(h0, {B, E, N}, op, "h0");
  if (dy.defined()) check_shape(dy, {B, L, E}, op, "dy");
  if (dhT.defined()) check_shape(dhT, {B, E, N}, op, "dhT");
  detail::check_scale(dt_scale, E, op);
  if (!u.is_cuda()) throw ShapeError(std::string(op) + ": u must be a CUDA tensor, got " + u.device().str());
  for (const at::Tensor* t : {&delta_raw, &dt_bias, &dt_scale, &A, &Bm, &Cm, &D, &z, &h0, &dy, &dhT})
    detail::check_same_device(u, *t, op, "all inputs");
  if (u.scalar_type() == at::kDouble || !kern::s6_supported_dstate(N))
    throw UsageError(fmt::format("{}: no CUDA kernel for {} with d_state {} (use ref::selective_scan_bwd)", op,
                                 c10::toString(u.scalar_type()), N));
  const c10::cuda::CUDAGuard guard(u.device());
  if (B == 0 || L == 0 || E == 0) throw ShapeError(std::string(op) + ": empty input");

  Prepared p = prepare(u, delta_raw, dt_bias, dt_scale, A, Bm, Cm, D, z);
  const auto act_opts = u.options().dtype(p.io), f32o = u.options().dtype(at::kFloat);
  const auto f64o = u.options().dtype(at::kDouble);
  at::Tensor h0f = h0.defined() ? f32(h0) : at::Tensor();
  auto ws = workspace(std::max(kern::s6_fwd_workspace_bytes(p.in), kern::s6_bwd_workspace_bytes(p.in)), u);
  void* wsp = ws.defined() ? ws.data_ptr() : nullptr;

  // Forward pass storing the state before every 32nd token.
  auto ckpt = at::empty({B, kern::s6_num_chunks(L), E, N}, f32o);
  kern::S6FwdArgs fa;
  fa.h0 = ptr<float>(h0f), fa.ckpt = ckpt.data_ptr<float>();
  check(kern::s6_fwd(p.in, fa, wsp, stream()), op);

  at::Tensor dyc = dy.defined() ? act(dy, p.io) : at::zeros({B, L, E}, act_opts);
  at::Tensor dhTf = dhT.defined() ? f32(dhT) : at::Tensor();
  auto du = at::empty({B, L, E}, act_opts), ddr = at::empty({B, L, E}, act_opts);  // (B, L, E)
  auto dz = z.defined() ? at::empty({B, L, E}, act_opts) : at::Tensor();
  auto dB = at::empty({B, L, N}, f32o), dC = at::empty({B, L, N}, f32o);           // (B, L, N)
  auto dA = at::empty({E, N}, f64o), dD = at::empty({E}, f64o), dbias = at::empty({E}, f64o), ds = at::empty({E}, f64o);
  auto dh0 = at::empty({B, E, N}, f32o);
  kern::S6BwdArgs ba;
  ba.h0 = ptr<float>(h0f), ba.ckpt = ckpt.data_ptr<float>();
  ba.dout = dyc.data_ptr(), ba.dout_sb = dyc.stride(0), ba.dout_sl = dyc.stride(1), ba.dhT = ptr<float>(dhTf);
  ba.du = du.data_ptr(), ba.du_sb = du.stride(0), ba.du_sl = du.stride(1);
  ba.ddelta = ddr.data_ptr(), ba.ddelta_sb = ddr.stride(0), ba.ddelta_sl = ddr.stride(1);
  if (z.defined()) ba.dz = dz.data_ptr(), ba.dz_sb = dz.stride(0), ba.dz_sl = dz.stride(1);
  ba.dB = dB.data_ptr<float>(), ba.dC = dC.data_ptr<float>(), ba.dA = dA.data_ptr<double>();
  ba.dD = dD.data_ptr<double>(), ba.ddt_bias = dbias.data_ptr<double>(), ba.ddt_scale = ds.data_ptr<double>();
  ba.dh0 = dh0.data_ptr<float>();
  check(kern::s6_bwd(p.in, ba, wsp, stream()), op);

  ref::SelectiveScanGrads g;
  g.du = du.to(u.scalar_type());
  g.ddelta_raw = ddr.to(delta_raw.scalar_type());
  g.dB = dB.to(Bm.scalar_type());
  g.dC = dC.to(Cm.scalar_type());
  if (z.defined()) g.dz = dz.to(z.scalar_type());
  g.dh0 = h0.defined() ? dh0.to(h0.scalar_type()) : dh0;
  if (dt_scale.defined()) g.dscale = (dt_scale.numel() > 1 ? ds : ds.sum().reshape({1})).to(dt_scale.scalar_type());
  if (weight_grads) *weight_grads = {dA, dD, dbias};
  return g;
}

}  // namespace mx::ops
