#include "timer_queue.hpp"

#include <algorithm>

#include "timeouts.hpp"

namespace evloop::detail {

std::uint64_t TimerQueue::add(Clock::time_point when, Clock::duration interval, Task fn) {
  const std::uint64_t id = next_id();
  insert(id, when, interval, std::move(fn));
  return id;
}

std::uint64_t TimerQueue::reserve() {
  const std::uint64_t id = next_id();
  std::lock_guard lock(reserved_mutex_);
  reserved_.insert(id);
  return id;
}

void TimerQueue::unreserve(std::uint64_t id) {
  std::lock_guard lock(reserved_mutex_);
  reserved_.erase(id);
}

void TimerQueue::add_reserved(std::uint64_t id, Clock::time_point when, Clock::duration interval,
                              Task fn) {
  {
    std::lock_guard lock(reserved_mutex_);
    if (reserved_.erase(id) == 0) return;  // cancelled before its add came
  }
  insert(id, when, interval, std::move(fn));
}

void TimerQueue::insert(std::uint64_t id, Clock::time_point when, Clock::duration interval,
                        Task fn) {
  timers_.emplace(id, Timer{when, interval, std::move(fn)});
  heap_.push_back({when, id});
  std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
}

void TimerQueue::clear() noexcept {
  heap_.clear();
  timers_.clear();
  std::lock_guard lock(reserved_mutex_);
  reserved_.clear();
}

bool TimerQueue::cancel(std::uint64_t id) {
  if (timers_.erase(id) > 0) {
    // Rebuilt after at least as many cancels as it keeps entries: O(1) per cancel, amortized.
    constexpr std::size_t kSlack = 1024;
    if (heap_.size() > 2 * timers_.size() + kSlack) drop_stale_entries();
    return true;
  }
  // Asked for by another thread, its add still queued: the loop thread may have the id already
  // (passed along by that thread), and cancelling must stop the add.
  std::lock_guard lock(reserved_mutex_);
  return reserved_.erase(id) > 0;
}

bool TimerQueue::stale(const Due& due) const {
  // Its timer was cancelled, or rescheduled to another deadline.
  auto it = timers_.find(due.id);
  return it == timers_.end() || it->second.when != due.when;
}

void TimerQueue::drop_cancelled_top() {
  while (!heap_.empty() && stale(heap_.front())) {
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
    heap_.pop_back();
  }
}

void TimerQueue::drop_stale_entries() {
  std::erase_if(heap_, [this](const Due& due) { return stale(due); });
  std::make_heap(heap_.begin(), heap_.end(), std::greater<>{});
}

int TimerQueue::next_timeout_ms(Clock::time_point now) {
  drop_cancelled_top();
  if (heap_.empty()) return -1;
  const auto wait = heap_.front().when - now;
  return wait_ms(wait);  // at most a day: a longer wait simply waits again
}

std::size_t TimerQueue::run_due(Clock::time_point now) {
  std::size_t ran = 0;
  for (drop_cancelled_top(); !heap_.empty() && heap_.front().when <= now; drop_cancelled_top()) {
    const std::uint64_t id = heap_.front().id;
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
    heap_.pop_back();
    auto it = timers_.find(id);
    const Clock::duration interval = it->second.interval;
    Task fn = std::move(it->second.fn);
    if (interval == Clock::duration::zero()) timers_.erase(it);
    ++ran;
    fn();  // may add or cancel timers (the map may rehash: `it` is not used after this)
    if (interval != Clock::duration::zero()) {
      it = timers_.find(id);
      if (it == timers_.end()) continue;  // cancelled by its own callback
      // Next deadline after `now`, so a timer that fell behind does not run in a burst.
      it->second.when = std::max(it->second.when + interval, now + Clock::duration(1));
      it->second.fn = std::move(fn);
      heap_.push_back({it->second.when, id});
      std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
    }
  }
  return ran;
}

}  // namespace evloop::detail
