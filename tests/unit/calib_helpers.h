// Shared inputs of the calibration tests: the bundled organisms, tokenizer and train books (assets/), and a
// token cache kept in the system temporary directory so the books are tokenized once across test runs.
#pragma once
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "mambaextend/corpus.h"
#include "mambaextend/tokenizer.h"
#include "unit/fixtures.h"

namespace mx::test {

// The calibration tests run small models on short windows: intra-op threads cost more in barriers than they
// gain there (measured 20x slower with 2 threads on a loaded 2-core machine), so they run on one thread, and
// the CLI processes they start inherit OMP_NUM_THREADS=1.
class OneThread {
 public:
  OneThread() : saved_(at::get_num_threads()) {
    at::set_num_threads(1);
    setenv("OMP_NUM_THREADS", "1", 1);
  }
  ~OneThread() { at::set_num_threads(saved_); }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;

 private:
  int saved_;
};

inline std::filesystem::path organism_dir(const std::string& arch) {
  return source_dir() / "assets/models" / ("organism-" + arch + "-7m");
}

inline std::filesystem::path tokenizer_path() { return source_dir() / "assets/tokenizers/gpt-neox-20b/tokenizer.json"; }

inline std::filesystem::path calib_cache_dir() {
  return std::filesystem::temp_directory_path() / "mx_calib_test_cache";
}

// assets/books/<split>, tokenized once per process.
inline const std::vector<TokenizedDocument>& book_docs(const std::string& split) {
  static std::map<std::string, std::vector<TokenizedDocument>> cache;
  auto it = cache.find(split);
  if (it == cache.end()) {
    const auto tok = Tokenizer::from_file(tokenizer_path());
    it = cache.emplace(split, tokenize_corpus(source_dir() / "assets/books" / split, tok, calib_cache_dir())).first;
  }
  return it->second;
}

inline const std::vector<TokenizedDocument>& train_docs() { return book_docs("train"); }

// The organism × granularity cases of the scale-gradient tests (CPU vs finite differences, GPU vs CPU).
struct GradCase {
  std::string arch;
  bool channel;
};
inline void PrintTo(const GradCase& c, std::ostream* os) { *os << c.arch << (c.channel ? "/channel" : "/layer"); }
inline auto grad_cases() {
  return ::testing::Values(GradCase{"mamba1", false}, GradCase{"mamba1", true}, GradCase{"mamba2", false},
                           GradCase{"mamba2", true});
}
inline std::string grad_case_name(const ::testing::TestParamInfo<GradCase>& info) {
  return info.param.arch + (info.param.channel ? "_channel" : "_layer");
}

}  // namespace mx::test
