// parse_device (device.h).
#include "cli/device.h"

#include <ATen/Context.h>

#include "mambaextend/error.h"

namespace mx::cli {

c10::Device parse_device(const std::string& device) {
  if (device != "cpu" && device != "cuda") throw UsageError("--device '" + device + "' is not one of cpu, cuda");
  if (device == "cuda") {
#ifndef MX_WITH_CUDA
    throw UsageError("--device cuda: this build of mambaextend has no CUDA kernels (configured with "
                     "-DMAMBAEXTEND_CUDA=OFF); use --device cpu or a CUDA build");
#endif
    if (!at::hasCUDA()) throw UsageError("--device cuda: no CUDA device is available on this machine; use --device cpu");
    return c10::Device(c10::kCUDA);
  }
  return c10::Device(c10::kCPU);
}

}  // namespace mx::cli
