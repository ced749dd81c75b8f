// The figures of `mambaextend report`: perplexity against context length (log-log, one panel per model, one
// line per method, ± standard-error bars) and passkey heatmaps (one figure per model, one panel per method).
// Each figure is drawn once through a small Canvas interface. With cairo (CMake finds it through pkg-config;
// MX_WITH_CAIRO) the drawing goes to a cairo recording surface that is replayed onto an SVG surface and an
// image surface (PNG), so both files hold the same picture; without cairo the same drawing code emits plain
// SVG text and no PNG is written. Torch-free.
#pragma once
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "report/run_results.h"

namespace mx::report {

struct Rgb {
  double r = 0, g = 0, b = 0;  // each in [0, 1]
};
enum class Anchor { Start, Middle, End };

// Coordinates in pixels, origin at the top left, y down. Text is placed on its baseline.
class Canvas {
 public:
  virtual ~Canvas() = default;
  virtual void line(double x1, double y1, double x2, double y2, Rgb c, double width, bool dashed = false) = 0;
  virtual void polyline(const std::vector<std::pair<double, double>>& pts, Rgb c, double width, bool dashed) = 0;
  virtual void rect(double x, double y, double w, double h, Rgb fill, std::optional<Rgb> stroke = std::nullopt) = 0;
  virtual void circle(double cx, double cy, double r, std::optional<Rgb> fill, Rgb stroke) = 0;  // no fill: a ring
  virtual void text(double x, double y, const std::string& utf8, double size, Anchor anchor, Rgb c, bool bold = false,
                    double rotate_deg = 0) = 0;
  virtual double text_width(const std::string& utf8, double size, bool bold = false) = 0;
};

struct Figure {
  int width = 0, height = 0;
  std::function<void(Canvas&)> draw;
};

// Perplexity against context length for one protocol; empty figure (width 0) when there are no rows for it.
Figure ppl_figure(const Runs& runs, const std::string& protocol, const std::string& title);
// Passkey success (published rule) per depth × length for one model, a panel per method.
Figure passkey_figure(const Runs& runs, const std::string& model);
// One passkey grid (the `passkey` command's --heatmap): a panel per success rule (published, strict), each cell
// with its rate and k/n; empty figure when there are no cells.
struct PasskeyCount {
  int64_t length = 0;
  double depth = 0;
  int64_t samples = 0, published = 0, strict = 0;  // successes under each rule
};
Figure passkey_rules_figure(const std::vector<PasskeyCount>& cells, const std::string& title);

// Viridis (matplotlib) at t in [0, 1].
Rgb viridis(double t);
// "512", "1K", "64K", "1M"; any other length as digits.
std::string length_label(int64_t length);
// Labelled y ticks for a log axis over [lo, hi] (lo > 0): 1-2-5 steps, or 1..9 per decade on a narrow range.
std::vector<double> log_ticks(double lo, double hi);

bool png_supported();  // built with cairo
// Plain SVG of a figure (the drawing without cairo).
std::string figure_svg_plain(const Figure& f);
// Writes <stem>.svg and, when built with cairo, <stem>.png (png_scale × the figure's size), atomically.
// Returns the paths written.
std::vector<std::filesystem::path> write_figure(const Figure& f, const std::filesystem::path& stem,
                                                double png_scale = 2.0);

}  // namespace mx::report
