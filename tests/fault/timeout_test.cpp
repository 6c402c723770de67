// Idle and read timeouts on the loop timers. Progress is a byte consumed by `data` or a byte sent;
// a slowloris peer that trickles bytes of a request that never completes makes none and is closed
// with errc::idle_timeout, while peers whose lines are consumed, or that are being sent a
// stream, are left alone.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "fault_support.hpp"

namespace evloop::fault {
namespace {

using Clock = std::chrono::steady_clock;

// Long enough that a loaded 2-core machine (or a sanitizer) never makes a well-behaved peer miss
// it; the trickling peers send 4+ times per timeout, so without the progress rule they would live.
constexpr std::chrono::milliseconds kIdle = kSanitized ? 2000ms : 1000ms;
constexpr auto kRound = 200ms;  // trickle and chat pace: 5 rounds per idle timeout

// A line protocol: `data` consumes whole lines only and echoes them; a line "stream N\n" starts
// sending N bytes. Records how each connection closed, by client port.
struct LineServer {
  std::mutex mutex;
  std::map<std::uint16_t, std::error_code> closed;
  std::map<std::uint16_t, Clock::time_point> closed_at;
  EventCounter closes;

  Callbacks callbacks() {
    Callbacks cb;
    cb.data = [](Conn& c, std::string_view b) {
      const std::size_t end = b.rfind('\n');
      if (end == std::string_view::npos) return std::size_t{0};  // a partial line: wait
      const std::string_view lines = b.substr(0, end + 1);
      if (lines.starts_with("stream ")) {
        c.write(test::pattern(std::stoul(std::string(lines.substr(7))), 41));
      } else {
        c.write(lines);
      }
      return end + 1;
    };
    cb.closed = [this](Conn& c, std::error_code ec) {
      {
        std::lock_guard lock(mutex);
        closed[c.remote_address().port()] = ec;
        closed_at[c.remote_address().port()] = Clock::now();
      }
      closes.add();
    };
    return cb;
  }
};

std::uint16_t local_port(const Client& c) {
  SocketAddress a;
  socklen_t len = static_cast<socklen_t>(SocketAddress::capacity());
  ::getsockname(c.fd(), static_cast<sockaddr*>(a.data()), &len);
  a.set_size(len);
  return a.port();
}

class TimeoutTest : public AccountedTest {};

TEST_F(TimeoutTest, SlowlorisIsClosedAfterTheIdleTimeoutWellBehavedPeersAreNot) {
  const int kTrickle = scaled(100, 30), kChatty = scaled(50, 20);
  LineServer server;
  Options o = test::loopback_options(2);
  o.reuseport = true;
  o.idle_timeout = kIdle;
  o.socket_send_buffer = 4096;
  RunningServer s(o, server.callbacks());
  ASSERT_TRUE(s.status);

  const auto start = Clock::now();  // before any connection opens
  std::vector<Client> trickle, chatty;
  for (int i = 0; i < kTrickle; ++i) trickle.emplace_back(s.address());
  for (int i = 0; i < kChatty; ++i) chatty.emplace_back(s.address());
  Client streamed(s.address(), 4096);  // receives a slow stream, sends nothing after asking
  constexpr std::size_t kStream = 8u << 20;
  ASSERT_TRUE(streamed.send_all("stream " + std::to_string(kStream) + "\n"));

  // Every round (5 per idle timeout): trickle peers send one more byte of a request
  // line that never ends; chatty peers send a whole line and read its echo; the streamed peer
  // reads a little. Run for 3 idle timeouts.
  std::string streamed_got;
  int round = 0;
  while (Clock::now() - start < 3 * kIdle) {
    for (auto& c : trickle) c.send_all("G");  // fails once the server closed it: fine
    for (auto& c : chatty) {
      const std::string line = "line " + std::to_string(round) + "\n";
      ASSERT_TRUE(c.send_all(line)) << "a well-behaved peer was closed";
      ASSERT_EQ(c.read_exactly(line.size()), line) << "a well-behaved peer was closed";
    }
    streamed_got += streamed.read_exactly(16 * 1024);
    ++round;
    server.closes.wait_for(kTrickle + 1, kRound);  // the pacing; wakes early on an extra close
  }
  // All the trickling peers, and only them, were closed, with idle_timeout, not before it.
  ASSERT_TRUE(server.closes.wait_for(kTrickle));
  std::lock_guard lock(server.mutex);
  EXPECT_EQ(server.closed.size(), static_cast<std::size_t>(kTrickle));
  for (auto& c : trickle) {
    const std::uint16_t port = local_port(c);
    auto it = server.closed.find(port);
    ASSERT_NE(it, server.closed.end()) << "a slowloris peer was never closed";
    EXPECT_EQ(it->second, errc::idle_timeout) << it->second.message();
    EXPECT_GE(server.closed_at[port] - start, kIdle - 5ms) << "closed before the idle timeout";
  }
  for (auto& c : chatty) EXPECT_EQ(server.closed.count(local_port(c)), 0u);
  EXPECT_EQ(server.closed.count(local_port(streamed)), 0u) << "a peer being sent data was closed";
  EXPECT_TRUE(streamed_got == test::pattern(kStream, 41).substr(0, streamed_got.size()));
}

// A peer that stops reading while the server has output pending makes no progress either: the
// idle timeout closes it (bounded time for stuck output, short of the output limit).
TEST_F(TimeoutTest, PeerThatStopsReadingPendingOutputIsClosedByTheIdleTimeout) {
  LineServer server;
  Options o = test::loopback_options();
  o.idle_timeout = kIdle;
  o.socket_send_buffer = 4096;
  RunningServer s(o, server.callbacks());
  ASSERT_TRUE(s.status);
  Client stuck(s.address(), 4096);
  const auto start = Clock::now();
  ASSERT_TRUE(stuck.send_all("stream 4194304\n"));
  ASSERT_TRUE(server.closes.wait_for(1, 5s));
  const auto after = Clock::now() - start;
  EXPECT_GE(after, kIdle - 50ms);
  EXPECT_LT(after, 5 * kIdle);
  std::lock_guard lock(server.mutex);
  EXPECT_EQ(server.closed.begin()->second, errc::idle_timeout);
  EXPECT_EQ(test::total_stats(s.server).output_buffered, 0u);
}

// close() waits for pending output, but not forever: a peer that never reads gets its connection
// closed after close_timeout, with errc::close_timeout, and the output is freed. (No idle timeout
// here: this is the close's own bound.)
TEST_F(TimeoutTest, CloseWaitingForAPeerThatNeverReadsEndsAtTheCloseTimeout) {
  constexpr auto kCloseTimeout = 300ms;
  LineServer server;
  Callbacks cb = server.callbacks();
  auto echo_and_stream = cb.data;
  cb.data = [echo_and_stream](Conn& c, std::string_view b) {
    const std::size_t n = echo_and_stream(c, b);
    if (n > 0) c.close();  // answer, then close after the answer is sent
    return n;
  };
  Options o = test::loopback_options();
  o.close_timeout = kCloseTimeout;
  o.socket_send_buffer = 4096;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client stuck(s.address(), 4096);
  const auto start = Clock::now();
  ASSERT_TRUE(stuck.send_all("stream 4194304\n"));
  ASSERT_TRUE(server.closes.wait_for(1, 5s));
  const auto after = Clock::now() - start;
  EXPECT_GE(after, kCloseTimeout - 5ms);
  EXPECT_LT(after, 10 * kCloseTimeout);
  std::lock_guard lock(server.mutex);
  EXPECT_EQ(server.closed.begin()->second, errc::close_timeout)
      << server.closed.begin()->second.message();
  EXPECT_EQ(test::total_stats(s.server).output_buffered, 0u);
}

}  // namespace
}  // namespace evloop::fault
