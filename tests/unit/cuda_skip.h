// MX_REQUIRE_CUDA(): the first statement of a test that needs a GPU; it skips with the reason when the build has
// no CUDA kernels or the machine has no GPU (CI), and does nothing on the GPU machine.
#pragma once
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#ifndef MX_WITH_CUDA
#define MX_REQUIRE_CUDA() GTEST_SKIP() << "CUDA not available (built without the CUDA kernels)"
#else
#define MX_REQUIRE_CUDA() \
  if (!at::hasCUDA()) GTEST_SKIP() << "CUDA not available (no GPU)"
#endif
