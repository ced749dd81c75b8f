// Figures of `mambaextend report` (figures.h): the layout and drawing of the perplexity and passkey plots on a
// Canvas, a plain-SVG Canvas, and (MX_WITH_CAIRO) a cairo Canvas replayed from a recording surface onto an SVG
// and a PNG surface. Colours: Okabe-Ito for methods (colour-blind safe), viridis for success rates. The passkey
// command's own heatmap (`passkey --heatmap`) is passkey_rules_figure, drawn with the same panel code.
#include "report/figures.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <set>

#include "mambaextend/error.h"
#include "mambaextend/io.h"

#ifdef MX_WITH_CAIRO
#include <cairo-svg.h>
#include <cairo.h>
#endif

namespace mx::report {

namespace {

namespace fs = std::filesystem;

std::string num(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

const Rgb kInk{0.1, 0.1, 0.1}, kGrid{0.86, 0.86, 0.86}, kMinorGrid{0.94, 0.94, 0.94}, kWhite{1, 1, 1},
    kAxis{0.3, 0.3, 0.3};

// Line colour and dash per method: vanilla dark grey and dashed, the others Okabe-Ito.
std::pair<Rgb, bool> method_style(const std::string& method, size_t index) {
  if (method == "vanilla") return {{0.35, 0.35, 0.35}, true};
  if (method == "zo") return {{0.0, 0.447, 0.698}, false};  // blue
  if (method == "bp") return {{0.835, 0.369, 0.0}, false};  // vermillion
  static const Rgb kOthers[] = {{0.0, 0.620, 0.451}, {0.800, 0.475, 0.655}, {0.902, 0.624, 0.0}, {0.337, 0.706, 0.914}};
  return {kOthers[index % 4], false};
}

std::string method_label(const std::string& m) {
  if (m == "vanilla") return "vanilla (no scales)";
  if (m == "zo") return "zo (CFZO, SPSA)";
  if (m == "bp") return "bp (CFBP, backprop)";
  return m;
}

// ---- plain SVG canvas -------------------------------------------------------------------------------------

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string hex(Rgb c) {
  char buf[8];
  auto b = [](double v) { return static_cast<int>(std::lround(std::clamp(v, 0.0, 1.0) * 255)); };
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", b(c.r), b(c.g), b(c.b));
  return buf;
}

// Number of code points (the width estimate counts characters, not bytes).
size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

// Width of a text in DejaVu Sans, estimated from its length (the plain-SVG canvas, and layout before drawing).
double estimate_width(const std::string& s, double size, bool bold) {
  return static_cast<double>(utf8_length(s)) * size * (bold ? 0.63 : 0.57);
}

class SvgCanvas : public Canvas {
 public:
  std::string body;
  void line(double x1, double y1, double x2, double y2, Rgb c, double w, bool dashed) override {
    body += "<line x1=\"" + num("%.2f", x1) + "\" y1=\"" + num("%.2f", y1) + "\" x2=\"" + num("%.2f", x2) + "\" y2=\"" +
            num("%.2f", y2) + "\" stroke=\"" + hex(c) + "\" stroke-width=\"" + num("%.2f", w) + "\"" +
            (dashed ? " stroke-dasharray=\"6 4\"" : "") + "/>\n";
  }
  void polyline(const std::vector<std::pair<double, double>>& pts, Rgb c, double w, bool dashed) override {
    std::string p;
    for (const auto& [x, y] : pts) p += num("%.2f", x) + "," + num("%.2f", y) + " ";
    body += "<polyline fill=\"none\" points=\"" + p + "\" stroke=\"" + hex(c) + "\" stroke-width=\"" + num("%.2f", w) +
            "\" stroke-linejoin=\"round\"" + (dashed ? " stroke-dasharray=\"6 4\"" : "") + "/>\n";
  }
  void rect(double x, double y, double w, double h, Rgb fill, std::optional<Rgb> stroke) override {
    body += "<rect x=\"" + num("%.2f", x) + "\" y=\"" + num("%.2f", y) + "\" width=\"" + num("%.2f", w) +
            "\" height=\"" + num("%.2f", h) + "\" fill=\"" + hex(fill) + "\"" +
            (stroke ? " stroke=\"" + hex(*stroke) + "\"" : "") + "/>\n";
  }
  void circle(double cx, double cy, double r, std::optional<Rgb> fill, Rgb stroke) override {
    body += "<circle cx=\"" + num("%.2f", cx) + "\" cy=\"" + num("%.2f", cy) + "\" r=\"" + num("%.2f", r) +
            "\" fill=\"" + (fill ? hex(*fill) : "none") + "\" stroke=\"" + hex(stroke) + "\" stroke-width=\"1.2\"/>\n";
  }
  void text(double x, double y, const std::string& s, double size, Anchor a, Rgb c, bool bold, double rot) override {
    const char* anchor = a == Anchor::Start ? "start" : a == Anchor::Middle ? "middle" : "end";
    body += "<text x=\"" + num("%.2f", x) + "\" y=\"" + num("%.2f", y) + "\" font-size=\"" + num("%g", size) +
            "\" text-anchor=\"" + anchor + "\" fill=\"" + hex(c) + "\"" + (bold ? " font-weight=\"bold\"" : "") +
            (rot != 0 ? " transform=\"rotate(" + num("%g", -rot) + " " + num("%.2f", x) + " " + num("%.2f", y) + ")\""
                      : "") +
            ">" + xml_escape(s) + "</text>\n";
  }
  double text_width(const std::string& s, double size, bool bold) override {
    return estimate_width(s, size, bold);
  }
};

#ifdef MX_WITH_CAIRO
// ---- cairo canvas -------------------------------------------------------------------------------------------

class CairoCanvas : public Canvas {
 public:
  explicit CairoCanvas(cairo_t* cr) : cr_(cr) {}
  void line(double x1, double y1, double x2, double y2, Rgb c, double w, bool dashed) override {
    polyline({{x1, y1}, {x2, y2}}, c, w, dashed);
  }
  void polyline(const std::vector<std::pair<double, double>>& pts, Rgb c, double w, bool dashed) override {
    if (pts.size() < 2) return;
    cairo_save(cr_);
    set(c);
    cairo_set_line_width(cr_, w);
    cairo_set_line_join(cr_, CAIRO_LINE_JOIN_ROUND);
    const double dash[] = {6, 4};
    cairo_set_dash(cr_, dash, dashed ? 2 : 0, 0);
    cairo_move_to(cr_, pts[0].first, pts[0].second);
    for (size_t i = 1; i < pts.size(); ++i) cairo_line_to(cr_, pts[i].first, pts[i].second);
    cairo_stroke(cr_);
    cairo_restore(cr_);
  }
  void rect(double x, double y, double w, double h, Rgb fill, std::optional<Rgb> stroke) override {
    cairo_rectangle(cr_, x, y, w, h);
    set(fill);
    if (stroke) {
      cairo_fill_preserve(cr_);
      set(*stroke);
      cairo_set_line_width(cr_, 1);
      cairo_stroke(cr_);
    } else {
      cairo_fill(cr_);
    }
  }
  void circle(double cx, double cy, double r, std::optional<Rgb> fill, Rgb stroke) override {
    cairo_new_sub_path(cr_);
    cairo_arc(cr_, cx, cy, r, 0, 2 * M_PI);
    if (fill) {
      set(*fill);
      cairo_fill_preserve(cr_);
    }
    set(stroke);
    cairo_set_line_width(cr_, 1.2);
    cairo_stroke(cr_);
  }
  void text(double x, double y, const std::string& s, double size, Anchor a, Rgb c, bool bold, double rot) override {
    font(size, bold);
    cairo_text_extents_t e;
    cairo_text_extents(cr_, s.c_str(), &e);
    const double dx = a == Anchor::Start ? 0 : a == Anchor::Middle ? -e.x_advance / 2 : -e.x_advance;
    cairo_save(cr_);
    cairo_translate(cr_, x, y);
    if (rot != 0) cairo_rotate(cr_, -rot * M_PI / 180);
    cairo_move_to(cr_, dx, 0);
    set(c);
    cairo_show_text(cr_, s.c_str());
    cairo_new_path(cr_);
    cairo_restore(cr_);
  }
  double text_width(const std::string& s, double size, bool bold) override {
    font(size, bold);
    cairo_text_extents_t e;
    cairo_text_extents(cr_, s.c_str(), &e);
    return e.x_advance;
  }

 private:
  void set(Rgb c) { cairo_set_source_rgb(cr_, c.r, c.g, c.b); }
  void font(double size, bool bold) {
    cairo_select_font_face(cr_, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr_, size);
  }
  cairo_t* cr_;
};

cairo_status_t append_to_string(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

void check_cairo(cairo_status_t st, const std::string& what) {
  if (st != CAIRO_STATUS_SUCCESS) throw IoError("report: cairo failed to " + what + ": " + cairo_status_to_string(st));
}
#endif

// ---- axes ---------------------------------------------------------------------------------------------------

std::string tick_label(double v) {
  if (v >= 1e6) {
    const int e = static_cast<int>(std::floor(std::log10(v) + 1e-9));
    const double m = v / std::pow(10.0, e);
    return std::fabs(m - 1) < 1e-9 ? "1e" + std::to_string(e) : num("%g", m) + "e" + std::to_string(e);
  }
  return num("%g", v);
}

}  // namespace

Rgb viridis(double t) {
  static const double kAnchors[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  t = std::clamp(t, 0.0, 1.0) * 4;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  Rgb c;
  double* out[3] = {&c.r, &c.g, &c.b};
  for (int k = 0; k < 3; ++k) *out[k] = (kAnchors[i][k] + f * (kAnchors[i + 1][k] - kAnchors[i][k])) / 255.0;
  return c;
}

std::string length_label(int64_t L) {
  if (L >= (1 << 20) && L % (1 << 20) == 0) return std::to_string(L >> 20) + "M";
  if (L >= 1024 && L % 1024 == 0) return std::to_string(L / 1024) + "K";
  return std::to_string(L);
}

std::vector<double> log_ticks(double lo, double hi) {
  if (!(lo > 0) || !(hi >= lo)) throw Error("log_ticks: need 0 < lo <= hi, got " + num("%g", lo) + ", " + num("%g", hi));
  auto in_range = [&](const std::vector<double>& mant) {
    std::vector<double> t;
    for (int e = static_cast<int>(std::floor(std::log10(lo))) - 1; e <= static_cast<int>(std::ceil(std::log10(hi))); ++e)
      for (double m : mant) {
        const double v = m * std::pow(10.0, e);
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) t.push_back(v);
      }
    return t;
  };
  auto t = in_range(hi / lo > 1e4 ? std::vector<double>{1} : std::vector<double>{1, 2, 5});
  if (t.size() < 3) t = in_range({1, 2, 3, 4, 5, 6, 7, 8, 9});
  if (t.size() > 12) {  // thin a long 1-2-5 ladder to decades
    std::vector<double> d;
    for (double v : t)
      if (std::fabs(std::log10(v) - std::round(std::log10(v))) < 1e-9) d.push_back(v);
    if (d.size() >= 2) t = d;
  }
  return t;
}

Figure ppl_figure(const Runs& runs, const std::string& protocol, const std::string& title) {
  std::vector<std::string> models, ms;
  std::set<std::string> data;
  for (const auto& r : runs.ppl)
    if (r.protocol == protocol) {
      if (models.empty() || models.back() != r.model) models.push_back(r.model);
      ms.push_back(r.method);
      if (!r.data.empty()) data.insert(r.data);
    }
  const std::string on = data.size() == 1 ? " on " + *data.begin() : data.size() > 1 ? " on several data sets" : "";
  if (models.empty()) return {};
  models.erase(std::unique(models.begin(), models.end()), models.end());
  const auto methods = ordered_methods(ms);
  const int ncols = std::min<int>(3, static_cast<int>(models.size()));
  const int nrows = (static_cast<int>(models.size()) + ncols - 1) / ncols;
  const double pw = 380, ph = 300;                         // plot area of one panel
  const double ml = 78, mr = 24, mt = 44, mb = 62;         // panel margins: y labels, x labels
  const double top = 88;                                   // title, subtitle and legend
  const std::string subtitle = "protocol " + protocol + on + "; one line per method; bars: ± one standard error";
  double legend_w = 14;
  for (const auto& m : methods) legend_w += 38 + estimate_width(method_label(m), 13, false) + 26;
  Figure f;  // as wide as the panels, or as the title, subtitle and legend need
  f.width = static_cast<int>(std::max({ncols * (ml + pw + mr) + 10, legend_w + 10, 14 + estimate_width(title, 17, true) + 20,
                                       14 + estimate_width(subtitle, 12, false) + 20}));
  f.height = static_cast<int>(top + nrows * (mt + ph + mb) + 6);
  const double xoff = 0.5 * (f.width - (ncols * (ml + pw + mr) + 10));  // panels centred under a wider header
  f.draw = [runs, protocol, title, subtitle, models, methods, ncols, pw, ph, ml, mr, mt, mb, top, xoff, w = f.width,
            h = f.height](Canvas& c) {
    c.rect(0, 0, w, h, kWhite);
    c.text(14, 26, title, 17, Anchor::Start, kInk, true);
    c.text(14, 46, subtitle, 12, Anchor::Start, {0.35, 0.35, 0.35});
    // Legend, shared by the panels, in one row.
    double lx = 14;
    for (size_t k = 0; k < methods.size(); ++k) {
      const auto [col, dashed] = method_style(methods[k], k);
      c.line(lx, 68, lx + 30, 68, col, 2.4, dashed);
      if (methods[k] == "vanilla") c.circle(lx + 15, 68, 5.5, std::nullopt, col);
      else c.circle(lx + 15, 68, 3.5, col, col);
      const std::string lab = method_label(methods[k]);
      c.text(lx + 38, 72.5, lab, 13, Anchor::Start, kInk);
      lx += 38 + c.text_width(lab, 13) + 26;
    }
    for (size_t p = 0; p < models.size(); ++p) {
      const double x0 = xoff + (p % ncols) * (ml + pw + mr) + ml, y0 = top + (p / ncols) * (mt + ph + mb) + mt;
      std::vector<const PplRow*> rows;
      double lo = INFINITY, hi = 0;
      std::set<int64_t> lengths;
      for (const auto& r : runs.ppl)
        if (r.protocol == protocol && r.model == models[p]) {
          rows.push_back(&r);
          lengths.insert(r.length);
          if (r.ppl && std::isfinite(*r.ppl) && *r.ppl > 0) {
            const double se = r.ppl_se && std::isfinite(*r.ppl_se) ? *r.ppl_se : 0;
            lo = std::min(lo, std::max(*r.ppl - se, *r.ppl * 0.5));
            hi = std::max(hi, *r.ppl + se);
          }
        }
      c.text(x0 + pw / 2, y0 - 12, models[p], 14, Anchor::Middle, kInk, true);
      // x: log2 of the length, padded by a quarter octave; ticks at the lengths measured (powers of two beyond 10).
      const double lx0 = std::log2(static_cast<double>(*lengths.begin())) - 0.3,
                   lx1 = std::log2(static_cast<double>(*lengths.rbegin())) + 0.3;
      auto X = [&](double L) { return x0 + (std::log2(L) - lx0) / (lx1 - lx0) * pw; };
      std::vector<int64_t> xt(lengths.begin(), lengths.end());
      if (xt.size() > 10) {
        xt.clear();
        for (int64_t L = 1; L <= *lengths.rbegin(); L *= 2)
          if (L >= *lengths.begin()) xt.push_back(L);
      }
      if (!(hi > 0)) {  // nothing finite: an empty frame that says so
        c.rect(x0, y0, pw, ph, {0.97, 0.97, 0.97}, kAxis);
        c.text(x0 + pw / 2, y0 + ph / 2, "no finite perplexity", 13, Anchor::Middle, kInk);
        continue;
      }
      // y: log10, padded by 6% of the span, and at least a factor 2 tall so a flat series still gets ticks.
      const double span = std::max(std::log10(hi / lo), 0.3), mid = 0.5 * (std::log10(hi) + std::log10(lo));
      const double ly0 = mid - 0.56 * span, ly1 = mid + 0.56 * span;
      auto Y = [&](double v) { return y0 + ph - (std::log10(v) - ly0) / (ly1 - ly0) * ph; };
      // Minor grid (every integer multiple of a decade, up to 2 decades tall), major grid + labels at log_ticks.
      for (int e = static_cast<int>(std::floor(ly0)); ly1 - ly0 <= 2.2 && e <= static_cast<int>(std::ceil(ly1)); ++e)
        for (int m = 1; m <= 9; ++m) {
          const double v = m * std::pow(10.0, e), y = Y(v);
          if (y >= y0 && y <= y0 + ph) c.line(x0, y, x0 + pw, y, kMinorGrid, 1);
        }
      const auto yt = log_ticks(std::pow(10.0, ly0), std::pow(10.0, ly1));
      for (double v : yt) {
        const double y = Y(v);
        c.line(x0, y, x0 + pw, y, kGrid, 1);
        c.line(x0 - 5, y, x0, y, kAxis, 1);
        c.text(x0 - 8, y + 4, tick_label(v), 12, Anchor::End, kInk);
      }
      for (int64_t L : xt) {
        const double x = X(static_cast<double>(L));
        c.line(x, y0, x, y0 + ph, kGrid, 1);
        c.line(x, y0 + ph, x, y0 + ph + 5, kAxis, 1);
        c.text(x, y0 + ph + 19, length_label(L), 12, Anchor::Middle, kInk);
      }
      c.line(x0, y0, x0, y0 + ph, kAxis, 1.2);
      c.line(x0, y0 + ph, x0 + pw, y0 + ph, kAxis, 1.2);
      c.text(x0 + pw / 2, y0 + ph + 42, "context length (tokens, log scale)", 13, Anchor::Middle, kInk);
      c.text(x0 - 58, y0 + ph / 2, "perplexity (log scale; lower is better)", 13, Anchor::Middle, kInk, false, 90);
      // Vanilla last, dashed with open markers, so that a calibrated line it coincides with shows through.
      for (size_t kk = 1; kk <= methods.size(); ++kk) {
        const size_t k = kk % methods.size();  // methods[1..], then methods[0] (vanilla) on top
        const auto [col, dashed] = method_style(methods[k], k);
        std::vector<std::pair<double, double>> pts;
        for (const PplRow* r : rows) {
          if (r->method != methods[k] || !r->ppl || !std::isfinite(*r->ppl) || *r->ppl <= 0) continue;
          // Methods side by side by a few pixels, so that equal values and their error bars stay visible.
          const double x = X(static_cast<double>(r->length)) + (static_cast<double>(k) - 0.5 * (methods.size() - 1)) * 6;
          pts.push_back({x, Y(*r->ppl)});
          if (r->ppl_se && *r->ppl_se > 0 && std::isfinite(*r->ppl_se)) {
            const double a = Y(std::max(*r->ppl - *r->ppl_se, std::pow(10.0, ly0))), b = Y(*r->ppl + *r->ppl_se);
            c.line(x, a, x, b, col, 1.3);
            c.line(x - 4, a, x + 4, a, col, 1.3);
            c.line(x - 4, b, x + 4, b, col, 1.3);
          }
        }
        if (pts.size() >= 2) c.polyline(pts, col, 2.4, dashed);
        for (const auto& [x, y] : pts) {
          if (methods[k] == "vanilla") c.circle(x, y, 5.5, std::nullopt, col);
          else c.circle(x, y, 3.5, col, col);
        }
      }
    }
  };
  return f;
}

namespace {

// One heatmap cell: a success rate, and the counts behind it (k of n; n = 0: no sample, drawn "n/a").
struct Heat {
  double rate = 0;
  int64_t k = 0, n = 0;
};

// A depth × length panel at x0 (cells cw × ch from `top`), headed by `heading` and `sub`; cell(i, j) for depth i and
// length j. Counts are printed under the rate when a cell holds more than one sample and `counts` is set.
void draw_heat_panel(Canvas& c, double x0, double top, double cw, double ch, const std::vector<int64_t>& Ls,
                     const std::vector<double>& Ds, const std::function<Heat(size_t, size_t)>& cell,
                     const std::string& heading, const std::string& sub, bool counts) {
  const double panel_w = Ls.size() * cw, panel_h = Ds.size() * ch;
  c.text(x0 + panel_w / 2, top - 30, heading, 14, Anchor::Middle, kInk, true);
  c.text(x0 + panel_w / 2, top - 12, sub, 12, Anchor::Middle, kInk);
  for (size_t i = 0; i < Ds.size(); ++i)
    for (size_t j = 0; j < Ls.size(); ++j) {
      const Heat h = cell(i, j);
      const double x = x0 + j * cw, y = top + i * ch;
      if (h.n == 0) {
        c.rect(x, y, cw, ch, {0.87, 0.87, 0.87}, kWhite);
        c.text(x + cw / 2, y + ch / 2 + 4, "n/a", 12, Anchor::Middle, kInk);
        continue;
      }
      const Rgb ink = h.rate < 0.6 ? kWhite : kInk;
      c.rect(x, y, cw, ch, viridis(h.rate), kWhite);
      if (counts && h.n > 1) {
        c.text(x + cw / 2, y + ch / 2, num("%.0f%%", 100 * h.rate), 12, Anchor::Middle, ink);
        c.text(x + cw / 2, y + ch / 2 + 13, std::to_string(h.k) + "/" + std::to_string(h.n), 10, Anchor::Middle, ink);
      } else {
        c.text(x + cw / 2, y + ch / 2 + 4.5, num("%.0f%%", 100 * h.rate), 13, Anchor::Middle, ink);
      }
    }
  for (size_t j = 0; j < Ls.size(); ++j)
    c.text(x0 + j * cw + cw / 2, top + panel_h + 18, length_label(Ls[j]), 12, Anchor::Middle, kInk);
  for (size_t i = 0; i < Ds.size(); ++i) c.text(x0 - 8, top + i * ch + ch / 2 + 4, num("%g", Ds[i]), 12, Anchor::End, kInk);
  c.text(x0 + panel_w / 2, top + panel_h + 40, "context length (tokens)", 13, Anchor::Middle, kInk);
  c.text(x0 - 44, top + panel_h / 2, "needle depth", 13, Anchor::Middle, kInk, false, 90);
}

// The viridis success bar at bar_x, 0% at the bottom of a panel of height panel_h.
void draw_success_bar(Canvas& c, double bar_x, double top, double panel_h) {
  const int steps = 50;
  for (int k = 0; k < steps; ++k)
    c.rect(bar_x, top + panel_h - (k + 1) * panel_h / steps, 16, panel_h / steps + 0.5, viridis((k + 0.5) / steps));
  c.polyline({{bar_x, top}, {bar_x + 16, top}, {bar_x + 16, top + panel_h}, {bar_x, top + panel_h}, {bar_x, top}}, kAxis,
             1, false);
  for (int k = 0; k <= 4; ++k) {
    const double y = top + panel_h - k * panel_h / 4;
    c.line(bar_x + 16, y, bar_x + 21, y, kAxis, 1);
    c.text(bar_x + 24, y + 4, std::to_string(25 * k) + "%", 11, Anchor::Start, kInk);
  }
  c.text(bar_x + 8, top - 12, "success", 11, Anchor::Middle, kInk);
}

std::string share(double hits, double n) {
  return num("%.1f%%", n > 0 ? 100 * hits / n : 0.0) + " of " + num("%.0f", n) + " samples";
}

}  // namespace

Figure passkey_figure(const Runs& runs, const std::string& model) {
  std::vector<std::string> ms;
  std::set<int64_t> lengths;
  std::set<double> depths;
  for (const auto& r : runs.passkey)
    if (r.model == model) {
      ms.push_back(r.method);
      lengths.insert(r.length);
      depths.insert(r.depth);
    }
  if (ms.empty()) return {};
  const auto methods = ordered_methods(ms);
  const int nc = static_cast<int>(lengths.size()), nr = static_cast<int>(depths.size());
  const double cw = std::max(56.0, 240.0 / nc), ch = 36, left = 84, top = 104, gap = 70;
  const double panel_w = nc * cw, panel_h = nr * ch;
  const double bar_x = left + methods.size() * (panel_w + gap) - gap + 36;
  Figure f;
  f.width = static_cast<int>(std::max(bar_x + 80, 560.0));
  f.height = static_cast<int>(top + panel_h + 64);
  f.draw = [runs, model, methods, lengths, depths, cw, ch, left, top, gap, panel_w, panel_h, bar_x, w = f.width,
            h = f.height](Canvas& c) {
    c.rect(0, 0, w, h, kWhite);
    c.text(14, 26, "Passkey retrieval: " + model, 17, Anchor::Start, kInk, true);
    c.text(14, 46, "success rate per needle depth and context length (published rule: key among the output's words)",
           12, Anchor::Start, {0.35, 0.35, 0.35});
    const std::vector<int64_t> Ls(lengths.begin(), lengths.end());
    const std::vector<double> Ds(depths.begin(), depths.end());
    for (size_t p = 0; p < methods.size(); ++p) {
      double hits = 0, n = 0;
      for (const auto& r : runs.passkey)
        if (r.model == model && r.method == methods[p]) {
          hits += r.published * static_cast<double>(r.samples);
          n += static_cast<double>(r.samples);
        }
      const auto cell = [&](size_t i, size_t j) {
        for (const auto& r : runs.passkey)
          if (r.model == model && r.method == methods[p] && r.length == Ls[j] && r.depth == Ds[i])
            return Heat{r.published, 0, r.samples};
        return Heat{};
      };
      draw_heat_panel(c, left + p * (panel_w + gap), top, cw, ch, Ls, Ds, cell, method_label(methods[p]),
                      share(hits, n), false);
    }
    draw_success_bar(c, bar_x, top, panel_h);
  };
  return f;
}

Figure passkey_rules_figure(const std::vector<PasskeyCount>& cells, const std::string& title) {
  std::set<int64_t> lengths;
  std::set<double> depths;
  double n = 0, pub = 0, strict = 0;
  for (const auto& x : cells) {
    lengths.insert(x.length);
    depths.insert(x.depth);
    n += static_cast<double>(x.samples);
    pub += static_cast<double>(x.published);
    strict += static_cast<double>(x.strict);
  }
  if (cells.empty()) return {};
  const int nc = static_cast<int>(lengths.size()), nr = static_cast<int>(depths.size());
  const double cw = std::max(64.0, 300.0 / nc), ch = 40, left = 84, top = 104, gap = 90;
  const double panel_w = nc * cw, panel_h = nr * ch, bar_x = left + 2 * panel_w + gap + 36;
  Figure f;
  f.width = static_cast<int>(std::max(bar_x + 80, 14 + 9.0 * static_cast<double>(title.size())));
  f.height = static_cast<int>(top + panel_h + 64);
  f.draw = [cells, title, lengths, depths, n, pub, strict, cw, ch, left, top, gap, panel_w, panel_h, bar_x,
            w = f.width, h = f.height](Canvas& c) {
    c.rect(0, 0, w, h, kWhite);
    c.text(14, 26, title, 17, Anchor::Start, kInk, true);
    c.text(14, 46, "success rate per needle depth and context length", 12, Anchor::Start, {0.35, 0.35, 0.35});
    const std::vector<int64_t> Ls(lengths.begin(), lengths.end());
    const std::vector<double> Ds(depths.begin(), depths.end());
    for (int rule = 0; rule < 2; ++rule) {
      const auto cell = [&](size_t i, size_t j) {
        for (const auto& x : cells)
          if (x.length == Ls[j] && x.depth == Ds[i] && x.samples > 0) {
            const int64_t k = rule == 0 ? x.published : x.strict;
            return Heat{static_cast<double>(k) / static_cast<double>(x.samples), k, x.samples};
          }
        return Heat{};
      };
      draw_heat_panel(c, left + rule * (panel_w + gap), top, cw, ch, Ls, Ds, cell,
                      rule == 0 ? "published rule" : "strict rule (exact digits)", share(rule == 0 ? pub : strict, n),
                      true);
    }
    draw_success_bar(c, bar_x, top, panel_h);
  };
  return f;
}

bool png_supported() {
#ifdef MX_WITH_CAIRO
  return true;
#else
  return false;
#endif
}

std::string figure_svg_plain(const Figure& f) {
  SvgCanvas c;
  f.draw(c);
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(f.width) + "\" height=\"" +
         std::to_string(f.height) + "\" viewBox=\"0 0 " + std::to_string(f.width) + " " + std::to_string(f.height) +
         "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n<clipPath id=\"page\"><rect width=\"" +
         std::to_string(f.width) + "\" height=\"" + std::to_string(f.height) + "\"/></clipPath>\n<g clip-path=\"url(#page)\">\n" +
         c.body + "</g>\n</svg>\n";
}

std::vector<fs::path> write_figure(const Figure& f, const fs::path& stem, double png_scale) {
  if (f.width <= 0 || f.height <= 0 || !f.draw) throw Error("report: empty figure for " + stem.string());
  const fs::path svg = stem.string() + ".svg";
#ifdef MX_WITH_CAIRO
  const cairo_rectangle_t extents{0, 0, static_cast<double>(f.width), static_cast<double>(f.height)};
  cairo_surface_t* rec = cairo_recording_surface_create(CAIRO_CONTENT_COLOR_ALPHA, &extents);
  cairo_t* cr = cairo_create(rec);
  try {
    CairoCanvas canvas(cr);
    f.draw(canvas);
  } catch (...) {
    cairo_destroy(cr);
    cairo_surface_destroy(rec);
    throw;
  }
  const cairo_status_t draw_status = cairo_status(cr);
  cairo_destroy(cr);
  std::string svg_bytes, png_bytes;
  cairo_surface_t* s = cairo_svg_surface_create_for_stream(append_to_string, &svg_bytes, f.width, f.height);
  cr = cairo_create(s);
  cairo_set_source_surface(cr, rec, 0, 0);
  cairo_paint(cr);
  const cairo_status_t svg_status = cairo_status(cr);
  cairo_destroy(cr);
  cairo_surface_finish(s);
  const cairo_status_t svg_finish = cairo_surface_status(s);
  cairo_surface_destroy(s);
  const int pw = static_cast<int>(std::lround(f.width * png_scale)), ph = static_cast<int>(std::lround(f.height * png_scale));
  cairo_surface_t* img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, pw, ph);
  cr = cairo_create(img);
  cairo_scale(cr, png_scale, png_scale);
  cairo_set_source_surface(cr, rec, 0, 0);
  cairo_paint(cr);
  const cairo_status_t png_status = cairo_status(cr);
  cairo_destroy(cr);
  const cairo_status_t png_write = cairo_surface_write_to_png_stream(img, append_to_string, &png_bytes);
  cairo_surface_destroy(img);
  cairo_surface_destroy(rec);
  check_cairo(draw_status, "draw " + stem.string());
  check_cairo(svg_status, "render " + svg.string());
  check_cairo(svg_finish, "write " + svg.string());
  check_cairo(png_status, "render " + stem.string() + ".png");
  check_cairo(png_write, "encode " + stem.string() + ".png");
  const fs::path png = stem.string() + ".png";
  write_file_atomic(svg, svg_bytes);
  write_file_atomic(png, png_bytes);
  return {svg, png};
#else
  (void)png_scale;
  write_file_atomic(svg, figure_svg_plain(f));
  return {svg};
#endif
}

}  // namespace mx::report
