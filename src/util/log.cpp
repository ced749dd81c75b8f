// mx::log on spdlog: one stderr logger, "[time] [level] message". Compiled in its own target (mx_log) so that
// spdlog sees Debian's fmt, not LibTorch's.
#include "mambaextend/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "mambaextend/error.h"

namespace mx::log {

namespace {
spdlog::logger& logger() {
  static auto lg = [] {
    auto l = spdlog::stderr_color_mt("mambaextend");
    l->set_pattern("[%H:%M:%S] [%^%l%$] %v");
    return l;
  }();
  return *lg;
}
}  // namespace

void set_level(const std::string& level) {
  static const char* names[] = {"trace", "debug", "info", "warn", "error", "off"};
  for (const char* n : names)
    if (level == n) {
      logger().set_level(spdlog::level::from_str(level));
      return;
    }
  throw UsageError("unknown log level '" + level + "' (trace|debug|info|warn|error|off)");
}
bool debug_enabled() { return logger().should_log(spdlog::level::debug); }
void debug(const std::string& msg) { logger().debug("{}", msg); }
void info(const std::string& msg) { logger().info("{}", msg); }
void warn(const std::string& msg) { logger().warn("{}", msg); }
void error(const std::string& msg) { logger().error("{}", msg); }

}  // namespace mx::log
