// Error types of the mambaextend library. Every failure is an exception whose message names what is wrong
// and where (file, tensor, field, value); only the CLI's main() catches, prints one line and exits 1
// (2 for UsageError).
#pragma once
#include <stdexcept>
#include <string>

namespace mx {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct UsageError : Error { using Error::Error; };       // bad flag combination or value: exit 2
struct ConfigError : Error { using Error::Error; };      // config.json / --config / factors fields
struct CheckpointError : Error { using Error::Error; };  // weights files: format, tensor names, shapes
struct ShapeError : Error { using Error::Error; };       // tensor shapes at an op boundary
struct DataError : Error { using Error::Error; };        // corpora, tokenizer input, documents
struct IoError : Error { using Error::Error; };          // open / read / write / rename failures
struct CudaError : Error { using Error::Error; };        // CUDA runtime failures
// A run stopped by SIGINT / SIGTERM after saving its state: the CLI exits 128 + signal (130 / 143).
struct Interrupted : Error {
  Interrupted(int sig, const std::string& what) : Error(what), signal(sig) {}
  int signal;
};

}  // namespace mx
