#include "fault_support.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

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
  baseline_ = test::FdAndThreadCounts{};
}

void AccountedTest::TearDown() {
  ::setrlimit(RLIMIT_NOFILE, &limit_);
  EXPECT_TRUE(test::counts_return_to(baseline_));
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
  int fd = test::open_stream_socket(family, true);
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

void PollSet::add(int fd, short events, std::size_t token) {
  EXPECT_TRUE(slot_.emplace(fd, fds_.size()).second) << "fd " << fd << " added twice";
  fds_.push_back({fd, events, 0});
  tokens_.push_back(token);
}

void PollSet::modify(int fd, short events, std::size_t token) {
  const auto it = slot_.find(fd);
  ASSERT_NE(it, slot_.end()) << "fd " << fd << " not in the set";
  fds_[it->second].events = events;
  tokens_[it->second] = token;
}

void PollSet::remove(int fd) {
  const auto it = slot_.find(fd);
  if (it == slot_.end()) return;
  const std::size_t i = it->second;
  slot_.erase(it);
  if (i + 1 != fds_.size()) {  // the last entry takes the freed slot
    fds_[i] = fds_.back();
    tokens_[i] = tokens_.back();
    slot_[fds_[i].fd] = i;
  }
  fds_.pop_back();
  tokens_.pop_back();
}

void PollSet::poll_slice(std::size_t first, std::size_t count, int timeout_ms) {
  const int n = ::poll(fds_.data() + first, static_cast<nfds_t>(count), timeout_ms);
  if (n <= 0) return;  // EINTR: report nothing ready
  for (std::size_t i = first; i < first + count; ++i) {
    if (fds_[i].revents != 0) ready_.push_back({tokens_[i], fds_[i].revents});
  }
}

const std::vector<PollSet::Ready>& PollSet::wait(int timeout_ms) {
  ready_.clear();
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (fds_.size() <= limit.rlim_cur) {
    poll_slice(0, fds_.size(), timeout_ms);
    return ready_;
  }
  // poll() refuses more fds than RLIMIT_NOFILE (EINVAL), and the EMFILE storm drives thousands of
  // sockets under a limit of 256: then poll slices of the set without blocking, every 1 ms until
  // one is ready or the timeout passes.
  const std::size_t slice = std::max<rlim_t>(limit.rlim_cur, 1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    for (std::size_t first = 0; first < fds_.size(); first += slice) {
      poll_slice(first, std::min(slice, fds_.size() - first), 0);
    }
    if (!ready_.empty() || std::chrono::steady_clock::now() >= deadline) return ready_;
    std::this_thread::sleep_for(1ms);
  }
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
