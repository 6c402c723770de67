// TimerQueue ordering, cancel, periodic rescheduling and timeouts.
#include <gtest/gtest.h>

#include <algorithm>
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

// Each connection that closes with its idle timer armed cancels that timer. Its heap entry used
// to stay until the deadline passed: 16 bytes per closed connection for the whole timeout
// (unbounded with long timeouts and a peer that churns connections). Cancelled entries are now
// dropped once they outnumber the live ones, and the live timers still run in order.
TEST(TimerQueueTest, CancelledEntriesDoNotPileUpUntilTheirDeadlines) {
  TimerQueue q;
  const auto t0 = Clock::now();
  std::vector<int> order;
  for (int i = 99; i >= 0; --i) q.add(t0 + 1h + i * 1ms, {}, [&order, i] { order.push_back(i); });
  std::size_t most = 0;
  for (int i = 0; i < 100'000; ++i) {
    EXPECT_TRUE(q.cancel(q.add(t0 + 1h + (i % 500) * 1ms, {}, [&] { ADD_FAILURE(); })));
    most = std::max(most, q.heap_entries());
  }
  EXPECT_EQ(q.size(), 100u);
  EXPECT_LE(most, 2 * 100 + 1024 + 1) << "cancelled entries must not wait for their deadlines";
  EXPECT_EQ(q.run_due(t0 + 2h), 100u);
  std::vector<int> expected(100);
  for (int i = 0; i < 100; ++i) expected[static_cast<std::size_t>(i)] = i;
  EXPECT_EQ(order, expected);
  EXPECT_EQ(q.heap_entries(), 0u);
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
