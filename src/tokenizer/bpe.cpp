// BPE merges on one pre-token, exactly as Hugging Face tokenizers' Word::merge_all
// (tokenizers/src/models/bpe/word.rs): start from one symbol per byte, then repeatedly merge the adjacent pair
// with the lowest merge rank, the leftmost one on ties, through a min-heap of (rank, position) with lazy
// invalidation; O(n log n) in the word length, so a 100k-byte run of punctuation is fine.
// The byte-level alphabet (byte b <-> a printable code point) is mapped away when the vocab is loaded, so
// symbols here are raw bytes and token ids, never byte-level strings.
#include <queue>

#include "tokenizer/tokenizer_impl.h"

namespace mx::tok {
namespace {

struct Symbol {
  uint32_t id;
  int32_t prev;
  int32_t next;
  uint32_t len;  // 0 once merged into its left neighbour
};

struct Merge {
  uint32_t rank;
  int32_t pos;
  uint32_t new_id;
};

struct MergeAfter {  // priority_queue is a max-heap: "a after b" means a has the higher (rank, pos)
  bool operator()(const Merge& a, const Merge& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

}  // namespace

void BpeModel::set_merges(const std::vector<MergeSlot>& entries) {
  size_t capacity = 16;
  merge_shift = 60;
  while (capacity < 2 * entries.size()) {
    capacity *= 2;
    --merge_shift;
  }
  merge_table.assign(capacity, MergeSlot{});
  merge_mask = capacity - 1;
  for (const MergeSlot& e : entries) {
    for (uint64_t i = (e.key * 0x9E3779B97F4A7C15ULL) >> merge_shift;; i = (i + 1) & merge_mask) {
      MergeSlot& s = merge_table[i];
      if (s.key == kEmpty || s.key == e.key) {
        s = e;
        break;
      }
    }
  }
}

void BpeModel::encode_word(std::string_view word, std::vector<uint32_t>& out) const {
  if (ignore_merges) {
    const auto it = bytes_to_id.find(std::string(word));
    if (it != bytes_to_id.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  bool last_unknown = false;
  for (const char ch : word) {
    int32_t id = byte_id[static_cast<unsigned char>(ch)];
    const bool unknown = id < 0;
    if (unknown) {
      // HF: without unk_token a character missing from the vocab is dropped; with fuse_unk a run of them
      // becomes one unk symbol.
      if (unk_id < 0) continue;
      if (fuse_unk && last_unknown) {
        sym.back().len += 1;
        continue;
      }
      id = unk_id;
    }
    last_unknown = unknown;
    const auto n = static_cast<int32_t>(sym.size());
    sym.push_back(Symbol{static_cast<uint32_t>(id), n - 1, n + 1, 1});
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  if (sym.size() == 1) {
    out.push_back(sym[0].id);
    return;
  }

  std::priority_queue<Merge, std::vector<Merge>, MergeAfter> queue;
  for (size_t i = 0; i + 1 < sym.size(); ++i) {
    if (const auto* m = find_merge(sym[i].id, sym[i + 1].id)) {
      queue.push(Merge{m->rank, static_cast<int32_t>(i), m->new_id});
    }
  }
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& cur = sym[top.pos];
    if (cur.len == 0 || cur.next < 0) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = sym[next_pos];
    // Stale entry: the pair at this position no longer merges into the same token (HF checks the id only).
    const auto* m = find_merge(cur.id, right.id);
    if (m == nullptr || m->new_id != top.new_id) continue;
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    sym[next_pos].len = 0;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const auto* p = find_merge(sym[cur.prev].id, cur.id)) queue.push(Merge{p->rank, cur.prev, p->new_id});
    }
    if (cur.next >= 0) {
      if (const auto* p = find_merge(cur.id, sym[cur.next].id)) queue.push(Merge{p->rank, top.pos, p->new_id});
    }
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

}  // namespace mx::tok
