// Private helpers of the corpus readers, shared with `mambaextend tokenize`: .u32 token files (little-endian
// uint32 ids) written atomically, the on-disk token cache, and parallel tokenization of many documents.
#pragma once
#include <cstdint>
#include <filesystem>
#include <vector>

#include "mambaextend/corpus.h"
#include "mambaextend/tokenizer.h"

namespace mx::data {

// Writes `ids` as little-endian uint32 to `path` through mx::write_file_atomic (temporary file beside it, fsync,
// rename), so readers see the old file or the whole new one, never a part. Throws IoError naming the file.
void write_u32_atomic(const std::filesystem::path& path, const std::vector<uint32_t>& ids);

// Reads a .u32 file into `ids`. False when the file is missing or its size is not a multiple of 4 (corrupt).
bool read_u32(const std::filesystem::path& path, std::vector<uint32_t>& ids);

// $MAMBAEXTEND_CACHE, else $XDG_CACHE_HOME/mambaextend, else $HOME/.cache/mambaextend (IoError if none is set).
std::filesystem::path default_cache_dir();

// Cache file of one document: <cache_dir>/tokens/<tokenizer sha256[:16]>/<sha256(text)>.u32.
std::filesystem::path cache_path(const std::filesystem::path& cache_dir, const std::string& tokenizer_sha256,
                                 const std::string& text);

struct TokenizeOptions {
  std::filesystem::path cache_dir;  // where the token cache lives; empty: no cache (always tokenize)
  int threads = 0;                  // worker threads; 0: all hardware threads
};

struct TokenizeStats {
  int64_t documents = 0;
  int64_t bytes = 0;           // UTF-8 bytes of all documents
  int64_t tokens = 0;
  int64_t cache_hits = 0;      // documents read from the cache
  double encode_seconds = 0;   // wall time of the whole parallel pass (cache reads included)
  int threads = 0;             // worker threads used
};

// Tokenizes every document, in parallel over documents (largest first), reading and filling the cache when
// options.cache_dir is set. The result is in the order of `docs`. Rethrows the first worker error.
std::vector<TokenizedDocument> tokenize_documents(const std::vector<Document>& docs, const Tokenizer& tok,
                                                  const TokenizeOptions& options, TokenizeStats* stats = nullptr);

}  // namespace mx::data
