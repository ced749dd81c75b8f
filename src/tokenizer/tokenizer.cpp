// mx::Tokenizer: loads a Hugging Face tokenizer.json of the GPT-2 / GPT-NeoX family (BPE model, NFC or no
// normalizer, ByteLevel pre-tokenizer and decoder, added tokens) and encodes / decodes like HF tokenizers
// with add_special_tokens=False. The steps are described in tokenizer_impl.h; anything else in the file that
// would change the ids (another normalizer or pre-tokenizer, BPE dropout, subword prefixes, byte fallback) is
// refused with a DataError naming the field, rather than silently tokenized differently.
// encode() keeps a per-call cache of pre-token -> ids (books repeat their words), so it is thread-safe and
// documents can be encoded in parallel with one shared Tokenizer.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "mambaextend/corpus.h"
#include "mambaextend/error.h"
#include "mambaextend/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"

namespace mx {

struct Tokenizer::Impl : tok::TokenizerData {};

namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw DataError("tokenizer " + path.string() + ": " + what);
}

std::string read_bytes(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw IoError("tokenizer file " + path.string() + " is a directory, expected a tokenizer.json file");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw IoError("cannot open tokenizer file " + path.string() +
                  (std::filesystem::exists(path) ? " (not readable)" : " (no such file)"));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError("cannot read tokenizer file " + path.string());
  return ss.str();
}

bool is_null_or(const json& j, const char* key, const json& allowed) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() || *it == allowed;
}

// Normalizer: null, NFC, or a Sequence of NFC only.
bool parse_normalizer(const std::filesystem::path& path, const json& n) {
  if (n.is_null()) return false;
  if (!n.is_object() || !n.contains("type")) fail(path, "field 'normalizer' must be null or an object with 'type'");
  const std::string type = n["type"].get<std::string>();
  if (type == "NFC") return true;
  if (type == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
    bool nfc = false;
    for (const auto& sub : n["normalizers"]) nfc = parse_normalizer(path, sub) || nfc;
    return nfc;
  }
  fail(path, "unsupported normalizer type '" + type + "' (supported: NFC or none)");
}

void parse_pre_tokenizer(const std::filesystem::path& path, const json& p, tok::TokenizerData& impl) {
  if (!p.is_object() || p.value("type", "") != "ByteLevel") {
    fail(path, "unsupported pre_tokenizer " + p.dump().substr(0, 80) + " (supported: ByteLevel)");
  }
  impl.add_prefix_space = p.value("add_prefix_space", false);
  impl.use_regex = p.value("use_regex", true);  // HF: #[serde(default = "default_true")]
}

// Returns the vocab as byte-level string -> id (what HF's model.token_to_id looks up).
std::unordered_map<std::string, uint32_t> parse_model(const std::filesystem::path& path, const json& m,
                                                      tok::BpeModel& bpe) {
  if (!m.is_object()) fail(path, "field 'model' missing or not an object");
  if (m.contains("type") && m["type"] != "BPE") fail(path, "model.type is " + m["type"].dump() + ", expected \"BPE\"");
  if (m.contains("dropout") && !m["dropout"].is_null() && !(m["dropout"].is_number() && m["dropout"] == 0)) {
    fail(path, "model.dropout is " + m["dropout"].dump() + " (unsupported: BPE dropout randomizes the ids)");
  }
  if (!is_null_or(m, "continuing_subword_prefix", "")) fail(path, "model.continuing_subword_prefix is set (unsupported)");
  if (!is_null_or(m, "end_of_word_suffix", "")) fail(path, "model.end_of_word_suffix is set (unsupported)");
  if (!is_null_or(m, "byte_fallback", false)) fail(path, "model.byte_fallback is true (unsupported)");
  bpe.ignore_merges = m.value("ignore_merges", false);

  const auto vit = m.find("vocab");
  if (vit == m.end() || !vit->is_object()) fail(path, "field 'model.vocab' missing or not an object");
  std::unordered_map<std::string, uint32_t> by_string;  // byte-level string -> id
  by_string.reserve(vit->size() * 2);
  for (const auto& [token, id_json] : vit->items()) {
    if (!id_json.is_number_unsigned()) fail(path, "model.vocab[\"" + token + "\"] is not a non-negative integer");
    const uint64_t id = id_json.get<uint64_t>();
    // Ids index a dense table: a sparse id would allocate for every id below it (found by fuzz_tokenizer_json:
    // one id of ~10^9 asked for 33 GB). Real vocabularies are dense; up to 65536 unused ids are tolerated.
    if (id >= vit->size() + 65536)
      fail(path, "model.vocab[\"" + token.substr(0, 80) + "\"] = " + std::to_string(id) + " is far beyond the " +
                     std::to_string(vit->size()) + " entries of model.vocab (ids must be dense)");
    by_string[token] = static_cast<uint32_t>(id);
    std::string bytes;
    if (!tok::byte_level_decode(token, bytes)) bytes = token;  // not byte-level: BPE can never produce it
    if (bpe.id_to_bytes.size() <= id) bpe.id_to_bytes.resize(id + 1);
    bpe.id_to_bytes[id] = bytes;
    bpe.bytes_to_id[bytes] = static_cast<uint32_t>(id);
  }
  const auto& alphabet = tok::byte_to_unicode();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    const char32_t c = alphabet[b];
    ch.push_back(static_cast<char>(0xC0 | (c >> 6)));
    ch.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    if (c < 0x80) ch = std::string(1, static_cast<char>(c));
    const auto it = by_string.find(ch);
    bpe.byte_id[b] = it == by_string.end() ? -1 : static_cast<int32_t>(it->second);
  }
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    const auto it = by_string.find(m["unk_token"].get<std::string>());
    if (it == by_string.end()) fail(path, "model.unk_token " + m["unk_token"].dump() + " is not in model.vocab");
    bpe.unk_id = static_cast<int32_t>(it->second);
    bpe.fuse_unk = m.value("fuse_unk", false);
  }

  const auto mit = m.find("merges");
  if (mit == m.end() || !mit->is_array()) fail(path, "field 'model.merges' missing or not an array");
  std::vector<tok::BpeModel::MergeSlot> merges;
  merges.reserve(mit->size());
  uint32_t rank = 0;
  for (const auto& merge : *mit) {
    std::string a, b;
    if (merge.is_string()) {  // "a b"
      const std::string s = merge.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        fail(path, "model.merges[" + std::to_string(rank) + "] = \"" + s + "\" is not two tokens separated by a space");
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      a = merge[0].get<std::string>();
      b = merge[1].get<std::string>();
    } else {
      fail(path, "model.merges[" + std::to_string(rank) + "] is neither \"a b\" nor [\"a\", \"b\"]");
    }
    const auto ia = by_string.find(a), ib = by_string.find(b), iab = by_string.find(a + b);
    if (ia == by_string.end() || ib == by_string.end() || iab == by_string.end()) {
      fail(path, "model.merges[" + std::to_string(rank) + "] (\"" + a + "\", \"" + b + "\"): token \"" +
                     (ia == by_string.end() ? a : ib == by_string.end() ? b : a + b) + "\" is not in model.vocab");
    }
    merges.push_back({(uint64_t(ia->second) << 32) | ib->second, rank, iab->second});
    ++rank;
  }
  bpe.set_merges(merges);  // a repeated pair keeps the later rank, as HF's HashMap collect does
  return by_string;
}

// Added tokens as HF's deserializer registers them (tokenizer/serialization.rs -> AddedVocabulary::add_tokens):
// a normalized token's content is normalized first; its id is the id its content already has (an earlier added
// token or the model vocab: the file's "id" is then ignored, HF only warns), else the next free id after the
// model vocab. A content listed twice keeps one id, and the later entry's flags.
void parse_added_tokens(const std::filesystem::path& path, const json& j,
                        const std::unordered_map<std::string, uint32_t>& vocab, tok::TokenizerData& impl) {
  const auto it = j.find("added_tokens");
  if (it == j.end() || it->is_null()) return;
  if (!it->is_array()) fail(path, "field 'added_tokens' is not an array");
  std::unordered_map<std::string, uint32_t> content_to_id;
  uint32_t max_id = 0;  // the largest id in content_to_id
  std::unordered_map<uint32_t, size_t> index_of;  // id -> position in impl.added
  std::vector<std::string> specials, others;      // contents, in HF's trie order
  const auto model_size = static_cast<uint32_t>(vocab.size());
  for (size_t i = 0; i < it->size(); ++i) {
    const json& t = (*it)[i];
    const std::string where = "added_tokens[" + std::to_string(i) + "]";
    if (!t.is_object() || !t.contains("content") || !t["content"].is_string()) {
      fail(path, where + " needs a string 'content'");
    }
    tok::AddedToken a;
    a.content = t["content"].get<std::string>();
    a.special = t.value("special", false);
    a.single_word = t.value("single_word", false);
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    a.normalized = t.value("normalized", !a.special);
    if (a.normalized && impl.nfc) {
      std::string n;
      tok::nfc_append(a.content, n);
      a.content = n;
    }
    if (a.content.empty()) continue;  // HF ignores empty added tokens
    if (const auto c = content_to_id.find(a.content); c != content_to_id.end()) {
      a.id = c->second;
    } else if (const auto v = vocab.find(a.content); v != vocab.end()) {
      a.id = v->second;
    } else {  // (max_id: the largest id in content_to_id, kept as it grows; a rescan per token was quadratic)
      a.id = (!content_to_id.empty() && (max_id >= model_size || model_size == 0)) ? max_id + 1 : model_size;
    }
    const bool seen = content_to_id.count(a.content) > 0;
    const bool seen_special = std::find(specials.begin(), specials.end(), a.content) != specials.end();
    content_to_id[a.content] = a.id;
    max_id = std::max(max_id, a.id);
    if (a.special && !seen_special) specials.push_back(a.content);
    if (!a.special && !seen_special && !seen) others.push_back(a.content);
    if (const auto k = index_of.find(a.id); k != index_of.end()) {
      impl.added[k->second] = a;
    } else {
      index_of[a.id] = impl.added.size();
      impl.added.push_back(a);
    }
  }
  for (const auto& a : impl.added) {
    std::string bytes;
    if (!tok::byte_level_decode(a.content, bytes)) bytes = a.content;  // HF ByteLevel decoder's fallback
    impl.added_bytes[a.id] = bytes;
  }
  // HF builds its tries from the special tokens first, then the others; the normalized set is matched
  // against the normalized text.
  std::vector<std::string> raw_patterns, norm_patterns;
  std::vector<const tok::AddedToken*> raw_tokens, norm_tokens;
  for (const auto* list : {&specials, &others}) {
    for (const auto& content : *list) {
      const tok::AddedToken* a = &impl.added[index_of.at(content_to_id.at(content))];
      (a->normalized ? norm_patterns : raw_patterns).push_back(content);
      (a->normalized ? norm_tokens : raw_tokens).push_back(a);
    }
  }
  impl.raw_matcher.build(std::move(raw_patterns), std::move(raw_tokens));
  impl.norm_matcher.build(std::move(norm_patterns), std::move(norm_tokens));
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::filesystem::path& tokenizer_json) {
  return from_json(read_bytes(tokenizer_json), tokenizer_json);
}

Tokenizer Tokenizer::from_json(const std::string& bytes, const std::filesystem::path& tokenizer_json) {
  auto impl = std::make_unique<Impl>();
  impl->path = tokenizer_json;
  impl->sha256 = sha256_hex(bytes);
  json j;
  try {
    j = json::parse(bytes);
  } catch (const json::exception& e) {
    fail(tokenizer_json, std::string("invalid JSON: ") + e.what());
  }
  try {
    if (!j.is_object()) fail(tokenizer_json, "top level is not a JSON object");
    impl->nfc = parse_normalizer(tokenizer_json, j.value("normalizer", json()));
    parse_pre_tokenizer(tokenizer_json, j.value("pre_tokenizer", json()), *impl);
    const json decoder = j.value("decoder", json());
    if (!decoder.is_null() && decoder.value("type", "") != "ByteLevel") {
      fail(tokenizer_json, "unsupported decoder " + decoder.dump().substr(0, 80) + " (supported: ByteLevel)");
    }
    const auto vocab = parse_model(tokenizer_json, j.value("model", json()), impl->bpe);
    parse_added_tokens(tokenizer_json, j, vocab, *impl);
  } catch (const json::exception& e) {  // a field of the wrong JSON type
    fail(tokenizer_json, std::string("unexpected field type: ") + e.what());
  }
  int64_t max_id = static_cast<int64_t>(impl->bpe.id_to_bytes.size()) - 1;
  for (const auto& a : impl->added) max_id = std::max<int64_t>(max_id, a.id);
  impl->vocab_size = max_id + 1;
  return Tokenizer(std::move(impl));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<uint32_t> Tokenizer::encode(std::string_view text) const {
  const Impl& im = *impl_;
  const size_t bad = tok::find_invalid_utf8(text);
  if (bad != std::string_view::npos) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(text[bad]));
    throw DataError("text is not valid UTF-8: byte " + std::string(hex) + " at byte offset " + std::to_string(bad));
  }

  // Phase 1: added tokens and normalization. Plain pieces are copied (normalized) into `plain` and listed
  // in `segs` as [begin, end) of it; added tokens as their id.
  std::vector<tok::Piece> raw_pieces, norm_pieces, segs;
  if (im.raw_matcher.empty()) {
    raw_pieces.push_back(tok::Piece{0, text.size(), -1});
  } else {
    im.raw_matcher.split(text, raw_pieces);
  }
  std::string plain, normalized;
  plain.reserve(text.size() + text.size() / 16 + 16);
  for (const auto& rp : raw_pieces) {
    if (rp.id >= 0) {
      segs.push_back(rp);
      continue;
    }
    const std::string_view piece = text.substr(rp.begin, rp.end - rp.begin);
    normalized.clear();
    if (im.nfc) {
      tok::nfc_append(piece, normalized);
    } else {
      normalized.assign(piece);
    }
    norm_pieces.clear();
    if (im.norm_matcher.empty()) {
      norm_pieces.push_back(tok::Piece{0, normalized.size(), -1});
    } else {
      im.norm_matcher.split(normalized, norm_pieces);
    }
    for (const auto& np : norm_pieces) {
      if (np.id >= 0) {
        segs.push_back(np);
        continue;
      }
      if (np.end <= np.begin) continue;
      const size_t begin = plain.size();
      if (im.add_prefix_space && normalized[np.begin] != ' ') plain.push_back(' ');
      plain.append(normalized, np.begin, np.end - np.begin);
      segs.push_back(tok::Piece{begin, plain.size(), -1});
    }
  }

  // Phase 2: pre-tokenize and BPE, through a cache of pre-token bytes -> ids (keys are views into `plain`).
  std::vector<uint32_t> ids;
  ids.reserve(text.size() / 3 + 16);
  std::vector<uint32_t> pool;
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache;
  const std::string_view all(plain);
  auto encode_word = [&](std::string_view word) {
    const auto it = cache.find(word);
    if (it != cache.end()) {
      ids.insert(ids.end(), pool.begin() + it->second.first, pool.begin() + it->second.first + it->second.second);
      return;
    }
    const auto start = static_cast<uint32_t>(pool.size());
    im.bpe.encode_word(word, pool);
    const auto count = static_cast<uint32_t>(pool.size() - start);
    ids.insert(ids.end(), pool.begin() + start, pool.end());
    cache.emplace(word, std::make_pair(start, count));
  };
  for (const auto& seg : segs) {
    if (seg.id >= 0) {
      ids.push_back(static_cast<uint32_t>(seg.id));
      continue;
    }
    const std::string_view piece = all.substr(seg.begin, seg.end - seg.begin);
    if (!im.use_regex) {
      encode_word(piece);
      continue;
    }
    im.regex.split(piece, [&](size_t b, size_t e) { encode_word(piece.substr(b, e - b)); });
  }
  return ids;
}

std::string Tokenizer::token_bytes(uint32_t id) const {
  const auto it = impl_->added_bytes.find(id);
  if (it != impl_->added_bytes.end()) return it->second;
  if (id < impl_->bpe.id_to_bytes.size()) return impl_->bpe.id_to_bytes[id];
  return {};
}

std::string Tokenizer::decode(const std::vector<uint32_t>& ids) const {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (const uint32_t id : ids) {
    const auto it = impl_->added_bytes.find(id);
    if (it != impl_->added_bytes.end()) {
      bytes += it->second;
    } else if (id < impl_->bpe.id_to_bytes.size()) {
      bytes += impl_->bpe.id_to_bytes[id];
    }  // an unknown id decodes to nothing, as in HF
  }
  return tok::utf8_lossy(bytes);
}

int64_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
std::string Tokenizer::sha256() const { return impl_->sha256; }
const std::filesystem::path& Tokenizer::path() const { return impl_->path; }

}  // namespace mx
