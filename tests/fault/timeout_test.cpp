// Timeouts on the loop timers. idle_timeout counts received bytes only (what the server sends is
// not activity unless idle_counts_sends, and the clock stands still while reading is paused);
// send_timeout bounds output that makes no progress; close_timeout bounds a close waiting for its
// output. A close that loses output resets the connection, so the peer sees the failure.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
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

// Reads (discarding) until the connection ends; returns the errno that ended it, 0 for an EOF.
int read_until_error(int fd) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return 0;
    if (n < 0) return errno == EINTR ? read_until_error(fd) : errno;
  }
}

std::uint16_t local_port(const Client& c) {
  SocketAddress a;
  socklen_t len = static_cast<socklen_t>(SocketAddress::capacity());
  ::getsockname(c.fd(), static_cast<sockaddr*>(a.data()), &len);
  a.set_size(len);
  return a.port();
}

class TimeoutTest : public AccountedTest {};

TEST_F(TimeoutTest, IdleTimeoutCountsReceivedBytesOnlyNotBytesSent) {
  const int kSilent = scaled(50, 20), kTrickle = scaled(50, 20), kChatty = scaled(50, 20);
  LineServer server;
  Options o = test::loopback_options(2);
  o.reuseport = true;
  o.idle_timeout = kIdle;
  o.socket_send_buffer = 4096;
  RunningServer s(o, server.callbacks());
  ASSERT_TRUE(s.status);

  const auto start = Clock::now();  // before any connection opens
  std::vector<Client> silent, trickle, chatty;
  for (int i = 0; i < kSilent; ++i) silent.emplace_back(s.address());
  for (int i = 0; i < kTrickle; ++i) trickle.emplace_back(s.address());
  for (int i = 0; i < kChatty; ++i) chatty.emplace_back(s.address());
  // Receives a stream it reads slowly, below the high-water mark (so the server keeps reading),
  // and sends nothing after asking: being sent data is not activity.
  Client streamed(s.address(), 4096);
  constexpr std::size_t kStream = 512u << 10;
  ASSERT_TRUE(streamed.send_all("stream " + std::to_string(kStream) + "\n"));

  // Every round (5 per idle timeout): trickling peers send one more byte of a line that never
  // ends (received, never consumed: still activity); chatty peers send a line and read its echo;
  // the streamed peer reads a little. Run for 2.5 idle timeouts.
  std::string streamed_got;
  int round = 0;
  while (Clock::now() - start < 5 * kIdle / 2) {
    for (auto& c : trickle) ASSERT_TRUE(c.send_all("G")) << "a trickling peer was closed";
    for (auto& c : chatty) {
      const std::string line = "line " + std::to_string(round) + "\n";
      ASSERT_TRUE(c.send_all(line)) << "a chatty peer was closed";
      ASSERT_EQ(c.read_exactly(line.size()), line) << "a chatty peer was closed";
    }
    if (streamed_got.size() < kStream) streamed_got += streamed.read_exactly(4096);
    ++round;
    server.closes.wait_for(kSilent + 2, kRound);  // the pacing; wakes early on an extra close
  }
  // The silent peers and the streamed one, and only them, were closed, with idle_timeout, not
  // before it.
  ASSERT_TRUE(server.closes.wait_for(kSilent + 1));
  std::lock_guard lock(server.mutex);
  EXPECT_EQ(server.closed.size(), static_cast<std::size_t>(kSilent + 1));
  silent.push_back(std::move(streamed));
  for (auto& c : silent) {
    const std::uint16_t port = local_port(c);
    auto it = server.closed.find(port);
    ASSERT_NE(it, server.closed.end()) << "a silent peer was never closed";
    EXPECT_EQ(it->second, errc::idle_timeout) << it->second.message();
    EXPECT_GE(server.closed_at[port] - start, kIdle - 5ms) << "closed before the idle timeout";
  }
  for (auto& c : trickle) EXPECT_EQ(server.closed.count(local_port(c)), 0u);
  for (auto& c : chatty) EXPECT_EQ(server.closed.count(local_port(c)), 0u);
  EXPECT_TRUE(streamed_got == test::pattern(kStream, 41).substr(0, streamed_got.size()));
}

// With idle_counts_sends (a tunnel's side, which may only send), sent bytes count as activity
// too: a peer that only reads a stream lives on while it reads, and is closed with idle_timeout
// once nothing moves either way (it stops reading), as a silent peer is.
TEST_F(TimeoutTest, IdleCountsSendsKeepsAOneWayStreamAndEndsItWhenNothingMoves) {
  LineServer server;
  Options o = test::loopback_options();
  o.idle_timeout = kIdle;
  o.idle_counts_sends = true;
  o.socket_send_buffer = 4096;
  RunningServer s(o, server.callbacks());
  ASSERT_TRUE(s.status);

  const auto start = Clock::now();
  Client silent(s.address());
  Client streamed(s.address(), 4096);
  constexpr std::size_t kStream = 512u << 10;  // below the high-water mark: reading goes on
  ASSERT_TRUE(streamed.send_all("stream " + std::to_string(kStream) + "\n"));
  // 2.5 idle timeouts of reading a little every round, sending nothing.
  std::string got;
  while (Clock::now() - start < 5 * kIdle / 2) {
    got += streamed.read_exactly(4096);
    ASSERT_EQ(got.size() % 4096, 0u) << "the streamed peer was closed after " << got.size();
    server.closes.wait_for(2, kRound);  // the pacing; wakes early on an extra close
  }
  EXPECT_TRUE(got == test::pattern(kStream, 41).substr(0, got.size()));
  {
    std::lock_guard lock(server.mutex);
    ASSERT_EQ(server.closed.size(), 1u) << "only the silent peer is closed";
    const auto it = server.closed.find(local_port(silent));
    ASSERT_NE(it, server.closed.end());
    EXPECT_EQ(it->second, errc::idle_timeout) << it->second.message();
    EXPECT_GE(server.closed_at[it->first] - start, kIdle - 5ms);
  }
  // It stops reading: its output stalls, nothing moves, and the idle timeout ends it (before
  // any send_timeout: there is none), with a reset, since output was lost.
  const auto stalled = Clock::now();
  ASSERT_TRUE(server.closes.wait_for(2, 5 * kIdle));
  EXPECT_GE(Clock::now() - stalled, kIdle / 2) << "closed long before the idle timeout";
  std::lock_guard lock(server.mutex);
  const auto it = server.closed.find(local_port(streamed));
  ASSERT_NE(it, server.closed.end());
  EXPECT_EQ(it->second, errc::idle_timeout) << it->second.message();
  EXPECT_EQ(read_until_error(streamed.fd()), ECONNRESET);
}

// A peer that stops reading while the server has output pending: reading is paused by
// back-pressure, so the idle clock stands still, and send_timeout is what ends it, with a reset
// the peer sees, and the output is freed.
TEST_F(TimeoutTest, PeerThatStopsReadingIsResetBySendTimeout) {
  LineServer server;
  Options o = test::loopback_options();
  o.idle_timeout = kIdle / 2;  // must not fire: reading is paused
  o.send_timeout = kIdle;
  o.socket_send_buffer = 4096;
  RunningServer s(o, server.callbacks());
  ASSERT_TRUE(s.status);
  Client stuck(s.address(), 4096);
  const auto start = Clock::now();
  ASSERT_TRUE(stuck.send_all("stream 4194304\n"));
  ASSERT_TRUE(server.closes.wait_for(1, 5 * kIdle));
  const auto after = Clock::now() - start;
  EXPECT_GE(after, kIdle - 50ms);
  EXPECT_LT(after, 5 * kIdle);
  {
    std::lock_guard lock(server.mutex);
    EXPECT_EQ(server.closed.begin()->second, errc::send_timeout)
        << server.closed.begin()->second.message();
  }
  EXPECT_TRUE(test::settle(s.server));
  EXPECT_EQ(test::total_stats(s.server).output_buffered, 0u);
  EXPECT_EQ(test::total_stats(s.server).resets, 1u);
  EXPECT_EQ(read_until_error(stuck.fd()), ECONNRESET);
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
  EXPECT_EQ(read_until_error(stuck.fd()), ECONNRESET) << "a close that lost output must reset";
}

}  // namespace
}  // namespace evloop::fault
