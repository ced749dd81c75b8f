// Tokenizer parity with Hugging Face `tokenizers` (fixtures from tests/oracle/oracle_tokenizer.py): ids of hard
// strings, of every assigned code point in context, of added tokens with single_word / lstrip / rstrip /
// normalized, of the bundled books and (when ../shared exists) of every book of the shared corpus; decode
// against HF's decode and the NFC round trip; invalid UTF-8 and malformed tokenizer files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "mambaextend/corpus.h"
#include "mambaextend/error.h"
#include "mambaextend/tokenizer.h"
#include "unit/temp_dir.h"

namespace fs = std::filesystem;

namespace {

fs::path env_path(const char* var) {
  const char* v = std::getenv(var);
  if (v == nullptr || *v == '\0') throw std::runtime_error(std::string(var) + " is not set (run through ctest)");
  return v;
}

fs::path fixtures() {
  const fs::path dir = env_path("MX_FIXTURES") / "tokenizer";
  if (!fs::is_directory(dir)) throw std::runtime_error(dir.string() + " missing: run tests/oracle/make_oracle.py");
  return dir;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(slurp(p)); }

// Little-endian uint32 file, read independently of the code under test.
std::vector<uint32_t> read_ids(const fs::path& p) {
  const std::string b = slurp(p);
  std::vector<uint32_t> ids(b.size() / 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto* q = reinterpret_cast<const unsigned char*>(b.data() + 4 * i);
    ids[i] = uint32_t(q[0]) | uint32_t(q[1]) << 8 | uint32_t(q[2]) << 16 | uint32_t(q[3]) << 24;
  }
  return ids;
}

fs::path neox_json() { return env_path("MX_SOURCE_DIR") / "assets" / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"; }

const mx::Tokenizer& neox() {
  static const auto tok = std::make_unique<mx::Tokenizer>(mx::Tokenizer::from_file(neox_json()));
  return *tok;
}

// First position where two id lists differ, for readable failures on long documents.
std::string first_difference(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  if (i == a.size() && i == b.size()) return "equal";
  auto at = [&](const std::vector<uint32_t>& v) { return i < v.size() ? std::to_string(v[i]) : std::string("end"); };
  return "sizes " + std::to_string(a.size()) + " vs " + std::to_string(b.size()) + ", first difference at " +
         std::to_string(i) + ": " + at(a) + " vs " + at(b);
}

void expect_books_match(const fs::path& book_root, const fs::path& id_root, const nlohmann::json& nfc_sha,
                        size_t* count) {
  const mx::Tokenizer& tok = neox();
  for (const auto& split : {"train", "validation", "test"}) {
    if (!fs::is_directory(book_root / split)) continue;
    for (const auto& entry : fs::directory_iterator(book_root / split)) {
      if (entry.path().extension() != ".txt") continue;
      const std::string key = std::string(split) + "/" + entry.path().stem().string();
      const fs::path id_file = id_root / split / (entry.path().stem().string() + ".u32");
      ASSERT_TRUE(fs::exists(id_file)) << "no HF ids for " << key << ": regenerate the tokenizer oracle";
      const std::string text = slurp(entry.path());
      const auto ids = tok.encode(text);
      const auto expected = read_ids(id_file);
      EXPECT_TRUE(ids == expected) << key << ": " << first_difference(ids, expected);
      ASSERT_TRUE(nfc_sha.contains(key)) << key;
      EXPECT_EQ(mx::sha256_hex(tok.decode(ids)), nfc_sha[key].get<std::string>()) << key << ": decode != NFC(text)";
      ++*count;
    }
  }
}

}  // namespace

TEST(Tokenizer, LoadsNeoxFile) {
  const mx::Tokenizer& tok = neox();
  const auto manifest = read_json(fixtures() / "manifest.json");
  EXPECT_EQ(tok.vocab_size(), 50277);
  EXPECT_EQ(tok.sha256(), manifest["tokenizer_sha256"].get<std::string>());
  EXPECT_EQ(tok.path(), neox_json());
  EXPECT_EQ(tok.token_bytes(0), "<|endoftext|>");
  EXPECT_EQ(tok.token_bytes(50276), "  ");
  EXPECT_EQ(tok.token_bytes(50254), std::string(24, ' '));
  EXPECT_EQ(tok.token_bytes(187), "\n");
  EXPECT_EQ(tok.token_bytes(209), " ");
  EXPECT_EQ(tok.token_bytes(1000000), "");
}

TEST(Tokenizer, HardStringsMatchHF) {
  const mx::Tokenizer& tok = neox();
  const auto cases = read_json(fixtures() / "hard_strings.json");
  ASSERT_GT(cases.size(), 200u);
  for (const auto& c : cases) {
    const std::string name = c["name"].get<std::string>();
    const std::string text = c["text"].get<std::string>();
    const auto expected = c["ids"].get<std::vector<uint32_t>>();
    const auto ids = tok.encode(text);
    EXPECT_EQ(ids, expected) << name;
    EXPECT_EQ(tok.decode(expected), c["decoded"].get<std::string>()) << name << ": decode differs from HF";
    EXPECT_EQ(tok.decode(ids), c["nfc"].get<std::string>()) << name << ": decode(encode(x)) != NFC(x)";
  }
}

TEST(Tokenizer, EveryCodePointInContextMatchesHF) {
  const mx::Tokenizer& tok = neox();
  const auto recs = read_json(fixtures() / "codepoints.json");
  ASSERT_GT(recs.size(), 100u);
  int failures = 0;
  for (const auto& r : recs) {
    const auto ids = tok.encode(r["text"].get<std::string>());
    const auto expected = r["ids"].get<std::vector<uint32_t>>();
    if (ids != expected && ++failures <= 10) {
      ADD_FAILURE() << "code points U+" << std::hex << r["first"].get<int>() << "..U+" << r["last"].get<int>()
                    << std::dec << ": " << first_difference(ids, expected);
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(Tokenizer, AddedTokenFlagsMatchHF) {
  const auto tok = mx::Tokenizer::from_file(fixtures() / "flags" / "tokenizer.json");
  const auto cases = read_json(fixtures() / "flags" / "strings.json");
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(tok.encode(text), c["ids"].get<std::vector<uint32_t>>()) << text;
    EXPECT_EQ(tok.decode(c["ids"].get<std::vector<uint32_t>>()), c["decoded"].get<std::string>()) << text;
  }
}

TEST(Tokenizer, FileVariantsMatchHF) {
  const auto variants = read_json(fixtures() / "variants" / "strings.json");
  ASSERT_EQ(variants.size(), 4u);
  for (const auto& [name, cases] : variants.items()) {
    const auto tok = mx::Tokenizer::from_file(fixtures() / "variants" / (name + ".json"));
    for (const auto& c : cases) {
      EXPECT_EQ(tok.encode(c["text"].get<std::string>()), c["ids"].get<std::vector<uint32_t>>())
          << name << ": " << c["text"].get<std::string>();
    }
  }
}

TEST(Tokenizer, BundledBooksMatchHF) {
  const auto sha = read_json(fixtures() / "books.json");
  size_t count = 0;
  expect_books_match(env_path("MX_SOURCE_DIR") / "assets" / "books", fixtures() / "books", sha["books"], &count);
  EXPECT_EQ(count, 6u);
}

TEST(Tokenizer, SharedBooksMatchHF) {
  const fs::path shared = env_path("MX_SOURCE_DIR") / ".." / "shared" / "data" / "books";
  if (!fs::is_directory(shared)) GTEST_SKIP() << shared << " is absent: the full-corpus parity test needs ../shared";
  const auto manifest = read_json(fixtures() / "manifest.json");
  ASSERT_GT(manifest["shared_books"].get<int>(), 0)
      << "../shared exists but the oracle wrote no ids for it: delete $MX_FIXTURES/tokenizer and rerun make_oracle";
  const auto sha = read_json(fixtures() / "books.json");
  size_t count = 0;
  expect_books_match(shared, fixtures() / "shared_books", sha["shared_books"], &count);
  EXPECT_EQ(count, static_cast<size_t>(manifest["shared_books"].get<int>()));
}

TEST(Tokenizer, InvalidUtf8NamesTheByteOffset) {
  const mx::Tokenizer& tok = neox();
  const std::vector<std::pair<std::string, size_t>> cases = {
      {"ab\xff", 2},               // never valid
      {"caf\xc3", 3},              // truncated at the end
      {"x\xc0\x80", 1},            // overlong NUL
      {"ok \xed\xa0\x80", 3},      // UTF-16 surrogate
      {"\xf4\x90\x80\x80", 0},     // above U+10FFFF
      {"\xe2\x82 \xe2\x82\xac", 0},  // truncated before a space
      {"valid \xe2\x82\xac then \x80", 15},
  };
  for (const auto& [text, offset] : cases) {
    try {
      (void)tok.encode(text);
      ADD_FAILURE() << "no error for invalid UTF-8 at offset " << offset;
    } catch (const mx::DataError& e) {
      EXPECT_NE(std::string(e.what()).find("byte offset " + std::to_string(offset)), std::string::npos) << e.what();
    }
  }
}

TEST(Tokenizer, DecodeReplacesInvalidSequences) {
  const mx::Tokenizer& tok = neox();
  // Single-byte tokens of the euro sign's bytes E2 82 AC.
  auto byte_token = [&](unsigned char b) {
    for (uint32_t id = 0; id < 50254; ++id) {
      if (tok.token_bytes(id) == std::string(1, static_cast<char>(b))) return id;
    }
    throw std::runtime_error("no single-byte token");
  };
  const uint32_t e2 = byte_token(0xE2), x82 = byte_token(0x82), xac = byte_token(0xAC);
  EXPECT_EQ(tok.decode({e2, x82, xac}), "\xe2\x82\xac");
  EXPECT_EQ(tok.decode({e2, x82}), "\xef\xbf\xbd");                  // one maximal subpart -> one U+FFFD
  EXPECT_EQ(tok.decode({x82, xac}), "\xef\xbf\xbd\xef\xbf\xbd");     // two stray continuation bytes
  EXPECT_EQ(tok.decode({e2, 66, x82}), "\xef\xbf\xbd" "a\xef\xbf\xbd");
  EXPECT_EQ(tok.decode({66, 9999999, 67}), "ab");                     // unknown ids decode to nothing
  EXPECT_EQ(tok.decode({}), "");
}

TEST(Tokenizer, Sha256KnownVectors) {
  EXPECT_EQ(mx::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(mx::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Tokenizer, BadFilesAreClearErrors) {
  const mx::test::TempDir tmp("tok_bad");
  const fs::path& dir = tmp.path();
  auto write = [&](const std::string& name, const std::string& body) {
    std::ofstream(dir / name, std::ios::binary) << body;
    return dir / name;
  };
  auto expect_error = [](const fs::path& p, const std::string& fragment, bool io) {
    try {
      (void)mx::Tokenizer::from_file(p);
      ADD_FAILURE() << "no error for " << p;
    } catch (const mx::IoError& e) {
      EXPECT_TRUE(io) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    } catch (const mx::DataError& e) {
      EXPECT_FALSE(io) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
    }
  };
  expect_error(dir / "missing.json", "missing.json", true);
  expect_error(write("truncated.json", slurp(neox_json()).substr(0, 5000)), "invalid JSON", false);
  expect_error(write("novocab.json", R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "merges": []}})"), "model.vocab", false);
  expect_error(write("wordpiece.json", R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "WordPiece", "vocab": {}}})"), "model.type", false);
  expect_error(write("nfkc.json", R"({"normalizer": {"type": "NFKC"}, "model": {"vocab": {}, "merges": []}})"),
               "normalizer", false);
  expect_error(write("badmerge.json", R"({"pre_tokenizer": {"type": "ByteLevel"},
      "model": {"vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})"), "merges[0]", false);
  expect_error(write("nopretok.json", R"({"model": {"vocab": {}, "merges": []}})"), "pre_tokenizer", false);
  expect_error(write("vocabtype.json", R"({"pre_tokenizer": {"type": "ByteLevel"},
      "model": {"vocab": {"a": "zero"}, "merges": []}})"), "model.vocab", false);
}
