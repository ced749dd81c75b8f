// libFuzzer target: the jsonl corpus reader (parse_jsonl: one JSON object with a string "text" per line). Every
// accepted record must be valid UTF-8 and be named "<stem>:<index>" in file order.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mambaextend/corpus.h"
#include "mambaextend/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const auto docs = mx::parse_jsonl(bytes, "fuzz/books.jsonl");
    for (size_t i = 0; i < docs.size(); ++i) {
      if (docs[i].name != "books:" + std::to_string(i)) {
        std::fprintf(stderr, "fuzz_jsonl: record %zu named '%s'\n", i, docs[i].name.c_str());
        std::abort();
      }
    }
  } catch (const mx::DataError&) {
  }
  return 0;
}
