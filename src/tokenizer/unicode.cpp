// Unicode helpers of the tokenizer: UTF-8 validation (Unicode 15 table 3-7), lossy decoding with U+FFFD per
// maximal ill-formed subpart (Unicode 15 §3.9, what Rust's String::from_utf8_lossy does), NFC through
// utf8proc, White_Space and regex-\w classes from utf8proc's general categories, and the GPT-2 byte-level
// alphabet (openai/gpt-2 encoder.py bytes_to_unicode). Character data comes from utf8proc; no tables here.
//
// Known divergence from HF tokenizers 0.23 (whose NFC, the unicode-normalization-alignments crate, carries
// pre-Unicode-10 tables): utf8proc (Unicode 15) knows the canonical combining classes of ~60 marks added in
// Unicode 10-15 (e.g. U+0C3C TELUGU SIGN NUKTA, U+1DFA, Sogdian and Dogra marks) and the composition
// U+11935 U+11930 -> U+11938 (Dives Akuru, Unicode 13); HF treats those marks as class 0 and does not compose.
// Ids differ only where such a mark follows another combining mark of a different class (or for that Dives
// Akuru pair). A sweep of every code point in 15 contexts against HF found no other difference.
#include <utf8proc.h>

#include <cstdlib>
#include <cstring>

#include "mambaextend/error.h"
#include "tokenizer/tokenizer_impl.h"

namespace mx::tok {
namespace {

// Length of the well-formed sequence starting at p[0] (1..4), or 0 when ill-formed; then *subpart is the length
// of its maximal ill-formed subpart (>= 1): the bytes that still could begin a valid sequence.
size_t sequence_length(const unsigned char* p, size_t n, size_t* subpart) {
  const unsigned char b0 = p[0];
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    *subpart = 1;
    return 0;
  }
  size_t k = 1;
  for (; k < len && k < n; ++k) {
    const unsigned char b = p[k];
    const bool ok = (k == 1) ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
  }
  if (k == len) return len;
  *subpart = k;
  return 0;
}

}  // namespace

size_t find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    if (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if ((w & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    size_t subpart = 0;
    const size_t len = sequence_length(p + i, n - i, &subpart);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

std::string utf8_lossy(std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  std::string out;
  out.reserve(n);
  size_t i = 0;
  while (i < n) {
    size_t subpart = 0;
    const size_t len = sequence_length(p + i, n - i, &subpart);
    if (len > 0) {
      out.append(bytes.data() + i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      i += subpart;
    }
  }
  return out;
}

char32_t next_code_point(std::string_view s, size_t& i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const unsigned char b0 = p[i];
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  if (b0 < 0xE0) {
    const char32_t c = (char32_t(b0 & 0x1F) << 6) | (p[i + 1] & 0x3F);
    i += 2;
    return c;
  }
  if (b0 < 0xF0) {
    const char32_t c = (char32_t(b0 & 0x0F) << 12) | (char32_t(p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
    i += 3;
    return c;
  }
  const char32_t c = (char32_t(b0 & 0x07) << 18) | (char32_t(p[i + 1] & 0x3F) << 12) |
                     (char32_t(p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
  i += 4;
  return c;
}

char32_t prev_code_point(std::string_view s, size_t end) {
  size_t b = end;
  while (b > 0 && (static_cast<unsigned char>(s[b - 1]) & 0xC0) == 0x80) --b;
  if (b > 0) --b;
  return next_code_point(s, b);
}

void nfc_append(std::string_view s, std::string& out) {
  // NFC(XY) = NFC(X) NFC(Y) when Y starts with an ASCII character: it is a starter (ccc 0) and is never the
  // second character of a canonical composition. So ASCII is copied as is, and only each run of non-ASCII
  // characters, together with the ASCII character just before it (which may compose with it: "e" + U+0301),
  // goes through utf8proc.
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (j < n && static_cast<unsigned char>(s[j]) < 0x80) ++j;
    if (j == n) {
      out.append(s.data() + i, n - i);
      return;
    }
    const size_t start = j > i ? j - 1 : j;
    size_t k = j;
    while (k < n && static_cast<unsigned char>(s[k]) >= 0x80) ++k;
    out.append(s.data() + i, start - i);
    utf8proc_uint8_t* dst = nullptr;
    const utf8proc_ssize_t len =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + start),
                     static_cast<utf8proc_ssize_t>(k - start), &dst, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (len < 0) {
      throw DataError(std::string("NFC normalization failed (utf8proc: ") + utf8proc_errmsg(len) +
                      ") at byte offset " + std::to_string(start));
    }
    out.append(reinterpret_cast<const char*>(dst), static_cast<size_t>(len));
    std::free(dst);
    i = k;
  }
}

bool is_white_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  if (c == 0x85) return true;
  const utf8proc_category_t cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

bool is_word_char(char32_t c) {
  if (c == 0x200C || c == 0x200D) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

const std::vector<char32_t>& byte_to_unicode() {
  // Printable Latin-1 bytes map to themselves; the other 68 bytes map to U+0100.. in byte order.
  static const std::vector<char32_t> table = [] {
    std::vector<char32_t> t(256);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? char32_t(b) : next++;
    }
    return t;
  }();
  return table;
}

bool byte_level_decode(std::string_view token, std::string& out) {
  static const std::vector<int> inverse = [] {
    std::vector<int> inv(0x200, -1);
    const auto& fwd = byte_to_unicode();
    for (int b = 0; b < 256; ++b) inv[fwd[b]] = b;
    return inv;
  }();
  size_t i = 0;
  while (i < token.size()) {
    const char32_t c = next_code_point(token, i);
    if (c >= inverse.size() || inverse[c] < 0) return false;
    out.push_back(static_cast<char>(inverse[c]));
  }
  return true;
}

}  // namespace mx::tok
