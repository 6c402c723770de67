#include "cli.hpp"

#include <pthread.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace example {

void usage_error(const Program& program, const std::string& message) {
  std::fprintf(stderr, "%s: %s\nTry '%s --help'.\n", program.name, message.c_str(), program.name);
  std::exit(2);
}

bool parse_number(std::string_view text, unsigned long long min, unsigned long long max,
                  unsigned long long& out) {
  if (text.empty() || text.size() > 19) return false;
  unsigned long long n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<unsigned long long>(c - '0');
  }
  if (n < min || n > max) return false;
  out = n;
  return true;
}

std::chrono::seconds parse_seconds(const Program& program, std::string_view flag,
                                   std::string_view value) {
  unsigned long long n = 0;
  if (!parse_number(value, 0, kMaxSeconds, n)) {
    usage_error(program, std::string(flag) + " takes 0.." + std::to_string(kMaxSeconds) +
                             " seconds, not '" + std::string(value) + "'");
  }
  return std::chrono::seconds(static_cast<std::chrono::seconds::rep>(n));
}

evloop::Options parse_flags(const Program& program, int argc, char** argv, const ExtraFlag& extra) {
  evloop::Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const std::function<std::string_view()> value = [&]() -> std::string_view {
      if (i + 1 >= argc) usage_error(program, std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(program.usage, stdout);
      std::exit(0);
    } else if (arg == "--listen") {
      options.listen.emplace_back(value());
    } else if (arg == "--loops") {
      const std::string_view v = value();
      unsigned long long n = 0;
      if (v == "auto") {
        options.loops = evloop::Options::kAutoLoops;
      } else if (parse_number(v, 1, 4096, n)) {
        options.loops = static_cast<unsigned>(n);
      } else {
        usage_error(program, "--loops takes 1..4096 or auto, not '" + std::string(v) + "'");
      }
    } else if (arg == "--reuseport") {
      options.reuseport = true;
    } else if (arg == "--backend") {
      const std::string_view v = value();
      if (v == "auto") {
        options.backend = evloop::Backend::automatic;
      } else if (v == "epoll") {
        options.backend = evloop::Backend::epoll;
      } else if (v == "io_uring") {
        options.backend = evloop::Backend::io_uring;
      } else {
        usage_error(program,
                    "--backend takes auto, epoll or io_uring, not '" + std::string(v) + "'");
      }
    } else if (!extra || !extra(arg, value)) {
      usage_error(program, "unknown option '" + std::string(arg) + "'");
    }
  }
  if (options.listen.empty()) options.listen.emplace_back(program.default_listen);
  return options;
}

void print_listening(const evloop::ServingInfo& info) {
  for (const std::string& url : info.urls) std::printf("listening on %s\n", url.c_str());
  std::fflush(stdout);
  if (!info.backend_note.empty()) std::fprintf(stderr, "note: %s\n", info.backend_note.c_str());
}

void print_stats_json(const evloop::Server& server) {
  evloop::LoopStats t;
  for (const evloop::LoopStats& s : server.stats()) t += s;
  const auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf(
      "{\"stats\":{\"backend\":\"%s\",\"waits\":%llu,\"wakeups\":%llu,\"tasks\":%llu,"
      "\"reads\":%llu,\"writes\":%llu,"
      "\"bytes_in\":%llu,\"bytes_out\":%llu,\"bytes_copied\":%llu,\"write_arms\":%llu,"
      "\"read_pauses\":%llu,\"accepts\":%llu,\"accept_errors\":%llu,\"timers_fired\":%llu,"
      "\"poller_changes\":%llu,\"dials\":%llu,\"dial_failures\":%llu,\"resets\":%llu,"
      "\"opened\":%llu,\"closed\":%llu}}\n",
      server.backend(), u(t.waits), u(t.wakeups), u(t.tasks), u(t.reads), u(t.writes),
      u(t.bytes_in), u(t.bytes_out), u(t.bytes_copied), u(t.write_arms), u(t.read_pauses),
      u(t.accepts), u(t.accept_errors), u(t.timers_fired), u(t.poller_changes), u(t.dials),
      u(t.dial_failures), u(t.resets), u(t.opened), u(t.closed));
  std::fflush(stdout);
}

int serve_until_signal(const Program& program, evloop::Server& server) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // before start(): the loops inherit it
  const evloop::Status status = server.start();
  if (!status) {
    std::fprintf(stderr, "%s: %s\n", program.name, status.message().c_str());
    return 1;
  }
  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  server.stop();
  server.wait();
  return 0;
}

}  // namespace example
