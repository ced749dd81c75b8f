// --device for the subcommands that run a model.
#pragma once
#include <c10/core/Device.h>

#include <string>

namespace mx::cli {

// "cpu" or "cuda"; UsageError for anything else, for cuda in a build without the CUDA kernels, and for cuda on a
// machine without a CUDA device.
c10::Device parse_device(const std::string& device);

}  // namespace mx::cli
