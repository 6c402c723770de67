// Internal to bench/. The runner's results and their rendering: one record per run, medians
// (min-max) per scenario and server, ratios to the baselines measured in the same invocation, the
// issue's targets checked against the figures, as Markdown and as JSON.
#pragma once

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

/// The Markdown summary: tables of medians with ratios, then the targets of issue 3.
std::string render_markdown(const Report& report);
/// The JSON document: configuration, every run (with the raw lines), and the medians.
std::string render_json(const Report& report);

}  // namespace bench
