// Failures are visible to the peer: abort() and every close that loses data (an output or input
// limit) send a reset, so a truncated stream cannot pass for a complete one; a clean close is a
// FIN after every byte. And the peer's reset is visible at once, also to a connection that
// neither reads nor writes.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <string>

#include "test_support.hpp"

namespace evloop::test {
namespace {

// Reads until the connection ends: 0 for a clean EOF, else the errno that ended it.
int read_until_end(Client& client) {
  bool eof = false;
  errno = 0;
  client.read_to_eof(&eof);
  return eof ? 0 : errno;
}

TEST(ResetTest, AbortResetsThePeerAndDiscardsPendingOutput) {
  ErrorLog closed;
  Callbacks cb;
  cb.closed = closed.recorder();
  std::atomic<bool> closing_after_abort{false};
  std::atomic<ConnState> state_after_abort{ConnState::open};
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write(pattern(8u << 20, 2));  // pending: the client does not read yet
    c.abort();
    // Its end is decided (carried out after this handler): closing(), as its comment says.
    closing_after_abort = c.closing();
    state_after_abort = c.state();
    return bytes.size();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  ASSERT_TRUE(client.send_all("x"));
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_FALSE(closed.first()) << closed.first().message();
  EXPECT_TRUE(closing_after_abort);
  EXPECT_EQ(state_after_abort, ConnState::closing);
  EXPECT_EQ(read_until_end(client), ECONNRESET);
  ASSERT_TRUE(settle(s.server));
  EXPECT_EQ(total_stats(s.server).resets, 1u);
  EXPECT_EQ(total_stats(s.server).output_buffered, 0u);
}

// On io_uring a send is prepared after the handler and submitted at the next wait. A reset in
// between (here asked for by another connection's handler in the same batch) must leave its
// output alone until the send ends: freed, its chunk went to the next write of the loop, whose
// bytes the reset connection's send then carried to the wrong peer. `reset_first` resets it.
void expect_no_bytes_cross_when_a_send_in_flight_is_reset(
    const std::function<void(Conn&)>& reset_first, std::size_t output_limit) {
  const std::string first_reply(100, 'F'), second_reply(100, 'S');
  EventCounter opened;
  Conn* first = nullptr;  // loop thread only
  Callbacks cb;
  cb.opened = [&](Conn&) { opened.add(); };
  cb.data = [&](Conn& c, std::string_view bytes) {
    if (first == nullptr) {
      first = &c;
      c.write(first_reply);
    } else if (&c != first) {
      reset_first(*first);
      c.write(second_reply);
      c.close();
    }
    return bytes.size();
  };
  Options o = loopback_options();
  o.output_limit = output_limit;
  o.output_high_water = output_limit / 2;
  o.output_low_water = output_limit / 8;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status) << s.status.message();
  Client a(s.address()), b(s.address());
  ASSERT_TRUE(opened.wait_for(2));
  // Both requests reach the server while its loop is held, so both arrive in one batch.
  LoopHold hold(s.server.loop(0));
  ASSERT_TRUE(hold.holding());
  for (Client* c : {&a, &b}) {
    ASSERT_TRUE(c->send_all("?"));
    ASSERT_TRUE(settles_to([&] { return unacknowledged_bytes(c->fd()); }, 0));
  }
  hold.release();
  std::string got[2] = {a.read_to_eof(), b.read_to_eof()};
  // One connection was reset: it got some of its own reply at most, then the reset. The other
  // got its whole reply.
  const int reset = got[0] == second_reply ? 1 : 0;
  EXPECT_EQ(got[1 - reset], second_reply);
  EXPECT_EQ(got[reset].find_first_not_of('F'), std::string::npos)
      << "the reset connection's peer got another connection's bytes: " << got[reset];
}

TEST(ResetTest, AnAbortWhileASendIsInFlightSendsNoOtherConnectionsBytes) {
  expect_no_bytes_cross_when_a_send_in_flight_is_reset([](Conn& c) { c.abort(); }, 1u << 20);
}

TEST(ResetTest, AnOutputLimitPassedWhileASendIsInFlightSendsNoOtherConnectionsBytes) {
  // 20 KiB: over the 16 KiB limit, refused whole; under write_through, so never sent at once.
  constexpr std::size_t kLimit = 16 * 1024;
  expect_no_bytes_cross_when_a_send_in_flight_is_reset(
      [](Conn& c) { c.write(std::string(kLimit + 4096, 'x')); }, kLimit);
}

TEST(ResetTest, OutputLimitResetsThePeer) {
  ErrorLog closed;
  Callbacks cb;
  cb.closed = closed.recorder();
  cb.data = [](Conn& c, std::string_view bytes) {
    for (int i = 0; i < 5; ++i) c.write(pattern(1u << 20, 3));  // 5 MiB > the 2 MiB limit
    return bytes.size();
  };
  Options o = loopback_options();
  o.output_high_water = 512 * 1024;
  o.output_low_water = 128 * 1024;
  o.output_limit = 2u << 20;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  ASSERT_TRUE(client.send_all("x"));
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_EQ(closed.first(), errc::output_limit);
  EXPECT_EQ(read_until_end(client), ECONNRESET);
}

TEST(ResetTest, InputLimitResetsThePeer) {
  ErrorLog closed;
  Callbacks cb;
  cb.closed = closed.recorder();
  cb.data = [](Conn&, std::string_view) { return std::size_t{0}; };  // never a whole frame
  Options o = loopback_options();
  o.input_limit = 64 * 1024;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  // Just over the limit: it fits in the socket buffers, so the send completes before the reset
  // arrives and the reset is left for the read to see.
  ASSERT_TRUE(client.send_all(pattern(96 * 1024, 4)));
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_EQ(closed.first(), errc::input_limit);
  EXPECT_EQ(read_until_end(client), ECONNRESET);
}

TEST(ResetTest, CleanCloseIsAFinAfterEveryByte) {
  ErrorLog closed;
  Callbacks cb;
  cb.closed = closed.recorder();
  const std::string reply = pattern(4u << 20, 6);
  cb.data = [&reply](Conn& c, std::string_view bytes) {
    c.write(reply);
    c.close();
    return bytes.size();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  ASSERT_TRUE(client.send_all("x"));
  bool eof = false;
  const std::string got = client.read_to_eof(&eof);
  EXPECT_TRUE(eof);
  EXPECT_TRUE(got == reply);
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_FALSE(closed.first());
  EXPECT_EQ(total_stats(s.server).resets, 0u);
}

// A connection that neither reads nor writes (reading paused with bytes unread, or kept open
// after the peer's FIN) still learns of the peer's reset at once, as epoll reports it for an fd
// without interest: kqueue and io_uring need a watch for that (before it, both reported nothing
// until the next write, resume or stop()). The bytes and the FIN before the reset change nothing,
// and do not keep the loop awake.
enum class Quiet { paused_with_bytes_unread, kept_open_after_eof };

class QuietConnectionTest : public ::testing::TestWithParam<Quiet> {};

TEST_P(QuietConnectionTest, LearnsOfThePeersResetAtOnce) {
  const bool paused = GetParam() == Quiet::paused_with_bytes_unread;
  ErrorLog closed;
  EventCounter quiet;  // the connection stopped reading
  Callbacks cb;
  cb.closed = closed.recorder();
  cb.data = [&](Conn& c, std::string_view bytes) {
    if (paused) {
      c.pause_reading();
      quiet.add();
    }
    return bytes.size();
  };
  if (!paused) cb.eof = [&quiet](Conn&) { quiet.add(); };  // no close(): it may still reply
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("x"));
  if (!paused) client.shutdown_write();
  ASSERT_TRUE(quiet.wait_for(1));
  if (paused) {  // left unread, then the FIN
    ASSERT_TRUE(client.send_all(pattern(64 * 1024, 8)));
    client.shutdown_write();
  }
  // Over 100 ms, the loop wakes a few times, not at every wait.
  EXPECT_LT(waits_during(s.server, std::chrono::milliseconds(100)), 20u);
  EXPECT_EQ(closed.count(), 0);

  client.reset();
  ASSERT_TRUE(closed.wait_for(1)) << "no `closed` after the peer's reset";
  // Linux reports a reset after the peer's FIN (CLOSE_WAIT) as EPIPE.
  const std::error_code error = closed.first();
  EXPECT_TRUE(error == std::errc::connection_reset || error == std::errc::broken_pipe)
      << "closed with '" << error.message() << "', expected a reset";
  EXPECT_EQ(total_stats(s.server).open_connections, 0u);
}

INSTANTIATE_TEST_SUITE_P(ResetTest, QuietConnectionTest,
                         ::testing::Values(Quiet::paused_with_bytes_unread,
                                           Quiet::kept_open_after_eof),
                         [](const ::testing::TestParamInfo<Quiet>& param) {
                           return param.param == Quiet::paused_with_bytes_unread
                                      ? std::string("PausedWithBytesUnread")
                                      : std::string("KeptOpenAfterEof");
                         });

}  // namespace
}  // namespace evloop::test
