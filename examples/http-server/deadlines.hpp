// Example (not part of the library). The request-head, body and keep-alive timeouts of one
// connection, kept as one deadline that one timer checks. No dependency on evloop: main.cpp owns
// the timer, this class only says when it should fire and what has expired, so it is unit-tested
// alone.
#pragma once

#include <chrono>
#include <optional>

namespace httpd {

using Clock = std::chrono::steady_clock;

/// The three timeouts; zero turns one off.
struct Timeouts {
  /// The whole request head must arrive within this, counted from its first byte (from the accept
  /// for a connection's first request); else 408 and close. Like nginx's client_header_timeout.
  std::chrono::seconds header{60};
  /// A connection with no request in progress for this long is closed, without a response. Like
  /// nginx's keepalive_timeout.
  std::chrono::seconds keepalive{75};
  /// While a request body arrives, each read of it must come within this of the one before;
  /// else 408 and close. Like nginx's client_body_timeout.
  std::chrono::seconds body{60};
};

/// What a connection waits for once a read has been parsed.
enum class Awaiting {
  head,          ///< The rest of a request head: Timeouts::header applies.
  body,          ///< The rest of a request body: Timeouts::body applies, from each read.
  next_request,  ///< Nothing is in progress: Timeouts::keepalive applies.
  response,      ///< Requests wait for responses ahead of them to drain: no timeout (the
                 ///< send is bounded by evloop's ConnOptions::send_timeout).
};

/// The deadline of one connection, for a timer that is re-armed lazily: a read only stores a new
/// deadline; the timer, when it fires before the deadline, is armed again for the time left.
/// The timer is never armed for longer than the shorter timeout, and every deadline a read sets
/// is at least that far away, so no deadline is missed although a read never moves the timer: a
/// connection under steady keep-alive load costs no timer operation.
class Deadlines {
 public:
  /// Which timeout has expired.
  enum class Expired { none, head, body, keepalive };

  /// A connection accepted at `accepted`: its first request head is due Timeouts::header later.
  Deadlines(Timeouts timeouts, Clock::time_point accepted) noexcept;

  /// Records a read at `now` after which the connection awaits `next`. `request_completed` says
  /// that a request ended in this read, so that a head awaited now is a new request's, whose time
  /// starts now; a head that was already awaited keeps its deadline (the whole head counts).
  void on_read(Clock::time_point now, Awaiting next, bool request_completed) noexcept;

  /// How long to arm the timer for at `now`, or nothing when no deadline is pending.
  std::optional<Clock::duration> timer_delay(Clock::time_point now) const noexcept;
  /// What has expired at `now`.
  Expired expired(Clock::time_point now) const noexcept;

 private:
  void await(Awaiting what, Clock::time_point now) noexcept;

  Timeouts timeouts_;
  Clock::duration longest_timer_;  // The shorter of the timeouts that are on.
  Awaiting awaiting_ = Awaiting::head;
  Clock::time_point deadline_ = Clock::time_point::max();  // max(): none.
};

}  // namespace httpd
