// Loop timers, the tick callback and the idle timeout.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace evloop::test {
namespace {

TEST(TimerTest, RunAfterRunEveryAndCancel) {
  RunningServer s(loopback_options(), {});
  ASSERT_TRUE(s.status);
  Loop& loop = s.server.loop(0);
  EventCounter once, every, cancelled_ran;
  loop.post([&] {
    loop.run_after(5ms, [&] {
      EXPECT_TRUE(loop.in_loop_thread());
      once.add();
    });
    const TimerId never = loop.run_after(1ms, [&] { cancelled_ran.add(); });
    EXPECT_TRUE(loop.cancel(never));
    auto id = std::make_shared<TimerId>();
    *id = loop.run_every(1ms, [&, id] {
      every.add();
      if (every.value() == 5) {
        EXPECT_TRUE(loop.cancel(*id));
      }
    });
  });
  ASSERT_TRUE(once.wait_for(1));
  ASSERT_TRUE(every.wait_for(5));
  // Ordering proof instead of a sleep: a 20 ms timer posted now runs after any leftover 1 ms one.
  EventCounter later;
  loop.post([&] { loop.run_after(20ms, [&] { later.add(); }); });
  ASSERT_TRUE(later.wait_for(1));
  EXPECT_EQ(every.value(), 5);
  EXPECT_EQ(cancelled_ran.value(), 0);
  EXPECT_EQ(once.value(), 1);
}

TEST(TimerTest, TickRunsOnEveryLoopWithTheReturnedDelayUntilNegative) {
  EventCounter ticks;
  std::atomic<bool> off_loop{false};
  std::mutex mutex;
  std::vector<int> per_loop(2, 0);  // guarded by mutex
  Callbacks cb;
  cb.tick = [&](Loop& loop) {
    if (!loop.in_loop_thread()) off_loop = true;
    int mine;
    {
      std::lock_guard lock(mutex);
      mine = ++per_loop.at(loop.index());
    }
    ticks.add();
    return mine < 5 ? std::chrono::milliseconds(2) : std::chrono::milliseconds(-1);
  };
  RunningServer s(loopback_options(2), cb);
  ASSERT_TRUE(s.status);
  ASSERT_TRUE(ticks.wait_for(10));
  EventCounter later;
  for (std::size_t i = 0; i < 2; ++i) {
    s.server.loop(i).run_after(20ms, [&] { later.add(); });  // from this (foreign) thread
  }
  ASSERT_TRUE(later.wait_for(2));
  EXPECT_EQ(ticks.value(), 10);
  std::lock_guard lock(mutex);
  EXPECT_EQ(per_loop, (std::vector<int>{5, 5}));
  EXPECT_FALSE(off_loop);
}

TEST(TimerTest, APeriodicTimerDoesNotMakeTheLoopSpin) {
  RunningServer s(loopback_options(), {});
  ASSERT_TRUE(s.status);
  Loop& loop = s.server.loop(0);
  EventCounter fired;
  loop.post([&] { loop.run_every(10ms, [&] { fired.add(); }); });
  ASSERT_TRUE(fired.wait_for(1));
  const LoopStats before = loop.stats();
  ASSERT_TRUE(fired.wait_for(21));
  const LoopStats after = loop.stats();
  // About one wait per timer expiry: 20 expiries, a few spare, never thousands.
  EXPECT_LE(after.waits - before.waits, 2 * (after.timers_fired - before.timers_fired) + 5);
}

TEST(TimerTest, IdleTimeoutClosesSilentConnectionsOnly) {
  Options o = loopback_options();
  o.idle_timeout = 500ms;  // far above the chatty client's 20 ms pace, even on a loaded machine
  EventCounter closed;
  std::mutex mutex;
  std::vector<std::error_code> errors;
  Callbacks cb;
  cb.data = [](Conn& c, std::string_view bytes) {
    c.write(bytes);
    return bytes.size();
  };
  cb.closed = [&](Conn&, std::error_code ec) {
    std::lock_guard lock(mutex);
    errors.push_back(ec);
    closed.add();
  };
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  // Before connecting: the idle clock starts at the loop's iteration time, which may be earlier
  // than the connect returns.
  const auto start = std::chrono::steady_clock::now();
  Client silent(s.address());
  Client chatty(s.address());
  // The chatty client talks every 20 ms; the silent one says nothing.
  while (closed.value() == 0 && std::chrono::steady_clock::now() - start < 5s) {
    ASSERT_TRUE(chatty.send_all("hi"));
    ASSERT_EQ(chatty.read_exactly(2), "hi");
    closed.wait_for(1, 20ms);
  }
  ASSERT_EQ(closed.value(), 1);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 500ms);
  EXPECT_TRUE(silent.wait_eof());
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(errors.at(0), errc::idle_timeout);
  }
  ASSERT_TRUE(chatty.send_all("still"));
  EXPECT_EQ(chatty.read_exactly(5), "still");
}

}  // namespace
}  // namespace evloop::test
