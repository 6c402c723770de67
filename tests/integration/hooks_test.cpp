// Per-loop hooks: loop_started runs on each loop's thread before it handles any connection;
// loop_stopping runs on each loop's thread after every one of its connections has closed.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace evloop::test {
namespace {

TEST(HooksTest, StartedBeforeAnyConnectionStoppingAfterEveryClose) {
  constexpr unsigned kLoops = 3;
  std::mutex mutex;
  std::vector<std::thread::id> started(kLoops), stopping(kLoops);
  std::vector<int> open_now(kLoops, 0);  // per loop: connections open, guarded by mutex
  std::atomic<int> opened_before_start{0}, stopping_with_open{0}, wrong_thread{0};
  EventCounter opened;
  Callbacks cb;
  cb.loop_started = [&](Loop& loop) {
    if (!loop.in_loop_thread()) ++wrong_thread;
    std::lock_guard lock(mutex);
    started.at(loop.index()) = std::this_thread::get_id();
  };
  cb.opened = [&](Conn& c) {
    {
      std::lock_guard lock(mutex);
      if (started.at(c.loop().index()) != std::this_thread::get_id()) ++opened_before_start;
      ++open_now.at(c.loop().index());
    }
    opened.add();
  };
  cb.closed = [&](Conn& c, std::error_code) {
    std::lock_guard lock(mutex);
    --open_now.at(c.loop().index());
  };
  cb.loop_stopping = [&](Loop& loop) {
    if (!loop.in_loop_thread()) ++wrong_thread;
    std::lock_guard lock(mutex);
    stopping.at(loop.index()) = std::this_thread::get_id();
    if (open_now.at(loop.index()) != 0) ++stopping_with_open;
  };
  Options o = loopback_options(kLoops);
  o.reuseport = true;
  {
    RunningServer s(o, cb);
    ASSERT_TRUE(s.status);
    std::vector<Client> clients;
    for (int i = 0; i < 30; ++i) clients.emplace_back(s.address());
    ASSERT_TRUE(opened.wait_for(30));
    s.server.stop();  // with every connection still open
    s.server.wait();
  }
  EXPECT_EQ(wrong_thread.load(), 0);
  EXPECT_EQ(opened_before_start.load(), 0);
  EXPECT_EQ(stopping_with_open.load(), 0);
  std::set<std::thread::id> distinct(started.begin(), started.end());
  EXPECT_EQ(distinct.size(), kLoops);
  EXPECT_EQ(started, stopping) << "each loop's hooks run on that loop's own thread";
}

// A pure client: a LoopGroup with no listener runs its hooks and timers, and stops cleanly.
TEST(HooksTest, ALoopGroupWithoutListenersRunsHooksAndTimers) {
  EventCounter started, fired, stopping;
  LoopHooks hooks;
  hooks.loop_started = [&](Loop& loop) {
    started.add();
    loop.run_every(1ms, [&] { fired.add(); });
  };
  hooks.loop_stopping = [&](Loop&) { stopping.add(); };
  LoopOptions options;
  options.loops = 2;
  LoopGroup group(options, hooks);
  ASSERT_TRUE(group.start());
  EXPECT_EQ(group.start().code(), errc::already_started);
  ASSERT_TRUE(started.wait_for(2));
  ASSERT_TRUE(fired.wait_for(10));
  group.stop();
  EXPECT_TRUE(group.wait());
  EXPECT_EQ(stopping.value(), 2);
  EXPECT_FALSE(group.running());
}

}  // namespace
}  // namespace evloop::test
