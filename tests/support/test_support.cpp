#include "test_support.hpp"

#include <dirent.h>
#include <netinet/in.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <thread>
#include <utility>

namespace evloop::test {

void EventCounter::add(long n) {
  // Notify while holding the lock: a waiter that wakes may destroy this counter as soon as it
  // returns, so nothing here may touch it after the unlock.
  std::lock_guard lock(mutex_);
  value_ += n;
  cv_.notify_all();
}

long EventCounter::value() const {
  std::lock_guard lock(mutex_);
  return value_;
}

bool EventCounter::wait_for(long target, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return value_ >= target; });
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
  return true;
}

Client::Client(const SocketAddress& addr, int rcvbuf) {
  fd_ = open_stream_socket(addr.family());
  if (fd_ < 0) return;
  timeval tv{static_cast<time_t>(kWait.count() / 1000), 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  connected_ = ::connect(fd_, static_cast<const sockaddr*>(addr.data()),
                         static_cast<socklen_t>(addr.size())) == 0;
}

Client::~Client() { close(); }

Client::Client(Client&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), connected_(std::exchange(other.connected_, false)) {}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    connected_ = std::exchange(other.connected_, false);
  }
  return *this;
}

bool Client::send_all(const std::string& bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, kSendFlags);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

std::string Client::read_exactly(std::size_t n) {
  std::string out(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::recv(fd_, out.data() + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
  }
  out.resize(got);
  return out;
}

std::string Client::read_to_eof(bool* eof) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (eof != nullptr) *eof = r == 0;
      return out;
    }
    out.append(buf, static_cast<std::size_t>(r));
  }
}

bool Client::wait_eof() {
  bool eof = false;
  read_to_eof(&eof);
  return eof;
}

void Client::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

void Client::reset() {
  linger lg{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close();
}

void Client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  connected_ = false;
}

RunningServer::RunningServer(Options options, Callbacks callbacks)
    : server(std::move(options), std::move(callbacks)) {
  status = server.start();
}

RunningServer::~RunningServer() {
  server.stop();
  server.wait();
}

Options loopback_options(unsigned loops) {
  Options o;
  o.listen = {"tcp4://127.0.0.1:0"};
  o.loops = loops;
  return o;
}

static int count_dir_entries(const char* path) {
  DIR* dir = ::opendir(path);
  if (dir == nullptr) return -1;
  int n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n - (std::string(path) == "/proc/self/fd" ? 1 : 0);  // the DIR's own fd
}

int count_open_fds() { return count_dir_entries("/proc/self/fd"); }
int count_threads() { return count_dir_entries("/proc/self/task"); }

bool settles_to(const std::function<int()>& count, int expected,
                std::chrono::milliseconds timeout) {
  return eventually([&] { return count() == expected; }, timeout);
}

::testing::AssertionResult counts_return_to(const FdAndThreadCounts& baseline) {
  const bool fds = settles_to(count_open_fds, baseline.fds);
  const bool threads = settles_to(count_threads, baseline.threads);
  if (fds && threads) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << count_open_fds() - baseline.fds << " fd(s) and " << count_threads() - baseline.threads
         << " thread(s) more than the baseline, still after " << kWait.count() << " ms";
}

bool has_ipv6_loopback() {
  const int fd = open_stream_socket(AF_INET6);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

LoopStats total_stats(const Server& server) {
  LoopStats total;
  for (const LoopStats& s : server.stats()) total += s;
  return total;
}

bool settle(Server& server) {
  EventCounter done;
  for (std::size_t i = 0; i < server.loop_count(); ++i) {
    if (!server.loop(i).post([&] { done.add(); })) return false;
  }
  return done.wait_for(static_cast<long>(server.loop_count()));
}

std::string pattern(std::size_t n, std::uint32_t seed) {
  std::string out(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<char>(x);
  }
  return out;
}

std::string temp_socket_path(const std::string& tag) {
  static int counter = 0;
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/evloop-" + tag + "-" +
         std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".sock";
}

}  // namespace evloop::test
