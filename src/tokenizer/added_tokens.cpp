// Added-token splitting, as Hugging Face tokenizers does it (tokenizers/src/tokenizer/added_vocabulary.rs,
// AddedVocabulary::find_matches): non-overlapping leftmost-longest matches of the token contents (a byte trie
// scanned left to right finds what aho-corasick's MatchKind::LeftmostLongest finds), then per match:
//   single_word: dropped unless the characters on both sides are not `\w` (the search resumes after it);
//   lstrip: the match takes the whitespace run on its left (not past the previous match);
//   rstrip: the match takes the whitespace run on its right (the search still resumes at the original end,
//           as in HF).
// Limits: `\w` comes from general categories (see is_word_char), which differs from Rust's Alphabetic-based
// `\w` only on a few symbols such as circled letters.
#include <algorithm>

#include "tokenizer/tokenizer_impl.h"

namespace mx::tok {

int32_t AddedMatcher::child(int32_t node, unsigned char b) const {
  if (node == 0) return root_[b];
  for (const auto& [byte, next] : nodes_[node].next) {
    if (byte == b) return next;
  }
  return -1;
}

void AddedMatcher::build(std::vector<std::string> patterns, std::vector<const AddedToken*> tokens) {
  patterns_ = std::move(patterns);
  tokens_ = std::move(tokens);
  nodes_.assign(1, Node{});
  std::fill(std::begin(root_), std::end(root_), -1);
  for (size_t p = 0; p < patterns_.size(); ++p) {
    if (patterns_[p].empty()) continue;  // HF never adds an empty token
    int32_t node = 0;
    for (const char ch : patterns_[p]) {
      const auto b = static_cast<unsigned char>(ch);
      int32_t next = child(node, b);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_.push_back(Node{});
        if (node == 0) {
          root_[b] = next;
        } else {
          nodes_[node].next.emplace_back(b, next);
        }
      }
      node = next;
    }
    // Two tokens with the same (normalized) content: aho-corasick reports the first one added.
    if (nodes_[node].pattern < 0) nodes_[node].pattern = static_cast<int32_t>(p);
  }
}

namespace {

bool ends_with_word(std::string_view s, size_t end) { return end > 0 && is_word_char(prev_code_point(s, end)); }

bool starts_with_word(std::string_view s, size_t begin) {
  if (begin >= s.size()) return false;
  size_t i = begin;
  return is_word_char(next_code_point(s, i));
}

// Start of the whitespace run that ends at `end` (HF: match of `\s*$` on s[..end]).
size_t whitespace_run_start(std::string_view s, size_t end) {
  size_t b = end;
  while (b > 0) {
    size_t p = b - 1;
    while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
    size_t q = p;
    if (!is_white_space(next_code_point(s, q))) break;
    b = p;
  }
  return b;
}

// End of the whitespace run that starts at `begin` (HF: match of `^\s*` on s[begin..]).
size_t whitespace_run_end(std::string_view s, size_t begin) {
  size_t e = begin;
  while (e < s.size()) {
    size_t q = e;
    if (!is_white_space(next_code_point(s, q))) break;
    e = q;
  }
  return e;
}

}  // namespace

void AddedMatcher::split(std::string_view s, std::vector<Piece>& out) const {
  const size_t n = s.size();
  if (n == 0) return;
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < n) {
    if (root_[static_cast<unsigned char>(s[pos])] < 0) {
      ++pos;
      continue;
    }
    // Longest pattern starting at pos.
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t i = pos; i < n; ++i) {
      node = child(node, static_cast<unsigned char>(s[i]));
      if (node < 0) break;
      if (nodes_[node].pattern >= 0) {
        best = nodes_[node].pattern;
        best_end = i + 1;
      }
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = *tokens_[best];
    size_t start = pos, stop = best_end;
    pos = best_end;  // the search resumes after the match, whatever happens to it below
    if (token.single_word) {
      const bool start_space = start == 0 || !ends_with_word(s, start);
      const bool stop_space = stop == n || !starts_with_word(s, stop);
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) start = std::max(whitespace_run_start(s, start), start_offset);
    if (token.rstrip) stop = whitespace_run_end(s, stop);
    if (start_offset < start) out.push_back(Piece{start_offset, start, -1});
    out.push_back(Piece{start, stop, static_cast<int64_t>(token.id)});
    start_offset = stop;
  }
  if (start_offset != n) out.push_back(Piece{start_offset, n, -1});
}

}  // namespace mx::tok
