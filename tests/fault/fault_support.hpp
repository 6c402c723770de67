// Helpers for the fault suite: scale down under sanitizers, the accounting fixture (no fd or
// thread left behind by any test), fd-limit control, RSS, and a small poll(2) set used by tests
// that drive hundreds or thousands of non-blocking client sockets from one thread.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "test_support.hpp"

namespace evloop::fault {

using namespace std::chrono_literals;
using test::Client;
using test::EventCounter;
using test::RunningServer;

using test::kSanitized;

/// `full` in the normal build, `sanitized` under a sanitizer.
constexpr int scaled(int full, int sanitized) { return kSanitized ? sanitized : full; }

/// Seconds from EVLOOP_SOAK_SECONDS (0 when unset): a longer, optional soak.
int soak_seconds();

/// Base fixture: counts /proc/self/fd and /proc/self/task before the test and checks both return
/// to that number after it (servers stopped, clients closed, threads joined). Under ASan,
/// LeakSanitizer checks heap leaks at exit of each test process.
class AccountedTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

 private:
  test::FdAndThreadCounts baseline_;
  rlimit limit_{};
};

/// Raises the soft RLIMIT_NOFILE to at least `n` (capped by the hard limit); true if it is now >=
/// n.
bool raise_fd_limit(rlim_t n);
/// Sets the soft RLIMIT_NOFILE to exactly `n`; true on success.
bool set_fd_limit(rlim_t n);

/// Resident set size of this process in bytes.
std::size_t rss_bytes();

/// A non-blocking stream socket of `family`, moved to an fd number >= `min_fd` (so it does not
/// take one of the low fds a test leaves to the server). -1 on error.
int make_socket(int family, int min_fd = 0);
/// Starts a non-blocking connect of `fd` to `addr`; false on an immediate error.
bool begin_connect(int fd, const SocketAddress& addr);
/// make_socket() + begin_connect(): a socket with its connect in progress, or -1.
int start_connect(const SocketAddress& addr, int min_fd = 0);
/// The pending error of a socket (SO_ERROR), 0 when connected.
int socket_error(int fd);
/// Closes `fd` with an RST (SO_LINGER 0).
void reset_close(int fd);
/// Sets SO_RCVBUF.
void set_receive_buffer(int fd, int bytes);

/// A poll(2) set for a test's client sockets, portable to every system the library builds on:
/// the token is the caller's index. Each wait polls every fd (O(n): fine for the few thousand
/// sockets a test drives). Like epoll, a socket with no interest (events 0) still reports
/// POLLHUP and POLLERR.
class PollSet {
 public:
  struct Ready {
    std::size_t token;
    short events;  ///< revents: POLLIN, POLLOUT, POLLHUP, POLLERR
  };

  void add(int fd, short events, std::size_t token);
  void modify(int fd, short events, std::size_t token);
  void remove(int fd);
  /// Waits up to `timeout_ms` (>= 0); returns the ready sockets (a view valid until the next wait).
  const std::vector<Ready>& wait(int timeout_ms);

 private:
  void poll_slice(std::size_t first, std::size_t count, int timeout_ms);

  std::vector<pollfd> fds_;
  std::vector<std::size_t> tokens_;            // tokens_[i] belongs to fds_[i]
  std::unordered_map<int, std::size_t> slot_;  // fd -> its index in fds_
  std::vector<Ready> ready_;
};

/// A fast 64-bit checksum of a byte stream fed in pieces (order-sensitive): FNV-1a over 8-byte
/// words, with the tail bytes folded in on finish. Both ends feed the same bytes in the same
/// order, in any split, and compare `value()`.
class StreamChecksum {
 public:
  void update(const char* p, std::size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::uint64_t value() const;
  std::uint64_t bytes() const { return total_; }

 private:
  std::uint64_t hash_ = 1469598103934665603ull;
  unsigned char pending_[8] = {};
  std::size_t pending_size_ = 0;
  std::uint64_t total_ = 0;
};

}  // namespace evloop::fault
