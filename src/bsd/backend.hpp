// Internal. kqueue backend (FreeBSD, the other BSDs, macOS; Linux through libkqueue): kqueue poller
// and EVFILT_USER waker. Contract: src/poller.hpp. <sys/event.h> stays in the .cpp files, so the
// core's translation units never see the EV_* / NOTE_* macros.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

struct kevent;  // <sys/event.h>, global namespace

namespace evloop::detail {

/// Level-triggered kqueue: one EVFILT_READ and/or EVFILT_WRITE filter per fd, without EV_CLEAR;
/// an fd without interest keeps an EVFILT_READ with EV_CLEAR that reports only its errors.
/// add/modify queue their changes; wait() hands them to the kernel in the same kevent() call that
/// waits. remove() takes effect at once (see kqueue_poller.cpp for why).
/// Not thread-safe: used only by its loop's thread (and before it starts).
class Poller {
 public:
  Poller();
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  std::error_code open();
  /// kqueue is the only backend here: asking for epoll or io_uring gives kqueue and a `note`.
  std::error_code open(const PollerSetup& setup, std::string& note);
  const char* name() const noexcept { return "kqueue"; }
  std::error_code add(int fd, unsigned interest, void* token);
  std::error_code modify(int fd, unsigned from, unsigned to, void* token);
  void remove(int fd, unsigned interest);
  int wait(PollEvent* out, int capacity, int timeout_ms);
  int fd() const noexcept { return kq_; }

  // No completion-based I/O on kqueue: the core never calls these when completions() is false.
  static constexpr bool completions() noexcept { return false; }
  void receive(int, void*, bool) noexcept {}
  void send(int, const msghdr*, void*) noexcept {}
  void accept(int, void*) noexcept {}
  void cancel(void*, PollEvent::Op) noexcept {}
  static constexpr bool polls_ending() noexcept { return false; }
  std::error_code watch_write_space(int, void*) noexcept { return {}; }

 private:
  static constexpr int kBatch = 256;  // events fetched per kevent() wait

  void queue(int fd, int filter, unsigned flags, void* token);
  void flush_excess(std::size_t keep);

  int kq_ = -1;
  std::vector<struct kevent> changes_;  // queued for the next wait(), in order
  struct FailedChange {
    void* token;
    int error;  // errno
  };
  std::vector<FailedChange> failed_;  // changes that failed outside wait()
};

/// EVFILT_USER with EV_CLEAR: notify() triggers it (one kevent() call, any thread), the wait that
/// reports it also resets it, so drain() has nothing to do. Where EVFILT_USER is missing: a
/// non-blocking pipe whose read end is in the poller, written by notify() and emptied by drain().
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
  int kq_ = -1;             // EVFILT_USER: the poller's kqueue
  void* token_ = nullptr;   // passed again with every trigger: a change replaces the udata
  int pipe_[2] = {-1, -1};  // pipe fallback only: read end, write end
};

}  // namespace evloop::detail
