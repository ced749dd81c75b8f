// Corpus readers for --data (include/mambaextend/corpus.h):
//   a directory: every regular *.txt file in it (not recursive; names starting with '.' are skipped), one
//                document each, in byte order of the file name (std::string comparison, "10.txt" < "9.txt");
//   a .txt file: one document;
//   a .jsonl file: one document per record, in file order; blank lines are skipped; each record is a JSON
//                object with a string field "text"; the name is "<file stem>:<record index from 0>".
// Text must be UTF-8 (a BOM is kept as U+FEFF, as Python's utf-8 codec keeps it); CRLF is kept. Empty
// documents are kept: callers count and skip them. Errors name the file and the byte offset or line.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "data/token_cache.h"
#include "mambaextend/corpus.h"
#include "mambaextend/error.h"
#include "tokenizer/tokenizer_impl.h"

namespace mx {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError("cannot read " + path.string());
  return ss.str();
}

// DataError naming the file, the byte offset, the offending byte and the line, when `text` is not UTF-8.
void check_utf8(const fs::path& path, const std::string& text) {
  const size_t bad = tok::find_invalid_utf8(text);
  if (bad == std::string::npos) return;
  const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(bad), '\n');
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(text[bad]));
  throw DataError("file " + path.string() + " is not valid UTF-8: byte " + hex + " at byte offset " +
                  std::to_string(bad) + " (line " + std::to_string(line) + ")");
}

Document read_txt(const fs::path& path) {
  Document doc{path.stem().string(), read_file(path)};
  check_utf8(path, doc.text);
  return doc;
}

}  // namespace

std::vector<Document> parse_jsonl(const std::string& bytes, const fs::path& path) {
  check_utf8(path, bytes);
  std::vector<Document> docs;
  const std::string stem = path.stem().string();
  size_t pos = 0, line_no = 0;
  while (pos < bytes.size()) {
    size_t eol = bytes.find('\n', pos);
    if (eol == std::string::npos) eol = bytes.size();
    std::string_view line(bytes.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r\f\v") == std::string_view::npos) continue;
    const std::string where = "file " + path.string() + " line " + std::to_string(line_no);
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw DataError(where + ": invalid JSON: " + e.what());
    }
    if (!record.is_object()) throw DataError(where + ": record is not a JSON object");
    const auto it = record.find("text");
    if (it == record.end()) throw DataError(where + ": record has no \"text\" field");
    if (!it->is_string()) throw DataError(where + ": field \"text\" is " + it->type_name() + ", expected a string");
    docs.push_back(Document{stem + ":" + std::to_string(docs.size()), it->get<std::string>()});
  }
  if (docs.empty()) throw DataError("file " + path.string() + " contains no records");
  return docs;
}

std::vector<Document> read_corpus(const fs::path& data) {
  std::error_code ec;
  const fs::file_status st = fs::status(data, ec);
  if (!fs::exists(st)) throw IoError("data path " + data.string() + " does not exist");
  if (fs::is_directory(st)) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(data, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.empty() || name[0] == '.' || entry.path().extension() != ".txt") continue;
      if (fs::is_regular_file(entry.status())) files.push_back(entry.path());
    }
    if (ec) throw IoError("cannot list directory " + data.string() + ": " + ec.message());
    if (files.empty()) throw DataError("data directory " + data.string() + " contains no .txt files");
    std::sort(files.begin(), files.end(),
              [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
    std::vector<Document> docs;
    docs.reserve(files.size());
    for (const auto& f : files) docs.push_back(read_txt(f));
    return docs;
  }
  if (data.extension() == ".txt") return {read_txt(data)};
  if (data.extension() == ".jsonl") return parse_jsonl(read_file(data), data);
  throw DataError("data path " + data.string() + " is neither a directory of .txt files, a .txt file nor a .jsonl file");
}

std::string corpus_sha256(const fs::path& data, const std::vector<Document>& docs) {
  if (!fs::is_directory(data)) return sha256_hex(read_file(data));
  std::string lines;
  for (const auto& d : docs) lines += sha256_hex(d.text) + "  " + d.name + ".txt\n";
  return sha256_hex(lines);
}

std::vector<TokenizedDocument> tokenize_corpus(const std::vector<Document>& docs, const Tokenizer& tok,
                                               const fs::path& cache_dir) {
  data::TokenizeOptions options;
  options.cache_dir = cache_dir.empty() ? data::default_cache_dir() : cache_dir;
  return data::tokenize_documents(docs, tok, options);
}

std::vector<TokenizedDocument> tokenize_corpus(const fs::path& data, const Tokenizer& tok, const fs::path& cache_dir) {
  return tokenize_corpus(read_corpus(data), tok, cache_dir);
}

}  // namespace mx
