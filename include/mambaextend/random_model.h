// Same-shape random models for speed and memory work: real pretrained checkpoints cannot be downloaded on our
// machines, so benchmarks build models with the shapes of state-spaces/mamba-130m … 2.8b and mamba2-130m … 2.7b
// (kernels.md §1a) and random weights in realistic ranges (mamba_ssm's initialisation: A_log = log(1..N),
// softplus(dt_bias) log-uniform in [1e-3, 1e-1], projections N(0, 0.02)).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mambaextend/checkpoint.h"

namespace mx {

// "mamba-130m", "mamba-370m", "mamba-790m", "mamba-1.4b", "mamba-2.8b",
// "mamba2-130m", "mamba2-370m", "mamba2-780m", "mamba2-1.3b", "mamba2-2.7b". UsageError for others.
ModelConfig preset_config(const std::string& name);
std::vector<std::string> preset_names();

// A checkpoint with random weights (CPU, `dtype`), tied embeddings, canonical names.
Checkpoint random_checkpoint(const ModelConfig& cfg, uint64_t seed, at::ScalarType dtype = at::kFloat);

}  // namespace mx
