// Internal. Durations as the library keeps them. The API takes a timeout up to its type's
// maximum (milliseconds::max() is a natural "never"), but the loops' clock counts nanoseconds
// since boot in 64 bits, about 292 years: converted to it, or added to it, such a duration would
// overflow into the past and fire at once. So timers convert a delay saturating and cap it
// (EventLoop::run_after), and a duration used otherwise (a deadline, a connection's idle and
// send timeouts) is capped where the library takes it, at kLongestTimeout, which in practice
// waits for ever.
#pragma once

#include <algorithm>
#include <chrono>

namespace evloop::detail {

/// About a century: longer than any process lives, and far from overflowing the clock.
inline constexpr std::chrono::milliseconds kLongestTimeout = std::chrono::hours(24 * 365 * 100);

/// `d`, at most kLongestTimeout (compared in its own unit, before any conversion).
constexpr std::chrono::milliseconds capped(std::chrono::milliseconds d) noexcept {
  return std::min(d, kLongestTimeout);
}
constexpr std::chrono::nanoseconds capped(std::chrono::nanoseconds d) noexcept {
  return std::min(d, std::chrono::nanoseconds(kLongestTimeout));
}

/// A wait in whole milliseconds for poll/epoll_wait (an int), rounded up: at most a day (a
/// longer wait simply waits again).
constexpr int wait_ms(std::chrono::nanoseconds d) noexcept {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
  return static_cast<int>(std::clamp<long long>(ms, 0, 24LL * 3600 * 1000));
}

}  // namespace evloop::detail
