#include "fault_support.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace evloop::fault {

int soak_seconds() {
  const char* s = std::getenv("EVLOOP_SOAK_SECONDS");
  return s != nullptr ? std::atoi(s) : 0;
}

void AccountedTest::SetUp() {
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit_), 0);
  {  // the first server and client initialise whatever a process keeps for good
    RunningServer warm(test::loopback_options(), {});
    ASSERT_TRUE(warm.status) << warm.status.message();
    Client c(warm.address());
  }
  fds_ = test::count_open_fds();
  threads_ = test::count_threads();
}

void AccountedTest::TearDown() {
  ::setrlimit(RLIMIT_NOFILE, &limit_);
  // Threads leave /proc/self/task when they exit; a joined thread has. The short bound only
  // absorbs the kernel's bookkeeping, it never waits for work of the test.
  EXPECT_TRUE(test::eventually([&] { return test::count_threads() == threads_; }, 2s))
      << "threads left behind: " << test::count_threads() - threads_;
  EXPECT_EQ(test::count_open_fds(), fds_) << "fds left open";
}

bool raise_fd_limit(rlim_t n) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return false;
  if (r.rlim_cur >= n) return true;
  r.rlim_cur = std::min(n, r.rlim_max);
  return ::setrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur >= n;
}

bool set_fd_limit(rlim_t n) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return false;
  r.rlim_cur = n;
  return ::setrlimit(RLIMIT_NOFILE, &r) == 0;
}

std::size_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

int make_socket(int family, int min_fd) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || min_fd <= 0 || fd >= min_fd) return fd;
  const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, min_fd);
  ::close(fd);
  return high;
}

bool begin_connect(int fd, const SocketAddress& addr) {
  const int rc = ::connect(fd, static_cast<const sockaddr*>(addr.data()),
                           static_cast<socklen_t>(addr.size()));
  return rc == 0 || errno == EINPROGRESS;
}

int start_connect(const SocketAddress& addr, int min_fd) {
  const int fd = make_socket(addr.family(), min_fd);
  if (fd < 0) return -1;
  if (!begin_connect(fd, addr)) {
    const int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

int socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

void reset_close(int fd) {
  linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(fd);
}

void set_receive_buffer(int fd, int bytes) {
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

EpollSet::EpollSet() : fd_(::epoll_create1(EPOLL_CLOEXEC)), events_(1024) {}

EpollSet::~EpollSet() {
  if (fd_ >= 0) ::close(fd_);
}

void EpollSet::add(int fd, std::uint32_t events, std::uint64_t token) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  EXPECT_EQ(::epoll_ctl(fd_, EPOLL_CTL_ADD, fd, &ev), 0) << std::strerror(errno);
}

void EpollSet::modify(int fd, std::uint32_t events, std::uint64_t token) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  EXPECT_EQ(::epoll_ctl(fd_, EPOLL_CTL_MOD, fd, &ev), 0) << std::strerror(errno);
}

void EpollSet::remove(int fd) { ::epoll_ctl(fd_, EPOLL_CTL_DEL, fd, nullptr); }

const std::vector<epoll_event>& EpollSet::wait(int timeout_ms) {
  int n = ::epoll_wait(fd_, events_.data(), static_cast<int>(events_.size()), timeout_ms);
  if (n < 0) n = 0;  // EINTR: report nothing ready
  ready_.assign(events_.begin(), events_.begin() + n);
  return ready_;
}

namespace {
constexpr std::uint64_t kFnvPrime = 1099511628211ull;
}

void StreamChecksum::update(const char* p, std::size_t n) {
  total_ += n;
  // Complete a word started by the previous piece.
  while (pending_size_ > 0 && pending_size_ < 8 && n > 0) {
    pending_[pending_size_++] = static_cast<unsigned char>(*p++);
    --n;
  }
  if (pending_size_ == 8) {
    std::uint64_t w;
    std::memcpy(&w, pending_, 8);
    hash_ = (hash_ ^ w) * kFnvPrime;
    pending_size_ = 0;
  }
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    hash_ = (hash_ ^ w) * kFnvPrime;
  }
  for (; n > 0; --n) pending_[pending_size_++] = static_cast<unsigned char>(*p++);
}

std::uint64_t StreamChecksum::value() const {
  std::uint64_t h = hash_;
  for (std::size_t i = 0; i < pending_size_; ++i) h = (h ^ pending_[i]) * kFnvPrime;
  return (h ^ total_) * kFnvPrime;
}

}  // namespace evloop::fault
