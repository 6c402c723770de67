// The runner's Markdown and JSON rendering (see runner_report.hpp).
#include "runner_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <sstream>

namespace bench {
namespace {

std::size_t failures(const Report& r, const std::string& scenario, const std::string& server) {
  std::size_t n = 0;
  for (const Run& run : r.runs)
    if (run.scenario == scenario && run.server == server && !run.ok) ++n;
  return n;
}

// Which side limited a run (medians over rounds): the server when it used ~a whole CPU, the load
// generator when it did and the server did not (then msg/s ratios say little about the servers:
// compare CPU per message), neither when both waited (a busy machine).
std::string bound_by(const Report& r, const std::string& scenario, const std::string& server) {
  const Stat server_pct = stat_of(r, scenario, server, [](const Run& x) {
    return x.server_cpu_us_per_msg < 0 ? -1.0 : x.server_cpu_us_per_msg * x.msgs_per_s / 1e4;
  });
  const Stat load_pct =
      stat_of(r, scenario, server, [](const Run& x) { return x.loadgen_cpu_pct; });
  if (!server_pct.valid() || !load_pct.valid()) return "–";
  if (server_pct.median >= 90) return "server";
  if (load_pct.median >= 90) return "**load generator**";
  return "neither (busy machine)";
}

double msgs(const Run& r) { return r.msgs_per_s; }
double cpu(const Run& r) { return r.server_cpu_us_per_msg; }

std::string json_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string json_num(double x) {
  if (std::isnan(x) || std::isinf(x)) return "null";
  return fmt("%.6g", x);
}

std::string json_stat(const Stat& s) {
  return "{\"median\":" + json_num(s.median) + ",\"min\":" + json_num(s.min) +
         ",\"max\":" + json_num(s.max) + ",\"n\":" + std::to_string(s.n) + "}";
}

const char* verdict(bool pass) { return pass ? "**met**" : "**missed**"; }

void targets(const Report& r, std::ostringstream& md) {
  const std::string one = "evloop-1";
  bool have_one = false;
  for (const ServerSpec& s : r.servers) have_one |= s.name == one;
  if (!have_one) {
    md << "\nTargets: not checked (evloop's echo-server was not run).\n";
    return;
  }
  md << "\n### Targets of issue 3 (evloop with 1 loop, medians of this run)\n\n";
  if (r.rounds < 3) {
    // One short run per server: a busy neighbour on a shared machine moves a single run's
    // figures by as much as the margins judged here.
    md << "Indicative only: " << r.rounds << " round(s) of " << fmt("%g", r.duration_s)
       << " s. On a shared machine a single short run moves by 10% and more; `runner` "
          "without `--quick` (3 interleaved rounds of 5 s) judges these targets.\n\n";
  }
  md << "| target | figure | verdict |\n|---|---|---|\n";
  for (const Scenario& sc : r.scenarios) {
    if (sc.idle) continue;
    const Stat e = stat_of(r, sc.name, one, msgs), f = stat_of(r, sc.name, "epoll", msgs);
    if (e.valid() && f.valid())
      md << "| ≥ 0.95× epoll floor msg/s, " << sc.name << " | " << fmt("%.3f×", e.median / f.median)
         << " | " << verdict(e.median >= 0.95 * f.median) << " |\n";
  }
  for (const Scenario& sc : r.scenarios) {
    if (sc.idle) continue;
    const Stat e = stat_of(r, sc.name, one, cpu), f = stat_of(r, sc.name, "epoll", cpu);
    if (e.valid() && f.valid())
      md << "| ≤ 1.05× epoll floor server CPU/msg, " << sc.name << " | "
         << fmt("%.3f×", e.median / f.median) << " (" << fmt("%.2f", e.median) << " vs "
         << fmt("%.2f", f.median) << " µs) | " << verdict(e.median <= 1.05 * f.median) << " |\n";
  }
  for (const Scenario& sc : r.scenarios) {
    if (sc.idle || sc.conns != 1000) continue;
    const Stat e = stat_of(r, sc.name, one, msgs), t = stat_of(r, sc.name, "threads", msgs);
    if (e.valid() && t.valid())
      md << "| ≥ 1.5× plain threads msg/s, " << sc.name << " | "
         << fmt("%.2f×", e.median / t.median) << " | " << verdict(e.median >= 1.5 * t.median)
         << " |\n";
  }
  std::optional<double> d1, d16;
  for (const Scenario& sc : r.scenarios) {
    if (sc.idle) continue;
    const Stat s = stat_of(r, sc.name, one, [](const Run& x) { return x.syscalls_per_msg; });
    const Stat p = stat_of(r, sc.name, one, [](const Run& x) { return x.poller_changes_per_msg; });
    if (p.valid())
      md << "| no epoll_ctl per message, " << sc.name << " | " << fmt("%.4f", p.median)
         << " epoll_ctl/msg | " << verdict(p.median < 0.01) << " |\n";
    if (sc.conns == 50 && sc.size == 64 && sc.depth == 1 && s.valid()) d1 = s.median;
    if (sc.conns == 50 && sc.size == 64 && sc.depth == 16 && s.valid()) d16 = s.median;
  }
  if (d1)
    md << "| ≤ 2.5 syscalls/msg at 50 conns × 64 B, depth 1 | " << fmt("%.2f", *d1) << " | "
       << verdict(*d1 <= 2.5) << " |\n";
  if (d1 && d16)
    md << "| fewer syscalls/msg at depth 16 | " << fmt("%.2f", *d16) << " | " << verdict(*d16 < *d1)
       << " |\n";
  for (const Scenario& sc : r.scenarios) {
    if (!sc.idle) continue;
    const Stat s = stat_of(r, sc.name, one, [](const Run& x) { return x.rss_bytes_per_conn; });
    if (s.valid())
      md << "| ≤ 1 KiB server RSS per idle connection (" << sc.conns << ") | "
         << fmt("%.0f B", s.median) << " | " << verdict(s.median <= 1024) << " |\n";
  }
  md << "| post-to-run p50 ≤ 20 µs; ≥ 100 posts per eventfd write | measured by the "
        "micro-benchmarks (`bench_micro`), not by the runner | – |\n";
}

}  // namespace

Stat stat_of(const Report& r, const std::string& scenario, const std::string& server,
             const std::function<double(const Run&)>& field) {
  std::vector<double> v;
  for (const Run& run : r.runs) {
    if (run.scenario != scenario || run.server != server || !run.ok) continue;
    const double x = field(run);
    if (x >= 0 && !std::isnan(x)) v.push_back(x);
  }
  return summarize(std::move(v));
}

Stat summarize(std::vector<double> v) {
  Stat s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = v.size();
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  return s;
}

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

std::string with_range(const Stat& s, const std::function<std::string(double)>& f) {
  if (!s.valid()) return "–";
  if (s.n == 1) return f(s.median);
  return f(s.median) + " (" + f(s.min) + "–" + f(s.max) + ")";
}

std::string ratio(double a, double b) {
  if (std::isnan(a) || std::isnan(b) || b <= 0) return "–";
  const double q = a / b;
  return fmt(q >= 0.1 ? "%.2f×" : "%.4f×", q);
}

std::string si(double x) {
  if (x >= 1e6) return fmt("%.2fM", x / 1e6);
  if (x >= 1e3) return fmt("%.1fk", x / 1e3);
  return fmt("%.0f", x);
}

double json_number(const std::string& line, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const auto at = line.find(k);
  if (at == std::string::npos) return NAN;
  return std::strtod(line.c_str() + at + k.size(), nullptr);
}

std::string json_string(const std::string& line, const std::string& key) {
  const std::string k = "\"" + key + "\":\"";
  const auto at = line.find(k);
  if (at == std::string::npos) return {};
  const auto end = line.find('"', at + k.size());
  return line.substr(at + k.size(),
                     end == std::string::npos ? std::string::npos : end - at - k.size());
}

std::string render_markdown(const Report& r) {
  std::ostringstream md;
  md << "## evloop echo benchmark, " << r.date_utc << "\n\n"
     << "- Machine: " << r.machine << "\n"
     << "- Command: `" << r.command << "`\n"
     << "- " << r.rounds << " round(s), servers interleaved; each run " << fmt("%g", r.duration_s)
     << " s measured after " << fmt("%g", r.warmup_s)
     << " s warm-up, against a freshly started server\n";
  if (!r.notes.empty()) md << "- " << r.notes << "\n";

  md << "\n### Echo: medians (min–max)\n\n"
     << "| scenario | server | msg/s | × threads | × epoll | p50 µs | p99 µs | p99.9 µs "
        "| server CPU µs/msg | CPU × epoll | server CPU | loadgen CPU | bound by | syscalls/msg |\n"
     << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const Scenario& sc : r.scenarios) {
    if (sc.idle) continue;
    const Stat th = stat_of(r, sc.name, "threads", msgs), ep = stat_of(r, sc.name, "epoll", msgs);
    const Stat ep_cpu = stat_of(r, sc.name, "epoll", cpu);
    for (const ServerSpec& sv : r.servers) {
      const Stat m = stat_of(r, sc.name, sv.name, msgs);
      const std::size_t failed = failures(r, sc.name, sv.name);
      md << "| " << sc.name << " | " << sv.name << " | " << with_range(m, si);
      if (failed) md << " **" << failed << " failed**";
      const Stat c = stat_of(r, sc.name, sv.name, cpu);
      auto f2 = [](double x) { return fmt("%.2f", x); };
      auto f1 = [](double x) { return fmt("%.1f", x); };
      md << " | " << ratio(m.median, th.median) << " | " << ratio(m.median, ep.median) << " | "
         << with_range(stat_of(r, sc.name, sv.name, [](const Run& x) { return x.p50_us; }), f1)
         << " | "
         << with_range(stat_of(r, sc.name, sv.name, [](const Run& x) { return x.p99_us; }), f1)
         << " | "
         << with_range(stat_of(r, sc.name, sv.name, [](const Run& x) { return x.p999_us; }), f1)
         << " | " << with_range(c, f2) << " | " << ratio(c.median, ep_cpu.median) << " | "
         << with_range(stat_of(r, sc.name, sv.name,
                               [](const Run& x) {
                                 return x.server_cpu_us_per_msg < 0
                                            ? -1.0
                                            : x.server_cpu_us_per_msg * x.msgs_per_s / 1e4;
                               }),
                       [](double x) { return fmt("%.0f%%", x); })
         << " | "
         << with_range(stat_of(r, sc.name, sv.name, [](const Run& x) { return x.loadgen_cpu_pct; }),
                       [](double x) { return fmt("%.0f%%", x); })
         << " | " << bound_by(r, sc.name, sv.name) << " | "
         << with_range(
                stat_of(r, sc.name, sv.name, [](const Run& x) { return x.syscalls_per_msg; }), f2)
         << " |\n";
    }
  }

  bool any_counters = false;
  for (const Run& run : r.runs) any_counters |= run.ok && run.syscalls_per_msg >= 0;
  if (any_counters) {
    md << "\n### Where evloop's syscalls go: its counters per echoed message (medians)\n\n"
       << "| scenario | server | epoll_wait | read | write | epoll_ctl | write arms | total |\n"
       << "|---|---|---|---|---|---|---|---|\n";
    auto med = [&](const std::string& sc, const std::string& sv, double Run::*field) {
      const Stat s = stat_of(r, sc, sv, [field](const Run& x) { return x.*field; });
      return s.valid() ? fmt("%.3f", s.median) : std::string("–");
    };
    for (const Scenario& sc : r.scenarios) {
      if (sc.idle) continue;
      for (const ServerSpec& sv : r.servers) {
        if (!sv.has_stats) continue;
        md << "| " << sc.name << " | " << sv.name << " | "
           << med(sc.name, sv.name, &Run::waits_per_msg) << " | "
           << med(sc.name, sv.name, &Run::reads_per_msg) << " | "
           << med(sc.name, sv.name, &Run::writes_per_msg) << " | "
           << med(sc.name, sv.name, &Run::poller_changes_per_msg) << " | "
           << med(sc.name, sv.name, &Run::write_arms_per_msg) << " | "
           << med(sc.name, sv.name, &Run::syscalls_per_msg) << " |\n";
      }
    }
  }

  for (const Scenario& sc : r.scenarios) {
    if (!sc.idle) continue;
    md << "\n### Idle connections: server RSS per connection, " << sc.conns
       << " connections (VmRSS with them open minus VmRSS before)\n\n"
       << "| server | bytes per connection | × threads | VmRSS before → with connections |\n"
       << "|---|---|---|---|\n";
    const Stat th =
        stat_of(r, sc.name, "threads", [](const Run& x) { return x.rss_bytes_per_conn; });
    for (const ServerSpec& sv : r.servers) {
      const Stat s =
          stat_of(r, sc.name, sv.name, [](const Run& x) { return x.rss_bytes_per_conn; });
      const Stat b = stat_of(r, sc.name, sv.name, [](const Run& x) { return x.rss_base_kib; });
      const Stat a = stat_of(r, sc.name, sv.name, [](const Run& x) { return x.rss_kib; });
      md << "| " << sv.name << " | " << with_range(s, [](double x) { return fmt("%.0f", x); });
      if (const std::size_t failed = failures(r, sc.name, sv.name))
        md << " **" << failed << " failed**";
      md << " | " << ratio(s.median, th.median) << " | "
         << (b.valid() ? fmt("%.0f KiB", b.median) + " → " + fmt("%.0f KiB", a.median) : "–")
         << " |\n";
    }
  }

  if (!r.strace.empty()) {
    md << "\n### Syscalls per echoed message, counted by `strace -c -f` (one short run each; "
          "tracing slows the server, so batching differs from the untraced runs)\n\n"
       << "| server | scenario | I/O syscalls/msg | waits/msg (epoll_wait or io_uring_enter) | "
          "epoll_ctl/msg |\n"
       << "|---|---|---|---|---|\n";
    for (const StraceRun& s : r.strace) {
      md << "| " << s.server << " | " << s.scenario << " | "
         << (s.ok ? fmt("%.2f", s.io_calls_per_msg) : std::string("failed")) << " | "
         << fmt("%.3f", s.waits_per_msg) << " | " << fmt("%.4f", s.epoll_ctl_per_msg) << " |\n";
    }
  }

  targets(r, md);

  std::size_t failed = 0;
  for (const Run& run : r.runs) failed += run.ok ? 0 : 1;
  if (failed) {
    md << "\n### Failed runs\n\n";
    for (const Run& run : r.runs)
      if (!run.ok)
        md << "- " << run.scenario << " / " << run.server << " / round " << run.round << ": "
           << run.error << "\n";
  }
  return md.str();
}

std::string render_json(const Report& r) {
  std::ostringstream js;
  js << "{\n\"date_utc\":\"" << json_escape(r.date_utc) << "\",\"machine\":\""
     << json_escape(r.machine) << "\",\"command\":\"" << json_escape(r.command) << "\",\"notes\":\""
     << json_escape(r.notes) << "\",\"rounds\":" << r.rounds
     << ",\"duration_s\":" << json_num(r.duration_s) << ",\"warmup_s\":" << json_num(r.warmup_s)
     << ",\n\"summary\":[";
  bool first = true;
  for (const Scenario& sc : r.scenarios) {
    for (const ServerSpec& sv : r.servers) {
      js << (first ? "\n" : ",\n");
      first = false;
      js << "{\"scenario\":\"" << json_escape(sc.name) << "\",\"server\":\"" << sv.name
         << "\",\"failed\":" << failures(r, sc.name, sv.name);
      if (sc.idle) {
        js << ",\"rss_bytes_per_conn\":"
           << json_stat(
                  stat_of(r, sc.name, sv.name, [](const Run& x) { return x.rss_bytes_per_conn; }));
      } else {
        const Stat m = stat_of(r, sc.name, sv.name, msgs);
        const Stat c = stat_of(r, sc.name, sv.name, cpu);
        js << ",\"msgs_per_s\":" << json_stat(m) << ",\"ratio_to_threads\":"
           << json_num(m.median / stat_of(r, sc.name, "threads", msgs).median)
           << ",\"ratio_to_epoll\":"
           << json_num(m.median / stat_of(r, sc.name, "epoll", msgs).median)
           << ",\"server_cpu_us_per_msg\":" << json_stat(c) << ",\"cpu_ratio_to_epoll\":"
           << json_num(c.median / stat_of(r, sc.name, "epoll", cpu).median) << ",\"p50_us\":"
           << json_stat(stat_of(r, sc.name, sv.name, [](const Run& x) { return x.p50_us; }))
           << ",\"p99_us\":"
           << json_stat(stat_of(r, sc.name, sv.name, [](const Run& x) { return x.p99_us; }))
           << ",\"p999_us\":"
           << json_stat(stat_of(r, sc.name, sv.name, [](const Run& x) { return x.p999_us; }))
           << ",\"loadgen_cpu_pct\":"
           << json_stat(
                  stat_of(r, sc.name, sv.name, [](const Run& x) { return x.loadgen_cpu_pct; }))
           << ",\"syscalls_per_msg\":"
           << json_stat(
                  stat_of(r, sc.name, sv.name, [](const Run& x) { return x.syscalls_per_msg; }))
           << ",\"poller_changes_per_msg\":"
           << json_stat(stat_of(r, sc.name, sv.name,
                                [](const Run& x) { return x.poller_changes_per_msg; }));
      }
      js << "}";
    }
  }
  js << "\n],\n\"runs\":[";
  first = true;
  for (const Run& run : r.runs) {
    js << (first ? "\n" : ",\n");
    first = false;
    js << "{\"scenario\":\"" << json_escape(run.scenario) << "\",\"server\":\"" << run.server
       << "\",\"round\":" << run.round << ",\"ok\":" << (run.ok ? "true" : "false")
       << ",\"error\":\"" << json_escape(run.error) << "\"";
    if (run.conns) {
      js << ",\"conns\":" << run.conns << ",\"rss_base_kib\":" << json_num(run.rss_base_kib)
         << ",\"rss_kib\":" << json_num(run.rss_kib)
         << ",\"rss_bytes_per_conn\":" << json_num(run.rss_bytes_per_conn);
    }
    if (run.syscalls_per_msg >= 0) js << ",\"syscalls_per_msg\":" << json_num(run.syscalls_per_msg);
    js << ",\"loadgen\":" << (run.loadgen_json.empty() ? "null" : run.loadgen_json)
       << ",\"server_stats\":" << (run.stats_json.empty() ? "null" : run.stats_json) << "}";
  }
  js << "\n],\n\"strace\":[";
  first = true;
  for (const StraceRun& s : r.strace) {
    js << (first ? "\n" : ",\n");
    first = false;
    js << "{\"server\":\"" << s.server << "\",\"scenario\":\"" << json_escape(s.scenario)
       << "\",\"ok\":" << (s.ok ? "true" : "false") << ",\"messages\":" << json_num(s.messages)
       << ",\"io_calls_per_msg\":" << json_num(s.io_calls_per_msg)
       << ",\"epoll_wait_per_msg\":" << json_num(s.waits_per_msg)
       << ",\"epoll_ctl_per_msg\":" << json_num(s.epoll_ctl_per_msg) << ",\"summary\":\""
       << json_escape(s.table) << "\"}";
  }
  js << "\n]\n}\n";
  return js.str();
}

std::optional<Report> parse_report_json(const std::string& json) {
  std::istringstream in(json);
  std::string line;
  Report r;
  bool header = false;
  auto add_once = [](auto& list, const std::string& name, auto make) {
    for (const auto& x : list)
      if (x.name == name) return;
    list.push_back(make());
  };
  while (std::getline(in, line)) {
    if (line.rfind("\"date_utc\":", 0) == 0) {
      header = true;
      r.date_utc = json_string(line, "date_utc");
      r.machine = json_string(line, "machine");
      r.command = json_string(line, "command");
      r.notes = json_string(line, "notes");
      r.rounds = static_cast<unsigned>(json_number(line, "rounds"));
      r.duration_s = json_number(line, "duration_s");
      r.warmup_s = json_number(line, "warmup_s");
      continue;
    }
    // A run (the summary's lines have no error): render_json writes scenario, server, round and
    // ok first, then the error and the raw lines (whose keys may repeat these names).
    const auto error_at = line.find(",\"error\":");
    if (line.rfind("{\"scenario\":", 0) != 0 || error_at == std::string::npos) continue;
    const std::string head = line.substr(0, error_at);
    Run run;
    run.scenario = json_string(head, "scenario");
    run.server = json_string(head, "server");
    run.round = static_cast<int>(json_number(head, "round"));
    run.ok = head.find("\"ok\":true") != std::string::npos;
    run.msgs_per_s = json_number(line, "msgs_per_s");
    run.server_cpu_us_per_msg = json_number(line, "server_cpu_us_per_msg");
    run.rss_bytes_per_conn = json_number(line, "rss_bytes_per_conn");
    const bool idle = !std::isnan(run.rss_bytes_per_conn);
    add_once(r.scenarios, run.scenario, [&] { return Scenario{run.scenario, idle}; });
    add_once(r.servers, run.server, [&] { return ServerSpec{run.server, {}}; });
    r.runs.push_back(std::move(run));
  }
  if (!header || r.runs.empty()) return std::nullopt;
  return r;
}

}  // namespace bench
