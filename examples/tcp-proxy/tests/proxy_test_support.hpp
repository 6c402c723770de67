// Test helper for the tcp-proxy tests: a running proxy, upstreams the test plays itself over
// raw loopback sockets, byte streams driven both ways at once with poll(), and what /proc says
// about the proxy process. Every wait is bounded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "child_process.hpp"

namespace example_test {

/// Threads the event backend keeps in every process (libkqueue's two on the kqueue suite).
#ifdef EVLOOP_TEST_BACKEND_THREADS
inline constexpr int kBackendThreads = EVLOOP_TEST_BACKEND_THREADS;
#else
inline constexpr int kBackendThreads = 0;
#endif

/// True in ASan and TSan builds, which run several times slower: the tests scale down there.
/// Under TSan a process also has the sanitizer's own background thread (kRuntimeThreads).
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
inline constexpr int kRuntimeThreads = 1;
#elif defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
inline constexpr int kRuntimeThreads = 0;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kSanitized = true;
inline constexpr int kRuntimeThreads = 1;
#elif __has_feature(address_sanitizer)
inline constexpr bool kSanitized = true;
inline constexpr int kRuntimeThreads = 0;
#else
inline constexpr bool kSanitized = false;
inline constexpr int kRuntimeThreads = 0;
#endif
#else
inline constexpr bool kSanitized = false;
inline constexpr int kRuntimeThreads = 0;
#endif

/// The default bound of a wait.
inline constexpr milliseconds kWait{20'000};

/// The tcp-proxy binary, started on a free loopback port in front of `upstream`.
struct Proxy {
  /// Starts it; check port() != 0.
  explicit Proxy(const std::string& upstream, const std::vector<std::string>& extra = {});
  /// Stops it with SIGTERM; a non-zero exit fails the test.
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return child_ ? child_->pid() : -1; }
  Child& child() { return *child_; }

 private:
  std::unique_ptr<Child> child_;
  std::uint16_t port_ = 0;
};

/// "tcp://127.0.0.1:PORT".
std::string loopback_url(std::uint16_t port);

/// A loopback listener that plays an upstream: the test accepts its connections itself.
class Listener {
 public:
  /// Listens on 127.0.0.1, a free port, with this backlog.
  explicit Listener(int backlog = 64);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  std::string url() const;
  int fd() const { return fd_; }
  /// The next connection (a blocking socket the caller closes), or -1 when none came in time.
  int accept(milliseconds timeout = kWait);
  /// Fills the accept queue with connections nobody accepts. Linux drops a SYN while a
  /// listener's accept queue is full, so a new dial then stays in SYN_SENT until it gives up.
  /// Fullness is read from the kernel (TCP_INFO of a listening socket: tcpi_unacked is the
  /// queue's length, tcpi_sacked its limit), not guessed from a slow connect.
  bool fill_accept_queue();

 private:
  bool queue_full() const;
  int fd_ = -1;
  std::vector<int> fillers_;
};

/// How a stream read to its end ended.
enum class End { open, eof, reset, error, timeout };
const char* to_string(End end);

/// One connection driven by drive(): `out` is sent (then, if `shutdown_after`, a FIN), and
/// what comes back is compared with `expect` as it arrives (or kept in `in` when `keep`).
struct Flow {
  int fd = -1;
  std::string_view out;
  bool shutdown_after = true;
  std::string_view expect;  // compared byte for byte when not empty
  bool keep = false;        // keep what arrives in `in`
  std::string in;
  std::size_t sent = 0;
  std::size_t received = 0;
  std::size_t mismatch_at = std::string::npos;  // first byte that differed from `expect`
  End end = End::open;
  int error = 0;  // errno of End::reset / End::error
};

/// Drives every flow at once until each has read to its end (EOF or an error) and, unless it
/// failed, sent all its bytes (and its FIN): a flow whose peer half-closed keeps sending. Flows
/// still going at the deadline end with End::timeout. Makes the fds non-blocking.
void drive(std::vector<Flow>& flows, milliseconds timeout = kWait);

/// One flow: sends `out` (and a FIN if asked), returns what came back and how it ended.
Flow exchange(int fd, std::string_view out, bool shutdown_after, milliseconds timeout = kWait);

/// Closes `fd` with a reset (SO_LINGER 0).
void close_with_reset(int fd);

/// Deterministic bytes: `size` of them from a stream named by `seed`.
std::string pattern(std::size_t size, unsigned seed);

/// Entries of /proc/PID/fd, and of /proc/PID/task less io_uring's kernel workers; -1 when
/// unreadable.
int open_fds(pid_t pid);
int threads(pid_t pid);
/// VmRSS of a process in bytes; -1 when unreadable.
long rss_bytes(pid_t pid);

/// Calls `pred` until it holds or `timeout` passes (checking every few ms); its last answer.
bool eventually(const std::function<bool()>& pred, milliseconds timeout = kWait);

/// Raises this process's soft fd limit (inherited by the children it starts) to at least `n`.
bool raise_fd_limit(std::size_t n);

}  // namespace example_test
