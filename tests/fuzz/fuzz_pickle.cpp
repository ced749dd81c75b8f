// libFuzzer target: the restricted unpickler of pytorch_model.bin (read_torch_zip). The first input byte picks
// the mode:
//   even: the rest is a pickle program; the harness stores it as archive/data.pkl in a well-formed, uncompressed
//         zip beside archive/byteorder and four 64-byte storages archive/data/0..3, so mutations reach the
//         unpickler instead of dying in the zip directory;
//   odd:  the rest is the whole file (zip directory, ZIP64 records, entry bounds).
// Every accepted tensor must lie inside the file. Nothing a pickle names is ever executed: only the allowed
// globals are recognised, anything else is refused with a CheckpointError.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mambaextend/checkpoint.h"
#include "mambaextend/error.h"

namespace {

void put(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A stored (method 0) zip archive of the given entries; CRCs are left 0 (the reader does not check them).
std::string make_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out, cd;
  for (const auto& [name, body] : entries) {
    const uint64_t local = out.size();
    put(out, 0x04034b50, 4); put(out, 20, 2); put(out, 0, 2); put(out, 0, 2); put(out, 0, 4);
    put(out, 0, 4); put(out, body.size(), 4); put(out, body.size(), 4); put(out, name.size(), 2); put(out, 0, 2);
    out += name;
    out += body;
    put(cd, 0x02014b50, 4); put(cd, 20, 2); put(cd, 20, 2); put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 4);
    put(cd, 0, 4); put(cd, body.size(), 4); put(cd, body.size(), 4); put(cd, name.size(), 2); put(cd, 0, 2);
    put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 4); put(cd, local, 4);
    cd += name;
  }
  const uint64_t cd_offset = out.size();
  out += cd;
  put(out, 0x06054b50, 4); put(out, 0, 2); put(out, 0, 2); put(out, entries.size(), 2); put(out, entries.size(), 2);
  put(out, cd.size(), 4); put(out, cd_offset, 4); put(out, 0, 2);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string file;
  if ((data[0] & 1) == 0) {
    std::vector<std::pair<std::string, std::string>> entries = {
        {"archive/data.pkl", std::string(reinterpret_cast<const char*>(data) + 1, size - 1)},
        {"archive/byteorder", "little"}};
    for (int i = 0; i < 4; ++i) entries.emplace_back("archive/data/" + std::to_string(i), std::string(64, '\x01'));
    file = make_zip(entries);
  } else {
    file.assign(reinterpret_cast<const char*>(data) + 1, size - 1);
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(file.data());
  try {
    for (const auto& r : mx::read_torch_zip(bytes, file.size(), "fuzz/pytorch_model.bin")) {
      if (r.offset > file.size() || r.nbytes > file.size() - r.offset) {
        std::fprintf(stderr, "fuzz_pickle: accepted tensor '%s' outside the file\n", r.name.c_str());
        std::abort();
      }
    }
  } catch (const mx::CheckpointError&) {
  }
  return 0;
}
