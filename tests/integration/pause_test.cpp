// pause_reading()/resume_reading(): while paused, `data` does not run and the peer is held back by
// TCP flow control; nothing is lost; the user's pause and back-pressure's compose (reading happens
// only when neither holds it).
#include <gtest/gtest.h>

#include <atomic>

#include "test_support.hpp"

namespace evloop::test {
namespace {

// The server pauses after every 256 KiB it receives and resumes 2 ms later from a timer; the
// client streams 16 MiB. Every byte arrives in order, and no `data` call happens while paused.
TEST(PauseTest, PausedConnectionsLoseNoByteUnderLoad) {
  constexpr std::size_t kTotal = 16u << 20;
  constexpr std::size_t kPauseEvery = 256u << 10;
  const std::string payload = pattern(kTotal, 5);
  std::string received;  // loop thread only until `done`
  std::atomic<int> data_while_paused{0};
  std::atomic<int> pauses{0};
  bool paused = false;  // loop thread only
  std::size_t since_pause = 0;
  EventCounter done;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    if (paused) ++data_while_paused;
    received.append(bytes);
    since_pause += bytes.size();
    if (since_pause >= kPauseEvery) {
      since_pause = 0;
      paused = true;
      ++pauses;
      c.pause_reading();
      EXPECT_TRUE(c.reading_paused());
      c.loop().run_after(2ms, [&, ref = c.ref()] {
        paused = false;
        if (Conn* conn = ref.get()) conn->resume_reading();
      });
    }
    if (received.size() == kTotal) done.add();
    return bytes.size();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all(payload));
  ASSERT_TRUE(done.wait_for(1, 30s));
  s.server.stop();
  s.server.wait();
  EXPECT_EQ(received.size(), kTotal);
  EXPECT_TRUE(received == payload) << "content or order differs";
  EXPECT_EQ(data_while_paused.load(), 0);
  // A pause comes after 256 KiB plus at most one read (64 KiB) more.
  EXPECT_GE(pauses.load(), static_cast<int>(kTotal / (kPauseEvery + (64u << 10))));
}

// While paused, the peer's bytes stay in the kernel: `data` sees nothing until resume, then all
// of it, and the pause costs no poller change per message afterwards.
TEST(PauseTest, NothingIsDeliveredUntilResume) {
  EventCounter opened, data_calls;
  std::string received;  // loop thread only
  ConnRef ref;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    c.pause_reading();
    ref = c.ref();
    opened.add();
  };
  cb.data = [&](Conn&, std::string_view bytes) {
    received.append(bytes);
    data_calls.add();
    return bytes.size();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(opened.wait_for(1));
  ASSERT_TRUE(client.send_all("held back"));
  // The bytes are in the server's receive queue (loopback delivers them before send returns); a
  // round trip through the loop, which handles I/O before tasks, shows `data` did not run.
  ASSERT_TRUE(settle(s.server));
  EXPECT_EQ(data_calls.value(), 0);
  ASSERT_TRUE(ref.post([](Conn& c) { c.resume_reading(); }));
  ASSERT_TRUE(data_calls.wait_for(1));
  s.server.stop();
  s.server.wait();
  EXPECT_EQ(received, "held back");
}

// Back-pressure and the user's pause are independent: resuming the user's pause while output is
// above the high-water mark does not resume reading; draining below the low mark does, then.
TEST(PauseTest, UserPauseAndBackPressureCompose) {
  Options o = loopback_options();
  o.output_high_water = 64 * 1024;
  o.output_low_water = 16 * 1024;
  o.socket_send_buffer = 4096;
  EventCounter stages, low_water;
  std::atomic<bool> paused_after_resume{false}, paused_after_low_water{true};
  ConnRef ref;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    ref = c.ref();
    c.pause_reading();
    c.write(pattern(1u << 20, 9));  // far above the high-water mark: back-pressure holds too
    c.resume_reading();             // the user lets go; back-pressure still holds
    paused_after_resume = c.reading_paused();
    stages.add();
  };
  cb.low_water = [&](Conn& c) {
    paused_after_low_water = c.reading_paused();
    low_water.add();
  };
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  ASSERT_TRUE(stages.wait_for(1));
  EXPECT_TRUE(paused_after_resume.load());
  EXPECT_EQ(client.read_exactly(1u << 20), pattern(1u << 20, 9));
  ASSERT_TRUE(low_water.wait_for(1));
  EXPECT_FALSE(paused_after_low_water.load());
}

}  // namespace
}  // namespace evloop::test
