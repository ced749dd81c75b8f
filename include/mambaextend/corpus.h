// Corpus readers for --data: a directory of UTF-8 .txt files (one document each, PG-19 layout), one .txt
// file, or a .jsonl file with a "text" field per record. Document order is stable: a directory's files
// sorted by name in byte order (not recursive); a jsonl file's records in file order.
// Tokenized documents are cached on disk, keyed by the document's content hash and the tokenizer's hash.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "mambaextend/tokenizer.h"

namespace mx {

struct Document {
  std::string name;  // file stem, or "<jsonl stem>:<record index>"
  std::string text;
};

// Reads every document (throws DataError / IoError: missing path, empty directory, bad UTF-8, bad jsonl).
std::vector<Document> read_corpus(const std::filesystem::path& data);
// The records of a .jsonl file from its bytes; `path` names the file (document names and messages).
std::vector<Document> parse_jsonl(const std::string& bytes, const std::filesystem::path& path);

struct TokenizedDocument {
  std::string name;
  std::vector<uint32_t> ids;
};

// Tokenizes a corpus through the on-disk cache at `cache_dir` (default: $MAMBAEXTEND_CACHE, else
// $XDG_CACHE_HOME/mambaextend, else ~/.cache/mambaextend). A second call does not tokenize again.
std::vector<TokenizedDocument> tokenize_corpus(const std::filesystem::path& data, const Tokenizer& tok,
                                               const std::filesystem::path& cache_dir = {});
// The same for documents already read with read_corpus (callers that also need the texts read them once).
std::vector<TokenizedDocument> tokenize_corpus(const std::vector<Document>& docs, const Tokenizer& tok,
                                               const std::filesystem::path& cache_dir = {});

// SHA-256 of a byte string, lowercase hex.
std::string sha256_hex(const std::string& bytes);

// Fingerprint of a corpus, recorded in factors files as calibration_data.sha256 and compared by eval-ppl:
// a file's own sha256, or for a directory the sha256 of the lines "<sha256 of file>  <file name>\n" in byte
// order of the names (LC_ALL=C sha256sum *.txt | sha256sum). `docs` is read_corpus(data).
std::string corpus_sha256(const std::filesystem::path& data, const std::vector<Document>& docs);

}  // namespace mx
