// File output that never leaves a half-written file: write to a temporary file in the target's directory,
// fsync it, rename it over the target, fsync the directory. Throws IoError naming the path and the cause
// (including a full disk).
#pragma once
#include <filesystem>
#include <string>

namespace mx {

void write_file_atomic(const std::filesystem::path& path, const std::string& bytes);

// The current time as ISO 8601 UTC ("2026-11-24T19:30:00Z"): the "created" field of the JSON files written.
std::string utc_now();

}  // namespace mx
