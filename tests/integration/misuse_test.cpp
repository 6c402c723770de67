// Thread misuse fails loudly in every build type: a loop-thread-only method called from another
// thread aborts with a message naming the method and the thread-safe alternative.
#include <gtest/gtest.h>

#include "test_support.hpp"

namespace evloop::test {
namespace {

// Runs a server, hands its one connection to `misuse` on the test thread (not the loop's).
void with_connection_off_its_thread(const std::function<void(Conn&, ConnRef)>& misuse) {
  EventCounter opened;
  Conn* conn = nullptr;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    conn = &c;
    opened.add();
  };
  RunningServer s(loopback_options(), cb);
  if (!s.status) std::abort();
  Client client(s.address());
  if (!opened.wait_for(1)) std::abort();
  misuse(*conn, conn->ref());
}

class MisuseDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(MisuseDeathTest, ConnWriteFromAnotherThreadAbortsWithAMessage) {
  EXPECT_DEATH(with_connection_off_its_thread([](Conn& c, ConnRef) { c.write("x"); }),
               "evloop: Conn::write called from a thread that is not its loop's thread; from "
               "another thread use conn.ref\\(\\)");
}

TEST_F(MisuseDeathTest, ConnCloseFromAnotherThreadAbortsWithAMessage) {
  EXPECT_DEATH(with_connection_off_its_thread([](Conn& c, ConnRef) { c.close(); }),
               "Conn::close called from a thread that is not its loop's thread");
}

// send_file from another thread names the thread-safe call that takes the fd (a task posted with
// the fd captured would leak it if the connection closed first).
TEST_F(MisuseDeathTest, ConnSendFileFromAnotherThreadAbortsNamingConnRefSendFile) {
  EXPECT_DEATH(
      with_connection_off_its_thread([](Conn& c, ConnRef) { c.send_file(TakeFd{-1}, 0, 1); }),
      "Conn::send_file called from a thread that is not its loop's thread; from another thread "
      "use conn.ref\\(\\).send_file\\(TakeFd\\{fd\\}, offset, length\\)");
}

TEST_F(MisuseDeathTest, ConnRefGetFromAnotherThreadAbortsWithAMessage) {
  EXPECT_DEATH(with_connection_off_its_thread([](Conn&, ConnRef ref) { ref.get(); }),
               "ConnRef::get called from a thread that is not its loop's thread; from another "
               "thread use ConnRef::post");
}

TEST_F(MisuseDeathTest, ConnRemoteAddressFromAnotherThreadAbortsWithAMessage) {
  EXPECT_DEATH(with_connection_off_its_thread([](Conn& c, ConnRef) { (void)c.remote_address(); }),
               "Conn::remote_address called from a thread that is not its loop's thread");
}

TEST_F(MisuseDeathTest, RunEveryWithoutAPositiveIntervalAbortsWithAMessage) {
  // A zero interval would run the timer at every iteration: the loop would never sleep.
  const auto run_every = [](std::chrono::nanoseconds interval) {
    RunningServer s(loopback_options(), {});
    if (!s.status) std::abort();
    s.server.loop(0).run_every(interval, [] {});
  };
  EXPECT_DEATH(run_every(0ns),
               "evloop: Loop::run_every: the interval must be positive .*; use run_after\\(\\) "
               "to run once");
  EXPECT_DEATH(run_every(-1ms), "Loop::run_every: the interval must be positive");
}

// loop(i) with no such loop (before start(), or an index past loop_count()) says so, instead of
// escaping as std::out_of_range from a vector's at() or reading past the end.
TEST_F(MisuseDeathTest, LoopGroupLoopBeforeStartAbortsWithAMessage) {
  EXPECT_DEATH(
      {
        LoopGroup group;
        (void)group.loop(0);
      },
      "evloop: LoopGroup::loop: no loop 0: the group has 0 loops \\(none before a successful "
      "start\\(\\)\\); call it after start\\(\\) succeeded, with an index below "
      "loop_count\\(\\)");
}

TEST_F(MisuseDeathTest, ServerLoopPastTheLastLoopAbortsWithAMessage) {
  EXPECT_DEATH(
      {
        RunningServer s(loopback_options(), {});
        if (!s.status) std::abort();
        (void)s.server.loop(1);
      },
      "evloop: Server::loop: no loop 1: the group has 1 loops");
}

// A LoopGroup or Server destroyed on one of its own loop threads would have to join that
// thread: it says so instead of std::terminate's "terminate called without an active exception".
TEST_F(MisuseDeathTest, LoopGroupDestroyedOnItsOwnLoopThreadAbortsWithAMessage) {
  EXPECT_DEATH(
      {
        auto* group = new LoopGroup;
        if (!group->start()) std::abort();
        EventCounter destroyed;
        group->loop(0).post([&] {
          delete group;
          destroyed.add();
        });
        destroyed.wait_for(1);  // the loop thread aborts before this could end
      },
      "evloop: LoopGroup::~LoopGroup: called on one of its own loop threads \\(it would join "
      "itself\\); call stop\\(\\) there, and destroy it from another thread once wait\\(\\) "
      "has returned");
}

TEST_F(MisuseDeathTest, ServerDestroyedOnItsOwnLoopThreadAbortsWithAMessage) {
  EXPECT_DEATH(
      {
        auto* server = new Server(loopback_options(), {});  // not RunningServer: its wait() first
        if (!server->start()) std::abort();
        EventCounter destroyed;
        server->loop(0).post([&] {
          delete server;
          destroyed.add();
        });
        destroyed.wait_for(1);
      },
      "evloop: Server::~Server: called on one of its own loop threads");
}

// wait() on one of the group's own loop threads would join itself: it aborts saying what to do
// instead (it used to return a status whose code, already_started, did not say that).
TEST_F(MisuseDeathTest, LoopGroupWaitOnItsOwnLoopThreadAbortsWithAMessage) {
  EXPECT_DEATH(
      {
        LoopGroup group;
        if (!group.start()) std::abort();
        EventCounter waited;
        group.loop(0).post([&] {
          (void)group.wait();
          waited.add();
        });
        waited.wait_for(1);  // the loop thread aborts before this could end
      },
      "evloop: LoopGroup::wait: called on one of its own loop threads \\(it would join "
      "itself\\); call stop\\(\\) there, and wait\\(\\) from another thread");
}

TEST_F(MisuseDeathTest, ServerWaitOnItsOwnLoopThreadAbortsWithAMessage) {
  EXPECT_DEATH(
      {
        RunningServer s(loopback_options(), {});
        if (!s.status) std::abort();
        EventCounter waited;
        s.server.loop(0).post([&] {
          (void)s.server.wait();
          waited.add();
        });
        waited.wait_for(1);
      },
      "evloop: Server::wait: called on one of its own loop threads");
}

// An empty function handed over to be called later (a task, a timer, a detach's receiver) would
// throw std::bad_function_call on the loop thread when its time came: "terminate called after
// throwing an instance of 'std::bad_function_call'", far from the call that was wrong. The call
// itself aborts instead, naming the method.
TEST_F(MisuseDeathTest, AnEmptyTaskAbortsAtTheCallWithAMessage) {
  const auto on_a_server = [](const std::function<void(Loop&)>& misuse) {
    RunningServer s(loopback_options(), {});
    if (!s.status) std::abort();
    misuse(s.server.loop(0));
    EventCounter never;
    never.wait_for(1, 2s);  // before the fix the loop thread died of bad_function_call meanwhile
  };
  EXPECT_DEATH(on_a_server([](Loop& loop) { loop.post({}); }),
               "evloop: Loop::post: the function is empty \\(calling it on the loop thread would "
               "throw std::bad_function_call\\); pass a function to call");
  EXPECT_DEATH(on_a_server([](Loop& loop) { loop.run_after(1ms, {}); }),
               "evloop: Loop::run_after: the function is empty");
  EXPECT_DEATH(on_a_server([](Loop& loop) { loop.run_every(1ms, {}); }),
               "evloop: Loop::run_every: the function is empty");
  EXPECT_DEATH(on_a_server([](Loop& loop) {
                 EventCounter opened;
                 DatagramHandlers h;
                 h.opened = [&](Udp&) { opened.add(); };
                 const UdpRef ref = loop.bind_udp("udp4://127.0.0.1:0", h);
                 if (!opened.wait_for(1)) std::abort();
                 ref.post({});
               }),
               "evloop: UdpRef::post: the function is empty");
}

TEST_F(MisuseDeathTest, AnEmptyConnTaskOrDetachReceiverAbortsAtTheCallWithAMessage) {
  EXPECT_DEATH(with_connection_off_its_thread([](Conn&, ConnRef ref) {
                 ref.post({});
                 EventCounter never;
                 never.wait_for(1, 2s);
               }),
               "evloop: ConnRef::post: the function is empty");
  EXPECT_DEATH(with_connection_off_its_thread([](Conn&, ConnRef ref) {
                 ref.post([](Conn& c) { c.detach({}); });
                 EventCounter never;
                 never.wait_for(1, 2s);
               }),
               "evloop: Conn::detach: the function is empty");
}

// The thread-safe way works from the same thread.
TEST(MisuseTest, ConnRefWriteFromAnotherThreadIsFine) {
  EventCounter opened;
  ConnRef ref;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    ref = c.ref();
    opened.add();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(opened.wait_for(1));
  ASSERT_TRUE(ref.write("from elsewhere"));
  EXPECT_EQ(client.read_exactly(14), "from elsewhere");
}

}  // namespace
}  // namespace evloop::test
