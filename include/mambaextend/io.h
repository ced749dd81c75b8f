// File output that never leaves a half-written file: write to a temporary file in the target's directory,
// fsync it, rename it over the target, fsync the directory. Throws IoError naming the path and the cause
// (including a full disk).
#pragma once
#include <filesystem>
#include <string>

namespace mx {

void write_file_atomic(const std::filesystem::path& path, const std::string& bytes);

}  // namespace mx
