// Logging to stderr. spdlog lives behind this header (src/util/log.cpp, built without LibTorch's include
// path: LibTorch ships its own fmt, newer than the one Debian's spdlog is built against). Format messages
// with fmt::format (header-only, from LibTorch) and pass the string.
#pragma once
#include <string>

namespace mx::log {

// "trace" | "debug" | "info" | "warn" | "error" | "off"; throws UsageError for anything else.
void set_level(const std::string& level);
bool debug_enabled();
void debug(const std::string& msg);
void info(const std::string& msg);
void warn(const std::string& msg);
void error(const std::string& msg);

}  // namespace mx::log
