// --config FILE for a subcommand: a JSON object whose keys are the subcommand's flag names ("segment-len" or
// "segment_len") and whose values are strings, numbers, booleans, or arrays of numbers / strings (a list flag:
// joined with commas, e.g. "lengths": [1024, 2048]). Each key is fed to its CLI11 option as if it had been
// typed, so the option's own checks apply; a flag given on the command line wins over the file. An unknown key,
// a value of another type or one the option refuses is a ConfigError naming the file and the key.
#pragma once
#include <CLI/CLI.hpp>
#include <map>
#include <string>

namespace mx::cli {

void apply_config_file(const std::string& path, const std::map<std::string, CLI::Option*>& flags,
                       const std::string& command);

}  // namespace mx::cli
