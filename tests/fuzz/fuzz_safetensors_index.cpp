// libFuzzer target: read_safetensors_index (model.safetensors.index.json text). Every accepted shard name must be
// a plain relative path that stays inside the model directory.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "mambaextend/checkpoint.h"
#include "mambaextend/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    for (const auto& [name, file] : mx::read_safetensors_index(text, "fuzz/model.safetensors.index.json")) {
      const std::filesystem::path p(file);
      bool escapes = name.empty() || file.empty() || p.is_absolute();
      for (const auto& part : p) escapes = escapes || part == "..";
      if (escapes) {
        std::fprintf(stderr, "fuzz_safetensors_index: accepted shard name escaping the model directory\n");
        std::abort();
      }
    }
  } catch (const mx::CheckpointError&) {
  }
  return 0;
}
