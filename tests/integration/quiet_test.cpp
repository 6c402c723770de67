// A loop whose connections all wait on their peers sleeps: over an idle second it wakes only for
// the timer that ends the second, whatever state each connection waits in (reading, paused with
// bytes held back, paused after the peer's FIN, half-closed, output blocked on a peer that does
// not read, and that with the peer's FIN). On io_uring each state is a different request in the
// kernel (a receive, a poll without interest, a multishot write-space poll, a send waiting).
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace evloop::test {
namespace {

TEST(QuietTest, ALoopWhoseConnectionsAllWaitOnTheirPeersSleeps) {
  const std::string reply = pattern(4u << 20, 3);
  EventCounter acted;  // each connection reached the state its first byte asked for
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    if (!c.context().has_value()) {
      c.context() = bytes.front();
      switch (bytes.front()) {
        case 'P':
          c.pause_reading();
          break;
        case 'B':
          c.write(reply);  // more than the peer takes: the send waits
          break;
        default:
          break;
      }
      acted.add();
    }
    return bytes.size();
  };
  cb.eof = [&](Conn&) { acted.add(); };  // stays open, half-closed
  Options o = loopback_options();
  o.socket_send_buffer = 16 * 1024;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status) << s.status.message();

  std::vector<Client> clients;
  clients.reserve(8);
  auto open = [&](char kind) -> Client& {
    clients.emplace_back(s.address(), 4096);
    EXPECT_TRUE(clients.back().connected());
    EXPECT_TRUE(clients.back().send_all(std::string(1, kind)));
    return clients.back();
  };
  long expected = 0;
  open('I');  // reading, nothing comes
  ++expected;
  ASSERT_TRUE(acted.wait_for(expected));
  {
    Client& paused = open('P');  // paused with bytes held back
    ASSERT_TRUE(acted.wait_for(++expected));
    ASSERT_TRUE(paused.send_all(pattern(2000, 1)));
  }
  {
    Client& paused_fin = open('P');  // paused, then the peer's bytes and FIN
    ASSERT_TRUE(acted.wait_for(++expected));
    ASSERT_TRUE(paused_fin.send_all(pattern(2000, 2)));
    paused_fin.shutdown_write();
  }
  {
    Client& half = open('E');  // half-closed by the peer, kept open by `eof`
    ASSERT_TRUE(acted.wait_for(++expected));
    half.shutdown_write();
    ASSERT_TRUE(acted.wait_for(++expected));
  }
  open('B');  // output blocked on a peer that does not read
  ASSERT_TRUE(acted.wait_for(++expected));
  {
    Client& blocked_fin = open('B');  // the same, and the peer's FIN
    ASSERT_TRUE(acted.wait_for(++expected));
    blocked_fin.shutdown_write();  // unread: reading is paused by the pending output
  }
  ASSERT_TRUE(settle(s.server));
  ASSERT_TRUE(loop_goes_quiet(s.server.loop(0)));
  // The second's timer wakes the loop once (and a wake-up still on its way may add one).
  EXPECT_LE(waits_during(s.server, std::chrono::milliseconds(1000)), 3u);
  const LoopStats stats = total_stats(s.server);
  EXPECT_EQ(stats.open_connections, clients.size());
  EXPECT_GT(stats.output_buffered, 0u);
  s.server.stop();
  EXPECT_TRUE(s.server.wait());
}

}  // namespace
}  // namespace evloop::test
