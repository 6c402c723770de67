// Internal. Linux backend: epoll or io_uring, chosen when a loop opens, and an eventfd waker.
// Contract: src/poller.hpp, which includes this file after defining PollEvent (include that).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <system_error>

#include "evloop/loop_group.hpp"

namespace evloop::detail {

class UringPoller;

/// Level-triggered epoll. Not thread-safe: used only by its loop's thread (and before it starts).
class EpollPoller {
 public:
  EpollPoller() = default;
  ~EpollPoller();
  EpollPoller(const EpollPoller&) = delete;
  EpollPoller& operator=(const EpollPoller&) = delete;

  std::error_code open();
  std::error_code add(int fd, unsigned interest, void* token);
  std::error_code modify(int fd, unsigned from, unsigned to, void* token);
  void remove(int fd, unsigned interest);
  int wait(PollEvent* out, int capacity, int timeout_ms);

 private:
  static constexpr int kBatch = 256;  // events fetched per epoll_wait
  int epfd_ = -1;
};

/// The loop's poller: epoll, or io_uring (src/linux/uring_poller.hpp) when asked for and the
/// kernel has it. Each call branches on which; the branch is the same for the loop's whole life.
class Poller {
 public:
  Poller();
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  /// Opens epoll, or io_uring when `setup.wanted` says so (falling back to epoll, with `note`
  /// saying why, when the kernel refuses it).
  std::error_code open(const PollerSetup& setup, std::string& note);
  /// The build's default backend (epoll), for tests of the contract.
  std::error_code open();
  const char* name() const noexcept { return uring_ ? "io_uring" : "epoll"; }

  std::error_code add(int fd, unsigned interest, void* token);
  std::error_code modify(int fd, unsigned from, unsigned to, void* token);
  void remove(int fd, unsigned interest);
  int wait(PollEvent* out, int capacity, int timeout_ms);

  bool completions() const noexcept { return uring_ != nullptr; }
  void receive(int fd, void* token, bool large);
  void send(int fd, const msghdr* msg, void* token);
  void accept(int fd, void* token);
  void cancel(void* token, PollEvent::Op op);
  /// Registers fd for write space, errors and hang-ups, each wake-up reported once (io_uring).
  std::error_code watch_write_space(int fd, void* token);
  /// Polls removed whose end the kernel has not reported yet (io_uring): each still holds its
  /// socket's file open, so a stopping loop waits for them.
  bool polls_ending() const noexcept;

 private:
  EpollPoller epoll_;
  std::unique_ptr<UringPoller> uring_;
};

/// An eventfd registered for read. notify() adds 1 (async-signal-safe); drain() reads the counter
/// back to zero, so a level-triggered poller does not report it again.
class Waker {
 public:
  Waker() = default;
  ~Waker();
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;

  std::error_code open(Poller& poller, void* token);
  void notify() noexcept;
  void drain() noexcept;

 private:
  int fd_ = -1;
};

}  // namespace evloop::detail
