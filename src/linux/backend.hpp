// Internal. Linux backend: epoll poller and eventfd waker. Contract: src/poller.hpp.
#pragma once

#include <system_error>

namespace evloop::detail {

struct PollEvent;

/// Level-triggered epoll. Not thread-safe: used only by its loop's thread (and before it starts).
class Poller {
 public:
  Poller() = default;
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  std::error_code open();
  std::error_code add(int fd, unsigned interest, void* token);
  std::error_code modify(int fd, unsigned from, unsigned to, void* token);
  void remove(int fd, unsigned interest);
  int wait(PollEvent* out, int capacity, int timeout_ms);
  int fd() const noexcept { return epfd_; }

 private:
  static constexpr int kBatch = 256;  // events fetched per epoll_wait
  int epfd_ = -1;
};

/// An eventfd registered for read. notify() adds 1 (async-signal-safe); drain() reads the counter
/// back to zero, so a level-triggered epoll does not report it again.
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
