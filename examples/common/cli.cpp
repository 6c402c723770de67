#include "cli.hpp"

#include <limits.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

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

std::size_t parse_write_through(const Program& program, std::string_view value) {
  if (value == "never") return SIZE_MAX;
  unsigned long long n = 0;
  if (!parse_number(value, 1, kMaxWriteThrough, n)) {
    usage_error(program, "--write-through takes 1.." + std::to_string(kMaxWriteThrough) +
                             " bytes or never, not '" + std::string(value) + "'");
  }
  return static_cast<std::size_t>(n);
}

namespace {

// True for a program that serves UDP: its default listen address is a udp one.
bool serves_udp(const Program& program) {
  evloop::ListenAddress address;
  return evloop::parse_listen_address(program.default_listen, address) &&
         evloop::is_udp(address.transport);
}

}  // namespace

void check_listen_address(const Program& program, std::string_view text) {
  evloop::ListenAddress address;
  if (const evloop::Status s = evloop::parse_listen_address(text, address); !s) {
    usage_error(program, "--listen: " + s.message());
  }
  const bool udp = evloop::is_udp(address.transport);
  if (udp == serves_udp(program)) return;
  usage_error(program, "--listen " + std::string(text) +
                           (udp ? ": this program serves TCP, not UDP: use tcp://, tcp4://, "
                                  "tcp6://, unix://, fd:// or systemd://"
                                : ": this program serves UDP: use udp://, udp4:// or udp6://"));
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
      check_listen_address(program, options.listen.back());
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

std::vector<std::string> own_command_line(int argc, char** argv) {
  std::vector<std::string> line(argv, argv + argc);
  std::string path = line.at(0);
  if (path.find('/') == std::string::npos) {  // found through PATH, as the shell did
    const char* dirs = std::getenv("PATH");
    for (std::string_view rest = dirs != nullptr ? dirs : ""; !rest.empty();) {
      const std::size_t colon = rest.find(':');
      const std::string candidate = std::string(rest.substr(0, colon)) + "/" + line[0];
      if (::access(candidate.c_str(), X_OK) == 0) {
        path = candidate;
        break;
      }
      rest.remove_prefix(colon == std::string_view::npos ? rest.size() : colon + 1);
    }
  }
  char resolved[PATH_MAX];
  line[0] = ::realpath(path.c_str(), resolved) != nullptr ? resolved : path;
  return line;
}

void notify_systemd(const std::string& state) {
  const char* socket_path = std::getenv("NOTIFY_SOCKET");
  if (socket_path == nullptr || socket_path[0] == '\0') return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::size_t length = std::strlen(socket_path);
  if (length >= sizeof addr.sun_path) return;
  std::memcpy(addr.sun_path, socket_path, length);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // an abstract socket
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr),
           static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length));
  ::close(fd);
}

namespace {

void upgrade(evloop::Server& server, const evloop::UpgradeOptions& o) {
  evloop::UpgradeReport report;
  if (const evloop::Status s = server.upgrade(o, &report); !s) {
    std::printf("upgrade failed: %s\n", s.message().c_str());
  } else {
    // Under systemd (Type=notify, NotifyAccess=all): the successor is the service's process now.
    notify_systemd("MAINPID=" + std::to_string(report.successor_pid));
    std::printf("upgraded: pid %ld, %zu connections moved, %zu left to drain\n",
                report.successor_pid, report.moved, report.draining);
  }
  std::fflush(stdout);
}

// Takes the signals until SIGINT or SIGTERM: SIGUSR2 upgrades.
void take_signals(evloop::Server& server, const sigset_t& signals,
                  const evloop::UpgradeOptions& o) {
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig != SIGUSR2) return server.stop();
    upgrade(server, o);
  }
}

}  // namespace

int serve_until_signal(const Program& program, evloop::Server& server, int argc, char** argv) {
  evloop::UpgradeOptions upgrade_options;
  upgrade_options.argv = own_command_line(argc, argv);  // now: the binary may be replaced later
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before start(): the loops inherit it
  const evloop::Status status = server.start();
  if (!status) {
    std::fprintf(stderr, "%s: %s\n", program.name, status.message().c_str());
    return 1;
  }
  notify_systemd("READY=1");
  std::thread signal_taker([&] { take_signals(server, signals, upgrade_options); });
  // After stop(), or once an upgrade's drain is over; or a loop failed (its poller), which stops
  // the server too and must not exit 0 as if it had been asked to.
  const evloop::Status stopped = server.wait();
  pthread_kill(signal_taker.native_handle(), SIGTERM);  // ends its sigwait (if still waiting)
  signal_taker.join();
  if (!stopped) {
    std::fprintf(stderr, "%s: %s\n", program.name, stopped.message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace example
