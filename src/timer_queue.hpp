// Internal. One loop's timers: a binary min-heap of deadlines plus a map from id to callback.
// Cancel is O(1) (the heap entry is skipped when it surfaces); add is O(log n). Loop thread only,
// except reserve(), which lets another thread name a timer that its loop will add later.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

namespace evloop::detail {

class TimerQueue {
 public:
  using Clock = std::chrono::steady_clock;
  using Task = std::function<void()>;

  /// Schedules `fn` at `when`, then every `interval` if it is nonzero. Returns a nonzero id.
  std::uint64_t add(Clock::time_point when, Clock::duration interval, Task fn);
  /// A fresh nonzero id for add_reserved() (any thread).
  std::uint64_t reserve() noexcept { return next_id_.fetch_add(1, std::memory_order_relaxed); }
  /// add() with an id from reserve().
  void add_reserved(std::uint64_t id, Clock::time_point when, Clock::duration interval, Task fn);
  /// Drops every timer.
  void clear() noexcept;
  /// Cancels; false if unknown (already ran or cancelled).
  bool cancel(std::uint64_t id);
  /// Milliseconds until the earliest timer (rounded up, so the loop never wakes early and spins),
  /// or -1 when there is none.
  int next_timeout_ms(Clock::time_point now);
  /// Runs every timer due at `now`; returns how many ran. A timer may add or cancel timers.
  std::size_t run_due(Clock::time_point now);
  /// Number of live timers.
  std::size_t size() const noexcept { return timers_.size(); }

 private:
  struct Due {
    Clock::time_point when;
    std::uint64_t id;
    bool operator>(const Due& o) const noexcept { return when > o.when; }
  };
  struct Timer {
    Clock::time_point when;
    Clock::duration interval;
    Task fn;
  };
  void drop_cancelled_top();

  std::vector<Due> heap_;
  std::unordered_map<std::uint64_t, Timer> timers_;
  std::atomic<std::uint64_t> next_id_{1};
};

}  // namespace evloop::detail
