// Helpers for the CUDA glue (src/ops/*_cuda.cpp only): the kernels' activation type of a tensor, the
// current stream, launch-status checks that throw CudaError, and one-time fallback warnings.
#pragma once
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <fmt/format.h>

#include <atomic>
#include <string>

#include "mambaextend/error.h"
#include "mambaextend/log.h"
#include "io_types.h"

namespace mx::ops::cuda_detail {

// The kernels run fp32 or bf16 activations; fp16 is computed in fp32.
inline at::ScalarType io_dtype(at::ScalarType t) { return t == at::kBFloat16 ? at::kBFloat16 : at::kFloat; }
inline kern::IoType io_type(at::ScalarType t) { return t == at::kBFloat16 ? kern::IoType::BF16 : kern::IoType::F32; }

inline cudaStream_t stream() { return at::cuda::getCurrentCUDAStream().stream(); }

inline void check(cudaError_t err, const char* op) {
  if (err != cudaSuccess)
    throw CudaError(fmt::format("{}: CUDA kernel launch failed: {} ({})", op, cudaGetErrorString(err),
                                cudaGetErrorName(err)));
}

// An activation in the kernels' type with a unit stride on the last dimension (3-d: (B, L, X)).
inline at::Tensor act(const at::Tensor& t, at::ScalarType io) {
  auto r = t.scalar_type() == io ? t : t.to(io);
  return r.stride(-1) == 1 ? r : r.contiguous();
}
// Small fp32 parameter tensor, contiguous (undefined stays undefined).
inline at::Tensor f32(const at::Tensor& t) { return t.defined() ? t.to(at::kFloat).contiguous() : t; }

template <typename T>
const T* ptr(const at::Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.data_ptr()) : nullptr;
}

// Logs `msg` once per call site (the flag), used when an op falls back to the CPU reference.
inline void warn_once(std::atomic<bool>& flag, const std::string& msg) {
  if (!flag.exchange(true)) log::warn(msg);
}

}  // namespace mx::ops::cuda_detail
