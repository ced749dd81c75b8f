// Corpus readers, the token cache and `mambaextend tokenize`: document order, jsonl records, every documented
// error (missing path, empty directory, non-UTF-8 file, malformed jsonl line, record without "text"), empty
// documents kept, a cache hit on the second run (proved by planting ids in the cache file), a corrupt cache
// file re-tokenized, and the CLI's .u32 files equal to encode().
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

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

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void put(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
}

std::vector<uint32_t> read_ids(const fs::path& p) {
  const std::string b = slurp(p);
  std::vector<uint32_t> ids(b.size() / 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto* q = reinterpret_cast<const unsigned char*>(b.data() + 4 * i);
    ids[i] = uint32_t(q[0]) | uint32_t(q[1]) << 8 | uint32_t(q[2]) << 16 | uint32_t(q[3]) << 24;
  }
  return ids;
}

void put_ids(const fs::path& p, const std::vector<uint32_t>& ids) {
  std::string b;
  for (const uint32_t v : ids) {
    for (int k = 0; k < 4; ++k) b.push_back(static_cast<char>((v >> (8 * k)) & 0xFF));
  }
  put(p, b);
}

const mx::Tokenizer& neox() {
  static const auto tok = std::make_unique<mx::Tokenizer>(mx::Tokenizer::from_file(
      env_path("MX_SOURCE_DIR") / "assets" / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"));
  return *tok;
}

class Corpus : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<mx::test::TempDir>(std::string("corpus_") +
                                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    dir_ = tmp_->path();
  }
  void TearDown() override { tmp_.reset(); }

  // Expects `f` to throw E whose message contains every fragment.
  template <class E, class F>
  void expect_error(F&& f, const std::vector<std::string>& fragments) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one mentioning " << fragments.front();
    } catch (const E& e) {
      for (const auto& frag : fragments) EXPECT_NE(std::string(e.what()).find(frag), std::string::npos) << e.what();
    }
  }

  std::unique_ptr<mx::test::TempDir> tmp_;
  fs::path dir_;
};

}  // namespace

TEST_F(Corpus, DirectoryIsSortedByFileNameBytes) {
  for (const char* name : {"b.txt", "a.txt", "10.txt", "9.txt", "B.txt"}) put(dir_ / name, std::string("text of ") + name);
  put(dir_ / "notes.md", "not a document");
  put(dir_ / ".hidden.txt", "skipped");
  fs::create_directories(dir_ / "sub.txt");  // a directory, not a document
  put(dir_ / "empty.txt", "");
  const auto docs = mx::read_corpus(dir_);
  std::vector<std::string> names;
  for (const auto& d : docs) names.push_back(d.name);
  EXPECT_EQ(names, (std::vector<std::string>{"10", "9", "B", "a", "b", "empty"}));
  EXPECT_EQ(docs[3].text, "text of a.txt");
  EXPECT_EQ(docs[5].text, "");  // empty documents are kept
}

TEST_F(Corpus, SingleTxtFileKeepsBytes) {
  put(dir_ / "book.txt", "\xef\xbb\xbfline\r\nnext\r\n");
  const auto docs = mx::read_corpus(dir_ / "book.txt");
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].name, "book");
  EXPECT_EQ(docs[0].text, "\xef\xbb\xbfline\r\nnext\r\n");
}

TEST_F(Corpus, JsonlRecordsInFileOrder) {
  put(dir_ / "data.jsonl",
      "{\"text\": \"first\", \"meta\": 1}\n\n{\"text\": \"caf\\u00e9 \\ud83d\\ude00\"}\r\n  \n{\"text\": \"\"}\n");
  const auto docs = mx::read_corpus(dir_ / "data.jsonl");
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].name, "data:0");
  EXPECT_EQ(docs[0].text, "first");
  EXPECT_EQ(docs[1].name, "data:1");
  EXPECT_EQ(docs[1].text, "caf\xc3\xa9 \xf0\x9f\x98\x80");
  EXPECT_EQ(docs[2].text, "");
}

TEST_F(Corpus, Errors) {
  expect_error<mx::IoError>([&] { mx::read_corpus(dir_ / "nope"); }, {"nope", "does not exist"});
  expect_error<mx::DataError>([&] { mx::read_corpus(dir_); }, {dir_.string(), "no .txt files"});
  put(dir_ / "other" / "readme.md", "x");
  expect_error<mx::DataError>([&] { mx::read_corpus(dir_ / "other"); }, {"no .txt files"});
  put(dir_ / "latin1" / "a.txt", "ok\nline two caf\xe9\n");
  expect_error<mx::DataError>([&] { mx::read_corpus(dir_ / "latin1"); },
                              {"a.txt", "not valid UTF-8", "byte offset 15", "line 2"});
  put(dir_ / "bad.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"\n");
  expect_error<mx::DataError>([&] { mx::read_corpus(dir_ / "bad.jsonl"); }, {"bad.jsonl", "line 2", "invalid JSON"});
  put(dir_ / "notext.jsonl", "{\"text\": \"a\"}\n\n{\"body\": \"b\"}\n");
  expect_error<mx::DataError>([&] { mx::read_corpus(dir_ / "notext.jsonl"); }, {"line 3", "no \"text\""});
  put(dir_ / "num.jsonl", "{\"text\": 5}\n");
  expect_error<mx::DataError>([&] { mx::read_corpus(dir_ / "num.jsonl"); }, {"line 1", "expected a string"});
  put(dir_ / "array.jsonl", "[\"text\"]\n");
  expect_error<mx::DataError>([&] { mx::read_corpus(dir_ / "array.jsonl"); }, {"line 1", "not a JSON object"});
  put(dir_ / "blank.jsonl", "\n\n");
  expect_error<mx::DataError>([&] { mx::read_corpus(dir_ / "blank.jsonl"); }, {"no records"});
  put(dir_ / "data.csv", "a,b\n");
  expect_error<mx::DataError>([&] { mx::read_corpus(dir_ / "data.csv"); }, {"data.csv"});
}

TEST_F(Corpus, TokenizeUsesTheCache) {
  const mx::Tokenizer& tok = neox();
  put(dir_ / "books" / "a.txt", "The first book.\n\nIt has two paragraphs.");
  put(dir_ / "books" / "b.txt", "The second book, \xe2\x80\x9cquoted\xe2\x80\x9d.");
  put(dir_ / "books" / "c.txt", "");
  const fs::path cache = dir_ / "cache";

  const auto first = mx::tokenize_corpus(dir_ / "books", tok, cache);
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(first[0].name, "a");
  EXPECT_EQ(first[0].ids, tok.encode(slurp(dir_ / "books" / "a.txt")));
  EXPECT_EQ(first[1].ids, tok.encode(slurp(dir_ / "books" / "b.txt")));
  EXPECT_TRUE(first[2].ids.empty());

  const fs::path shard = cache / "tokens" / tok.sha256().substr(0, 16);
  const fs::path file_a = shard / (mx::sha256_hex(slurp(dir_ / "books" / "a.txt")) + ".u32");
  const fs::path file_b = shard / (mx::sha256_hex(slurp(dir_ / "books" / "b.txt")) + ".u32");
  ASSERT_TRUE(fs::exists(file_a));
  EXPECT_EQ(read_ids(file_a), first[0].ids);
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(shard)) {
    EXPECT_EQ(e.path().extension(), ".u32") << "temporary file left behind: " << e.path();
    ++entries;
  }
  EXPECT_EQ(entries, 3u);

  // Second run: a's ids come from the cache file (planted ids prove it was read, not tokenized again), and the
  // untouched file b is not rewritten.
  put_ids(file_a, {7, 8, 9});
  const auto mtime_b = fs::last_write_time(file_b);
  const auto second = mx::tokenize_corpus(dir_ / "books", tok, cache);
  EXPECT_EQ(second[0].ids, (std::vector<uint32_t>{7, 8, 9}));
  EXPECT_EQ(second[1].ids, first[1].ids);
  EXPECT_EQ(fs::last_write_time(file_b), mtime_b);

  // The key is the content: a renamed copy hits the same cache file.
  fs::copy_file(dir_ / "books" / "a.txt", dir_ / "renamed.txt");
  EXPECT_EQ(mx::tokenize_corpus(dir_ / "renamed.txt", tok, cache)[0].ids, (std::vector<uint32_t>{7, 8, 9}));

  // A corrupt cache file (size not a multiple of 4) is tokenized again and rewritten.
  put(file_a, std::string("\x01\x02\x03\x04\x05", 5));
  const auto third = mx::tokenize_corpus(dir_ / "books", tok, cache);
  EXPECT_EQ(third[0].ids, first[0].ids);
  EXPECT_EQ(read_ids(file_a), first[0].ids);
  EXPECT_EQ(fs::file_size(file_a), 4 * first[0].ids.size());
}

TEST_F(Corpus, TokenizeJsonlRecords) {
  put(dir_ / "bad.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"also fine\"}\n");
  const auto out = mx::tokenize_corpus(dir_ / "bad.jsonl", neox(), dir_ / "cache");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].name, "bad:1");
  EXPECT_EQ(out[1].ids, neox().encode("also fine"));
}

TEST_F(Corpus, CliTokenizeWritesU32Files) {
  const fs::path src = env_path("MX_SOURCE_DIR");
  const std::string cli = env_path("MX_CLI").string();
  const std::string tokenizer = (src / "assets" / "tokenizers" / "gpt-neox-20b" / "tokenizer.json").string();
  const fs::path books = src / "assets" / "books" / "validation";
  const fs::path out = dir_ / "out";
  const std::string log = (dir_ / "log.txt").string();
  const std::string cmd = "MAMBAEXTEND_CACHE='" + (dir_ / "cache").string() + "' '" + cli + "' tokenize --tokenizer '" +
                          tokenizer + "' --data '" + books.string() + "' --out '" + out.string() + "' > '" + log +
                          "' 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(log);
  EXPECT_NE(slurp(log).find("tokenized 2 documents"), std::string::npos) << slurp(log);
  size_t count = 0;
  for (const auto& entry : fs::directory_iterator(books)) {
    if (entry.path().extension() != ".txt") continue;
    const fs::path u32 = out / (entry.path().stem().string() + ".u32");
    ASSERT_TRUE(fs::exists(u32)) << u32;
    EXPECT_EQ(read_ids(u32), neox().encode(slurp(entry.path()))) << u32;
    ++count;
  }
  EXPECT_EQ(count, 2u);
  for (const auto& entry : fs::directory_iterator(out)) EXPECT_EQ(entry.path().extension(), ".u32") << entry.path();

  // A non-UTF-8 document: exit 1 and one line naming the file; a missing flag: exit 2.
  put(dir_ / "bad" / "x.txt", "abc\xff");
  const std::string bad = "'" + cli + "' tokenize --no-cache --tokenizer '" + tokenizer + "' --data '" +
                          (dir_ / "bad").string() + "' --out '" + (dir_ / "out2").string() + "' > '" + log + "' 2>&1";
  const int rc = std::system(bad.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 1) << slurp(log);
  EXPECT_NE(slurp(log).find("x.txt"), std::string::npos) << slurp(log);
  EXPECT_NE(slurp(log).find("byte offset 3"), std::string::npos) << slurp(log);
  const std::string usage = "'" + cli + "' tokenize --data x > '" + log + "' 2>&1";
  const int rc2 = std::system(usage.c_str());
  EXPECT_TRUE(WIFEXITED(rc2) && WEXITSTATUS(rc2) == 2) << slurp(log);
}
