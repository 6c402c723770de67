// Public. A handle to one event loop (one thread).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "evloop/stats.hpp"

namespace evloop {

namespace detail {
class EventLoop;
}
class Server;

/// Identifies a timer for Loop::cancel(). Never 0.
using TimerId = std::uint64_t;

/// One event loop: a thread with its own poller, waker, timers and connections.
///
/// Thread rules: post(), wake(), stats(), index() and in_loop_thread() may be called from any
/// thread. Timer calls (run_after, run_every, cancel) must be made on the loop's own thread, i.e.
/// from a callback or a posted task of this loop. A Loop lives as long as its Server.
class Loop {
 public:
  /// A task run on the loop thread.
  using Task = std::function<void()>;

  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  /// This loop's index, 0..Server::loop_count()-1.
  std::size_t index() const noexcept;
  /// True when called on this loop's thread.
  bool in_loop_thread() const noexcept;
  /// The server this loop belongs to.
  Server& server() const noexcept;

  /// Runs `task` on the loop thread, after the current batch of I/O. Thread-safe. Posts that arrive
  /// while a wake is already pending cost no extra syscall. Returns false (and drops the task) when
  /// the loop has stopped or is not running.
  bool post(Task task) const;
  /// Wakes the loop from its wait without a task (thread-safe, async-signal-safe).
  void wake() const noexcept;

  /// Runs `fn` once after `delay` on this loop. Loop thread only.
  TimerId run_after(std::chrono::nanoseconds delay, Task fn) const;
  /// Runs `fn` every `interval` (first after one interval) until cancelled. Loop thread only.
  TimerId run_every(std::chrono::nanoseconds interval, Task fn) const;
  /// Cancels a timer; returns false if it already ran (one-shot) or was cancelled. Loop thread
  /// only. A timer may cancel itself from its own callback.
  bool cancel(TimerId id) const;

  /// A snapshot of this loop's counters. Thread-safe.
  LoopStats stats() const noexcept;

 private:
  friend class detail::EventLoop;
  explicit Loop(detail::EventLoop& core) noexcept : core_(&core) {}
  detail::EventLoop* core_;
};

}  // namespace evloop
