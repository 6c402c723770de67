// Connection churn: the accept path's cost. Keeps N connections being made at once; each
// connects, sends one 64-byte message, reads its echo back (checked), closes, and is replaced at
// once. Prints connections per second and, with --server-pid, the server's CPU per connection.
// libc only, one thread, epoll. bench/connect_churn.sh runs it against the servers.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace {

constexpr std::size_t kMessage = 64;

struct Config {
  sockaddr_in server{};
  int conns = 50;
  double duration = 3;
  double warmup = 1;
  long server_pid = 0;
};

void usage(FILE* out) {
  std::fprintf(out,
               "usage: connect_churn --connect ADDR [-c CONNS] [-t SECONDS] [-w WARMUP_SECONDS]\n"
               "                     [--server-pid PID]\n"
               "  --connect ADDR     an echo server, tcp://127.0.0.1:PORT\n"
               "  -c, --conns N      connections being made at once (default 50)\n"
               "  -t, --duration S   measured seconds (default 3)\n"
               "  -w, --warmup S     unmeasured seconds before that (default 1)\n"
               "  --server-pid PID   also report that process's CPU per connection\n"
               "Each connection connects, echoes one 64-byte message (checked) and closes.\n"
               "Exit status: 0 on success, 1 on a failed connection or a wrong echo, 2 on bad\n"
               "usage.\n");
}

Config parse(int argc, char** argv) {
  Config cfg;
  bool have_server = false;
  bench::ArgReader args("connect_churn", argc, argv);
  while (args.next()) {
    const std::string& a = args.flag();
    if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (a == "--connect") {
      const std::string text = args.value();
      const auto sa = bench::parse_tcp4(text);
      if (!sa) {
        std::fprintf(stderr, "connect_churn: bad address '%s' (want tcp://A.B.C.D:PORT)\n",
                     text.c_str());
        std::exit(2);
      }
      cfg.server = *sa;
      have_server = true;
    } else if (a == "-c" || a == "--conns") {
      cfg.conns = bench::flag_number<int>("connect_churn", a, args.value(), 1, 10000);
    } else if (a == "-t" || a == "--duration") {
      cfg.duration = bench::flag_number<double>("connect_churn", a, args.value(), 0.1, 3600);
    } else if (a == "-w" || a == "--warmup") {
      cfg.warmup = bench::flag_number<double>("connect_churn", a, args.value(), 0, 3600);
    } else if (a == "--server-pid") {
      cfg.server_pid = bench::flag_number<long>("connect_churn", a, args.value(), 1);
    } else {
      std::fprintf(stderr, "connect_churn: unknown flag '%s'\n", a.c_str());
      usage(stderr);
      std::exit(2);
    }
  }
  if (!have_server) {
    std::fprintf(stderr, "connect_churn: --connect ADDR is required\n");
    std::exit(2);
  }
  return cfg;
}

struct Slot {
  int fd = -1;
  bool connected = false;
  std::size_t received = 0;
};

class Churn {
 public:
  explicit Churn(const Config& cfg) : cfg_(cfg), slots_(static_cast<std::size_t>(cfg.conns)) {}

  int run() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) return failed("epoll_create1"), 1;
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (!start(i)) return 1;
    }
    const std::uint64_t begin = bench::now_ns();
    const auto measure_from = begin + static_cast<std::uint64_t>(cfg_.warmup * 1e9);
    const auto end = measure_from + static_cast<std::uint64_t>(cfg_.duration * 1e9);
    bench::MeasuredWindow window;
    bool measuring = false;
    std::uint64_t done_at_start = 0;
    std::vector<epoll_event> events(256);
    for (;;) {
      const std::uint64_t now = bench::now_ns();
      if (!measuring && now >= measure_from) {
        measuring = true;
        done_at_start = done_;
        window.begin(now, cfg_.server_pid);
      }
      if (now >= end) break;
      const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 100);
      if (n < 0 && errno != EINTR) return failed("epoll_wait"), 1;
      for (int k = 0; k < n; ++k) {
        if (!on_event(events[static_cast<std::size_t>(k)].data.u64)) return 1;
      }
    }
    window.end(bench::now_ns(), cfg_.server_pid);
    const double made = static_cast<double>(done_ - done_at_start);
    const double per_second = made / window.seconds();
    std::printf("connections/s %.0f  client CPU %.0f%%", per_second,
                100.0 * window.cpu() / window.seconds());
    if (window.server_cpu() >= 0 && made > 0) {
      std::printf("  server CPU %.0f%%  server CPU/connection %.2f us",
                  100.0 * window.server_cpu() / window.seconds(),
                  window.server_cpu() * 1e6 / made);
    }
    std::printf("\n");
    for (Slot& s : slots_) {
      if (s.fd >= 0) close(s.fd);
    }
    close(ep_);
    return 0;
  }

 private:
  // Says what failed (with errno); false, for the slot's handlers to return.
  static bool failed(const char* what) {
    std::fprintf(stderr, "connect_churn: %s: %s\n", what, std::strerror(errno));
    return false;
  }

  bool start(std::size_t i) {
    Slot& s = slots_[i];
    s = Slot{};
    s.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.fd < 0) return failed("socket");
    if (connect(s.fd, reinterpret_cast<const sockaddr*>(&cfg_.server), sizeof cfg_.server) != 0 &&
        errno != EINPROGRESS) {
      return failed("connect");
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = i;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, s.fd, &ev) != 0) return failed("epoll_ctl");
    return true;
  }

  bool on_event(std::uint64_t i) {
    Slot& s = slots_[i];
    if (!s.connected) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        errno = err;
        return failed("connect");
      }
      s.connected = true;
      char message[kMessage];
      std::memset(message, static_cast<int>('a' + i % 26), sizeof message);
      if (send(s.fd, message, sizeof message, MSG_NOSIGNAL) != static_cast<ssize_t>(kMessage)) {
        return failed("send");
      }
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      return epoll_ctl(ep_, EPOLL_CTL_MOD, s.fd, &ev) == 0 || failed("epoll_ctl");
    }
    char buf[kMessage];
    const ssize_t n = recv(s.fd, buf, kMessage - s.received, 0);
    if (n < 0 && errno == EAGAIN) return true;
    if (n <= 0) {
      if (n == 0) errno = ECONNRESET;
      return failed("recv");
    }
    for (ssize_t k = 0; k < n; ++k) {
      if (buf[k] != static_cast<char>('a' + i % 26)) {
        std::fprintf(stderr, "connect_churn: wrong echo\n");
        return false;
      }
    }
    s.received += static_cast<std::size_t>(n);
    if (s.received < kMessage) return true;
    close(s.fd);  // leaves the socket's epoll registration with it
    ++done_;
    return start(i);
  }

  Config cfg_;
  std::vector<Slot> slots_;
  int ep_ = -1;
  std::uint64_t done_ = 0;
};

}  // namespace

int main(int argc, char** argv) { return Churn(parse(argc, argv)).run(); }
