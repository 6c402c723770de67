// Failures are visible to the peer: abort() and every close that loses data (an output or input
// limit) send a reset, so a truncated stream cannot pass for a complete one; a clean close is a
// FIN after every byte.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>

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

struct Closed {
  EventCounter count;
  std::error_code error;  // written on the loop thread before count is bumped
};

Callbacks recording(Closed& closed) {
  Callbacks cb;
  cb.closed = [&closed](Conn&, std::error_code ec) {
    closed.error = ec;
    closed.count.add();
  };
  return cb;
}

TEST(ResetTest, AbortResetsThePeerAndDiscardsPendingOutput) {
  Closed closed;
  Callbacks cb = recording(closed);
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
  ASSERT_TRUE(closed.count.wait_for(1));
  EXPECT_FALSE(closed.error) << closed.error.message();
  EXPECT_TRUE(closing_after_abort);
  EXPECT_EQ(state_after_abort, ConnState::closing);
  EXPECT_EQ(read_until_end(client), ECONNRESET);
  ASSERT_TRUE(settle(s.server));
  EXPECT_EQ(total_stats(s.server).resets, 1u);
  EXPECT_EQ(total_stats(s.server).output_buffered, 0u);
}

TEST(ResetTest, OutputLimitResetsThePeer) {
  Closed closed;
  Callbacks cb = recording(closed);
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
  ASSERT_TRUE(closed.count.wait_for(1));
  EXPECT_EQ(closed.error, errc::output_limit);
  EXPECT_EQ(read_until_end(client), ECONNRESET);
}

TEST(ResetTest, InputLimitResetsThePeer) {
  Closed closed;
  Callbacks cb = recording(closed);
  cb.data = [](Conn&, std::string_view) { return std::size_t{0}; };  // never a whole frame
  Options o = loopback_options();
  o.input_limit = 64 * 1024;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  // Just over the limit: it fits in the socket buffers, so the send completes before the reset
  // arrives and the reset is left for the read to see.
  ASSERT_TRUE(client.send_all(pattern(96 * 1024, 4)));
  ASSERT_TRUE(closed.count.wait_for(1));
  EXPECT_EQ(closed.error, errc::input_limit);
  EXPECT_EQ(read_until_end(client), ECONNRESET);
}

TEST(ResetTest, CleanCloseIsAFinAfterEveryByte) {
  Closed closed;
  Callbacks cb = recording(closed);
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
  ASSERT_TRUE(closed.count.wait_for(1));
  EXPECT_FALSE(closed.error);
  EXPECT_EQ(total_stats(s.server).resets, 0u);
}

}  // namespace
}  // namespace evloop::test
