#include "test_support.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
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

std::function<void(Conn&, std::error_code)> ErrorLog::recorder() {
  return [this](Conn&, std::error_code error) { record(error); };
}

void ErrorLog::record(std::error_code error) {
  // Notified under the lock, as EventCounter::add is, for the same reason.
  std::lock_guard lock(mutex_);
  errors_.push_back(error);
  cv_.notify_all();
}

bool ErrorLog::wait_for(long n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return static_cast<long>(errors_.size()) >= n; });
}

long ErrorLog::count() const {
  std::lock_guard lock(mutex_);
  return static_cast<long>(errors_.size());
}

std::vector<std::error_code> ErrorLog::errors() const {
  std::lock_guard lock(mutex_);
  return errors_;
}

std::error_code ErrorLog::first() const {
  std::lock_guard lock(mutex_);
  return errors_.empty() ? std::error_code{} : errors_.front();
}

std::error_code ErrorLog::last() const {
  std::lock_guard lock(mutex_);
  return errors_.empty() ? std::error_code{} : errors_.back();
}

LoopHold::LoopHold(const Loop& loop) {
  posted_ = loop.post([state = state_, released = state_->released.get_future().share()] {
    state->holding.add();
    released.wait_for(kWait);
  });
}

bool LoopHold::holding() const { return posted_ && state_->holding.wait_for(1); }

void LoopHold::release() {
  if (!released_) state_->released.set_value();
  released_ = true;
}

bool loop_goes_quiet(const Loop& loop) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    const std::uint64_t waits = loop.stats().waits;
    std::this_thread::sleep_for(200ms);
    if (loop.stats().waits == waits) return true;
  }
  return false;
}

std::vector<int> new_poller_fds(const std::vector<int>& before) {
  std::vector<int> fds;
  for (int fd = 0; fd < 1024; ++fd) {
    char link[64] = {};
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    if (::readlink(path.c_str(), link, sizeof link - 1) <= 0) continue;
    const std::string_view target = link;
    if ((target == "anon_inode:[eventpoll]" || target == "anon_inode:[io_uring]") &&
        std::find(before.begin(), before.end(), fd) == before.end()) {
      fds.push_back(fd);
    }
  }
  return fds;
}

bool break_poller(int fd) {
  const int placeholder = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const bool replaced = placeholder >= 0 && ::dup2(placeholder, fd) == fd;
  if (placeholder >= 0) ::close(placeholder);
  return replaced;
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

UdpPeer::UdpPeer(int family, int receive_buffer) {
  fd_ = open_socket(family, SOCK_DGRAM);
  if (fd_ < 0) return;
  if (receive_buffer > 0) {
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  }
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *a;
  }
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

UdpPeer::~UdpPeer() {
  if (fd_ >= 0) ::close(fd_);
}

SocketAddress UdpPeer::address() const {
  SocketAddress addr;
  socklen_t len = static_cast<socklen_t>(SocketAddress::capacity());
  if (::getsockname(fd_, static_cast<sockaddr*>(addr.data()), &len) == 0) addr.set_size(len);
  return addr;
}

bool UdpPeer::send_to(const SocketAddress& to, std::string_view bytes) {
  const ssize_t n =
      ::sendto(fd_, bytes.data(), bytes.size(), 0, static_cast<const sockaddr*>(to.data()),
               static_cast<socklen_t>(to.size()));
  return n == static_cast<ssize_t>(bytes.size());
}

std::optional<std::string> UdpPeer::receive(std::chrono::milliseconds timeout,
                                            SocketAddress* from) {
  pollfd p{fd_, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  if (rc <= 0) return std::nullopt;
  std::string out(65536, '\0');
  SocketAddress sender;
  socklen_t len = static_cast<socklen_t>(SocketAddress::capacity());
  const ssize_t n = ::recvfrom(fd_, out.data(), out.size(), MSG_DONTWAIT,
                               static_cast<sockaddr*>(sender.data()), &len);
  if (n < 0) return std::nullopt;
  sender.set_size(len);
  if (from != nullptr) *from = sender;
  out.resize(static_cast<std::size_t>(n));
  return out;
}

UnservedPort::UnservedPort() : fd_(open_stream_socket(AF_INET)) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "cannot bind 127.0.0.1: " << std::strerror(errno);
    return;
  }
  port_ = ntohs(a.sin_port);
}

UnservedPort::~UnservedPort() {
  if (fd_ >= 0) ::close(fd_);
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

// The numbered entries of a /proc directory (fds, thread ids), sorted; nothing where it does not
// exist (the BSDs, macOS).
static std::optional<std::vector<int>> proc_entries(const char* path) {
  DIR* dir = ::opendir(path);
  if (dir == nullptr) return std::nullopt;
  std::vector<int> ids;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ids.push_back(std::atoi(e->d_name));
  }
  ::closedir(dir);
  std::sort(ids.begin(), ids.end());
  return ids;
}

// This process's sockets of `type` bound to `port` (listening ones only, if asked), each counted
// once however many fds it has: by the fds in /proc/self/fd, not by /proc/net's tables, which
// list every process's sockets (the suite runs in parallel on a shared host) and are read in
// chunks that a socket opened or closed elsewhere meanwhile can shift.
static int own_sockets_on(int type, std::uint16_t port, bool listening_only) {
  std::set<ino_t> sockets;
  for (const int fd : proc_entries("/proc/self/fd").value_or(std::vector<int>{})) {
    struct stat st {};
    int actual_type = 0, listening = 0;
    socklen_t len = sizeof actual_type;
    if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
        ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &actual_type, &len) != 0 || actual_type != type) {
      continue;
    }
    len = sizeof listening;
    if (listening_only &&
        (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || listening == 0)) {
      continue;
    }
    sockaddr_storage local{};
    socklen_t local_len = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) continue;
    if (SocketAddress(&local, local_len).port() == port) sockets.insert(st.st_ino);
  }
  return static_cast<int>(sockets.size());
}

int udp_sockets_on(std::uint16_t port) { return own_sockets_on(SOCK_DGRAM, port, false); }

int listening_tcp_sockets_on(std::uint16_t port) { return own_sockets_on(SOCK_STREAM, port, true); }

int count_open_fds() {
  const auto fds = proc_entries("/proc/self/fd");
  return fds ? static_cast<int>(fds->size()) - 1 : -1;  // less the DIR's own fd
}
// The process's threads by id, less io_uring's kernel workers ("iou-wrk-N", "iou-sqp-N"): the
// kernel starts one when a request cannot complete inline (a send that finds no room twice) and
// keeps it until the ring closes; it is the ring's, not a thread of evloop's.
static std::optional<std::vector<int>> own_threads() {
  auto ids = proc_entries("/proc/self/task");
  if (!ids) return ids;
  std::erase_if(*ids, [](int id) {
    std::ifstream comm("/proc/self/task/" + std::to_string(id) + "/comm");
    std::string name;
    std::getline(comm, name);
    return name.rfind("iou-", 0) == 0;
  });
  return ids;
}

int count_threads() {
  const auto ids = own_threads();
  return ids ? static_cast<int>(ids->size()) : -1;
}

bool settles_to(const std::function<int()>& count, int expected,
                std::chrono::milliseconds timeout) {
  return eventually([&] { return count() == expected; }, timeout);
}

std::vector<int> thread_ids() { return own_threads().value_or(std::vector<int>{}); }

int threads_since(const FdAndThreadCounts& baseline) {
  int fresh = 0;
  for (const int id : thread_ids()) {
    fresh += std::binary_search(baseline.threads.begin(), baseline.threads.end(), id) ? 0 : 1;
  }
  return fresh;
}

::testing::AssertionResult counts_return_to(const FdAndThreadCounts& baseline) {
  const bool fds = settles_to(count_open_fds, baseline.fds);
  const bool threads = eventually([&] { return threads_since(baseline) == 0; });
  if (fds && threads) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << count_open_fds() - baseline.fds << " fd(s) and " << threads_since(baseline)
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

std::uint64_t waits_during(Server& server, std::chrono::milliseconds window) {
  const std::uint64_t before = total_stats(server).waits;
  // Shared with the timer: a test that gives up waiting must not leave it a dangling counter.
  const auto fired = std::make_shared<EventCounter>();
  server.loop(0).run_after(window, [fired] { fired->add(); });
  if (!fired->wait_for(1)) return UINT64_MAX;
  return total_stats(server).waits - before;
}

bool settle(Server& server) {
  EventCounter done;
  for (std::size_t i = 0; i < server.loop_count(); ++i) {
    if (!server.loop(i).post([&] { done.add(); })) return false;
  }
  return done.wait_for(static_cast<long>(server.loop_count()));
}

void expect_stream_then_fin(Client& client, const std::string& expected) {
  bool eof = false;
  const std::string got = client.read_to_eof(&eof);
  EXPECT_TRUE(eof) << std::strerror(errno) << " after " << got.size() << " bytes";
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected);  // not EXPECT_EQ: megabytes would be printed
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
