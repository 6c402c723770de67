// Example. The head, body and keep-alive deadlines of one connection (see deadlines.hpp).
#include "deadlines.hpp"

#include <algorithm>

namespace httpd {

Deadlines::Deadlines(Timeouts timeouts, Clock::time_point accepted) noexcept : timeouts_(timeouts) {
  using std::chrono::seconds;
  auto when_on = [](seconds t) { return t.count() > 0 ? t : seconds::max(); };
  const seconds shorter =
      std::min({when_on(timeouts.header), when_on(timeouts.body), when_on(timeouts.keepalive)});
  // With all off no deadline is ever set, so the timer is never armed.
  longest_timer_ = shorter == seconds::max() ? Clock::duration::zero() : Clock::duration(shorter);
  await(Awaiting::head, accepted);
}

void Deadlines::await(Awaiting what, Clock::time_point now) noexcept {
  awaiting_ = what;
  const std::chrono::seconds timeout = what == Awaiting::head           ? timeouts_.header
                                       : what == Awaiting::body         ? timeouts_.body
                                       : what == Awaiting::next_request ? timeouts_.keepalive
                                                                        : std::chrono::seconds(0);
  deadline_ = timeout.count() > 0 ? now + timeout : Clock::time_point::max();
}

void Deadlines::on_read(Clock::time_point now, Awaiting next, bool request_completed) noexcept {
  if (next == Awaiting::head && awaiting_ == Awaiting::head && !request_completed) return;
  await(next, now);
}

std::optional<Clock::duration> Deadlines::timer_delay(Clock::time_point now) const noexcept {
  if (deadline_ == Clock::time_point::max()) return std::nullopt;
  return std::clamp(deadline_ - now, Clock::duration::zero(), longest_timer_);
}

Deadlines::Expired Deadlines::expired(Clock::time_point now) const noexcept {
  if (now < deadline_) return Expired::none;
  return awaiting_ == Awaiting::head   ? Expired::head
         : awaiting_ == Awaiting::body ? Expired::body
                                       : Expired::keepalive;
}

}  // namespace httpd
