// Internal to bench/. What both runners (runner: TCP echo, udp_runner: UDP echo) share: their
// common flags, the CPUs they pin to, starting a server and reading its "listening on" line,
// stopping it and keeping its {"stats":...} line, and the machine's description.
#pragma once

#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "runner_process.hpp"

namespace bench {

using namespace std::chrono_literals;

/// The flags both runners take: rounds, durations, output folder, subsets, CPUs, nice value.
struct RunnerArgs {
  unsigned rounds = 3;
  double duration = 5.0;
  double warmup = 1.0;
  bool quick = false;  // 1 round of 1 s runs unless given otherwise
  std::string out = "bench-results";
  std::string only_servers;    // comma-separated subset, empty = all
  std::string only_scenarios;  // comma-separated subset of names, empty = all
  int server_cpu = -1, load_cpu = -1;
  int nice = 0;  // nice value of the server and the load generator

  /// Takes args.flag() if it is one of these (true), with its value; a bad value exits 2.
  bool parse(ArgReader& args) {
    const std::string& a = args.flag();
    const char* program = args.program();
    if (a == "--quick") {
      quick = true;
    } else if (a == "--rounds") {
      rounds = flag_number(program, a, args.value(), 1u);
      rounds_set_ = true;
    } else if (a == "--duration") {
      duration = flag_number(program, a, args.value(), 0.001);
      duration_set_ = true;
    } else if (a == "--warmup") {
      warmup = flag_number(program, a, args.value(), 0.0);
      warmup_set_ = true;
    } else if (a == "--out") {
      out = args.value();
    } else if (a == "--servers") {
      only_servers = args.value();
    } else if (a == "--scenarios") {
      only_scenarios = args.value();
    } else if (a == "--nice") {
      nice = flag_number(program, a, args.value(), -20, 19);
    } else if (a == "--cpus") {
      const std::string v = args.value();
      const auto comma = v.find(',');
      if (comma == std::string::npos) {
        std::fprintf(stderr, "%s: --cpus needs two CPUs, S,L; got '%s'\n", program, v.c_str());
        std::exit(2);
      }
      server_cpu = flag_number(program, a, v.substr(0, comma), 0, CPU_SETSIZE - 1);
      load_cpu = flag_number(program, a, v.substr(comma + 1), 0, CPU_SETSIZE - 1);
    } else {
      return false;
    }
    return true;
  }

  /// After parsing: --quick's defaults.
  void finish() {
    if (!quick) return;
    if (!rounds_set_) rounds = 1;
    if (!duration_set_) duration = 1.0;
    if (!warmup_set_) warmup = 0.3;
  }

  /// Unless --cpus said: the first two CPUs this process may use (server, load generator), or
  /// -1 for both when there is only one.
  void pick_cpus() {
    if (server_cpu >= 0 && load_cpu >= 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
      for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c)
        if (CPU_ISSET(c, &set)) cpus.push_back(c);
    }
    server_cpu = cpus.size() >= 2 ? cpus[0] : -1;
    load_cpu = cpus.size() >= 2 ? cpus[1] : -1;
  }

 private:
  bool rounds_set_ = false, duration_set_ = false, warmup_set_ = false;
};

inline bool in_list(const std::string& list, const std::string& name) {
  if (list.empty()) return true;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ','))
    if (item == name) return true;
  return false;
}

inline bool executable(const std::string& path) {
  return !path.empty() && access(path.c_str(), X_OK) == 0;
}

inline bool looks_like_json(const std::string& s) {
  return !s.empty() && s.front() == '{' && s.back() == '}';
}

inline std::string machine_line() {
  std::string model = "unknown CPU";
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  utsname u{};
  uname(&u);
  return std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs (nproc), " + model + ", Linux " +
         u.release;
}

inline std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

/// The 1-minute load average (other work on a shared machine skews every figure).
inline std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string one;
  f >> one;
  return one.empty() ? "unknown" : one;
}
/// A server started and listening.
struct Started {
  bench::Child child;
  std::string port;
  std::string error;
};

inline bool start_server(const std::vector<std::string>& argv, int cpu, const std::string& log,
                         int nice, Started& s) {
  if (!s.child.spawn(argv, cpu, false, log, nice)) {
    s.error = "cannot start " + argv[0];
    return false;
  }
  const auto line = s.child.read_until("listening on", 10s);
  if (!line) {
    s.error = argv[0] + " printed no 'listening on' line within 10 s (its stderr: " + log + ")";
    return false;
  }
  s.port = line->substr(line->rfind(':') + 1);
  return true;
}

/// Stops a server with SIGTERM; returns its last {"stats":...} line, if it printed one.
inline std::string stop_server(Started& s, std::string& error) {
  s.child.signal(SIGTERM);
  std::string stats;
  while (auto line = s.child.read_line(10s))
    if (line->rfind("{\"stats\"", 0) == 0) stats = *line;
  if (!s.child.wait(10s)) {
    error = "server did not exit within 10 s of SIGTERM";
    s.child.kill_and_reap();
  }
  return stats;
}

}  // namespace bench
