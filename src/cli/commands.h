// Subcommand registry of the mambaextend CLI. Each cmd_<name>.cpp defines one register_<name>() that adds a
// CLI11 subcommand and sets its callback; main.cpp calls them all. A callback throws mx::Error on failure
// (main prints one line and exits 1; mx::UsageError exits 2).
#pragma once
#include <CLI/CLI.hpp>

namespace mx::cli {

void register_inspect(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_eval_ppl(CLI::App& app);
void register_calibrate(CLI::App& app);
void register_generate(CLI::App& app);
void register_passkey(CLI::App& app);
void register_bench(CLI::App& app);
void register_report(CLI::App& app);

}  // namespace mx::cli
