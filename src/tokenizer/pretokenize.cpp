// The GPT-2 split pattern of the ByteLevel pre-tokenizer, compiled with PCRE2 (UTF, UCP, JIT).
//
// HF tokenizers (pre_tokenizers/byte_level.rs) compiles
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with Oniguruma (Ruby syntax, UTF-8, no options), where \s is the Unicode White_Space property. PCRE2's \s
// with UCP is \p{Z} + \h + \v, which adds U+180E MONGOLIAN VOWEL SEPARATOR (a format character since Unicode
// 6.3, and not whitespace for Oniguruma), so we spell White_Space out instead:
//     WS = [\t-\r\x{85}\p{Z}]    (U+0009..U+000D, U+0085, Zs, Zl, Zp: exactly White_Space)
// The alternation is leftmost-first in both engines, and HF keeps both matches and the gaps between them
// (SplitDelimiterBehavior::Isolated); with this pattern every character is matched, so there are no gaps.
// Limits: letter / number classes follow PCRE2's Unicode tables (Oniguruma's may be a version apart on
// characters assigned in the newest Unicode versions).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>

#include "mambaextend/error.h"
#include "tokenizer/tokenizer_impl.h"

namespace mx::tok {

namespace {
constexpr const char* kPattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\t-\\r\\x{85}\\p{Z}\\p{L}\\p{N}]+"
    "|[\\t-\\r\\x{85}\\p{Z}]+(?![^\\t-\\r\\x{85}\\p{Z}])|[\\t-\\r\\x{85}\\p{Z}]+";
}  // namespace

struct SplitRegex::State {
  pcre2_code* code = nullptr;
};

SplitRegex::SplitRegex() : state_(new State) {
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  state_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                               PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &err_offset, nullptr);
  if (state_->code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    delete state_;
    throw Error(std::string("PCRE2 cannot compile the GPT-2 split pattern at offset ") +
                std::to_string(err_offset) + ": " + reinterpret_cast<const char*>(msg));
  }
  // JIT is an optimisation only: pcre2_match falls back to the interpreter where JIT is unavailable.
  pcre2_jit_compile(state_->code, PCRE2_JIT_COMPLETE);
}

SplitRegex::~SplitRegex() {
  pcre2_code_free(state_->code);
  delete state_;
}

void* SplitRegex::new_match_data() const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(state_->code, nullptr);
  if (md == nullptr) throw Error("PCRE2: out of memory creating match data");
  return md;
}

void SplitRegex::free_match_data(void* md) { pcre2_match_data_free(static_cast<pcre2_match_data*>(md)); }

bool SplitRegex::find(std::string_view s, size_t from, void* match_data, size_t* mb, size_t* me) const {
  auto* md = static_cast<pcre2_match_data*>(match_data);
  // The text was validated as UTF-8 up front; without NO_UTF_CHECK each call would re-check the subject.
  const int rc = pcre2_match(state_->code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), from,
                             PCRE2_NO_UTF_CHECK, md, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    throw Error(std::string("PCRE2 match failed at byte offset ") + std::to_string(from) + ": " +
                reinterpret_cast<const char*>(msg));
  }
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  *mb = ov[0];
  *me = ov[1];
  return true;
}

}  // namespace mx::tok
