// The passkey depth × length heatmap as a self-contained SVG (no dependency): two panels, the published rule and
// the strict rule; rows are needle depths (0 at the top, as in the DeciMamba / MambaExtend figures), columns
// context lengths; every cell shows its success rate in % (and k/n when a cell has more than one sample) on a
// viridis colour (0% dark purple → 100% yellow, colour-blind safe); a colour bar with ticks sits on the right.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "mambaextend/passkey.h"

namespace mx {

namespace {

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

// Viridis at 0, 0.25, 0.5, 0.75, 1 (matplotlib), linearly interpolated.
std::string viridis(double t) {
  static const int kAnchors[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  t = std::clamp(t, 0.0, 1.0) * 4;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  int rgb[3];
  for (int k = 0; k < 3; ++k)
    rgb[k] = static_cast<int>(std::lround(kAnchors[i][k] + f * (kAnchors[i + 1][k] - kAnchors[i][k])));
  return fmt::format("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2]);
}

std::string length_label(int64_t L) {
  if (L % 1024 == 0) return fmt::format("{}K", L / 1024);
  return std::to_string(L);
}

}  // namespace

std::string passkey_heatmap_svg(const PasskeyReport& r, const std::string& title) {
  const auto& lengths = r.options.lengths;
  const auto& depths = r.options.depths;
  const int nc = static_cast<int>(lengths.size()), nr = static_cast<int>(depths.size());
  const int cw = std::max(64, 300 / std::max(nc, 1)), ch = 40;  // cell size; a panel is at least 300 px wide
  const int left = 80, top = 92;                                 // room for the y labels and the titles
  const int panel_w = nc * cw, panel_h = nr * ch, gap = 90;
  const int bar_x = left + 2 * panel_w + gap + 30, bar_w = 18;
  const int width = std::max<int>(bar_x + bar_w + 60, left + 9 * static_cast<int>(title.size())),
            height = top + panel_h + 70;
  auto cell = [&](int64_t L, double d) -> const PasskeyCell* {
    for (const auto& c : r.cells)
      if (c.length == L && c.depth == d) return &c;
    return nullptr;
  };
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
      "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n<text x=\"{}\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{}</text>\n",
      width, height, width, height, left, xml_escape(title));
  int64_t n = 0, pub = 0, strict = 0;
  for (const auto& c : r.cells) {
    n += c.samples;
    pub += c.published;
    strict += c.strict;
  }
  for (int panel = 0; panel < 2; ++panel) {
    const int x0 = left + panel * (panel_w + gap);
    const int64_t hits = panel == 0 ? pub : strict;
    s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\" text-anchor=\"middle\">{} "
                     "rule</text>\n<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{:.1f}% of {} "
                     "samples</text>\n", x0 + panel_w / 2, top - 30, panel == 0 ? "published" : "strict (exact digits)",
                     x0 + panel_w / 2, top - 12, n ? 100.0 * static_cast<double>(hits) / static_cast<double>(n) : 0.0, n);
    for (int i = 0; i < nr; ++i) {
      for (int j = 0; j < nc; ++j) {
        const PasskeyCell* c = cell(lengths[j], depths[i]);
        const int x = x0 + j * cw, y = top + i * ch;
        if (c == nullptr || c->samples == 0) {
          s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#dddddd\" stroke=\"white\"/>"
                           "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">n/a</text>\n",
                           x, y, cw, ch, x + cw / 2, y + ch / 2 + 4);
          continue;
        }
        const int64_t k = panel == 0 ? c->published : c->strict;
        const double v = static_cast<double>(k) / static_cast<double>(c->samples);
        const std::string ink = v < 0.6 ? "white" : "black";
        const std::string frac = c->samples > 1 ? fmt::format(" ({}/{})", k, c->samples) : "";
        s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"white\"/>"
                         "<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"middle\" fill=\"{}\">{:.0f}%{}</text>\n",
                         x, y, cw, ch, viridis(v), x + cw / 2, y + ch / 2 + 4, frac.empty() ? 13 : 10, ink, 100 * v,
                         frac);
      }
    }
    for (int j = 0; j < nc; ++j)
      s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\n",
                       x0 + j * cw + cw / 2, top + panel_h + 18, length_label(lengths[j]));
    for (int i = 0; i < nr; ++i)
      s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{:g}</text>\n", x0 - 8,
                       top + i * ch + ch / 2 + 4, depths[i]);
    s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"13\" text-anchor=\"middle\">context length (tokens)"
                     "</text>\n", x0 + panel_w / 2, top + panel_h + 40);
    s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"13\" text-anchor=\"middle\" transform=\"rotate(-90 {} {})\">"
                     "needle depth</text>\n", x0 - 50, top + panel_h / 2, x0 - 50, top + panel_h / 2);
  }
  // Colour bar: 0% at the bottom, 100% at the top.
  s += "<defs><linearGradient id=\"viridis\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">";
  for (int k = 0; k <= 10; ++k)
    s += fmt::format("<stop offset=\"{:.1f}\" stop-color=\"{}\"/>", k / 10.0, viridis(k / 10.0));
  s += "</linearGradient></defs>\n";
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"url(#viridis)\" stroke=\"#444\"/>\n",
                   bar_x, top, bar_w, panel_h);
  for (int k = 0; k <= 4; ++k) {
    const int y = top + panel_h - k * panel_h / 4;
    s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444\"/><text x=\"{}\" y=\"{}\" "
                     "font-size=\"11\">{}%</text>\n", bar_x + bar_w, y, bar_x + bar_w + 4, y, bar_x + bar_w + 7,
                     y + 4, 25 * k);
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">success</text>\n",
                   bar_x + bar_w / 2, top - 14);
  s += "</svg>\n";
  return s;
}

}  // namespace mx
