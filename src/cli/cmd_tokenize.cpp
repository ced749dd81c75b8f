// `mambaextend tokenize --tokenizer FILE --data PATH --out DIR [--threads N] [--no-cache]`: tokenizes every
// document of --data (read_corpus order) and writes DIR/<document name>.u32, the ids as little-endian uint32,
// each file written atomically. Prints one summary line on stdout: documents, tokens, bytes, seconds and MB/s
// of the tokenization pass (reading the files and loading the tokenizer excluded; with the cache on, cached
// documents are read instead of tokenized — --no-cache measures the tokenizer itself).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "data/token_cache.h"
#include "mambaextend/corpus.h"
#include "mambaextend/error.h"
#include "mambaextend/tokenizer.h"

namespace mx::cli {

namespace {

struct TokenizeArgs {
  std::string tokenizer;
  std::string data;
  std::string out;
  int threads = 0;
  bool no_cache = false;
};

void run_tokenize(const TokenizeArgs& args) {
  const Tokenizer tok = Tokenizer::from_file(args.tokenizer);
  const std::vector<Document> docs = read_corpus(args.data);
  const std::filesystem::path out_dir(args.out);
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec || !std::filesystem::is_directory(out_dir)) {
    throw IoError("cannot create output directory " + out_dir.string() + (ec ? ": " + ec.message() : ""));
  }
  data::TokenizeOptions options;
  options.threads = args.threads;
  if (!args.no_cache) options.cache_dir = data::default_cache_dir();
  data::TokenizeStats stats;
  const auto tokenized = data::tokenize_documents(docs, tok, options, &stats);
  int64_t empty = 0;
  for (const auto& td : tokenized) {
    if (td.ids.empty()) ++empty;
    data::write_u32_atomic(out_dir / (td.name + ".u32"), td.ids);
  }
  const double mb = static_cast<double>(stats.bytes) / 1e6;
  std::printf("tokenized %lld documents (%lld empty, %lld from cache), %lld tokens, %.3f MB in %.3f s: %.2f MB/s, "
              "%d threads\n",
              static_cast<long long>(stats.documents), static_cast<long long>(empty),
              static_cast<long long>(stats.cache_hits), static_cast<long long>(stats.tokens), mb,
              stats.encode_seconds, stats.encode_seconds > 0 ? mb / stats.encode_seconds : 0.0, stats.threads);
  std::fflush(stdout);
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Tokenize a corpus and write each document's ids as DIR/<name>.u32");
  cmd->add_option("--tokenizer", args->tokenizer, "Hugging Face tokenizer.json (GPT-NeoX / GPT-2 byte-level BPE)")
      ->required();
  cmd->add_option("--data", args->data, "directory of UTF-8 .txt files, one .txt file, or a .jsonl with \"text\"")
      ->required();
  cmd->add_option("--out", args->out, "output directory (created if missing)")->required();
  cmd->add_option("--threads", args->threads, "worker threads, one document each at a time (0: all cores)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  cmd->add_flag("--no-cache", args->no_cache,
                "tokenize everything, neither reading nor filling the token cache ($MAMBAEXTEND_CACHE)");
  cmd->callback([args] { run_tokenize(*args); });
}

}  // namespace mx::cli
