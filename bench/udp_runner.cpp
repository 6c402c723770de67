// udp_runner: the UDP benchmark in one command. Runs evloop's udp-echo and the two plain UDP
// servers (baseline_udp: one datagram per syscall, and recvmmsg/sendmmsg batches) through the
// UDP scenarios with udp_loadgen, servers interleaved round by round (the order rotates), the
// server pinned to one CPU and the load generator to another, a fresh server per run. Prints a
// Markdown table of medians (min-max) with ratios to the better plain server, and the targets of
// issue 12; writes DIR/udp-results.md and DIR/udp-results.json (every run's raw lines). Exit
// status 1 if any run failed (a corrupt echo, a server that did not start), 2 on bad usage.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "runner_process.hpp"
#include "runner_report.hpp"
#include "runner_util.hpp"

#ifndef BENCH_UDP_ECHO
#define BENCH_UDP_ECHO ""
#endif
#ifndef BENCH_UDP_LOADGEN
#define BENCH_UDP_LOADGEN ""
#endif
#ifndef BENCH_BASELINE_UDP
#define BENCH_BASELINE_UDP ""
#endif

namespace {

using bench::fmt;
using bench::Stat;

struct Config : bench::RunnerArgs {
  double loss_timeout_ms = 200;
  std::string rcvbuf = "4194304";  // every server's SO_RCVBUF
  std::string udp_echo = BENCH_UDP_ECHO;
  std::string loadgen = BENCH_UDP_LOADGEN;
  std::string baseline = BENCH_BASELINE_UDP;
};

struct Scenario {
  std::string key, name;
  unsigned flows, size, window;
  bool offload;  // the load generator sends with GSO and receives with GRO
};

struct Server {
  std::string name;
  std::vector<std::string> argv;
  bool plain;        // a baseline: the reference of the ratios
  bool stream_only;  // only in the offload scenario
};

struct Run {
  std::string scenario, server, error, loadgen_json, stats_json;
  int round = 0;
  bool ok = false;
  double dgrams_per_s = NAN, mb_per_s = NAN, cpu_us = NAN, server_cpu_pct = NAN,
         loadgen_cpu_pct = NAN, lost = NAN, p50 = NAN, p99 = NAN, syscalls = NAN;
};

void usage(FILE* out) {
  std::fprintf(
      out,
      "usage: udp_runner [--quick] [--rounds N] [--duration S] [--warmup S] [--out DIR]\n"
      "                  [--servers LIST] [--scenarios LIST] [--cpus S,L] [--nice N]\n"
      "Runs udp-echo (evloop, 1 loop; evloop-gso: with --gso --gro) and the plain UDP servers\n"
      "(recvfrom: one datagram per syscall; mmsg: recvmmsg/sendmmsg batches) through the UDP\n"
      "scenarios with udp_loadgen, servers interleaved, server and load generator pinned to two\n"
      "CPUs. Prints medians (min-max) and writes DIR/udp-results.md and DIR/udp-results.json.\n"
      "  --quick           1 round, 1 s runs\n"
      "  --rounds N        rounds (default 3)      --duration S   measured seconds (default 5)\n"
      "  --warmup S        warm-up seconds (default 1)\n"
      "  --servers LIST    subset of recvfrom,mmsg,evloop,evloop-gso\n"
      "  --scenarios LIST  subset of w1,w16,stream (50x64B window 1 and 16; 4x1400B window 64\n"
      "                    with the load generator sending GSO and receiving GRO)\n"
      "  --loss-timeout MS udp_loadgen's loss timeout (default 200)\n"
      "  --rcvbuf BYTES    every server's SO_RCVBUF (default 4194304; the kernel caps it at\n"
      "                    net.core.rmem_max): room for 800 datagrams in flight\n"
      "  --cpus S,L        CPU of the server and of the load generator (default: first two)\n"
      "  --nice N          nice value of both (negative needs privilege)\n"
      "  --udp-echo P, --udp-loadgen P, --baseline-udp P   programs to run\n");
}

bool parse_args(int argc, char** argv, Config& cfg) {
  bench::ArgReader args("udp_runner", argc, argv);
  while (args.next()) {
    const std::string& a = args.flag();
    if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (cfg.parse(args)) {
      continue;
    } else if (a == "--loss-timeout") {
      cfg.loss_timeout_ms = bench::flag_number("udp_runner", a, args.value(), 1.0);
    } else if (a == "--rcvbuf") {
      cfg.rcvbuf = args.value();
    } else if (a == "--udp-echo") {
      cfg.udp_echo = args.value();
    } else if (a == "--udp-loadgen") {
      cfg.loadgen = args.value();
    } else if (a == "--baseline-udp") {
      cfg.baseline = args.value();
    } else {
      return args.unknown();
    }
  }
  cfg.finish();
  return true;
}

Run run_one(const Config& cfg, const Scenario& sc, const Server& sv, int round) {
  Run run;
  run.scenario = sc.name;
  run.server = sv.name;
  run.round = round;
  bench::Started server;
  if (!bench::start_server(sv.argv, cfg.server_cpu, cfg.out + "/udp-servers.log", cfg.nice,
                           server)) {
    run.error = server.error;
    return run;
  }
  std::vector<std::string> args = {cfg.loadgen,
                                   "--connect",
                                   "udp://127.0.0.1:" + server.port,
                                   "-f",
                                   std::to_string(sc.flows),
                                   "-s",
                                   std::to_string(sc.size),
                                   "-w",
                                   std::to_string(sc.window),
                                   "-t",
                                   std::to_string(cfg.duration),
                                   "--warmup",
                                   std::to_string(cfg.warmup),
                                   "--loss-timeout",
                                   std::to_string(cfg.loss_timeout_ms),
                                   "--server-pid",
                                   std::to_string(server.child.pid()),
                                   "--label",
                                   sc.key + "/" + sv.name + "/" + std::to_string(round)};
  if (sc.offload) args.insert(args.end(), {"--gso", "--gro"});
  bench::Child load;
  std::string result;
  if (!load.spawn(args, cfg.load_cpu, false, {}, cfg.nice)) {
    run.error = "cannot start the load generator";
  } else {
    const auto limit =
        std::chrono::milliseconds(static_cast<long>((cfg.duration + cfg.warmup) * 1000) + 60'000);
    if (auto line = load.read_until("{\"udp_loadgen\"", limit)) result = *line;
    const auto status = load.wait(std::chrono::seconds(10));
    if (!status) run.error = "the load generator did not finish in time";
  }
  std::string stop_error;
  const std::string stats = bench::stop_server(server, stop_error);
  if (bench::looks_like_json(result)) run.loadgen_json = result;
  if (bench::looks_like_json(stats)) run.stats_json = stats;
  if (run.error.empty() && result.empty()) run.error = "no result line from the load generator";
  if (!bench::json_string(result, "error").empty()) run.error = bench::json_string(result, "error");
  run.ok = run.error.empty();
  run.dgrams_per_s = bench::json_number(result, "datagrams_per_s");
  run.mb_per_s = bench::json_number(result, "mb_per_s");
  run.cpu_us = bench::json_number(result, "server_cpu_us_per_dgram");
  run.server_cpu_pct = bench::json_number(result, "server_cpu_pct");
  run.loadgen_cpu_pct = bench::json_number(result, "cpu_pct");
  run.lost = bench::json_number(result, "lost_measured");
  run.p50 = bench::json_number(result, "p50");
  run.p99 = bench::json_number(result, "p99");
  const double in = bench::json_number(stats, "datagrams_in");
  if (!stats.empty() && in > 0) {
    run.syscalls =
        (bench::json_number(stats, "waits") + bench::json_number(stats, "receive_calls") +
         bench::json_number(stats, "send_calls") + bench::json_number(stats, "poller_changes")) /
        in;
  }
  return run;
}

Stat stat_of(const std::vector<Run>& runs, const std::string& scenario, const std::string& server,
             double Run::*field) {
  std::vector<double> v;
  for (const Run& r : runs)
    if (r.ok && r.scenario == scenario && r.server == server && !std::isnan(r.*field) &&
        r.*field >= 0)
      v.push_back(r.*field);
  return bench::summarize(std::move(v));
}

// Paired ratios: `field` of `server` over `field` of `base` in each round both ran (adjacent in
// time, so a neighbour's load that moves both moves the ratio less than either figure).
Stat paired_ratio(const std::vector<Run>& runs, const std::string& scenario,
                  const std::string& server, const std::string& base, double Run::*field) {
  std::vector<double> v;
  for (const Run& a : runs) {
    if (!a.ok || a.scenario != scenario || a.server != server || !(a.*field > 0)) continue;
    for (const Run& b : runs) {
      if (b.ok && b.scenario == scenario && b.server == base && b.round == a.round &&
          b.*field > 0) {
        v.push_back(a.*field / b.*field);
      }
    }
  }
  return bench::summarize(std::move(v));
}

// Bytes echoed per second of server CPU, in MB: datagram size / CPU µs per datagram.
double mb_per_cpu_s(const Run& r, unsigned size) { return r.cpu_us > 0 ? size / r.cpu_us : NAN; }

std::string render(const Config& cfg, const std::vector<Scenario>& scenarios,
                   const std::vector<Server>& servers, const std::vector<Run>& runs,
                   const std::string& notes, const std::string& command) {
  std::ostringstream md;
  md << "### UDP echo: medians (min–max), " << cfg.rounds << " round(s) of " << cfg.duration
     << " s\n\n"
     << bench::machine_line() << "; " << bench::utc_now() << "; `" << command << "`\n\n"
     << "Ratios are to the better plain server of the scenario (the one with less server CPU per "
        "datagram).\n\n"
     << "| scenario | server | datagrams/s | × plain | server CPU µs/dgram | × plain | MB per "
        "server CPU-s | × plain | server CPU | loadgen CPU | lost | p50 µs | p99 µs | "
        "syscalls/dgram |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  std::vector<std::string> target_lines;
  for (const Scenario& sc : scenarios) {
    // The better plain server: the lower median CPU per datagram.
    std::string best;
    double best_cpu = INFINITY;
    for (const Server& sv : servers) {
      const Stat c = stat_of(runs, sc.name, sv.name, &Run::cpu_us);
      if (sv.plain && c.valid() && c.median < best_cpu) best = sv.name, best_cpu = c.median;
    }
    const Stat best_rate = stat_of(runs, sc.name, best, &Run::dgrams_per_s);
    for (const Server& sv : servers) {
      if (sv.stream_only && !sc.offload) continue;
      const Stat rate = stat_of(runs, sc.name, sv.name, &Run::dgrams_per_s);
      if (!rate.valid()) continue;
      const Stat cpu = stat_of(runs, sc.name, sv.name, &Run::cpu_us);
      std::vector<double> per_cpu;
      for (const Run& r : runs)
        if (r.ok && r.scenario == sc.name && r.server == sv.name)
          per_cpu.push_back(mb_per_cpu_s(r, sc.size));
      const Stat mbc = bench::summarize(per_cpu);
      const auto f2 = [](double x) { return fmt("%.2f", x); };
      const auto pct = [](double x) { return fmt("%.0f%%", x); };
      const auto f0 = [](double x) { return fmt("%.0f", x); };
      md << "| " << sc.name << " | " << sv.name << " | " << bench::with_range(rate, bench::si)
         << " | " << bench::ratio(rate.median, best_rate.median) << " | "
         << bench::with_range(cpu, f2) << " | " << bench::ratio(cpu.median, best_cpu) << " | "
         << bench::with_range(mbc, f0) << " | "
         << bench::ratio(mbc.median, best_cpu > 0 ? sc.size / best_cpu : NAN) << " | "
         << bench::with_range(stat_of(runs, sc.name, sv.name, &Run::server_cpu_pct), pct) << " | "
         << bench::with_range(stat_of(runs, sc.name, sv.name, &Run::loadgen_cpu_pct), pct) << " | "
         << bench::with_range(stat_of(runs, sc.name, sv.name, &Run::lost), f0) << " | "
         << bench::with_range(stat_of(runs, sc.name, sv.name, &Run::p50), f0) << " | "
         << bench::with_range(stat_of(runs, sc.name, sv.name, &Run::p99), f0) << " | "
         << bench::with_range(stat_of(runs, sc.name, sv.name, &Run::syscalls), f2) << " |\n";
      if (sv.plain || best.empty()) continue;
      if (!sc.offload) {
        // The verdict goes by the paired ratio; the ratio of the medians is shown beside it.
        const Stat cpu_pair = paired_ratio(runs, sc.name, sv.name, best, &Run::cpu_us);
        const Stat rate_pair = paired_ratio(runs, sc.name, sv.name, best, &Run::dgrams_per_s);
        const auto figure = [](const Stat& pair, double of_medians) {
          return fmt("%.3f×", pair.median) + fmt(" (%.3f", pair.min) + fmt("–%.3f)", pair.max) +
                 " | " + fmt("%.3f×", of_medians);
        };
        target_lines.push_back("| " + sv.name + " CPU/dgram ≤ 1.0× " + best + ", " + sc.name +
                               " | " + figure(cpu_pair, cpu.median / best_cpu) + " | " +
                               (cpu_pair.median <= 1.0 ? "met" : "missed") + " |");
        target_lines.push_back("| " + sv.name + " datagrams/s ≥ 0.95× " + best + ", " + sc.name +
                               " | " + figure(rate_pair, rate.median / best_rate.median) + " | " +
                               (rate_pair.median >= 0.95 ? "met" : "missed") + " |");
      } else if (sv.name == "evloop-gso") {
        const double q = mbc.median / (sc.size / best_cpu);
        const Stat pair = paired_ratio(runs, sc.name, best, sv.name, &Run::cpu_us);  // inverse
        target_lines.push_back("| evloop-gso bytes per server CPU-s ≥ 2× " + best + ", " + sc.name +
                               " | " + fmt("%.2f×", pair.median) + fmt(" (%.2f", pair.min) +
                               fmt("–%.2f)", pair.max) + " | " + fmt("%.2f×", q) + " | " +
                               (pair.median >= 2.0 ? "met" : "missed") + " |");
      }
    }
  }
  md << "\n### Targets of issue 12\n\nPaired: the median (min–max) over the rounds of the "
        "ratio between the two servers' runs of one round (interleaved, so the host's drift "
        "moves both); the verdict goes by it. Of medians: the ratio of the two medians above.\n\n"
        "| target | paired | of medians | verdict |\n|---|---|---|---|\n";
  for (const std::string& line : target_lines) md << line << "\n";
  std::size_t failed = 0;
  for (const Run& r : runs) failed += r.ok ? 0 : 1;
  md << "\nNotes: " << notes;
  if (failed > 0) md << "; " << failed << " run(s) failed (see udp-results.json)";
  md << ".\n";
  return md.str();
}

std::string render_json(const std::vector<Run>& runs) {
  std::ostringstream js;
  js << "[\n";
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const Run& r = runs[i];
    std::string err;
    for (char c : r.error) err += (c == '"' || c == '\\') ? '\'' : c;
    js << "  {\"scenario\":\"" << r.scenario << "\",\"server\":\"" << r.server
       << "\",\"round\":" << r.round << ",\"ok\":" << (r.ok ? "true" : "false") << ",\"error\":\""
       << err << "\",\"loadgen\":" << (r.loadgen_json.empty() ? "null" : r.loadgen_json)
       << ",\"server_stats\":" << (r.stats_json.empty() ? "null" : r.stats_json) << "}"
       << (i + 1 < runs.size() ? "," : "") << "\n";
  }
  js << "]\n";
  return js.str();
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  if (!parse_args(argc, argv, cfg)) {
    usage(stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  std::string command = "udp_runner";
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
  if (!bench::executable(cfg.loadgen)) {
    std::fprintf(stderr, "udp_runner: udp_loadgen not found (%s)\n", cfg.loadgen.c_str());
    return 2;
  }
  mkdir(cfg.out.c_str(), 0755);
  cfg.pick_cpus();
  const std::string load_before = bench::load_average();
  std::string notes = cfg.server_cpu >= 0
                          ? "server pinned to CPU " + std::to_string(cfg.server_cpu) +
                                ", load generator to CPU " + std::to_string(cfg.load_cpu)
                          : "one CPU: nothing pinned";

  const std::string listen = "udp://127.0.0.1:0";
  std::vector<Server> servers;
  const std::vector<Server> all_servers = {
      {"recvfrom",
       {cfg.baseline, "--listen", listen, "--mode", "single", "--rcvbuf", cfg.rcvbuf},
       true,
       false},
      {"mmsg",
       {cfg.baseline, "--listen", listen, "--mode", "mmsg", "--rcvbuf", cfg.rcvbuf},
       true,
       false},
      {"evloop",
       {cfg.udp_echo, "--listen", listen, "--loops", "1", "--rcvbuf", cfg.rcvbuf, "--stats"},
       false,
       false},
      {"evloop-gso",
       {cfg.udp_echo, "--listen", listen, "--loops", "1", "--gso", "--gro", "--rcvbuf", cfg.rcvbuf,
        "--stats"},
       false,
       true},
  };
  for (const Server& sv : all_servers) {
    if (!bench::in_list(cfg.only_servers, sv.name)) continue;
    if (!bench::executable(sv.argv[0])) {  // (udp-echo is not built without the examples)
      notes += "; " + sv.name + " skipped (not found: '" + sv.argv[0] + "')";
      continue;
    }
    servers.push_back(sv);
  }
  std::vector<Scenario> scenarios;
  for (const Scenario& sc : {Scenario{"w1", "50x64B w1", 50, 64, 1, false},
                             Scenario{"w16", "50x64B w16", 50, 64, 16, false},
                             Scenario{"stream", "4x1400B w64 gso", 4, 1400, 64, true}}) {
    if (bench::in_list(cfg.only_scenarios, sc.key)) scenarios.push_back(sc);
  }
  if (servers.empty() || scenarios.empty()) {
    std::fprintf(stderr, "udp_runner: nothing to run\n");
    return 2;
  }

  std::vector<Run> runs;
  for (unsigned round = 1; round <= cfg.rounds; ++round) {
    for (const Scenario& sc : scenarios) {
      std::vector<const Server*> order;
      for (const Server& sv : servers)
        if (!sv.stream_only || sc.offload) order.push_back(&sv);
      for (std::size_t k = 0; k < order.size(); ++k) {
        const Server& sv = *order[(k + round - 1) % order.size()];  // rotates every round
        std::fprintf(stderr, "round %u  %-16s %-11s ", round, sc.name.c_str(), sv.name.c_str());
        Run r = run_one(cfg, sc, sv, static_cast<int>(round));
        if (r.ok) {
          std::fprintf(stderr, "%9.0f dgram/s  server %.2f us/dgram  lost %.0f\n", r.dgrams_per_s,
                       r.cpu_us, r.lost);
        } else {
          std::fprintf(stderr, "FAILED: %s\n", r.error.c_str());
        }
        runs.push_back(std::move(r));
      }
    }
  }
  notes +=
      "; 1-minute load average " + load_before + " before, " + bench::load_average() + " after";
  const std::string md = render(cfg, scenarios, servers, runs, notes, command);
  std::ofstream(cfg.out + "/udp-results.md") << md;
  std::ofstream(cfg.out + "/udp-results.json") << render_json(runs);
  std::fputs(md.c_str(), stdout);
  for (const Run& r : runs)
    if (!r.ok) return 1;
  return 0;
}
