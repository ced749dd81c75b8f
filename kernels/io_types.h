// Types shared by the torch-free kernel interfaces (s6/s6.h, conv1d/conv1d.h, norm/norm.h): the activation
// element type and the CUDA runtime types (or the CPU emulator's, with MX_CPU_EMU).
#pragma once
#ifdef MX_CPU_EMU
#include "dev/cuda_emu.h"
#else
#include <cuda_runtime.h>
#endif

namespace mx::kern {

enum class IoType { F32, BF16 };  // float32, or bfloat16 stored as raw 16 bits

}  // namespace mx::kern
