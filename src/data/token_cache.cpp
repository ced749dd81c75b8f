// On-disk token cache and parallel tokenization (see token_cache.h).
// Cache layout: <cache>/tokens/<tokenizer sha256[:16]>/<sha256(document bytes)>.u32, little-endian uint32 ids.
// The key is the content, not the file name, so renamed or copied books hit the cache and an edited book
// misses it. Files are written atomically (temporary file + fsync + rename); a file whose size is not a
// multiple of 4 is treated as corrupt and re-tokenized. Workers are std::threads pulling documents, largest
// first, from an atomic counter; the Tokenizer is shared (encode is const and thread-safe).
#include "data/token_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>

#include "mambaextend/error.h"
#include "mambaextend/io.h"

namespace mx::data {
namespace {

bool host_is_little_endian() {
  const uint32_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

uint32_t byte_swap(uint32_t v) {
  return (v >> 24) | ((v >> 8) & 0xFF00u) | ((v << 8) & 0xFF0000u) | (v << 24);
}

}  // namespace

void write_u32_atomic(const std::filesystem::path& path, const std::vector<uint32_t>& ids) {
  std::string bytes(ids.size() * sizeof(uint32_t), '\0');
  if (host_is_little_endian()) {
    if (!ids.empty()) std::memcpy(bytes.data(), ids.data(), bytes.size());  // (no ids: data() may be null)
  } else {
    for (size_t i = 0; i < ids.size(); ++i) {
      const uint32_t v = byte_swap(ids[i]);
      std::memcpy(bytes.data() + 4 * i, &v, 4);
    }
  }
  write_file_atomic(path, bytes);
}

bool read_u32(const std::filesystem::path& path, std::vector<uint32_t>& ids) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::vector<uint32_t> out;
  std::string bytes;
  char buf[1 << 16];
  bool ok = true;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ok = false;
    if (n <= 0) break;
    bytes.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (!ok || bytes.size() % 4 != 0) return false;
  ids.resize(bytes.size() / 4);
  if (!bytes.empty()) std::memcpy(ids.data(), bytes.data(), bytes.size());  // (an empty document: data() may be null)
  if (!host_is_little_endian()) std::transform(ids.begin(), ids.end(), ids.begin(), byte_swap);
  return true;
}

std::filesystem::path default_cache_dir() {
  const auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
  };
  if (!env("MAMBAEXTEND_CACHE").empty()) return env("MAMBAEXTEND_CACHE");
  if (!env("XDG_CACHE_HOME").empty()) return std::filesystem::path(env("XDG_CACHE_HOME")) / "mambaextend";
  if (!env("HOME").empty()) return std::filesystem::path(env("HOME")) / ".cache" / "mambaextend";
  throw IoError("no token cache directory: set MAMBAEXTEND_CACHE (or XDG_CACHE_HOME or HOME)");
}

std::filesystem::path cache_path(const std::filesystem::path& cache_dir, const std::string& tokenizer_sha256,
                                 const std::string& text) {
  return cache_dir / "tokens" / tokenizer_sha256.substr(0, 16) / (sha256_hex(text) + ".u32");
}

std::vector<TokenizedDocument> tokenize_documents(const std::vector<Document>& docs, const Tokenizer& tok,
                                                  const TokenizeOptions& options, TokenizeStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<TokenizedDocument> out(docs.size());
  if (!options.cache_dir.empty()) {
    const auto dir = options.cache_dir / "tokens" / tok.sha256().substr(0, 16);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw IoError("cannot create token cache directory " + dir.string() + ": " + ec.message() +
                          " (set MAMBAEXTEND_CACHE to a writable directory)");
  }
  std::vector<size_t> order(docs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return docs[a].text.size() > docs[b].text.size(); });

  std::atomic<size_t> next{0};
  std::atomic<int64_t> hits{0};
  std::atomic<bool> stop{false};
  std::exception_ptr first_error;
  std::mutex error_mutex;
  auto worker = [&] {
    for (;;) {
      const size_t k = next.fetch_add(1);
      if (k >= order.size() || stop.load()) return;
      const Document& doc = docs[order[k]];
      TokenizedDocument& td = out[order[k]];
      td.name = doc.name;
      try {
        if (options.cache_dir.empty()) {
          td.ids = tok.encode(doc.text);
          continue;
        }
        const auto file = cache_path(options.cache_dir, tok.sha256(), doc.text);
        if (read_u32(file, td.ids)) {
          hits.fetch_add(1);
          continue;
        }
        td.ids = tok.encode(doc.text);
        write_u32_atomic(file, td.ids);
      } catch (const DataError& e) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!first_error) first_error = std::make_exception_ptr(DataError("document " + doc.name + ": " + e.what()));
        stop.store(true);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
        stop.store(true);
      }
    }
  };
  int threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::max(1, std::min<int>(threads, static_cast<int>(docs.size())));
  if (threads == 1) {
    worker();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int i = 0; i < threads; ++i) pool.emplace_back(worker);
    for (auto& t : pool) t.join();
  }
  if (first_error) std::rethrow_exception(first_error);
  if (stats != nullptr) {
    stats->documents = static_cast<int64_t>(docs.size());
    stats->bytes = stats->tokens = 0;
    for (size_t i = 0; i < docs.size(); ++i) {
      stats->bytes += static_cast<int64_t>(docs[i].text.size());
      stats->tokens += static_cast<int64_t>(out[i].ids.size());
    }
    stats->cache_hits = hits.load();
    stats->threads = threads;
    stats->encode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return out;
}

}  // namespace mx::data
