// baseline_epoll: the overhead floor of evloop's design. A minimal, hand-written, single-thread,
// level-triggered epoll echo server: one read per readiness into one shared buffer, one write of
// what was read. What the kernel does not take is kept per connection; the connection then stops
// reading and waits for EPOLLOUT until the rest is sent (so it never loses bytes and its memory
// stays bounded), then reads again. No timers, no callbacks, no stats.
//
//   baseline_epoll [--listen tcp://127.0.0.1:PORT]     prints "listening on tcp4://127.0.0.1:PORT"
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

/// Output the kernel did not take yet: bytes [sent, data.size()) of data.
struct Pending {
  std::vector<char> data;
  std::size_t sent = 0;
};

int g_epoll = -1;
std::vector<Pending> g_pending;  // indexed by fd

void watch(int fd, std::uint32_t events, int op) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  epoll_ctl(g_epoll, op, fd, &ev);
}

void drop(int fd) {
  epoll_ctl(g_epoll, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  if (static_cast<std::size_t>(fd) < g_pending.size()) g_pending[fd] = Pending{};
}

void accept_all(int listener) {
  for (;;) {
    const int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or EMFILE and friends: try again on the next readiness
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (static_cast<std::size_t>(fd) >= g_pending.size()) g_pending.resize(fd + 1024);
    watch(fd, EPOLLIN, EPOLL_CTL_ADD);
  }
}

// Writes what is pending; returns false if the connection failed.
bool flush(int fd, Pending& p) {
  while (p.sent < p.data.size()) {
    const ssize_t w = send(fd, p.data.data() + p.sent, p.data.size() - p.sent, MSG_NOSIGNAL);
    if (w < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    p.sent += static_cast<std::size_t>(w);
  }
  return true;
}

void on_readable(int fd, char* buf, std::size_t cap) {
  const ssize_t r = read(fd, buf, cap);
  if (r <= 0) {
    if (r == 0 || (errno != EAGAIN && errno != EINTR)) drop(fd);
    return;
  }
  const ssize_t w = send(fd, buf, static_cast<std::size_t>(r), MSG_NOSIGNAL);
  if (w == r) return;  // the common case: everything went out
  if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    drop(fd);
    return;
  }
  Pending& p = g_pending[fd];
  const std::size_t taken = w > 0 ? static_cast<std::size_t>(w) : 0;
  p.data.assign(buf + taken, buf + r);
  p.sent = 0;
  watch(fd, EPOLLOUT, EPOLL_CTL_MOD);  // stop reading until the rest is out
}

void on_writable(int fd) {
  Pending& p = g_pending[fd];
  if (!flush(fd, p)) {
    drop(fd);
    return;
  }
  if (p.sent == p.data.size()) {
    p = Pending{};
    watch(fd, EPOLLIN, EPOLL_CTL_MOD);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = "tcp://127.0.0.1:0";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--listen" && i + 1 < argc) {
      address = argv[++i];
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: baseline_epoll [--listen tcp://127.0.0.1:PORT]\n"
          "A minimal single-thread level-triggered epoll echo server (the overhead floor).\n");
      return 0;
    } else {
      std::fprintf(stderr, "baseline_epoll: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  const auto sa = bench::parse_tcp4(address);
  if (!sa) {
    std::fprintf(stderr, "baseline_epoll: bad address %s\n", address.c_str());
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  const int listener = bench::listen_tcp4(*sa, SOCK_NONBLOCK);
  if (listener < 0) {
    std::fprintf(stderr, "baseline_epoll: %s: %s\n", address.c_str(), std::strerror(errno));
    return 1;
  }
  g_epoll = epoll_create1(EPOLL_CLOEXEC);
  watch(listener, EPOLLIN, EPOLL_CTL_ADD);
  bench::print_listening(listener);

  std::vector<char> buf(64 * 1024);  // the same read size as evloop's default
  std::vector<epoll_event> events(256);
  for (;;) {
    const int n = epoll_wait(g_epoll, events.data(), static_cast<int>(events.size()), -1);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == listener) {
        accept_all(listener);
      } else if (events[i].events & EPOLLOUT) {
        on_writable(fd);
      } else {
        on_readable(fd, buf.data(), buf.size());
      }
    }
  }
}
