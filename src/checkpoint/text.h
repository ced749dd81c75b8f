// Safe text for error messages built from file contents (private to config.cpp and src/checkpoint/).
//   printable(s)      s with control bytes shown as \xNN and cut to 200 bytes, so that a message stays one line
//   has_control(s)    whether s holds a control byte (tensor names with one are rejected by the readers)
//   brief_json(j)     j.dump() limited to 4 levels and ~200 bytes; nlohmann's dump() recurses once per level,
//                     so dumping a hostile, deeply nested value in full could overflow the stack
#pragma once
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace mx::text {

inline bool has_control(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

inline std::string printable(const std::string& s, size_t max_len = 200) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max_len) return out + "...";
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

namespace detail {
inline void brief(const nlohmann::json& j, int depth, std::string& out) {
  if (out.size() > 200) return;
  if (j.is_array() || j.is_object()) {
    if (depth >= 4) {
      out += j.is_array() ? "[...]" : "{...}";
      return;
    }
    out += j.is_array() ? "[" : "{";
    size_t i = 0;
    for (auto it = j.begin(); it != j.end(); ++it, ++i) {
      if (i) out += ", ";
      if (i >= 8 || out.size() > 200) {
        out += "...";
        break;
      }
      if (j.is_object()) out += "\"" + printable(it.key(), 40) + "\": ";
      brief(*it, depth + 1, out);
    }
    out += j.is_array() ? "]" : "}";
    return;
  }
  out += j.is_string() ? "\"" + printable(j.get<std::string>(), 60) + "\"" : j.dump();
}
}  // namespace detail

inline std::string brief_json(const nlohmann::json& j) {
  std::string out;
  detail::brief(j, 0, out);
  return out;
}

}  // namespace mx::text
