// Internal to bench/. What both runners (runner: TCP echo, udp_runner: UDP echo) share: starting
// a server and reading its "listening on" line, stopping it and keeping its {"stats":...} line,
// reading flat JSON lines, the machine's description, and medians (min-max) and their formatting.
#pragma once

#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "runner_process.hpp"

namespace bench {

using namespace std::chrono_literals;

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

/// A number from a flat JSON line: the value after "key":. NaN when absent.
inline double json_number(const std::string& line, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const auto at = line.find(k);
  if (at == std::string::npos) return NAN;
  return std::strtod(line.c_str() + at + k.size(), nullptr);
}

inline std::string json_string(const std::string& line, const std::string& key) {
  const std::string k = "\"" + key + "\":\"";
  const auto at = line.find(k);
  if (at == std::string::npos) return {};
  const auto end = line.find('"', at + k.size());
  return line.substr(at + k.size(),
                     end == std::string::npos ? std::string::npos : end - at - k.size());
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

  /// Takes args.flag() if it is one of these (true), with its value.
  bool parse(ArgReader& args) {
    const std::string& a = args.flag();
    if (a == "--quick") {
      quick = true;
    } else if (a == "--rounds") {
      rounds = static_cast<unsigned>(std::stoul(args.value()));
      rounds_set_ = true;
    } else if (a == "--duration") {
      duration = std::stod(args.value());
      duration_set_ = true;
    } else if (a == "--warmup") {
      warmup = std::stod(args.value());
      warmup_set_ = true;
    } else if (a == "--out") {
      out = args.value();
    } else if (a == "--servers") {
      only_servers = args.value();
    } else if (a == "--scenarios") {
      only_scenarios = args.value();
    } else if (a == "--nice") {
      nice = std::stoi(args.value());
    } else if (a == "--cpus") {
      cpus_ok_ = std::sscanf(args.value(), "%d,%d", &server_cpu, &load_cpu) == 2;
    } else {
      return false;
    }
    return true;
  }

  /// After parsing: --quick's defaults, then whether the values make sense.
  bool finish() {
    if (quick) {
      if (!rounds_set_) rounds = 1;
      if (!duration_set_) duration = 1.0;
      if (!warmup_set_) warmup = 0.3;
    }
    return cpus_ok_ && rounds > 0 && duration > 0 && warmup >= 0;
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
  bool rounds_set_ = false, duration_set_ = false, warmup_set_ = false, cpus_ok_ = true;
};

/// Median, min and max of one figure over the successful rounds.
struct Stat {
  double median = NAN, min = NAN, max = NAN;
  std::size_t n = 0;
  bool valid() const { return n > 0; }
};

inline Stat summarize(std::vector<double> v) {
  Stat s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = v.size();
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  return s;
}

inline std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

// 123456 -> "123.5k"; 1234567 -> "1.23M".
inline std::string si(double x) {
  if (x >= 1e6) return fmt("%.2fM", x / 1e6);
  if (x >= 1e3) return fmt("%.1fk", x / 1e3);
  return fmt("%.0f", x);
}

inline std::string with_range(const Stat& s, const std::function<std::string(double)>& f) {
  if (!s.valid()) return "–";
  if (s.n == 1) return f(s.median);
  return f(s.median) + " (" + f(s.min) + "–" + f(s.max) + ")";
}

inline std::string ratio(double a, double b) {
  if (std::isnan(a) || std::isnan(b) || b <= 0) return "–";
  const double q = a / b;
  return fmt(q >= 0.1 ? "%.2f×" : "%.4f×", q);
}

}  // namespace bench
