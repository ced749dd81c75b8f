// apply_config_file (config_file.h).
#include "cli/config_file.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mambaextend/error.h"

namespace mx::cli {

namespace {

using nlohmann::json;

// The text a user would have typed for a scalar value, or "" when `v` is not a scalar.
bool scalar_text(const json& v, std::string& out) {
  if (v.is_string()) out = v.get<std::string>();
  else if (v.is_boolean()) out = v.get<bool>() ? "true" : "false";
  else if (v.is_number()) out = v.dump();
  else return false;
  return true;
}

}  // namespace

void apply_config_file(const std::string& path, const std::map<std::string, CLI::Option*>& flags,
                       const std::string& command) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("--config: cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::exception& e) {
    throw ConfigError("--config " + path + ": invalid JSON: " + e.what());
  }
  if (!j.is_object()) throw ConfigError("--config " + path + ": expected a JSON object of flag names to values");
  for (const auto& [raw_key, v] : j.items()) {
    std::string key = raw_key;
    for (auto& c : key)
      if (c == '_') c = '-';
    const auto flag = flags.find(key);
    if (flag == flags.end() || key == "config")
      throw ConfigError("--config " + path + ": unknown key \"" + raw_key + "\" (keys are the " + command +
                        " flag names)");
    if (flag->second->count() > 0) continue;  // the command line wins
    std::string text;
    if (v.is_array() && !v.empty()) {
      for (const auto& x : v) {
        std::string t;
        if (!scalar_text(x, t) || x.is_boolean())
          throw ConfigError("--config " + path + ": key \"" + raw_key + "\": list elements must be numbers or "
                            "strings, got " + x.dump());
        text += (text.empty() ? "" : ",") + t;
      }
    } else if (!scalar_text(v, text)) {
      throw ConfigError("--config " + path + ": key \"" + raw_key + "\" must be a string, number, boolean or a "
                        "non-empty list, got " + v.dump());
    }
    try {
      flag->second->add_result(text);
      flag->second->run_callback();
    } catch (const CLI::ParseError& e) {
      throw ConfigError("--config " + path + ": key \"" + raw_key + "\": " + e.what());
    }
  }
}

}  // namespace mx::cli
