// Private pieces of the byte-level BPE tokenizer (include/mambaextend/tokenizer.h), shared by the files of
// src/tokenizer/. The encode pipeline mirrors Hugging Face `tokenizers` (0.2x) step by step:
//   1. split the raw text on added tokens with normalized=false       (AddedMatcher, Aho-Corasick semantics)
//   2. NFC-normalize each remaining piece                              (utf8proc)
//   3. split the normalized pieces on added tokens with normalized=true
//   4. ByteLevel pre-tokenizer: GPT-2 split regex on each piece        (PCRE2, UTF + UCP + JIT)
//   5. BPE merges by rank on the raw bytes of each pre-token           (byte-level alphabet mapped away up front)
// No torch headers here: these translation units compile fast.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mambaextend/tokenizer.h"

namespace mx::tok {

// ---- Unicode helpers (unicode.cpp) ---------------------------------------------------------------------
// Byte offset of the first byte that is not part of a well-formed UTF-8 sequence (Unicode 15, table 3-7:
// no overlongs, no surrogates, nothing above U+10FFFF), or npos when `s` is valid.
size_t find_invalid_utf8(std::string_view s);
// Appends NFC(s) to `out` (utf8proc). `s` must be valid UTF-8.
void nfc_append(std::string_view s, std::string& out);
// Decodes one code point at s[i] (valid UTF-8 assumed) and advances i.
char32_t next_code_point(std::string_view s, size_t& i);
// Decodes the code point that ends at s[end] (exclusive), valid UTF-8 assumed.
char32_t prev_code_point(std::string_view s, size_t end);
// Unicode White_Space (= general categories Zs, Zl, Zp plus U+0009..U+000D and U+0085).
bool is_white_space(char32_t c);
// The `\w` of Rust's regex crate, as used by HF for single_word added tokens: letters, marks, decimal digits,
// connector punctuation, letter numbers, ZWNJ / ZWJ (general categories; Other_Alphabetic symbols such as
// circled letters are not included).
bool is_word_char(char32_t c);
// Bytes -> UTF-8 with every maximal ill-formed subpart replaced by U+FFFD (what Rust's from_utf8_lossy does).
std::string utf8_lossy(std::string_view bytes);
// GPT-2 byte-level alphabet: byte b <-> the code point byte_to_unicode()[b].
const std::vector<char32_t>& byte_to_unicode();
// Maps a byte-level string (e.g. "Ġthe") back to raw bytes; false if a character is outside the alphabet.
bool byte_level_decode(std::string_view token, std::string& out);

// ---- added tokens (added_tokens.cpp) -------------------------------------------------------------------
struct AddedToken {
  uint32_t id = 0;
  std::string content;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
};

// A piece of a split: [begin, end) of the split string, and the added token id or -1 for plain text.
struct Piece {
  size_t begin = 0;
  size_t end = 0;
  int64_t id = -1;
};

// Leftmost-longest matcher over a fixed set of patterns (what aho-corasick's MatchKind::LeftmostLongest
// finds), with HF's single_word / lstrip / rstrip handling (tokenizers/src/tokenizer/added_vocabulary.rs,
// AddedVocabulary::find_matches).
class AddedMatcher {
 public:
  // `patterns[i]` is matched for token `tokens[i]` (the pattern is the token's content, which the loader
  // already NFC-normalized for normalized tokens, as HF does).
  void build(std::vector<std::string> patterns, std::vector<const AddedToken*> tokens);
  bool empty() const { return patterns_.empty(); }
  // Splits `s` into plain pieces and added-token pieces covering it (HF's splits, in order).
  void split(std::string_view s, std::vector<Piece>& out) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;  // (byte, child node); the root uses root_ instead
    int32_t pattern = -1;                                  // index of the pattern ending here
  };
  int32_t child(int32_t node, unsigned char b) const;
  std::vector<Node> nodes_;
  int32_t root_[256];
  std::vector<std::string> patterns_;
  std::vector<const AddedToken*> tokens_;
};

// ---- pre-tokenizer (pretokenize.cpp) -------------------------------------------------------------------
// The GPT-2 split pattern compiled with PCRE2 (UTF, UCP, JIT). Thread-safe: each call makes its own match data.
class SplitRegex {
 public:
  SplitRegex();
  ~SplitRegex();
  SplitRegex(const SplitRegex&) = delete;
  SplitRegex& operator=(const SplitRegex&) = delete;
  // Calls on_piece(begin, end) for every piece of `s` (matches and the gaps between them, in order: HF's
  // SplitDelimiterBehavior::Isolated). `s` must be valid UTF-8.
  template <class F>
  void split(std::string_view s, F&& on_piece) const;

 private:
  struct State;
  State* state_;
  // Returns the first match at or after `from` as [*mb, *me); false when there is none.
  bool find(std::string_view s, size_t from, void* match_data, size_t* mb, size_t* me) const;
  void* new_match_data() const;
  static void free_match_data(void* md);
};

template <class F>
void SplitRegex::split(std::string_view s, F&& on_piece) const {
  void* md = new_match_data();
  size_t pos = 0;
  while (pos < s.size()) {
    size_t mb = 0, me = 0;
    if (!find(s, pos, md, &mb, &me) || me <= mb) break;  // (the pattern never matches empty)
    if (mb > pos) on_piece(pos, mb);
    on_piece(mb, me);
    pos = me;
  }
  if (pos < s.size()) on_piece(pos, s.size());
  free_match_data(md);
}

// ---- BPE model (bpe.cpp) -------------------------------------------------------------------------------
struct BpeModel {
  std::vector<std::string> id_to_bytes;   // raw bytes of every model token ("" where the id is unused)
  std::unordered_map<std::string, uint32_t> bytes_to_id;
  int32_t byte_id[256];                   // id of the single-byte token, -1 if the vocab lacks it
  int32_t unk_id = -1;                    // model.unk_token: replaces a byte missing from the vocab
  bool fuse_unk = false;                  // consecutive unknown bytes give one unk token
  bool ignore_merges = false;             // HF BPE.ignore_merges: a word found whole in the vocab is one token
  // (left id, right id) -> (rank, merged id): an open-addressing table (linear probing, load <= 1/2) keyed by
  // (left << 32 | right); the lookup is the hot loop of BPE, ~3x faster than std::unordered_map here.
  struct MergeSlot {
    uint64_t key = kEmpty;
    uint32_t rank = 0;
    uint32_t new_id = 0;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  std::vector<MergeSlot> merge_table;
  uint64_t merge_mask = 0;
  int merge_shift = 64;  // 64 - log2(table size): Fibonacci hashing takes the top bits

  // Builds merge_table from (pair key, rank, merged id) entries; a repeated pair keeps its last entry.
  void set_merges(const std::vector<MergeSlot>& entries);
  const MergeSlot* find_merge(uint32_t left, uint32_t right) const {
    if (merge_table.empty()) return nullptr;
    const uint64_t key = (uint64_t(left) << 32) | right;
    for (uint64_t i = (key * 0x9E3779B97F4A7C15ULL) >> merge_shift;; i = (i + 1) & merge_mask) {
      const MergeSlot& s = merge_table[i];
      if (s.key == key) return &s;
      if (s.key == kEmpty) return nullptr;
    }
  }

  // Appends the ids of one pre-token (raw bytes) to `out`.
  void encode_word(std::string_view word, std::vector<uint32_t>& out) const;
};

// Everything a loaded tokenizer holds (Tokenizer::Impl derives from it in tokenizer.cpp).
struct TokenizerData {
  std::filesystem::path path;
  std::string sha256;
  BpeModel bpe;
  std::vector<AddedToken> added;                     // in file order
  std::unordered_map<uint32_t, std::string> added_bytes;  // id -> decoded bytes of an added token
  AddedMatcher raw_matcher;                          // normalized = false
  AddedMatcher norm_matcher;                         // normalized = true
  bool nfc = false;                                  // normalizer: NFC or none
  bool add_prefix_space = false;
  bool use_regex = true;
  SplitRegex regex;
  int64_t vocab_size = 0;
};

}  // namespace mx::tok
