// baseline_proxy: the floor of a proxy built on evloop's design. A minimal, hand-written,
// single-thread, level-triggered epoll TCP proxy: each accepted client gets a non-blocking dial to
// the upstream; bytes read from one side (one read per readiness, into one shared buffer) are sent
// straight to the other side with one send; only what the kernel refused is parked (copied) for
// that side, and reading from the sending side stops until the parked bytes have gone out. A FIN
// is passed on as shutdown(SHUT_WR) after the parked bytes; an error or reset on either side
// resets both. No timers, no callbacks, no connect timeout.
//
//   baseline_proxy --listen tcp://127.0.0.1:PORT --upstream tcp://127.0.0.1:PORT [--stats]
//
// Prints "listening on tcp4://127.0.0.1:PORT". SIGTERM or SIGINT stops it; with --stats it then
// prints one JSON line: {"stats":{"reads":..,"writes":..,"bytes_out":..,"parked_bytes":..}}.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
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

/// One socket of a pair. Indexed by fd.
struct Side {
  int peer = -1;
  bool connecting = false;   // the upstream's dial is in progress
  bool input_ended = false;  // its EOF was read
  bool fin_wanted = false;   // send a FIN once the parked bytes are out
  bool fin_sent = false;
  std::uint32_t interest = 0;  // what epoll has; 0 = not registered
  std::vector<char> parked;    // bytes for this socket that the kernel refused
  std::size_t parked_sent = 0;
  bool parked_empty() const { return parked_sent == parked.size(); }
};

struct Counters {
  unsigned long long reads = 0, writes = 0, bytes_out = 0, parked_bytes = 0, epoll_ctl = 0;
};

int g_epoll = -1;
int g_listener = -1;
sockaddr_in g_upstream{};
std::vector<Side> g_sides;
Counters g_count;
volatile sig_atomic_t g_stop = 0;

Side& side(int fd) {
  if (static_cast<std::size_t>(fd) >= g_sides.size()) g_sides.resize(fd + 1024);
  return g_sides[fd];
}

// Reading is allowed while the pair is connected and the other side has nothing parked.
void update_interest(int fd) {
  Side& s = side(fd);
  const Side& peer = side(s.peer);
  std::uint32_t want = 0;
  if (!s.connecting && !peer.connecting && !s.input_ended && peer.parked_empty()) want |= EPOLLIN;
  if (s.connecting || !s.parked_empty()) want |= EPOLLOUT;
  if (want == s.interest) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.fd = fd;
  // Nothing wanted: leave epoll, so a hang-up that cannot be handled yet is not reported again
  // at every wait.
  const int op = want == 0 ? EPOLL_CTL_DEL : s.interest == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  epoll_ctl(g_epoll, op, fd, &ev);
  ++g_count.epoll_ctl;
  s.interest = want;
}

void close_side(int fd, bool reset) {
  Side& s = side(fd);
  if (s.interest != 0) epoll_ctl(g_epoll, EPOLL_CTL_DEL, fd, nullptr);
  if (reset) {
    const linger now{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof now);
  }
  close(fd);
  s = Side{};
}

void close_pair(int fd, bool reset) {
  const int peer = side(fd).peer;
  close_side(fd, reset);
  if (peer >= 0) close_side(peer, reset);
}

void send_fin(int fd) {
  Side& s = side(fd);
  s.fin_sent = true;
  shutdown(fd, SHUT_WR);
}

// Both directions ended: the pair is done.
bool finished(int fd) {
  const Side& s = side(fd);
  const Side& peer = side(s.peer);
  if (!(s.input_ended && s.fin_sent && peer.input_ended && peer.fin_sent)) return false;
  close_pair(fd, false);
  return true;
}

// Sends the parked bytes of `fd`; false if the socket failed.
bool flush(int fd) {
  Side& s = side(fd);
  while (!s.parked_empty()) {
    const ssize_t w =
        send(fd, s.parked.data() + s.parked_sent, s.parked.size() - s.parked_sent, MSG_NOSIGNAL);
    ++g_count.writes;
    if (w < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    g_count.bytes_out += static_cast<unsigned long long>(w);
    s.parked_sent += static_cast<std::size_t>(w);
  }
  s.parked.clear();
  s.parked_sent = 0;
  if (s.fin_wanted && !s.fin_sent) send_fin(fd);
  return true;
}

void on_readable(int fd, char* buf, std::size_t cap) {
  Side& s = side(fd);
  const int to = s.peer;
  const ssize_t r = read(fd, buf, cap);
  ++g_count.reads;
  if (r < 0) {
    if (errno != EAGAIN && errno != EINTR) close_pair(fd, true);
    return;
  }
  if (r == 0) {
    s.input_ended = true;
    if (side(to).parked_empty()) {
      send_fin(to);
    } else {
      side(to).fin_wanted = true;
    }
    if (!finished(fd)) update_interest(fd);
    return;
  }
  const ssize_t w = send(to, buf, static_cast<std::size_t>(r), MSG_NOSIGNAL);
  ++g_count.writes;
  if (w == r) {
    g_count.bytes_out += static_cast<unsigned long long>(w);
    return;  // the common case: everything went out
  }
  if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    close_pair(fd, true);
    return;
  }
  const std::size_t taken = w > 0 ? static_cast<std::size_t>(w) : 0;
  g_count.bytes_out += taken;
  g_count.parked_bytes += static_cast<std::size_t>(r) - taken;
  side(to).parked.assign(buf + taken, buf + r);
  side(to).parked_sent = 0;
  update_interest(fd);  // stops reading until the parked bytes are out
  update_interest(to);
}

void on_connected(int fd) {
  Side& s = side(fd);
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    close_pair(fd, true);  // the client sees a reset
    return;
  }
  s.connecting = false;
  update_interest(fd);
  update_interest(s.peer);
}

void on_writable(int fd) {
  if (!flush(fd)) {
    close_pair(fd, true);
    return;
  }
  if (finished(fd)) return;
  update_interest(fd);
  update_interest(side(fd).peer);  // may read again
}

void accept_all() {
  for (;;) {
    const int client = accept4(g_listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0) return;  // EAGAIN, or EMFILE and friends: again at the next readiness
    const int up = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (up < 0) {
      close(client);
      continue;
    }
    const int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    side(client) = Side{};
    side(up) = Side{};
    side(client).peer = up;
    side(up).peer = client;
    side(up).connecting = true;
    if (connect(up, reinterpret_cast<const sockaddr*>(&g_upstream), sizeof g_upstream) != 0 &&
        errno != EINPROGRESS) {
      close_pair(up, true);
      continue;
    }
    update_interest(up);  // writability reports the dial's outcome
  }
}

void on_stop_signal(int) { g_stop = 1; }

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "tcp://127.0.0.1:0", upstream;
  bool print_stats = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--listen" && i + 1 < argc) {
      listen = argv[++i];
    } else if (a == "--upstream" && i + 1 < argc) {
      upstream = argv[++i];
    } else if (a == "--stats") {
      print_stats = true;
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: baseline_proxy --upstream tcp://127.0.0.1:PORT [--listen tcp://127.0.0.1:PORT]"
          " [--stats]\nA minimal single-thread level-triggered epoll TCP proxy (the floor).\n");
      return 0;
    } else {
      std::fprintf(stderr, "baseline_proxy: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  const auto listen_at = bench::parse_tcp4(listen);
  const auto upstream_at = bench::parse_tcp4(upstream);
  if (!listen_at || !upstream_at) {
    std::fprintf(stderr,
                 "baseline_proxy: needs --upstream tcp://A.B.C.D:PORT (and a valid --listen)\n");
    return 2;
  }
  g_upstream = *upstream_at;
  signal(SIGPIPE, SIG_IGN);
  struct sigaction stop {};
  stop.sa_handler = on_stop_signal;  // no SA_RESTART: epoll_wait returns EINTR
  sigaction(SIGTERM, &stop, nullptr);
  sigaction(SIGINT, &stop, nullptr);
  g_listener = bench::listen_tcp4(*listen_at, SOCK_NONBLOCK);
  if (g_listener < 0) {
    std::fprintf(stderr, "baseline_proxy: %s: %s\n", listen.c_str(), std::strerror(errno));
    return 1;
  }
  g_epoll = epoll_create1(EPOLL_CLOEXEC);
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.fd = g_listener;
  epoll_ctl(g_epoll, EPOLL_CTL_ADD, g_listener, &lev);
  bench::print_listening(g_listener);

  std::vector<char> buf(256 * 1024);  // the same read size as examples/tcp-proxy
  std::vector<epoll_event> events(256);
  while (!g_stop) {
    const int n = epoll_wait(g_epoll, events.data(), static_cast<int>(events.size()), -1);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      const std::uint32_t ev = events[i].events;
      if (fd == g_listener) {
        accept_all();
        continue;
      }
      Side& s = side(fd);
      if (s.peer < 0) continue;  // closed earlier in this batch
      if (s.connecting) {
        on_connected(fd);
      } else if (ev & EPOLLERR) {
        close_pair(fd, true);
      } else if ((ev & EPOLLOUT) || !(s.interest & EPOLLIN)) {
        on_writable(fd);  // (a hang-up while not reading: the send says what happened)
      } else if (ev & (EPOLLIN | EPOLLHUP)) {
        on_readable(fd, buf.data(), buf.size());
      }
    }
  }
  if (print_stats) {
    std::printf(
        "{\"stats\":{\"reads\":%llu,\"writes\":%llu,\"bytes_out\":%llu,\"parked_bytes\":%llu,"
        "\"epoll_ctl\":%llu}}\n",
        g_count.reads, g_count.writes, g_count.bytes_out, g_count.parked_bytes, g_count.epoll_ctl);
  }
  return 0;
}
