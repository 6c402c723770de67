// Test helpers: loopback clients with bounded waits, an event counter to wait on, fd and thread
// counts from /proc. Every wait here has a deadline so a bug fails a test instead of hanging it.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <evloop/evloop.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "portable_socket.hpp"

namespace evloop::test {

using namespace std::chrono_literals;

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define EVLOOP_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define EVLOOP_TEST_SANITIZED 1
#endif

/// True in ASan and TSan builds, which run 3-10x slower: tests scale their counts down there so
/// the suite stays within its CI budget. The full scale is the normal build's.
#ifdef EVLOOP_TEST_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

/// Default bound for any wait in a test.
inline constexpr std::chrono::milliseconds kWait = 10s;

/// A counter that threads bump and a test waits on (condition variable, no polling).
class EventCounter {
 public:
  void add(long n = 1);
  long value() const;
  /// Waits until value() >= target; false on timeout.
  bool wait_for(long target, std::chrono::milliseconds timeout = kWait) const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  long value_ = 0;
};

/// Records the error of every `closed` (or `connect_failed`) callback, in the order they come,
/// for a test to wait on: `cb.closed = log.recorder();`, then `log.wait_for(n)` and `log.last()`.
class ErrorLog {
 public:
  /// A callback that records into this log, which must outlive the server.
  std::function<void(Conn&, std::error_code)> recorder();
  /// Records one error (for a callback that does more than record).
  void record(std::error_code error);
  /// Waits until `n` errors are recorded; false on timeout.
  bool wait_for(long n, std::chrono::milliseconds timeout = kWait) const;
  long count() const;
  /// Every recorded error, in order.
  std::vector<std::error_code> errors() const;
  /// The first recorded error; no error when nothing is recorded.
  std::error_code first() const;
  /// The latest recorded error; no error when nothing is recorded.
  std::error_code last() const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::vector<std::error_code> errors_;
};

/// Keeps a loop busy in a posted task until release() (or destruction), so that what other
/// threads post meanwhile (openings, tasks) is taken by the loop in one batch, before it next
/// waits for I/O.
class LoopHold {
 public:
  explicit LoopHold(const Loop& loop);
  ~LoopHold() { release(); }
  LoopHold(const LoopHold&) = delete;
  LoopHold& operator=(const LoopHold&) = delete;

  /// True once the loop is inside the holding task (waits up to kWait).
  bool holding() const;
  /// Lets the loop go on.
  void release();

 private:
  struct State {
    std::promise<void> released;
    EventCounter holding;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
  bool posted_ = false;
  bool released_ = false;
};

/// True once `loop`'s count of waits stays flat for 200 ms (at most 5 tries): the loop is idle,
/// not woken again and again. Observed over intervals by design; the tries absorb one wakeup
/// still in flight on a loaded machine.
bool loop_goes_quiet(const Loop& loop);

/// The epoll and io_uring fds among the fds `before` did not list: the pollers of the loops
/// started since `before = new_poller_fds({})` (none on kqueue).
std::vector<int> new_poller_fds(const std::vector<int>& before);
/// Puts /dev/null in place of `fd`, so that its loop's next wait fails while the number stays
/// taken (the loop's own close() of it then cannot close an unrelated file). False on failure.
bool break_poller(int fd);

/// Waits until `pred()` holds, re-checking every `step`; false on timeout. For state that has no
/// event to wait on (kernel counters, stats); never used in place of an event that exists.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = kWait,
                std::chrono::milliseconds step = 2ms);

/// A blocking client socket with send/receive timeouts (so a read can never hang a test).
class Client {
 public:
  Client() = default;
  /// Connects to `addr`; check connected().
  explicit Client(const SocketAddress& addr, int rcvbuf = 0);
  ~Client();
  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;

  bool connected() const { return fd_ >= 0 && connected_; }
  int fd() const { return fd_; }
  /// Sends everything or returns false.
  bool send_all(const std::string& bytes);
  /// Reads exactly n bytes (or fewer on EOF/error/timeout).
  std::string read_exactly(std::size_t n);
  /// Reads until EOF; `eof` tells whether EOF (not an error/timeout) ended it.
  std::string read_to_eof(bool* eof = nullptr);
  /// True if the peer has closed (read returns 0 within the timeout).
  bool wait_eof();
  /// shutdown(SHUT_WR).
  void shutdown_write();
  /// Closes with an RST (SO_LINGER 0).
  void reset();
  void close();

 private:
  int fd_ = -1;
  bool connected_ = false;
};

/// A blocking UDP socket bound to the loopback address of `family` (port 0), with a receive
/// timeout, for talking to evloop's UDP sockets.
class UdpPeer {
 public:
  /// `receive_buffer` > 0 sets SO_RCVBUF. Check ok().
  explicit UdpPeer(int family = AF_INET, int receive_buffer = 0);
  ~UdpPeer();
  UdpPeer(const UdpPeer&) = delete;
  UdpPeer& operator=(const UdpPeer&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  /// The bound address (port resolved).
  SocketAddress address() const;
  /// Sends one datagram; false on error.
  bool send_to(const SocketAddress& to, std::string_view bytes);
  /// One datagram, or nothing when none arrives within `timeout`. `from` gets the sender.
  std::optional<std::string> receive(std::chrono::milliseconds timeout = kWait,
                                     SocketAddress* from = nullptr);

 private:
  int fd_ = -1;
};

/// A port on 127.0.0.1 nobody listens on, held for the object's life: a TCP socket bound there
/// and never listening refuses every connect with a reset, and no other test (the suite runs in
/// parallel) can bind the port meanwhile, as it could a port bound and closed again.
class UnservedPort {
 public:
  UnservedPort();
  ~UnservedPort();
  UnservedPort(const UnservedPort&) = delete;
  UnservedPort& operator=(const UnservedPort&) = delete;
  /// The port; 0 if none could be bound.
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

/// This process's UDP sockets bound to `port`, each counted once.
int udp_sockets_on(std::uint16_t port);
/// This process's listening TCP sockets bound to `port`, each counted once.
int listening_tcp_sockets_on(std::uint16_t port);

/// A server running on loopback with port 0, started in the constructor.
struct RunningServer {
  RunningServer(Options options, Callbacks callbacks);
  ~RunningServer();
  Server server;
  Status status;
  const SocketAddress& address(std::size_t i = 0) const { return server.addresses().at(i); }
};

/// Options with one tcp4 loopback address on port 0.
Options loopback_options(unsigned loops = 1);

/// Number of open fds in this process.
int count_open_fds();
/// Number of threads in this process, less io_uring's kernel workers (the ring's, not evloop's).
int count_threads();
/// True once `count()` returns `expected`, re-checked until `timeout`. For counts that settle
/// after the work that changed them has returned, with no event to wait on: a joined thread
/// leaves /proc/self/task a moment later, and libkqueue's helper threads and deferred closes wind
/// down on their own (slowly on a loaded machine).
bool settles_to(const std::function<int()>& count, int expected,
                std::chrono::milliseconds timeout = kWait);
/// The ids of this process's threads (/proc/self/task, less io_uring's kernel workers), sorted;
/// empty where there is no /proc.
std::vector<int> thread_ids();
/// This process's open fds and threads, taken as a baseline.
struct FdAndThreadCounts {
  int fds = count_open_fds();
  std::vector<int> threads = thread_ids();
};
/// How many of this process's threads were not there when `baseline` was taken. Threads are
/// compared by id, not counted: a thread of the baseline that exits later does not hide a new one
/// (a joined thread leaves /proc/self/task a moment after the join returns, so a baseline taken
/// after a warm-up may hold a thread that is about to vanish).
int threads_since(const FdAndThreadCounts& baseline);
/// Success once both counts are back to `baseline` (settles_to); otherwise says how many fds and
/// threads are left over. Use it wherever a test compares fd or thread counts.
::testing::AssertionResult counts_return_to(const FdAndThreadCounts& baseline);
/// True if ::1 can be bound here.
bool has_ipv6_loopback();
/// Sum of all loops' counters.
LoopStats total_stats(const Server& server);
/// The waits of all of `server`'s loops while a timer on loop 0 runs `window` out: how a test
/// tells a loop that sleeps from one that spins, bounded by an event rather than a sleep.
/// UINT64_MAX if the timer did not fire within kWait.
std::uint64_t waits_during(Server& server, std::chrono::milliseconds window);
/// Waits until every loop has finished the work it was doing (a posted task ran on each), so
/// counters it wrote before are visible. False on timeout.
bool settle(Server& server);
/// Reads from `client` to the end of its stream and expects exactly `expected`, ended by a FIN
/// (not a reset or a timeout: the errno is printed if not).
void expect_stream_then_fin(Client& client, const std::string& expected);
/// `n` bytes of a position-dependent pattern (seeded), to check order and content.
std::string pattern(std::size_t n, std::uint32_t seed = 1);
/// A unique path for a Unix socket under the temp directory.
std::string temp_socket_path(const std::string& tag);

}  // namespace evloop::test
