// utc_now (io.h): the "created" timestamp of the JSON files the tool writes.
#include <ctime>
#include <string>

#include "mambaextend/io.h"

namespace mx {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace mx
