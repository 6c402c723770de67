// Internal. One loop's timers: a binary min-heap of deadlines plus a map from id to callback.
// Cancel is O(1) amortized (the heap entry is skipped when it surfaces, and the heap is rebuilt
// without such entries once they outnumber the live ones: a connection closed with its idle
// timer armed must not leave its entry for the whole timeout); add is O(log n). Loop thread only,
// except reserve() and unreserve(), which let another thread name a timer that its loop will add
// later.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace evloop::detail {

class TimerQueue {
 public:
  using Clock = std::chrono::steady_clock;
  using Task = std::function<void()>;

  /// Schedules `fn` at `when`, then every `interval` if it is nonzero. Returns a nonzero id.
  std::uint64_t add(Clock::time_point when, Clock::duration interval, Task fn);
  /// A fresh nonzero id for a timer another thread asks for, added later by add_reserved() on the
  /// loop thread (any thread). Until then cancel() of the id stops the add.
  std::uint64_t reserve();
  /// Forgets an id from reserve() whose add will never come (any thread).
  void unreserve(std::uint64_t id);
  /// add() with an id from reserve(); does nothing if the id was cancelled meanwhile.
  void add_reserved(std::uint64_t id, Clock::time_point when, Clock::duration interval, Task fn);
  /// Drops every timer.
  void clear() noexcept;
  /// Cancels; false if unknown (already ran or cancelled). An id from reserve() whose timer is
  /// not added yet counts as a live timer: its add is stopped.
  bool cancel(std::uint64_t id);
  /// Milliseconds until the earliest timer (rounded up, so the loop never wakes early and spins),
  /// or -1 when there is none.
  int next_timeout_ms(Clock::time_point now);
  /// Runs every timer due at `now`; returns how many ran. A timer may add or cancel timers.
  std::size_t run_due(Clock::time_point now);
  /// Number of live timers.
  std::size_t size() const noexcept { return timers_.size(); }
  /// Entries in the deadline heap: the live timers' and the cancelled ones' not dropped yet.
  std::size_t heap_entries() const noexcept { return heap_.size(); }

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
  bool stale(const Due& due) const;
  void drop_stale_entries();

  std::uint64_t next_id() noexcept { return next_id_.fetch_add(1, std::memory_order_relaxed); }
  void insert(std::uint64_t id, Clock::time_point when, Clock::duration interval, Task fn);

  std::vector<Due> heap_;
  std::unordered_map<std::uint64_t, Timer> timers_;
  std::atomic<std::uint64_t> next_id_{1};
  std::mutex reserved_mutex_;
  std::unordered_set<std::uint64_t> reserved_;  // guarded by reserved_mutex_: ids not yet added
};

}  // namespace evloop::detail
