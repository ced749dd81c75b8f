// libFuzzer target: read_safetensors_header over a whole safetensors file image (8-byte length, JSON header,
// data region). Besides "no crash, no sanitizer report", it checks the reader's promises on every accepted file:
// each record lies inside the data region, spans numel * dtype size bytes, and no two records overlap.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mambaextend/checkpoint.h"
#include "mambaextend/error.h"

namespace {
void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_safetensors_header: accepted a file that breaks: %s\n", what);
    std::abort();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<mx::TensorRecord> recs;
  try {
    recs = mx::read_safetensors_header(data, size, "fuzz.safetensors");
  } catch (const mx::CheckpointError&) {
    return 0;  // refused with a message: the expected outcome for most inputs
  }
  require(size >= 8, "file shorter than the length prefix");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  const uint64_t data_start = 8 + n;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& r : recs) {
    require(!r.name.empty(), "empty tensor name");
    uint64_t numel = 1;
    for (int64_t d : r.shape) {
      require(d >= 0, "negative size");
      numel *= static_cast<uint64_t>(d);
    }
    require(r.nbytes == numel * mx::dtype_size(r.dtype), "nbytes != numel * dtype size");
    require(r.offset >= data_start, "tensor starts inside the header");
    require(r.offset <= size && r.nbytes <= size - r.offset, "tensor runs past the end of the file");
    if (r.nbytes > 0) ranges.emplace_back(r.offset, r.offset + r.nbytes);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) require(ranges[i].first >= ranges[i - 1].second, "overlapping tensors");
  return 0;
}
