// Internal to bench/. The runner's results and their rendering: one record per run, medians
// (min-max) per scenario and server, ratios to the baselines measured in the same invocation, the
// issue's targets checked against the figures, as Markdown, as JSON (read back by
// parse_report_json) and as an SVG chart (runner_chart.cpp).
#pragma once

#include <cmath>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace bench {

/// One scenario of the suite.
struct Scenario {
  std::string name;   ///< e.g. "50x64B d1"
  bool idle = false;  ///< RSS-per-connection scenario instead of echo
  unsigned conns = 0;
  unsigned size = 0;
  unsigned depth = 0;
};

/// One server under test.
struct ServerSpec {
  std::string name;               ///< "threads", "epoll", "evloop-1", "evloop-2"
  std::vector<std::string> argv;  ///< full command; the runner appends nothing
  bool has_stats = false;         ///< prints evloop's {"stats":...} line on exit
};

/// One load-generator run against one freshly started server.
struct Run {
  std::string scenario, server;
  int round = 0;
  bool ok = false;
  std::string error;
  // Echo scenarios.
  double msgs_per_s = 0, mb_per_s = 0, p50_us = 0, p99_us = 0, p999_us = 0;
  double server_cpu_us_per_msg = -1;  ///< utime+stime over the measured window / messages
  double loadgen_cpu_pct = 0;
  double syscalls_per_msg = -1;  ///< from evloop's counters (whole server lifetime)
  double poller_changes_per_msg = -1;
  double waits_per_msg = -1;
  double reads_per_msg = -1;
  double writes_per_msg = -1;
  double write_arms_per_msg = -1;
  // Idle scenario.
  double rss_base_kib = 0, rss_kib = 0, rss_bytes_per_conn = 0;
  unsigned conns = 0;
  // Raw machine-readable lines, kept verbatim in the JSON file.
  std::string loadgen_json, stats_json;
};

/// Syscalls per echoed message counted by `strace -c -f` on one short run (a cross-check).
struct StraceRun {
  std::string server, scenario;
  bool ok = false;
  double messages = 0;
  double io_calls_per_msg =
      0;  ///< epoll_wait/epoll_pwait, read/recv*, write/send*, epoll_ctl, accept*
  double epoll_ctl_per_msg = 0;
  double waits_per_msg = 0;
  std::string table;  ///< strace's own summary
};

/// Everything one invocation of the runner measured.
struct Report {
  std::string machine;  ///< one line: CPUs, model, kernel
  std::string date_utc;
  std::string command;
  std::string notes;  ///< pinning, limits, skipped servers
  unsigned rounds = 0;
  double duration_s = 0, warmup_s = 0;
  std::vector<Scenario> scenarios;
  std::vector<ServerSpec> servers;
  std::vector<Run> runs;
  std::vector<StraceRun> strace;
};

/// Median, min and max of one figure over the successful runs of (scenario, server).
struct Stat {
  double median = NAN, min = NAN, max = NAN;
  std::size_t n = 0;
  bool valid() const { return n > 0; }
};
/// The Stat of `field` (negative or NaN values are "not measured" and left out).
Stat stat_of(const Report& r, const std::string& scenario, const std::string& server,
             const std::function<double(const Run&)>& field);
/// 123456 -> "123.5k"; 1234567 -> "1.23M".
std::string si(double x);

/// The Markdown summary: tables of medians with ratios, then the targets of issue 3.
std::string render_markdown(const Report& report);
/// The JSON document: configuration, every run (with the raw lines), and the medians.
std::string render_json(const Report& report);
/// A Report back from render_json's output, with what the chart needs (the header, scenarios,
/// servers, and each run's scenario, server, round, ok, msg/s, server CPU/msg, RSS/conn);
/// nothing when `json` is not the runner's.
std::optional<Report> parse_report_json(const std::string& json);
/// The SVG chart: per echo scenario, msg/s and server CPU per message, one bar per server (median,
/// min-max whisker), each labelled with its ratio to the epoll floor.
std::string render_svg(const Report& report);

/// A number from a flat JSON line: the value after the first "key":. NaN when absent.
double json_number(const std::string& line, const std::string& key);
/// A string from a flat JSON line: the value after the first "key":" (no escapes). Empty when
/// absent.
std::string json_string(const std::string& line, const std::string& key);

}  // namespace bench
