// TimerQueue ordering, cancel, periodic rescheduling and timeouts.
#include <gtest/gtest.h>

#include <vector>

#include "timer_queue.hpp"

namespace evloop::detail {
namespace {

using Clock = TimerQueue::Clock;
using namespace std::chrono_literals;

TEST(TimerQueueTest, RunsDueTimersInDeadlineOrder) {
  TimerQueue q;
  const auto t0 = Clock::now();
  std::vector<int> order;
  q.add(t0 + 30ms, {}, [&] { order.push_back(3); });
  q.add(t0 + 10ms, {}, [&] { order.push_back(1); });
  q.add(t0 + 20ms, {}, [&] { order.push_back(2); });
  EXPECT_EQ(q.next_timeout_ms(t0), 10);
  EXPECT_EQ(q.run_due(t0 + 5ms), 0u);
  EXPECT_EQ(q.run_due(t0 + 25ms), 2u);
  EXPECT_EQ(q.run_due(t0 + 35ms), 1u);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(q.next_timeout_ms(t0), -1);
}

TEST(TimerQueueTest, CancelledTimersDoNotRunOrDelayTheWait) {
  TimerQueue q;
  const auto t0 = Clock::now();
  int ran = 0;
  const auto id = q.add(t0 + 1ms, {}, [&] { ++ran; });
  q.add(t0 + 50ms, {}, [&] { ++ran; });
  EXPECT_TRUE(q.cancel(id));
  EXPECT_FALSE(q.cancel(id));
  EXPECT_EQ(q.next_timeout_ms(t0), 50);
  q.run_due(t0 + 100ms);
  EXPECT_EQ(ran, 1);
}

TEST(TimerQueueTest, PeriodicTimerReschedulesAndCanCancelItself) {
  TimerQueue q;
  const auto t0 = Clock::now();
  int ran = 0;
  std::uint64_t id = 0;
  id = q.add(t0 + 10ms, 10ms, [&] {
    if (++ran == 3) q.cancel(id);
  });
  for (int i = 1; i <= 10; ++i) q.run_due(t0 + i * 10ms);
  EXPECT_EQ(ran, 3);
  EXPECT_EQ(q.size(), 0u);
}

TEST(TimerQueueTest, TimeoutRoundsUpSoTheLoopNeverWakesEarly) {
  TimerQueue q;
  const auto t0 = Clock::now();
  q.add(t0 + 1500us, {}, [] {});
  EXPECT_EQ(q.next_timeout_ms(t0), 2);
  EXPECT_EQ(q.next_timeout_ms(t0 + 2ms), 0);
}

}  // namespace
}  // namespace evloop::detail
