// The runner's SVG chart (see runner_report.hpp), written as text: no plotting dependency. Per
// echo scenario, two panels side by side: messages per second and server CPU per message, one
// horizontal bar per server (the median, a whisker from min to max), each labelled with its value
// and its ratio to the epoll floor's median. Each scenario has its own scale (d16 runs at ~15x
// the msg/s of d1), so bars compare servers within a scenario, not across scenarios.
#include <algorithm>
#include <cstdio>
#include <sstream>

#include "runner_report.hpp"

namespace bench {
namespace {

constexpr const char* kFloor = "epoll";
constexpr int kWidth = 900;
constexpr int kNameRight = 92;  // server names end here
constexpr int kBarMax = 240;    // longest bar of a panel
constexpr int kPanelX[2] = {100, 500};
constexpr int kRow = 20, kBar = 14;

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

std::string xml(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

const char* color_of(const std::string& server, std::size_t index) {
  if (server == "threads") return "#9e9e9e";
  if (server == kFloor) return "#546e7a";
  if (server == "evloop-1") return "#1e88e5";
  if (server == "evloop-2") return "#43a047";
  static const char* const other[] = {"#fb8c00", "#8e24aa", "#e53935", "#00897b"};
  return other[index % 4];
}

void text(std::ostringstream& svg, int x, int y, const std::string& s, const char* attrs = "") {
  svg << "<text x=\"" << x << "\" y=\"" << y << "\" " << attrs << ">" << xml(s) << "</text>\n";
}

struct Panel {
  const char* title;
  std::function<double(const Run&)> field;
  std::function<std::string(double)> value;
};

// One panel's bars for one scenario, rows starting at `top`.
void bars(std::ostringstream& svg, const Report& r, const Scenario& sc, const Panel& panel, int x0,
          int top) {
  std::vector<Stat> stats;
  double scale = 0;
  for (const ServerSpec& sv : r.servers) {
    stats.push_back(stat_of(r, sc.name, sv.name, panel.field));
    if (stats.back().valid()) scale = std::max(scale, stats.back().max);
  }
  const Stat floor = stat_of(r, sc.name, kFloor, panel.field);
  auto x_of = [&](double v) { return x0 + static_cast<int>(v / scale * kBarMax + 0.5); };
  for (std::size_t i = 0; i < stats.size(); ++i) {
    const Stat& s = stats[i];
    const int y = top + static_cast<int>(i) * kRow;
    if (!s.valid() || scale <= 0) {
      text(svg, x0 + 4, y + 11, "no result", "class=\"note\"");
      continue;
    }
    const int mid = y + kBar / 2;
    svg << "<rect x=\"" << x0 << "\" y=\"" << y << "\" width=\"" << x_of(s.median) - x0
        << "\" height=\"" << kBar << "\" fill=\"" << color_of(r.servers[i].name, i) << "\"/>\n";
    if (s.n > 1) {
      const int lo = x_of(s.min), hi = x_of(s.max);
      svg << "<path d=\"M" << lo << ' ' << mid << "H" << hi << "M" << lo << ' ' << mid - 4 << "v8M"
          << hi << ' ' << mid - 4 << "v8\" class=\"whisker\"/>\n";
    }
    std::string label = panel.value(s.median);
    if (r.servers[i].name == kFloor)
      label += " · the floor";
    else if (floor.valid() && floor.median > 0)
      label += " · " + fmt("%.2f", s.median / floor.median) + "×";
    text(svg, std::max(x_of(s.median), x_of(s.max)) + 6, y + 11, label);
  }
}

}  // namespace

std::string render_svg(const Report& r) {
  const Panel panels[2] = {
      {"messages per second (higher is better)", [](const Run& x) { return x.msgs_per_s; },
       [](double v) { return si(v); }},
      {"server CPU µs per message (lower is better)",
       [](const Run& x) { return x.server_cpu_us_per_msg; },
       [](double v) { return fmt(v < 10 ? "%.2f µs" : "%.1f µs", v); }},
  };
  std::vector<const Scenario*> echo;
  for (const Scenario& sc : r.scenarios)
    if (!sc.idle) echo.push_back(&sc);
  const int group = 22 + static_cast<int>(r.servers.size()) * kRow + 14;
  const int first_group = 142;
  const int height = first_group + static_cast<int>(echo.size()) * group + 34;

  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << kWidth << ' ' << height << "\" font-family=\"DejaVu Sans, "
      << "Helvetica, Arial, sans-serif\" font-size=\"12\" fill=\"#212121\">\n"
      << "<style>.title{font-size:16px;font-weight:bold}.head{font-weight:bold}"
         ".note{fill:#616161}.whisker{stroke:#212121;stroke-width:1;fill:none}</style>\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  text(svg, 16, 26, "evloop echo benchmark: medians of " + std::to_string(r.rounds) + " round(s)",
       "class=\"title\"");
  text(svg, 16, 46, r.date_utc + " · " + r.machine, "class=\"note\"");
  text(svg, 16, 64,
       "Bars: medians, whiskers: min–max over the rounds. Labels: the median and its ratio to the "
       "floor's median (the floor:",
       "class=\"note\"");
  text(svg, 16, 80, "a minimal hand-written epoll server, measured in the same run).",
       "class=\"note\"");
  int x = 16;
  for (std::size_t i = 0; i < r.servers.size(); ++i) {
    const std::string& name = r.servers[i].name;
    svg << "<rect x=\"" << x << "\" y=\"92\" width=\"12\" height=\"12\" fill=\""
        << color_of(name, i) << "\"/>\n";
    const std::string label = name == kFloor ? name + " (the floor)" : name;
    text(svg, x + 17, 102, label);
    x += 30 + static_cast<int>(label.size()) * 7;
  }
  for (int p = 0; p < 2; ++p) text(svg, kPanelX[p], 132, panels[p].title, "class=\"head\"");

  int top = first_group;
  for (const Scenario* sc : echo) {
    text(svg, 16, top + 14, sc->name, "class=\"head\"");
    const int rows = top + 22;
    for (std::size_t i = 0; i < r.servers.size(); ++i)
      text(svg, kNameRight, rows + static_cast<int>(i) * kRow + 11, r.servers[i].name,
           "text-anchor=\"end\"");
    for (int p = 0; p < 2; ++p) bars(svg, r, *sc, panels[p], kPanelX[p], rows);
    top += group;
  }
  text(svg, 16, height - 28,
       "Each scenario has its own scale. bench/README.md says what each "
       "figure means.",
       "class=\"note\"");
  text(svg, 16, height - 12, "Command: " + r.command, "class=\"note\"");
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace bench
