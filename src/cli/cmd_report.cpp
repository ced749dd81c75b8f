// `mambaextend report --runs DIR [--out DIR]`: gathers the eval-ppl and passkey reports under DIR (the layout
// of scripts/sweep.sh, or any tree of such JSON files; src/report/run_results.h says how each is labelled) into
// markdown tables (vanilla against each method, per model and length) and figures: perplexity against context
// length on log axes, one line per method and one panel per model (ppl_<protocol>.svg/.png), and a passkey
// heatmap per model when passkey reports exist (passkey_<model>.svg/.png). PNG needs a build with cairo;
// without it the figures are SVG only and the command says so in one line. Output: the tables on stdout and in
// OUT/report.md, the figures in OUT (default: DIR/report), every file written atomically.
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>
#include <string>

#include "cli/commands.h"
#include "mambaextend/error.h"
#include "mambaextend/io.h"
#include "mambaextend/log.h"
#include "report/figures.h"
#include "report/run_results.h"

namespace mx::cli {

namespace {

namespace fs = std::filesystem;

struct ReportArgs {
  std::string runs, out;
  double png_scale = 2.0;
};

// A model name as a file-name part: letters, digits, '-', '_' and '.', the rest '_'.
std::string file_part(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  return out.empty() ? "model" : out;
}

void run_report(const ReportArgs& a) {
  if (a.runs.empty()) throw UsageError("report: --runs DIR is required");
  if (!(a.png_scale > 0 && a.png_scale <= 8)) throw UsageError("report: --png-scale must be in (0, 8]");
  const fs::path out = a.out.empty() ? fs::path(a.runs) / "report" : fs::path(a.out);
  const report::Runs runs = report::gather_runs(a.runs);
  if (runs.ppl.empty() && runs.passkey.empty())
    throw DataError("report: no eval-ppl or passkey reports (JSON with \"format\" mambaextend.eval-ppl/v1 or "
                    "mambaextend.passkey/v1) under " + a.runs);
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw IoError("report: cannot create --out " + out.string() + ": " + ec.message());
  log::info("report: " + std::to_string(runs.files) + " reports, " + std::to_string(runs.ppl.size()) +
            " perplexity rows, " + std::to_string(runs.passkey.size()) + " passkey cells under " + a.runs);

  std::string md = "# mambaextend report\n\nRuns: `" + a.runs + "` (" + std::to_string(runs.files) + " reports).\n\n";
  const std::string ppl_md = report::ppl_table_markdown(runs), pk_md = report::passkey_table_markdown(runs);
  md += ppl_md + pk_md;
  std::vector<fs::path> written;
  std::set<std::string> protocols, models;
  for (const auto& r : runs.ppl) protocols.insert(r.protocol);
  for (const auto& r : runs.passkey) models.insert(r.model);
  for (const auto& p : protocols) {
    const auto fig = report::ppl_figure(runs, p, "Perplexity against context length");
    for (const auto& f : report::write_figure(fig, out / ("ppl_" + file_part(p)), a.png_scale)) written.push_back(f);
  }
  for (const auto& m : models) {
    const auto fig = report::passkey_figure(runs, m);
    for (const auto& f : report::write_figure(fig, out / ("passkey_" + file_part(m)), a.png_scale)) written.push_back(f);
  }
  md += "Figures:";
  for (const auto& f : written) md += " `" + f.filename().string() + "`";
  md += "\n";
  write_file_atomic(out / "report.md", md);
  std::cout << ppl_md << pk_md << std::flush;
  if (!report::png_supported())
    log::warn("report: this build has no cairo (libcairo2-dev), so the figures are SVG only, no PNG");
  for (const auto& f : written) log::info("wrote " + f.string());
  log::info("wrote " + (out / "report.md").string());
}

}  // namespace

void register_report(CLI::App& app) {
  auto a = std::make_shared<ReportArgs>();
  CLI::App* cmd = app.add_subcommand("report", "Tables and figures (SVG, PNG) from a directory of eval-ppl / passkey results");
  cmd->add_option("--runs", a->runs, "results directory (scripts/sweep.sh --out, or any tree of eval-ppl/passkey JSON)")
      ->required();
  cmd->add_option("--out", a->out, "output directory (default: RUNS/report)");
  cmd->add_option("--png-scale", a->png_scale, "pixels per SVG unit of the PNG files")->capture_default_str();
  cmd->callback([a] { run_report(*a); });
}

}  // namespace mx::cli
