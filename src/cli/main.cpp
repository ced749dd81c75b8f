// mambaextend: calibrate Δ scales of pretrained Mamba / Mamba2 LMs for long context and measure them.
// Exit codes (design.md): 0 success, 2 usage error, 1 any other error, with one line on stderr.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <exception>
#include <string>

#include "cli/commands.h"
#include "mambaextend/error.h"
#include "mambaextend/log.h"

int main(int argc, char** argv) {
  CLI::App app{"mambaextend: training-free long-context calibration of Mamba / Mamba2 (MambaExtend)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(MAMBAEXTEND_VERSION));
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off (logs go to stderr)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  app.parse_complete_callback([&] { mx::log::set_level(log_level); });

  mx::cli::register_inspect(app);
  mx::cli::register_tokenize(app);
  mx::cli::register_bench(app);
  mx::cli::register_eval_ppl(app);
  mx::cli::register_generate(app);
  mx::cli::register_passkey(app);
  mx::cli::register_calibrate(app);
  mx::cli::register_report(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints the help text, or the usage error on stderr
    return rc == 0 ? 0 : 2;
  } catch (const mx::UsageError& e) {
    mx::log::error(e.what());
    return 2;
  } catch (const mx::Interrupted& e) {  // calibrate stopped by SIGINT / SIGTERM with its state saved
    mx::log::warn(e.what());
    return 128 + e.signal;
  } catch (const std::exception& e) {
    mx::log::error(e.what());
    return 1;
  }
  return 0;
}
