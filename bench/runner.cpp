// runner: the benchmark suite in one command. Runs evloop's echo-server (1 and 2 loops) and the two
// baselines (threads = plain blocking sockets, epoll = the hand-written floor) through the echo
// scenarios and the idle-connections scenario, interleaving the servers round by round, with the
// server pinned to one CPU and the load generator to another. Writes a Markdown table of medians
// (min-max) with ratios to the baselines, a JSON file with every run, and an SVG chart. Exit status
// 1 if any run failed (an echo mismatch, a connection error, a server that did not start), 2 on bad
// usage.
#include <sched.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <sys/stat.h>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "runner_process.hpp"
#include "runner_report.hpp"
#include "runner_util.hpp"

#ifndef BENCH_ECHO_SERVER
#define BENCH_ECHO_SERVER ""
#endif
#ifndef BENCH_LOADGEN
#define BENCH_LOADGEN ""
#endif
#ifndef BENCH_BASELINE_THREADS
#define BENCH_BASELINE_THREADS ""
#endif
#ifndef BENCH_BASELINE_EPOLL
#define BENCH_BASELINE_EPOLL ""
#endif

using namespace std::chrono_literals;

namespace {

using bench::executable;
using bench::in_list;
using bench::json_number;
using bench::json_string;
using bench::load_average;
using bench::looks_like_json;
using bench::machine_line;
using bench::start_server;
using bench::Started;
using bench::stop_server;
using bench::utc_now;

struct Config : bench::RunnerArgs {
  unsigned idle_conns = 10'000;
  int strace = -1;         // -1: when not --quick and strace is installed
  std::string chart_from;  // --chart-from: only render the chart of this results.json
  std::string echo_server = BENCH_ECHO_SERVER;
  std::string loadgen = BENCH_LOADGEN;
  std::string threads = BENCH_BASELINE_THREADS;
  std::string epoll = BENCH_BASELINE_EPOLL;
};

void usage(FILE* out) {
  std::fprintf(
      out,
      "usage: runner [--quick] [--rounds N] [--duration S] [--warmup S] [--out DIR]\n"
      "              [--servers LIST] [--scenarios LIST] [--chart-from F.json] [--help] ...\n"
      "Runs evloop's echo-server (--loops 1 and 2 on epoll, --loops 1 on io_uring) and the\n"
      "baselines (threads: blocking sockets, one thread per connection; epoll: a minimal\n"
      "hand-written epoll loop) through the echo scenarios and the idle-connections\n"
      "scenario, servers interleaved, the server pinned to one CPU and the load generator\n"
      "to another. Prints a Markdown table of medians (min-max) and writes\n"
      "DIR/results.md, DIR/results.json and a chart, DIR/results.svg.\n"
      "  --quick           1 round, 1 s runs (the README demo; about a minute)\n"
      "  --rounds N        rounds, servers interleaved in each (default 3)\n"
      "  --duration S      measured seconds per run (default 5; --quick: 1)\n"
      "  --warmup S        unmeasured seconds before each run (default 1; --quick: 0.3)\n"
      "  --out DIR         where results.md and results.json go (default ./bench-results)\n"
      "  --idle-conns N    connections of the idle scenario (default 10000)\n"
      "  --servers LIST    subset, comma-separated: threads,epoll,evloop-1,evloop-2,\n"
      "                    evloop-uring (1 loop on io_uring; the notes say if it fell back);\n"
      "                    default: all\n"
      "  --scenarios LIST  subset, comma-separated: d1,d16,c1000,64k,idle\n"
      "  --strace | --no-strace  cross-check syscalls per message with strace -c -f\n"
      "                    (default: on unless --quick, when strace is installed)\n"
      "  --nice N          nice value for the server and the load generator (e.g. -10 on a\n"
      "                    machine busy with other work; negative needs root; default 0)\n"
      "  --cpus S,L        CPU for the server and for the load generator (default: the\n"
      "                    first two CPUs this process may use)\n"
      "  --echo-server P, --loadgen P, --baseline-threads P, --baseline-epoll P\n"
      "                    programs to run (default: the ones built beside the runner)\n"
      "  --chart-from F.json  run nothing: draw the chart of a saved results file as F.svg\n");
}

bool parse_args(int argc, char** argv, Config& cfg) {
  bench::ArgReader args("runner", argc, argv);
  while (args.next()) {
    const std::string& a = args.flag();
    if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (cfg.parse(args)) {
      continue;
    } else if (a == "--idle-conns") {
      cfg.idle_conns = bench::flag_number("runner", a, args.value(), 0u);
    } else if (a == "--strace") {
      cfg.strace = 1;
    } else if (a == "--no-strace") {
      cfg.strace = 0;
    } else if (a == "--echo-server") {
      cfg.echo_server = args.value();
    } else if (a == "--loadgen") {
      cfg.loadgen = args.value();
    } else if (a == "--baseline-threads") {
      cfg.threads = args.value();
    } else if (a == "--baseline-epoll") {
      cfg.epoll = args.value();
    } else if (a == "--chart-from") {
      cfg.chart_from = args.value();
    } else {
      return args.unknown();
    }
  }
  cfg.finish();
  return true;
}

/// VmRSS of a process in KiB, or -1.
double vm_rss_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr);
  return -1;
}

std::string find_strace() {
  for (const char* p : {"/usr/bin/strace", "/bin/strace", "/usr/local/bin/strace"})
    if (executable(p)) return p;
  return {};
}

class Runner {
 public:
  explicit Runner(Config cfg) : cfg_(std::move(cfg)) {}
  int run(int argc, char** argv);

 private:
  void raise_fd_limit();
  bench::Run echo_run(const bench::Scenario& sc, const bench::ServerSpec& sv, int round);
  bench::Run idle_run(const bench::Scenario& sc, const bench::ServerSpec& sv, int round);
  bench::StraceRun strace_run(const bench::Scenario& sc, const bench::ServerSpec& sv,
                              const std::string& strace);
  std::vector<std::string> loadgen_args(const bench::Scenario& sc, const std::string& port,
                                        double duration, double warmup) const;
  std::string server_log() const { return cfg_.out + "/servers.log"; }
  void note(const std::string& s) {
    if (!report_.notes.empty()) report_.notes += "; ";
    report_.notes += s;
  }

  Config cfg_;
  bench::Report report_;
};

void Runner::raise_fd_limit() {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  const rlim_t need = static_cast<rlim_t>(cfg_.idle_conns) + 256;
  if (rl.rlim_cur < need) {
    const unsigned fit = rl.rlim_cur > 512 ? static_cast<unsigned>(rl.rlim_cur - 256) : 0;
    note("RLIMIT_NOFILE hard limit " + std::to_string(rl.rlim_cur) + " is too low for " +
         std::to_string(cfg_.idle_conns) + " idle connections: measured " + std::to_string(fit));
    std::fprintf(stderr,
                 "runner: RLIMIT_NOFILE hard limit %llu too low for %u connections; using %u\n",
                 static_cast<unsigned long long>(rl.rlim_cur), cfg_.idle_conns, fit);
    cfg_.idle_conns = fit;
  }
}

std::vector<std::string> Runner::loadgen_args(const bench::Scenario& sc, const std::string& port,
                                              double duration, double warmup) const {
  return {cfg_.loadgen,
          "--connect",
          "tcp://127.0.0.1:" + port,
          "-c",
          std::to_string(sc.conns),
          "-s",
          std::to_string(sc.size),
          "-d",
          std::to_string(sc.depth),
          "-t",
          std::to_string(duration),
          "-w",
          std::to_string(warmup)};
}

bench::Run Runner::echo_run(const bench::Scenario& sc, const bench::ServerSpec& sv, int round) {
  bench::Run run;
  run.scenario = sc.name;
  run.server = sv.name;
  run.round = round;
  Started server;
  if (!start_server(sv.argv, cfg_.server_cpu, server_log(), cfg_.nice, server)) {
    run.error = server.error;
    return run;
  }
  auto args = loadgen_args(sc, server.port, cfg_.duration, cfg_.warmup);
  args.insert(args.end(), {"--server-pid", std::to_string(server.child.pid()), "--label",
                           sc.name + "/" + sv.name + "/" + std::to_string(round)});
  bench::Child load;
  std::string result;
  if (!load.spawn(args, cfg_.load_cpu, false, {}, cfg_.nice)) {
    run.error = "cannot start the load generator";
  } else {
    const auto limit =
        std::chrono::milliseconds(static_cast<long>((cfg_.duration + cfg_.warmup) * 1000) + 60'000);
    if (auto line = load.read_until("{\"loadgen\"", limit)) result = *line;
    const auto status = load.wait(10s);
    if (!status)
      run.error = "the load generator did not finish in time";
    else if (*status != 0)
      run.error = "the load generator exited with status " + std::to_string(*status);
  }
  std::string stop_error;
  const std::string stats = stop_server(server, stop_error);
  if (looks_like_json(result)) run.loadgen_json = result;
  if (looks_like_json(stats)) run.stats_json = stats;
  if (run.error.empty() && result.empty()) run.error = "no result line from the load generator";
  if (!json_string(result, "error").empty())
    run.error += (run.error.empty() ? "" : ": ") + json_string(result, "error");
  if (run.error.empty() && !stop_error.empty()) run.error = stop_error;
  run.ok = run.error.empty();
  run.msgs_per_s = json_number(result, "msgs_per_s");
  run.mb_per_s = json_number(result, "mb_per_s");
  run.p50_us = json_number(result, "p50");
  run.p99_us = json_number(result, "p99");
  run.p999_us = json_number(result, "p999");
  run.server_cpu_us_per_msg = json_number(result, "server_cpu_us_per_msg");
  run.loadgen_cpu_pct = json_number(result, "cpu_pct");
  const double total = json_number(result, "total_messages");
  if (sv.has_stats && !stats.empty() && total > 0) {
    // System calls from the loop's own counters. On io_uring, receives, sends and poll changes
    // are submissions that ride on the waits (io_uring_enter): only waits and accepts are calls.
    const bool uring = json_string(stats, "backend") == "io_uring";
    if (sv.name == "evloop-uring" && !uring) {
      note("evloop-uring ran on " + json_string(stats, "backend") +
           ": io_uring is unavailable here (see the server's note in servers.log)");
    }
    const double calls = json_number(stats, "waits") + json_number(stats, "accepts") +
                         (uring ? 0.0
                                : json_number(stats, "reads") + json_number(stats, "writes") +
                                      json_number(stats, "poller_changes"));
    run.syscalls_per_msg = calls / total;
    run.poller_changes_per_msg = json_number(stats, "poller_changes") / total;
    run.waits_per_msg = json_number(stats, "waits") / total;
    run.reads_per_msg = json_number(stats, "reads") / total;
    run.writes_per_msg = json_number(stats, "writes") / total;
    run.write_arms_per_msg = json_number(stats, "write_arms") / total;
  }
  return run;
}

bench::Run Runner::idle_run(const bench::Scenario& sc, const bench::ServerSpec& sv, int round) {
  bench::Run run;
  run.scenario = sc.name;
  run.server = sv.name;
  run.round = round;
  run.conns = sc.conns;
  Started server;
  if (!start_server(sv.argv, cfg_.server_cpu, server_log(), cfg_.nice, server)) {
    run.error = server.error;
    return run;
  }
  run.rss_base_kib = vm_rss_kib(server.child.pid());
  std::vector<std::string> args = {cfg_.loadgen,
                                   "--connect",
                                   "tcp://127.0.0.1:" + server.port,
                                   "-c",
                                   std::to_string(sc.conns),
                                   "-s",
                                   "64",
                                   "--idle",
                                   "--label",
                                   sc.name + "/" + sv.name + "/" + std::to_string(round)};
  bench::Child load;
  std::string result;
  if (!load.spawn(args, cfg_.load_cpu, true, {}, cfg_.nice)) {
    run.error = "cannot start the load generator";
  } else {
    // "ready N" once every connection has echoed; a failing load generator prints its JSON
    // result line instead.
    auto line = load.read_line(150s);
    while (line && line->rfind("ready", 0) != 0 && line->rfind("{\"loadgen\"", 0) != 0)
      line = load.read_line(150s);
    if (line && line->rfind("ready", 0) == 0) {
      run.rss_kib = vm_rss_kib(server.child.pid());
      run.rss_bytes_per_conn = (run.rss_kib - run.rss_base_kib) * 1024.0 / sc.conns;
    } else {
      run.error = "the load generator did not get every connection echoing";
      if (line) result = *line;
    }
  }
  load.close_stdin();
  if (result.empty()) {
    if (auto line = load.read_until("{\"loadgen\"", 30s)) result = *line;
  }
  const auto status = load.wait(10s);
  if (!json_string(result, "error").empty())
    run.error += (run.error.empty() ? "" : ": ") + json_string(result, "error");
  else if (run.error.empty() && (!status || *status != 0))
    run.error = "the load generator failed";
  std::string stop_error;
  stop_server(server, stop_error);
  if (looks_like_json(result)) run.loadgen_json = result;
  if (run.error.empty()) run.error = stop_error;
  run.ok = run.error.empty();
  return run;
}

bench::StraceRun Runner::strace_run(const bench::Scenario& sc, const bench::ServerSpec& sv,
                                    const std::string& strace) {
  bench::StraceRun out;
  out.server = sv.name;
  out.scenario = sc.name;
  const std::string file = cfg_.out + "/strace-" + sv.name + ".txt";
  std::vector<std::string> argv = {strace, "-f", "-c", "-o", file, "--"};
  argv.insert(argv.end(), sv.argv.begin(), sv.argv.end());
  Started server;
  if (!start_server(argv, cfg_.server_cpu, server_log(), cfg_.nice, server)) return out;
  bench::Child load;
  std::string result;
  if (load.spawn(loadgen_args(sc, server.port, 1.0, 0.2), cfg_.load_cpu, false, {}, cfg_.nice)) {
    if (auto line = load.read_until("{\"loadgen\"", 90s)) result = *line;
    load.wait(10s);
  }
  // Stop the traced server itself (strace's child), so strace writes its summary and exits.
  std::ifstream children("/proc/" + std::to_string(server.child.pid()) + "/task/" +
                         std::to_string(server.child.pid()) + "/children");
  pid_t traced = 0;
  children >> traced;
  if (traced > 0) kill(traced, SIGTERM);
  std::string stop_error;
  stop_server(server, stop_error);
  out.messages = json_number(result, "total_messages");
  std::ifstream f(file);
  std::string line;
  double io = 0, ctl = 0, waits = 0;
  while (std::getline(f, line)) {
    out.table += line + "\n";
    std::istringstream ls(line);
    std::vector<std::string> tok;
    for (std::string t; ls >> t;) tok.push_back(t);
    if (tok.size() < 5 || !std::isdigit(static_cast<unsigned char>(tok[0][0]))) continue;
    const std::string& name = tok.back();
    const double calls = std::strtod(tok[3].c_str(), nullptr);
    // io_uring_enter is the io_uring backend's wait and its submission of every send and receive.
    const bool is_wait = name == "epoll_wait" || name == "epoll_pwait" || name == "epoll_pwait2" ||
                         name == "io_uring_enter";
    const bool is_io = name == "read" || name == "recvfrom" || name == "recvmsg" ||
                       name == "readv" || name == "write" || name == "sendto" ||
                       name == "sendmsg" || name == "writev" || name == "epoll_ctl" ||
                       name == "accept" || name == "accept4";
    if (is_wait) waits += calls;
    if (name == "epoll_ctl") ctl += calls;
    if (is_wait || is_io) io += calls;
  }
  if (out.messages > 0 && !out.table.empty()) {
    out.ok = true;
    out.io_calls_per_msg = io / out.messages;
    out.epoll_ctl_per_msg = ctl / out.messages;
    out.waits_per_msg = waits / out.messages;
  }
  return out;
}

int Runner::run(int argc, char** argv) {
  report_.command = "runner";
  for (int i = 1; i < argc; ++i) report_.command += std::string(" ") + argv[i];
  report_.machine = machine_line();
  report_.date_utc = utc_now();
  report_.rounds = cfg_.rounds;
  report_.duration_s = cfg_.duration;
  report_.warmup_s = cfg_.warmup;

  if (!executable(cfg_.loadgen)) {
    std::fprintf(stderr, "runner: load generator not found (%s); pass --loadgen\n",
                 cfg_.loadgen.c_str());
    return 2;
  }
  mkdir(cfg_.out.c_str(), 0755);
  const std::string load_before = load_average();
  cfg_.pick_cpus();
  raise_fd_limit();
  if (cfg_.server_cpu >= 0)
    note("server pinned to CPU " + std::to_string(cfg_.server_cpu) + ", load generator to CPU " +
         std::to_string(cfg_.load_cpu) + " (both evloop-2 loops share the server's CPU)");
  else
    note("only one CPU available: nothing pinned");
  if (cfg_.nice != 0) note("server and load generator run at nice " + std::to_string(cfg_.nice));

  const std::string listen = "tcp://127.0.0.1:0";
  struct Candidate {
    std::string name, path;
    std::vector<std::string> extra;
    bool stats;
  };
  const std::vector<Candidate> candidates = {
      {"threads", cfg_.threads, {}, false},
      {"epoll", cfg_.epoll, {}, false},
      {"evloop-1", cfg_.echo_server, {"--loops", "1", "--stats"}, true},
      {"evloop-2", cfg_.echo_server, {"--loops", "2", "--stats"}, true},
      {"evloop-uring",
       cfg_.echo_server,
       {"--loops", "1", "--stats", "--backend", "io_uring"},
       true},
  };
  for (const Candidate& c : candidates) {
    if (!in_list(cfg_.only_servers, c.name)) continue;
    if (!executable(c.path)) {
      note(c.name + " skipped (program not found: '" + c.path + "')");
      continue;
    }
    bench::ServerSpec s{c.name, {c.path, "--listen", listen}, c.stats};
    s.argv.insert(s.argv.end(), c.extra.begin(), c.extra.end());
    report_.servers.push_back(s);
  }
  const std::vector<std::pair<std::string, bench::Scenario>> all = {
      {"d1", {"50x64B d1", false, 50, 64, 1}},
      {"d16", {"50x64B d16", false, 50, 64, 16}},
      {"c1000", {"1000x64B d1", false, 1000, 64, 1}},
      {"64k", {"4x64KiB d4", false, 4, 65536, 4}},
      {"idle", {"idle " + std::to_string(cfg_.idle_conns), true, cfg_.idle_conns, 64, 1}},
  };
  for (const auto& [key, sc] : all)
    if (in_list(cfg_.only_scenarios, key) && (!sc.idle || sc.conns > 0))
      report_.scenarios.push_back(sc);
  if (report_.servers.empty() || report_.scenarios.empty()) {
    std::fprintf(stderr, "runner: nothing to run\n");
    return 2;
  }

  const std::size_t total = report_.servers.size() * report_.scenarios.size() * cfg_.rounds;
  const bool tty = isatty(STDERR_FILENO) != 0;
  std::remove(server_log().c_str());
  std::size_t done = 0;
  for (unsigned round = 1; round <= cfg_.rounds; ++round) {
    for (const bench::Scenario& sc : report_.scenarios) {
      // Rotate the order each round so no server always runs first (A B C D, B C D A, ...).
      for (std::size_t k = 0; k < report_.servers.size(); ++k) {
        const bench::ServerSpec& sv = report_.servers[(k + round - 1) % report_.servers.size()];
        // On a terminal the load generator draws its progress line below this one.
        std::fprintf(stderr, "[%zu/%zu] round %u  %-12s %-9s%s", ++done, total, round,
                     sc.name.c_str(), sv.name.c_str(), tty ? "\n" : " ");
        std::fflush(stderr);
        bench::Run r = sc.idle ? idle_run(sc, sv, static_cast<int>(round))
                               : echo_run(sc, sv, static_cast<int>(round));
        if (!r.ok)
          std::fprintf(stderr, "FAILED: %s\n", r.error.c_str());
        else if (sc.idle)
          std::fprintf(stderr, "%.0f B/conn\n", r.rss_bytes_per_conn);
        else
          std::fprintf(stderr, "%.0f msg/s, server %.2f us/msg, p99 %.0f us\n", r.msgs_per_s,
                       r.server_cpu_us_per_msg, r.p99_us);
        report_.runs.push_back(std::move(r));
      }
    }
  }

  const std::string strace = find_strace();
  const bool want_strace = cfg_.strace == 1 || (cfg_.strace == -1 && !cfg_.quick);
  if (want_strace && strace.empty()) note("strace not installed: no strace cross-check");
  if (want_strace && !strace.empty()) {
    for (const bench::Scenario& sc : report_.scenarios) {
      if (sc.idle || sc.conns != 50 || sc.size != 64 || sc.depth != 1) continue;
      for (const bench::ServerSpec& sv : report_.servers) {
        std::fprintf(stderr, "strace -c -f: %s %s\n", sc.name.c_str(), sv.name.c_str());
        report_.strace.push_back(strace_run(sc, sv, strace));
      }
    }
  }

  note("1-minute load average " + load_before + " before, " + load_average() + " after");
  const std::string md = bench::render_markdown(report_);
  std::ofstream(cfg_.out + "/results.md") << md;
  std::ofstream(cfg_.out + "/results.json") << bench::render_json(report_);
  std::ofstream(cfg_.out + "/results.svg") << bench::render_svg(report_);
  std::fputs(md.c_str(), stdout);
  std::printf("\nWritten: %s/results.md, %s/results.json, %s/results.svg\n", cfg_.out.c_str(),
              cfg_.out.c_str(), cfg_.out.c_str());
  for (const bench::Run& r : report_.runs)
    if (!r.ok) return 1;
  return 0;
}

/// --chart-from: results.json -> results.svg beside it (e.g. to redraw bench/results/latest.svg).
int chart_from(const std::string& json_path) {
  std::ifstream in(json_path);
  std::stringstream json;
  json << in.rdbuf();
  const auto report = bench::parse_report_json(json.str());
  if (!report) {
    std::fprintf(stderr, "runner: %s is not a results file of the runner\n", json_path.c_str());
    return 2;
  }
  const bool dot_json = json_path.ends_with(".json");
  const std::string svg_path = json_path.substr(0, json_path.size() - (dot_json ? 5 : 0)) + ".svg";
  if (!(std::ofstream(svg_path) << bench::render_svg(*report))) {
    std::fprintf(stderr, "runner: cannot write %s\n", svg_path.c_str());
    return 1;
  }
  std::printf("Written: %s\n", svg_path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  if (!parse_args(argc, argv, cfg)) {
    usage(stderr);
    return 2;
  }
  if (!cfg.chart_from.empty()) return chart_from(cfg.chart_from);
  signal(SIGPIPE, SIG_IGN);
  Runner runner(cfg);
  return runner.run(argc, argv);
}
