// Unit tests of the head, body and keep-alive deadlines, on an explicit clock: which timeout
// expires when, and that a timer armed as the class says is never late for a deadline set after it.
#include "deadlines.hpp"

#include <gtest/gtest.h>

#include <optional>

namespace httpd {
namespace {

using std::chrono::seconds;
using Expired = Deadlines::Expired;

const Clock::time_point t0 = Clock::time_point() + std::chrono::hours(1);

TEST(Deadlines, TheFirstHeadIsDueFromTheAccept) {
  Deadlines d(Timeouts{seconds(60), seconds(75)}, t0);
  EXPECT_EQ(d.timer_delay(t0), Clock::duration(seconds(60)));
  d.on_read(t0 + seconds(30), Awaiting::head, false);  // more of the same head: no new time
  EXPECT_EQ(d.expired(t0 + seconds(59)), Expired::none);
  EXPECT_EQ(d.expired(t0 + seconds(60)), Expired::head);
  EXPECT_EQ(d.timer_delay(t0 + seconds(30)), Clock::duration(seconds(30)));
}

TEST(Deadlines, AFinishedRequestStartsTheKeepAliveTimeAndTheNextHeadItsOwn) {
  Deadlines d(Timeouts{seconds(60), seconds(75)}, t0);
  d.on_read(t0 + seconds(10), Awaiting::next_request, true);
  EXPECT_EQ(d.expired(t0 + seconds(84)), Expired::none);
  EXPECT_EQ(d.expired(t0 + seconds(85)), Expired::keepalive);
  // The next request's first bytes at 20 s: its head is due at 80 s.
  d.on_read(t0 + seconds(20), Awaiting::head, false);
  EXPECT_EQ(d.expired(t0 + seconds(79)), Expired::none);
  EXPECT_EQ(d.expired(t0 + seconds(80)), Expired::head);
  // A request that ends in the same read as the next one begins: the new head's time starts.
  d.on_read(t0 + seconds(50), Awaiting::head, true);
  EXPECT_EQ(d.expired(t0 + seconds(109)), Expired::none);
  EXPECT_EQ(d.expired(t0 + seconds(110)), Expired::head);
}

// A body that stops arriving expires; one that keeps coming, however slowly, does not. (Before,
// a body had no deadline: a peer that stopped mid-body held its connection and up to --max-body
// of memory for ever.)
TEST(Deadlines, EachReadOfABodyMustComeWithinTheBodyTimeout) {
  Deadlines d(Timeouts{seconds(60), seconds(75), seconds(30)}, t0);
  d.on_read(t0, Awaiting::body, false);
  EXPECT_EQ(d.timer_delay(t0), Clock::duration(seconds(30)));
  EXPECT_EQ(d.expired(t0 + seconds(29)), Expired::none);
  d.on_read(t0 + seconds(20), Awaiting::body, false);  // more of the body: its time starts again
  EXPECT_EQ(d.expired(t0 + seconds(49)), Expired::none);
  EXPECT_EQ(d.expired(t0 + seconds(50)), Expired::body);
  d.on_read(t0 + seconds(45), Awaiting::next_request, true);
  EXPECT_EQ(d.expired(t0 + seconds(119)), Expired::none);
  EXPECT_EQ(d.expired(t0 + seconds(120)), Expired::keepalive);

  Deadlines off(Timeouts{seconds(1), seconds(1), seconds(0)}, t0);
  off.on_read(t0, Awaiting::body, false);
  EXPECT_FALSE(off.timer_delay(t0).has_value());
  EXPECT_EQ(off.expired(t0 + seconds(3600)), Expired::none);
}

TEST(Deadlines, ZeroTurnsATimeoutOff) {
  Deadlines no_head(Timeouts{seconds(0), seconds(5)}, t0);
  EXPECT_FALSE(no_head.timer_delay(t0).has_value());
  EXPECT_EQ(no_head.expired(t0 + seconds(3600)), Expired::none);
  no_head.on_read(t0, Awaiting::next_request, true);
  EXPECT_EQ(no_head.expired(t0 + seconds(5)), Expired::keepalive);

  Deadlines neither(Timeouts{seconds(0), seconds(0), seconds(0)}, t0);
  neither.on_read(t0, Awaiting::next_request, true);
  EXPECT_FALSE(neither.timer_delay(t0).has_value());
  EXPECT_EQ(neither.expired(t0 + seconds(3600)), Expired::none);
}

// Plays a connection whose reads arrive at random times and states, with a timer armed only as
// the class says (never moved by a read): every expiry is noticed when it is due, not later.
TEST(Deadlines, ALazyTimerIsNeverLateForADeadlineSetAfterIt) {
  for (const Timeouts timeouts :
       {Timeouts{seconds(6), seconds(4)}, Timeouts{seconds(4), seconds(6)},
        Timeouts{seconds(60), seconds(5)}, Timeouts{seconds(0), seconds(7)},
        Timeouts{seconds(3), seconds(0)}, Timeouts{seconds(6), seconds(4), seconds(2)},
        Timeouts{seconds(0), seconds(0), seconds(5)}}) {
    SCOPED_TRACE(testing::Message()
                 << "header " << timeouts.header.count() << " s, keep-alive "
                 << timeouts.keepalive.count() << " s, body " << timeouts.body.count() << " s");
    Deadlines d(timeouts, t0);
    std::optional<Clock::time_point> timer;
    auto arm = [&](Clock::time_point now) {
      const std::optional<Clock::duration> delay = d.timer_delay(now);
      timer = delay ? std::optional(now + *delay) : std::nullopt;
    };
    arm(t0);
    Clock::time_point now = t0;
    unsigned seed = 16;
    int expiries = 0;
    for (int step = 0; step < 10'000; ++step) {
      seed = seed * 1103515245 + 12345;
      now += std::chrono::milliseconds(seed % 10'000);  // often past a deadline
      // The timer fires at its time, if that comes before this read.
      while (timer && *timer <= now) {
        const Clock::time_point fired = *timer;
        ASSERT_EQ(d.expired(fired - std::chrono::nanoseconds(1)), Expired::none) << "late";
        if (d.expired(fired) != Expired::none) {
          ++expiries;
          d = Deadlines(timeouts, fired);  // the connection closed; a new one opens
        }
        arm(fired);
      }
      ASSERT_EQ(d.expired(now), Expired::none) << "an expiry was missed at step " << step;
      d.on_read(now, static_cast<Awaiting>((seed >> 16) % 3), (seed >> 20) % 2 == 0);
      if (!timer) arm(now);
    }
    EXPECT_GT(expiries, 100);
  }
}

}  // namespace
}  // namespace httpd
