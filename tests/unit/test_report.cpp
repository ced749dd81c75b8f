// `mambaextend report` (src/report/): gathering a results tree into rows, the markdown tables, the log ticks and
// the figure files. The reports here are written the way eval-ppl / passkey write them (the fields the report
// reads); tests/scripts/test_sweep.sh runs the real commands and the report end to end.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "mambaextend/error.h"
#include "report/figures.h"
#include "report/run_results.h"
#include "unit/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using mx::report::Runs;

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

json ppl_report(const std::string& model_dir, const json& factors, const std::string& protocol, const json& results) {
  return {{"format", "mambaextend.eval-ppl/v1"}, {"model", {{"dir", model_dir}}}, {"factors", factors},
          {"protocol", protocol}, {"data", {{"path", "books/test"}}}, {"results", results}};
}

json ppl_result(int64_t L, json ppl, json se) {
  return {{"length", L}, {"ppl", ppl}, {"ppl_se", se}, {"windows", 4}};
}

// A sweep-like tree: vanilla and zo at 1024 and 4096 for model "m1" (cell.json labels), and a loose report for
// "m2" labelled from its own fields (no factors: vanilla; a factors file: that file's method).
void make_tree(const fs::path& root) {
  auto cell = [&](const std::string& m, int64_t L, const std::string& method, double ppl, double se) {
    const fs::path d = root / m / ("L" + std::to_string(L)) / method;
    write(d / "cell.json", json{{"model", m}, {"method", method}, {"length", L}}.dump());
    write(d / "ppl.json", ppl_report("assets/models/" + m, method == "vanilla" ? json(nullptr) : json{{"path", "f.json"}},
                                     "pg19", json::array({ppl_result(L, ppl, se)})).dump());
    write(d / "factors.json.state.json", "{ not json: the report must not read state files");
  };
  cell("m1", 1024, "vanilla", 20.0, 1.0);
  cell("m1", 1024, "zo", 18.0, 0.9);
  cell("m1", 4096, "vanilla", 400.0, 30.0);
  cell("m1", 4096, "zo", 25.0, 2.0);
  write(root / "loose" / "bp_factors.json", json{{"format", "mambaextend.factors/v1"}, {"method", "bp"}}.dump());
  write(root / "loose" / "van.json", ppl_report("/models/m2/", nullptr, "pg19",
                                                json::array({ppl_result(1024, 30.0, 2.0), ppl_result(65536, nullptr, nullptr)}))
                                         .dump());
  write(root / "loose" / "cal.json", ppl_report("/models/m2", {{"path", (root / "loose" / "bp_factors.json").string()}},
                                                "pg19", json::array({ppl_result(1024, 15.0, 1.0)}))
                                         .dump());
  write(root / "loose" / ".van.json.tmp.123.1", "{half-written");
  write(root / "other.json", json{{"format", "something-else"}}.dump());
}

TEST(Report, GathersRowsAndLabels) {
  mx::test::TempDir t("report_gather");
  make_tree(t.path());
  const Runs runs = mx::report::gather_runs(t.path());
  EXPECT_EQ(runs.files, 6);
  ASSERT_EQ(runs.ppl.size(), 7u);
  // Sorted by model, protocol, method (vanilla first), length.
  const auto& r0 = runs.ppl[0];
  EXPECT_EQ(r0.model, "m1");
  EXPECT_EQ(r0.method, "vanilla");
  EXPECT_EQ(r0.length, 1024);
  EXPECT_DOUBLE_EQ(*r0.ppl, 20.0);
  EXPECT_DOUBLE_EQ(*r0.ppl_se, 1.0);
  EXPECT_EQ(r0.source, "m1/L1024/vanilla/ppl.json");
  EXPECT_EQ(r0.data, "books/test");
  EXPECT_EQ(runs.ppl[1].length, 4096);
  EXPECT_EQ(runs.ppl[2].method, "zo");
  // m2: model from the directory's last component (trailing slash too), method from the factors file.
  EXPECT_EQ(runs.ppl[4].model, "m2");
  EXPECT_EQ(runs.ppl[4].method, "vanilla");
  EXPECT_FALSE(runs.ppl[5].ppl.has_value());  // L = 65536 reached by no document
  EXPECT_EQ(runs.ppl[6].method, "bp");
  EXPECT_DOUBLE_EQ(*runs.ppl[6].ppl, 15.0);
}

TEST(Report, FactorsFileThatCannotBeReadIsLabelledCalibrated) {
  mx::test::TempDir t("report_label");
  write(t.path() / "a.json", ppl_report("m", {{"path", "/nonexistent/factors.json"}}, "proofpile",
                                        json::array({ppl_result(2048, 7.0, 0.1)})).dump());
  const Runs runs = mx::report::gather_runs(t.path());
  ASSERT_EQ(runs.ppl.size(), 1u);
  EXPECT_EQ(runs.ppl[0].method, "calibrated");
  EXPECT_EQ(runs.ppl[0].protocol, "proofpile");
}

TEST(Report, DuplicateInvalidAndMissingAreErrorsNamingTheFiles) {
  {
    mx::test::TempDir t("report_dup");
    const auto rep = ppl_report("x/m", nullptr, "pg19", json::array({ppl_result(512, 9.0, 1.0)})).dump();
    write(t.path() / "a" / "one.json", rep);
    write(t.path() / "b" / "two.json", rep);
    try {
      mx::report::gather_runs(t.path());
      FAIL() << "duplicate rows accepted";
    } catch (const mx::DataError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("a/one.json"), std::string::npos) << msg;
      EXPECT_NE(msg.find("b/two.json"), std::string::npos) << msg;
      EXPECT_NE(msg.find("L = 512"), std::string::npos) << msg;
    }
  }
  {
    mx::test::TempDir t("report_bad");
    write(t.path() / "broken.json", "{\"format\": ");
    try {
      mx::report::gather_runs(t.path());
      FAIL() << "invalid JSON accepted";
    } catch (const mx::DataError& e) {
      EXPECT_NE(std::string(e.what()).find("broken.json"), std::string::npos) << e.what();
    }
  }
  {
    mx::test::TempDir t("report_field");
    write(t.path() / "nolen.json", ppl_report("m", nullptr, "pg19", json::array({{{"ppl", 3.0}}})).dump());
    try {
      mx::report::gather_runs(t.path());
      FAIL() << "a result without length accepted";
    } catch (const mx::DataError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("nolen.json"), std::string::npos) << msg;
      EXPECT_NE(msg.find("\"length\""), std::string::npos) << msg;
    }
  }
  EXPECT_THROW(mx::report::gather_runs("/nonexistent/runs"), mx::IoError);
}

TEST(Report, PplTableVanillaAgainstEachMethod) {
  mx::test::TempDir t("report_table");
  make_tree(t.path());
  const std::string md = mx::report::ppl_table_markdown(mx::report::gather_runs(t.path()));
  EXPECT_NE(md.find("| model | length | vanilla | bp | bp vs vanilla | zo | zo vs vanilla |\n|---|---:|---:|---:|---:|---:|---:|\n"),
            std::string::npos) << md;
  // 18 / 20 − 1 = −10%, 25 / 400 − 1 = −93.75%, 15 / 30 − 1 = −50%.
  EXPECT_NE(md.find("| m1 | 1024 | 20.00 ± 1.00 | — | — | 18.00 ± 0.90 | -10.0% |\n"), std::string::npos) << md;
  EXPECT_NE(md.find("| m1 | 4096 | 400.0 ± 30.00 | — | — | 25.00 ± 2.00 | -93.8% |\n"), std::string::npos) << md;
  EXPECT_NE(md.find("| m2 | 1024 | 30.00 ± 2.00 | 15.00 ± 1.00 | -50.0% | — | — |\n"), std::string::npos) << md;
  EXPECT_NE(md.find("| m2 | 65536 | n/a | — | — | — | — |\n"), std::string::npos) << md;
}

TEST(Report, OneTablePerProtocol) {
  Runs runs;
  runs.ppl.push_back({"m", "vanilla", "pg19", 1024, 10.0, 1.0, 1, "a", "books"});
  runs.ppl.push_back({"m", "vanilla", "proofpile", 1024, 5.0, std::nullopt, 1, "b", "pile.jsonl"});
  const std::string md = mx::report::ppl_table_markdown(runs);
  EXPECT_NE(md.find("protocol `pg19`"), std::string::npos);
  EXPECT_NE(md.find("protocol `proofpile`"), std::string::npos);
  EXPECT_NE(md.find("| m | 1024 | 5.00 |"), std::string::npos) << md;  // no standard error: the value alone
}

TEST(Report, PasskeyRowsAndTable) {
  mx::test::TempDir t("report_passkey");
  auto pk = [&](const std::string& dir, const std::string& method, int64_t L, std::vector<double> success) {
    json cells = json::array();
    const std::vector<double> depths = {0, 0.5, 1};
    for (size_t i = 0; i < depths.size(); ++i)
      cells.push_back({{"length", L}, {"depth", depths[i]}, {"samples", 2}, {"success_published", success[i]},
                       {"success_strict", 0.0}});
    write(t.path() / dir / "cell.json", json{{"model", "m"}, {"method", method}}.dump());
    write(t.path() / dir / "passkey.json",
          json{{"format", "mambaextend.passkey/v1"}, {"model", {{"path", "models/m"}}}, {"factors", nullptr},
               {"cells", cells}}.dump());
  };
  pk("a", "vanilla", 1024, {1.0, 0.5, 0.0});
  pk("b", "zo", 1024, {1.0, 1.0, 1.0});
  pk("c", "zo", 2048, {0.5, 0.0, 0.0});
  const Runs runs = mx::report::gather_runs(t.path());
  ASSERT_EQ(runs.passkey.size(), 9u);
  EXPECT_EQ(runs.passkey[0].method, "vanilla");
  EXPECT_DOUBLE_EQ(runs.passkey[1].depth, 0.5);
  EXPECT_DOUBLE_EQ(runs.passkey[1].published, 0.5);
  const std::string md = mx::report::passkey_table_markdown(runs);
  // vanilla at 1024: (2 + 1 + 0) of 6; zo: 6/6 at 1024, 1/6 at 2048, 7/12 = 58.3% overall.
  EXPECT_NE(md.find("| model | method | 1024 | 2048 | all |"), std::string::npos) << md;
  EXPECT_NE(md.find("| m | vanilla | 50% (3/6) | — | 50.0% |"), std::string::npos) << md;
  EXPECT_NE(md.find("| m | zo | 100% (6/6) | 17% (1/6) | 58.3% |"), std::string::npos) << md;
  EXPECT_EQ(mx::report::passkey_table_markdown(Runs{}), "");
}

TEST(Report, LogTicksAndLengthLabels) {
  // 1-2-5 steps; when they give fewer than 3 ticks, every integer multiple of the decade.
  EXPECT_EQ(mx::report::log_ticks(60, 230), (std::vector<double>{60, 70, 80, 90, 100, 200}));
  EXPECT_EQ(mx::report::log_ticks(3, 120), (std::vector<double>{5, 10, 20, 50, 100}));
  EXPECT_EQ(mx::report::log_ticks(1, 1e6), (std::vector<double>{1, 10, 100, 1000, 1e4, 1e5, 1e6}));
  EXPECT_EQ(mx::report::log_ticks(62, 95), (std::vector<double>{70, 80, 90}));
  EXPECT_THROW(mx::report::log_ticks(0, 10), mx::Error);
  EXPECT_EQ(mx::report::length_label(512), "512");
  EXPECT_EQ(mx::report::length_label(4096), "4K");
  EXPECT_EQ(mx::report::length_label(1 << 20), "1M");
  EXPECT_EQ(mx::report::length_label(49152), "48K");
  EXPECT_EQ(mx::report::length_label(70000), "70000");
}

TEST(Report, FiguresDrawEverySeriesAndWriteFiles) {
  mx::test::TempDir t("report_fig");
  make_tree(t.path());
  const Runs runs = mx::report::gather_runs(t.path());
  const auto fig = mx::report::ppl_figure(runs, "pg19", "Perplexity against context length");
  ASSERT_GT(fig.width, 0);
  const std::string svg = mx::report::figure_svg_plain(fig);
  for (const char* s : {">m1</text>", ">m2</text>", ">vanilla (no scales)</text>", ">zo (CFZO, SPSA)</text>",
                        ">bp (CFBP, backprop)</text>", ">1K</text>", ">4K</text>", "context length (tokens, log scale)",
                        "perplexity (log scale; lower is better)", "protocol pg19 on books/test;"})
    EXPECT_NE(svg.find(s), std::string::npos) << s;
  // A line per (model, method) with two or more finite points (m1 vanilla, m1 zo); a marker per finite point
  // (m1: 2 + 2, m2: vanilla 1024 and bp 1024; m2 at 65536 is n/a) and one per legend entry (3).
  auto count = [&](const std::string& tag) {
    size_t n = 0;
    for (size_t p = svg.find(tag); p != std::string::npos; p = svg.find(tag, p + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("<polyline"), 2u);
  EXPECT_EQ(count("<circle"), 4u + 2u + 3u);
  EXPECT_EQ(mx::report::ppl_figure(runs, "proofpile", "x").width, 0);  // no rows for it

  const auto files = mx::report::write_figure(fig, t.path() / "out_ppl");
  ASSERT_EQ(files.size(), mx::report::png_supported() ? 2u : 1u);
  std::ifstream in(t.path() / "out_ppl.svg", std::ios::binary);
  std::string head(5, '\0');
  in.read(head.data(), 5);
  EXPECT_TRUE(head == "<?xml" || head == "<svg ") << head;
  if (mx::report::png_supported()) {
    std::ifstream png(t.path() / "out_ppl.png", std::ios::binary);
    std::string magic(8, '\0');
    png.read(magic.data(), 8);
    EXPECT_EQ(magic, std::string("\x89PNG\r\n\x1a\n", 8));
  }
}

TEST(Report, ViridisEnds) {
  const auto lo = mx::report::viridis(0), hi = mx::report::viridis(1), mid = mx::report::viridis(0.5);
  EXPECT_NEAR(lo.r * 255, 68, 1e-9);
  EXPECT_NEAR(hi.g * 255, 231, 1e-9);
  EXPECT_NEAR(mid.b * 255, 140, 1e-9);
  EXPECT_NEAR(mx::report::viridis(-1).r, lo.r, 0);  // clamped
}

}  // namespace
