// A temporary directory for a test, removed with everything in it when the object goes out of scope.
// It does not call std::filesystem::remove_all: LibTorch (2.11 wheel) exports its own copy of the
// std::filesystem functions, and its remove_all jumps through a null pointer when the test binary links
// LibTorch. Removal here walks the tree with directory_iterator and remove, which are safe.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace mx::test {

inline void remove_tree(const std::filesystem::path& p) {
  std::error_code ec;
  const auto st = std::filesystem::symlink_status(p, ec);
  if (ec || !std::filesystem::exists(st)) return;
  if (std::filesystem::is_directory(st)) {
    for (const auto& entry : std::filesystem::directory_iterator(p, ec)) remove_tree(entry.path());
  }
  std::filesystem::remove(p, ec);
}

class TempDir {
 public:
  explicit TempDir(const std::string& tag)
      : path_(std::filesystem::temp_directory_path() / ("mx_" + tag + "_" + std::to_string(::getpid()))) {
    remove_tree(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { remove_tree(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace mx::test
