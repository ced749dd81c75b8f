// Gathering a results directory (scripts/sweep.sh's layout, or any tree of eval-ppl / passkey JSON reports)
// into rows, and the markdown tables of `mambaextend report`. Torch-free (nlohmann-json only).
//
// What counts: every *.json file under the directory (hidden files and "*.state.json" excepted) whose "format"
// is "mambaextend.eval-ppl/v1" (one row per entry of "results") or "mambaextend.passkey/v1" (one row per
// entry of "cells"). Each row is labelled with
//   model   "model" of a cell.json in the same directory (sweep.sh writes it), else the last path component of
//           the report's model directory;
//   method  "method" of that cell.json, else "vanilla" when the report has no factors file, else the "method"
//           of the factors file it names (read when it exists), else "calibrated".
// Two rows with the same (model, method, protocol, length[, depth]) from different files are an error naming
// both files, as is a *.json file that is not valid JSON.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mx::report {

struct PplRow {
  std::string model, method, protocol;
  int64_t length = 0;
  std::optional<double> ppl, ppl_se;  // empty when no document reached the length
  int64_t windows = 0;
  std::string source;  // the JSON file, relative to the runs directory
  std::string data;    // the evaluation data's path as eval-ppl recorded it ("" when absent)
};

struct PasskeyRow {
  std::string model, method;
  int64_t length = 0;
  double depth = 0;
  int64_t samples = 0;
  double published = 0, strict = 0;  // success rates in [0, 1]
  std::string source;
};

struct Runs {
  std::vector<PplRow> ppl;          // sorted: model, protocol, method (vanilla first), length
  std::vector<PasskeyRow> passkey;  // sorted: model, method (vanilla first), length, depth
  int64_t files = 0;                // reports read
};

// Throws IoError when `dir` is not a directory, DataError / ConfigError for a malformed or duplicate report.
Runs gather_runs(const std::filesystem::path& dir);

// Methods in display order: "vanilla" first, the others alphabetically.
std::vector<std::string> ordered_methods(const std::vector<std::string>& methods);

// Markdown: one table per protocol; a row per (model, length); a column per method with "ppl ± se", and for
// every method other than vanilla a column with its change against vanilla in %. Missing cells are "—".
std::string ppl_table_markdown(const Runs& runs);
// Markdown: a row per (model, method); a column per length with the published-rule success over the depths
// (in %, and k/n), and the overall rate. Empty string when there are no passkey rows.
std::string passkey_table_markdown(const Runs& runs);

}  // namespace mx::report
