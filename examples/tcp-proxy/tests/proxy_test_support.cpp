// Test helper for the tcp-proxy tests (see proxy_test_support.hpp).
#include "proxy_test_support.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>

namespace example_test {
namespace {

using Clock = std::chrono::steady_clock;

int left_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

std::uint16_t local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  return ntohs(a.sin_port);
}

// Entries of a directory that `counts` (given the entry's name) accepts; -1 when unreadable.
int count_entries(const std::string& dir,
                  const std::function<bool(const std::string&)>& counts = {}) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (const dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    if (!counts || counts(e->d_name)) ++n;
  }
  ::closedir(d);
  return n;
}

End end_of_error(int err) { return err == ECONNRESET || err == EPIPE ? End::reset : End::error; }

void send_some(Flow& f) {
  while (f.sent < f.out.size()) {
    const std::size_t chunk = std::min<std::size_t>(f.out.size() - f.sent, 256 * 1024);
    const ssize_t n = ::send(f.fd, f.out.data() + f.sent, chunk, MSG_NOSIGNAL);
    if (n > 0) {
      f.sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    f.error = errno;
    f.end = end_of_error(errno);
    return;
  }
}

void receive_some(Flow& f, char* buf, std::size_t cap) {
  for (;;) {
    const ssize_t n = ::recv(f.fd, buf, cap, 0);
    if (n > 0) {
      const std::string_view got(buf, static_cast<std::size_t>(n));
      if (!f.expect.empty() && f.mismatch_at == std::string::npos) {
        const std::string_view want =
            f.expect.substr(std::min(f.received, f.expect.size()), got.size());
        const auto diff = std::mismatch(want.begin(), want.end(), got.begin());
        if (diff.first != want.end() || want.size() < got.size()) {
          f.mismatch_at = f.received + static_cast<std::size_t>(diff.first - want.begin());
        }
      }
      if (f.keep) f.in.append(got);
      f.received += got.size();
      continue;
    }
    if (n == 0) {
      f.end = End::eof;
    } else if (errno == EINTR) {
      continue;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
      f.error = errno;
      f.end = end_of_error(errno);
    }
    return;
  }
}

}  // namespace

// --- the proxy -----------------------------------------------------------------------------------

Proxy::Proxy(const std::string& upstream, const std::vector<std::string>& extra) {
  std::vector<std::string> args{"--upstream", upstream};
  args.insert(args.end(), extra.begin(), extra.end());
  port_ = start_server(child_, TCP_PROXY_BIN, args);
}

Proxy::~Proxy() {
  if (!child_ || !child_->running()) return;
  child_->signal(SIGTERM);
  EXPECT_EQ(child_->wait_exit(kWait), 0) << "tcp-proxy did not stop cleanly on SIGTERM";
}

std::string loopback_url(std::uint16_t port) { return "tcp://127.0.0.1:" + std::to_string(port); }

// --- upstreams played by the test ----------------------------------------------------------------

Listener::Listener(int backlog) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in any_port = loopback(0);
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<const sockaddr*>(&any_port), sizeof any_port) != 0 ||
      ::listen(fd_, backlog) != 0) {
    ADD_FAILURE() << "cannot listen on 127.0.0.1: " << std::strerror(errno);
  }
}

Listener::~Listener() {
  for (int c : fillers_) ::close(c);
  if (fd_ >= 0) ::close(fd_);
}

std::string Listener::url() const { return loopback_url(local_port(fd_)); }

int Listener::accept(milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return -1;
  return ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
}

bool Listener::queue_full() const {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return false;
  return info.tcpi_unacked > info.tcpi_sacked;
}

bool Listener::fill_accept_queue() {
  const sockaddr_in to = loopback(local_port(fd_));
  while (fillers_.size() < 8 && !queue_full()) {
    const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0) return false;
    fillers_.push_back(c);
    // The queue has room, so the handshake completes (a blocking connect, bounded all the same).
    const timeval bound{5, 0};
    ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound);
    if (::connect(c, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) return false;
    // The server side joins the queue when the handshake's last ACK has been processed.
    const std::size_t want = fillers_.size();
    eventually(
        [&] {
          tcp_info info{};
          socklen_t len = sizeof info;
          return ::getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 &&
                 (info.tcpi_unacked >= want || info.tcpi_unacked > info.tcpi_sacked);
        },
        milliseconds(5'000));
  }
  return queue_full();
}

// --- byte streams --------------------------------------------------------------------------------

const char* to_string(End end) {
  switch (end) {
    case End::open:
      return "still open";
    case End::eof:
      return "EOF";
    case End::reset:
      return "reset";
    case End::error:
      return "error";
    case End::timeout:
      return "timeout";
  }
  return "?";
}

void drive(std::vector<Flow>& flows, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (Flow& f : flows) ::fcntl(f.fd, F_SETFL, ::fcntl(f.fd, F_GETFL) | O_NONBLOCK);
  std::vector<char> buf(64 * 1024);
  std::vector<pollfd> polled;
  std::vector<Flow*> active;
  std::vector<bool> fin_sent(flows.size(), false);
  for (;;) {
    polled.clear();
    active.clear();
    for (std::size_t i = 0; i < flows.size(); ++i) {
      Flow& f = flows[i];
      // The peer's EOF ends reading only: a half-closed stream keeps sending (then its FIN).
      const bool failed = f.end != End::open && f.end != End::eof;
      if (!failed && f.sent == f.out.size() && f.shutdown_after && !fin_sent[i]) {
        ::shutdown(f.fd, SHUT_WR);
        fin_sent[i] = true;
      }
      const bool reading = f.end == End::open;
      const bool sending = !failed && f.sent < f.out.size();
      if (!reading && !sending) continue;
      const short events = static_cast<short>((reading ? POLLIN : 0) | (sending ? POLLOUT : 0));
      polled.push_back({f.fd, events, 0});
      active.push_back(&f);
    }
    if (active.empty()) return;
    const int wait = left_ms(deadline);
    if (wait == 0) {
      for (Flow* f : active) f->end = End::timeout;
      return;
    }
    const int n = ::poll(polled.data(), polled.size(), wait);
    if (n <= 0) continue;  // EINTR, or the deadline: checked above
    for (std::size_t i = 0; i < polled.size(); ++i) {
      Flow& f = *active[i];
      const short ready = polled[i].revents;
      if ((ready & POLLOUT) || ((ready & (POLLHUP | POLLERR)) && f.end == End::eof)) send_some(f);
      if (f.end == End::open && (ready & (POLLIN | POLLHUP | POLLERR))) {
        receive_some(f, buf.data(), buf.size());
      }
    }
  }
}

Flow exchange(int fd, std::string_view out, bool shutdown_after, milliseconds timeout) {
  std::vector<Flow> one(1);
  one[0].fd = fd;
  one[0].out = out;
  one[0].shutdown_after = shutdown_after;
  one[0].keep = true;
  drive(one, timeout);
  return std::move(one[0]);
}

void close_with_reset(int fd) {
  const linger now{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof now);
  ::close(fd);
}

std::string pattern(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(size, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// --- the proxy process, from /proc ---------------------------------------------------------------

int open_fds(pid_t pid) { return count_entries("/proc/" + std::to_string(pid) + "/fd"); }

int threads(pid_t pid) {
  // Less io_uring's kernel workers ("iou-wrk-N"): the kernel starts one when a request cannot
  // complete inline (a send that finds no room twice) and keeps it until the ring closes; it is
  // the ring's, not a thread of evloop's.
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  return count_entries(dir, [&](const std::string& tid) {
    std::ifstream comm(dir + "/" + tid + "/comm");
    std::string name;
    std::getline(comm, name);
    return name.rfind("iou-", 0) != 0;
  });
}

long rss_bytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6) * 1024;
  }
  return -1;
}

bool eventually(const std::function<bool()>& pred, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
}

bool raise_fd_limit(std::size_t n) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return false;
  if (r.rlim_cur >= n) return true;
  r.rlim_cur = std::min<rlim_t>(n, r.rlim_max);
  return ::setrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur >= n;
}

}  // namespace example_test
