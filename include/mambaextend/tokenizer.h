// Byte-level BPE tokenizer reading a Hugging Face tokenizer.json (GPT-NeoX-20B / GPT-2 family):
// NFC normalizer, ByteLevel pre-tokenizer with the GPT-2 split pattern, BPE merges, added tokens.
// encode() gives the ids Hugging Face `tokenizers` gives (add_special_tokens=False: no BOS/EOS added).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mx {

class Tokenizer {
 public:
  // Throws DataError / IoError naming the file and the field at fault.
  static Tokenizer from_file(const std::filesystem::path& tokenizer_json);
  // The same from the bytes of a tokenizer.json; `tokenizer_json` only names it (messages, path()).
  static Tokenizer from_json(const std::string& bytes, const std::filesystem::path& tokenizer_json);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text must be valid UTF-8 (DataError otherwise, naming the byte offset).
  std::vector<uint32_t> encode(std::string_view text) const;
  std::string decode(const std::vector<uint32_t>& ids) const;   // invalid UTF-8 sequences are replaced (U+FFFD)
  std::string token_bytes(uint32_t id) const;                    // the raw bytes of one token ("" for unknown)
  int64_t vocab_size() const;                                    // largest id + 1
  std::string sha256() const;                                    // of the tokenizer.json bytes (cache key)
  const std::filesystem::path& path() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mx
