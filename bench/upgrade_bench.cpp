// upgrade_bench: a live upgrade under load, measured. It runs itself as the server (--serve: an
// evloop echo server that moves every connection on SIGUSR2, as examples/echo-server does) and
// as the client: N connections, each sending a 16-byte message (its send time and a sequence
// number) every interval and checking every echo. Then it sends SIGUSR2 and measures:
//   - from the signal (the upgrade call) to the old process's exit, and to its "upgraded" line;
//   - each connection's stall, as the server sees it: from the old process's `handover` (it stops
//     reading the connection) to the successor's `adopted` (it reads it again), both stamped with
//     CLOCK_MONOTONIC (one clock for the machine); and when the last connection was adopted;
//   - as the client sees it: each connection's longest message latency during the upgrade,
//     against the same before it (a message sent every interval: within one interval of the
//     stall);
//   - errors: a connection reset, closed, or an echo that differs (there must be none).
// Linux only (pidfd, PR_SET_CHILD_SUBREAPER), like the rest of bench/.
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <evloop/evloop.hpp>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "cli.hpp"
#include "histogram.hpp"
#include "runner_process.hpp"

namespace {

using bench::now_ns;

constexpr const char* kUsage = R"(Usage: upgrade_bench [options]

Measures a live upgrade of an evloop echo server under load (see bench/README.md).

Options:
  --connections N   long-lived connections (default 1000)
  --interval-ms P   each connection sends a 16-byte message every P ms (default 50)
  --loops L         the server's loops, with reuse-port (default 2)
  --upgrades K      upgrades in a row (default 3)
  --settle S        seconds of load before each upgrade, and after the last (default 2)
  --help            this text
)";

// --- the server ------------------------------------------------------------------------------

struct Stalls {
  std::mutex mutex;
  bench::Histogram histogram;  // handover -> adopted, ns
  std::uint64_t last_adopted = 0;
};

int serve(int argc, char** argv) {
  static const example::Program program{"upgrade_bench --serve", kUsage, "tcp://127.0.0.1:0"};
  static Stalls stalls;
  evloop::Options options;
  options.listen = {"tcp://127.0.0.1:0"};
  options.reuseport = true;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string_view(argv[i]) == "--loops") options.loops = std::stoul(argv[i + 1]);
  }
  evloop::Callbacks cb;
  cb.serving = example::print_listening;
  cb.data = [](evloop::Conn& conn, std::string_view bytes) {
    conn.write(bytes);
    return bytes.size();
  };
  cb.handover = [](evloop::Conn&) -> std::optional<std::string> {
    const std::uint64_t t = now_ns();  // from here the old process no longer reads it
    return std::string(reinterpret_cast<const char*>(&t), sizeof t);
  };
  cb.adopted = [](evloop::Conn&, std::string_view state) {
    std::uint64_t since = 0;
    std::memcpy(&since, state.data(), std::min(state.size(), sizeof since));
    const std::uint64_t t = now_ns();
    std::lock_guard lock(stalls.mutex);
    stalls.histogram.record(t - since);
    stalls.last_adopted = std::max(stalls.last_adopted, t);
  };
  evloop::Server server(options, cb);
  const int code = example::serve_until_signal(program, server, argc, argv);
  const bench::Histogram& h = stalls.histogram;
  std::printf("stalls: n=%llu p50_us=%.0f p99_us=%.0f max_us=%.0f last_adopted_ns=%llu\n",
              static_cast<unsigned long long>(h.count()), h.quantile(0.5) / 1e3,
              h.quantile(0.99) / 1e3, h.max() / 1e3,
              static_cast<unsigned long long>(stalls.last_adopted));
  return code;
}

// --- the client ------------------------------------------------------------------------------

struct Message {
  std::uint64_t sent_ns;
  std::uint64_t seq;
};

struct Connection {
  int fd = -1;
  bool failed = false;
  std::uint64_t next_seq = 0;  // of the next message sent
  std::uint64_t want_seq = 0;  // of the next echo expected
  unsigned char partial[sizeof(Message)] = {};
  std::size_t have = 0;
  std::uint64_t window_max = 0;  // the longest latency since the window began
};

struct Client {
  std::vector<Connection> conns;
  int epoll = -1;
  std::uint64_t interval_ns = 0;
  std::uint64_t schedule_start = 0;
  std::size_t next_send = 0;  // sends go round the connections in order, evenly spread
  std::uint64_t round = 0;
  long errors = 0;
  std::string first_error;

  void fail(std::size_t i, const std::string& why) {
    if (errors++ == 0) first_error = "connection " + std::to_string(i) + ": " + why;
    ::epoll_ctl(epoll, EPOLL_CTL_DEL, conns[i].fd, nullptr);
    conns[i].failed = true;
  }

  // The time connection `next_send` of round `round` is due.
  std::uint64_t due() const {
    return schedule_start + round * interval_ns + next_send * interval_ns / conns.size();
  }

  void send_due(std::uint64_t now) {
    while (due() <= now) {
      Connection& c = conns[next_send];
      const Message m{now_ns(), c.next_seq++};
      if (!c.failed && ::send(c.fd, &m, sizeof m, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof m)) {
        fail(next_send, std::string("send: ") + std::strerror(errno));
      }
      if (++next_send == conns.size()) next_send = 0, ++round;
    }
  }

  void receive(std::size_t i) {
    Connection& c = conns[i];
    unsigned char buf[4096];
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      return fail(i,
                  n == 0 ? "closed by the server" : std::string("recv: ") + std::strerror(errno));
    }
    const std::uint64_t now = now_ns();
    for (ssize_t k = 0; k < n; ++k) {
      c.partial[c.have++] = buf[k];
      if (c.have < sizeof(Message)) continue;
      c.have = 0;
      Message m;
      std::memcpy(&m, c.partial, sizeof m);
      if (m.seq != c.want_seq++) return fail(i, "an echo out of order or altered");
      c.window_max = std::max(c.window_max, now - m.sent_ns);
    }
  }

  // Runs the load until `until` (ns), and while `more()` says so.
  template <typename More>
  void run(std::uint64_t until, More more) {
    epoll_event events[256];
    for (std::uint64_t now = now_ns(); now < until || more(); now = now_ns()) {
      send_due(now);
      const std::uint64_t next = until > now ? std::min(due(), until) : due();
      const int timeout = next > now ? static_cast<int>((next - now) / 1'000'000) : 0;
      const int n = ::epoll_wait(epoll, events, 256, std::min(timeout, 10));
      for (int k = 0; k < n; ++k) receive(events[k].data.u64);
    }
  }

  // Each connection's longest latency since the last call, over the connections.
  bench::Histogram take_window() {
    bench::Histogram h;
    for (Connection& c : conns) {
      h.record(c.window_max);
      c.window_max = 0;
    }
    return h;
  }
};

bool open_connections(Client& client, std::uint16_t port, std::size_t count) {
  client.epoll = ::epoll_create1(EPOLL_CLOEXEC);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (std::size_t i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      std::fprintf(stderr, "upgrade_bench: connection %zu: %s\n", i, std::strerror(errno));
      return false;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::fcntl(fd, F_SETFL, O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    ::epoll_ctl(client.epoll, EPOLL_CTL_ADD, fd, &ev);
    client.conns.push_back({});
    client.conns.back().fd = fd;
  }
  return true;
}

double ms(std::uint64_t ns) { return static_cast<double>(ns) / 1e6; }

void print_window(const char* what, const bench::Histogram& h) {
  std::printf("  %-38s p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms\n", what, ms(h.quantile(0.5)),
              ms(h.quantile(0.99)), ms(h.max()));
}

// The server's stdout: its "upgraded" lines, and the "stalls" line each generation prints as it
// exits (the first generation adopted nothing).
struct ServerOutput {
  bench::Child& child;
  std::vector<std::string> stalls;

  std::optional<std::string> until(const std::string& prefix) {
    for (;;) {
      auto line = child.read_line(std::chrono::seconds(30));
      if (!line || line->starts_with(prefix)) return line;
      if (line->starts_with("stalls: ") && line->find("n=0 ") == std::string::npos) {
        stalls.push_back(*line);
      }
    }
  }
};

struct Upgrade {
  pid_t from = 0;
  pid_t to = 0;
  std::string line;
  std::uint64_t signalled = 0;
  double exit_ms = 0;
  int exit_status = -1;
  bench::Histogram before, during;
};

// One upgrade: SIGUSR2 to `pid` (its upgrade call), the load going on meanwhile.
Upgrade measure_upgrade(Client& client, ServerOutput& out, pid_t pid, std::uint64_t settle_ns) {
  Upgrade u;
  u.from = pid;
  client.run(now_ns() + settle_ns, [] { return false; });
  u.before = client.take_window();
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  std::uint64_t exited = 0;
  u.signalled = now_ns();
  ::kill(pid, SIGUSR2);
  client.run(0, [&] {
    pollfd p{pidfd, POLLIN, 0};
    if (::poll(&p, 1, 0) == 1) exited = now_ns();
    return exited == 0 && now_ns() - u.signalled < 60'000'000'000ull;
  });
  ::close(pidfd);
  u.exit_ms = exited ? ms(exited - u.signalled) : -1;
  const auto line = out.until("upgraded: pid ");
  u.line = line.value_or("(no upgraded line)");
  u.to = line ? static_cast<pid_t>(std::atol(line->c_str() + 14)) : 0;
  int status = 0;
  ::waitpid(pid, &status, 0);
  u.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  client.run(now_ns() + settle_ns, [] { return false; });  // late adoptions show their stall
  u.during = client.take_window();
  return u;
}

void print_upgrade(const Upgrade& u, const std::string& stalls) {
  std::printf("upgrade pid %d -> %d: %s\n", u.from, u.to, u.line.c_str());
  std::printf("  signal (upgrade call) -> old process exit: %.1f ms, exit status %d\n", u.exit_ms,
              u.exit_status);
  double p50 = 0, p99 = 0, max = 0;
  unsigned long long n = 0, last = 0;
  if (std::sscanf(stalls.c_str(),
                  "stalls: n=%llu p50_us=%lf p99_us=%lf max_us=%lf last_adopted_ns=%llu", &n, &p50,
                  &p99, &max, &last) == 5) {
    std::printf(
        "  server: stall of a moved connection    p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms"
        " (%llu connections)\n",
        p50 / 1e3, p99 / 1e3, max / 1e3, n);
    std::printf("  server: last connection adopted %.1f ms after the signal\n",
                ms(last - u.signalled));
  }
  print_window("client: longest latency, before", u.before);
  print_window("client: longest latency, upgrade", u.during);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--serve") return serve(argc, argv);
  }
  std::size_t connections = 1000;
  long interval_ms = 50, loops = 2, upgrades = 3, settle_s = 2;
  bench::ArgReader args("upgrade_bench", argc, argv);
  while (args.next()) {
    const std::string& flag = args.flag();
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (flag == "--connections") {
      connections = bench::flag_number<std::size_t>("upgrade_bench", flag, args.value(), 1);
    } else if (flag == "--interval-ms") {
      interval_ms = bench::flag_number("upgrade_bench", flag, args.value(), 1L);
    } else if (flag == "--loops") {
      loops = bench::flag_number("upgrade_bench", flag, args.value(), 1L, 256L);
    } else if (flag == "--upgrades") {
      upgrades = bench::flag_number("upgrade_bench", flag, args.value(), 1L);
    } else if (flag == "--settle") {
      settle_s = bench::flag_number("upgrade_bench", flag, args.value(), 0L);
    } else {
      args.unknown();
      std::fputs(kUsage, stderr);
      return 2;
    }
  }
  rlimit fds{};
  ::getrlimit(RLIMIT_NOFILE, &fds);
  fds.rlim_cur = fds.rlim_max;  // the server inherits it: it holds every connection too
  ::setrlimit(RLIMIT_NOFILE, &fds);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);  // each successor is ours to reap once its parent exits
  ::signal(SIGPIPE, SIG_IGN);
  char self[4096];
  const ssize_t len = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) return 1;
  self[len] = '\0';

  bench::Child server;
  if (!server.spawn({self, "--serve", "--loops", std::to_string(loops)}, -1, false)) return 1;
  const auto listening = server.read_until("listening on ", std::chrono::seconds(20));
  if (!listening) return 1;
  const auto port =
      static_cast<std::uint16_t>(std::atoi(listening->c_str() + listening->rfind(':') + 1));
  Client client;
  client.interval_ns = static_cast<std::uint64_t>(interval_ms) * 1'000'000;
  if (!open_connections(client, port, connections)) return 1;
  client.schedule_start = now_ns();
  std::printf(
      "%zu connections, a 16-byte message each every %ld ms (%.0f messages/s), server "
      "with %ld loops; RLIMIT_NOFILE %llu\n",
      connections, interval_ms, 1e3 * connections / interval_ms, loops,
      static_cast<unsigned long long>(fds.rlim_cur));
  pid_t pid = server.pid();
  ServerOutput out{server, {}};
  std::vector<Upgrade> done;
  const std::uint64_t settle_ns = static_cast<std::uint64_t>(settle_s) * 1'000'000'000;
  for (long k = 0; k < upgrades && pid > 0; ++k) {
    done.push_back(measure_upgrade(client, out, pid, settle_ns));
    pid = done.back().to;
  }
  // Each generation prints the stalls of the connections it adopted as it exits: the last one
  // at this SIGTERM.
  if (pid > 0) ::kill(pid, SIGTERM);
  out.until("(the end)");
  if (pid > 0) ::waitpid(pid, nullptr, 0);
  for (std::size_t k = 0; k < done.size(); ++k) {
    print_upgrade(done[k], k < out.stalls.size() ? out.stalls[k] : std::string());
  }
  std::printf("client errors (reset, closed, echo altered): %ld%s%s\n", client.errors,
              client.errors ? ", first: " : "", client.first_error.c_str());
  return client.errors == 0 ? 0 : 1;
}
