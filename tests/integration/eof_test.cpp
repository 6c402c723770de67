// The peer's EOF (half-close): without an `eof` callback the connection closes once pending
// output is sent; with one, it stays open for a reply written later, until the user closes.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "test_support.hpp"

namespace evloop::test {
namespace {

TEST(EofTest, WithAnEofCallbackALaterReplyIsDeliveredBeforeTheClose) {
  const std::string reply = pattern(3u << 20, 21);
  EventCounter eofs, closed;
  std::string request;  // loop thread only until the server stops
  Callbacks cb;
  cb.data = [&](Conn&, std::string_view b) {
    request.append(b);
    return b.size();
  };
  cb.eof = [&](Conn& c) {
    EXPECT_FALSE(c.closing());
    eofs.add();
    // Reply later, as a proxy would once its upstream answers.
    c.loop().run_after(std::chrono::milliseconds(20), [&reply, ref = c.ref()] {
      ref.post([&reply](Conn& conn) {
        conn.write(reply);
        conn.close();
      });
    });
  };
  cb.closed = [&](Conn&, std::error_code ec) {
    EXPECT_FALSE(ec) << ec.message();
    closed.add();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("GET everything"));
  client.shutdown_write();
  ASSERT_TRUE(eofs.wait_for(1));
  bool eof = false;
  const std::string got = client.read_to_eof(&eof);
  EXPECT_TRUE(eof);
  EXPECT_EQ(got.size(), reply.size());
  EXPECT_TRUE(got == reply);
  ASSERT_TRUE(closed.wait_for(1));
  s.server.stop();
  s.server.wait();
  EXPECT_EQ(request, "GET everything");
}

TEST(EofTest, WithoutAnEofCallbackTheConnectionClosesAfterPendingOutput) {
  EventCounter closed;
  Callbacks cb;
  cb.data = [](Conn& c, std::string_view b) {
    c.write(b);
    return b.size();
  };
  cb.closed = [&](Conn&, std::error_code ec) {
    EXPECT_FALSE(ec);
    closed.add();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("echo me"));
  client.shutdown_write();
  bool eof = false;
  EXPECT_EQ(client.read_to_eof(&eof), "echo me");
  EXPECT_TRUE(eof);
  ASSERT_TRUE(closed.wait_for(1));
}

}  // namespace
}  // namespace evloop::test

namespace evloop::test {
namespace {

// shutdown_write(): our FIN goes out after the pending output, and the connection keeps reading;
// once the peer ends its side too, the connection closes by itself, cleanly.
TEST(EofTest, ShutdownWriteSendsFinAfterPendingOutputAndKeepsReading) {
  const std::string reply = pattern(2u << 20, 31);
  ErrorLog closed;
  std::string received;  // loop thread only until closed
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    c.write(reply);
    c.shutdown_write();
    c.write("ignored: after shutdown_write");
  };
  cb.data = [&](Conn&, std::string_view b) {
    received.append(b);
    return b.size();
  };
  cb.eof = [](Conn&) {};  // stay open for writing: here the write side is already shut
  cb.closed = closed.recorder();
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  bool eof = false;
  const std::string got = client.read_to_eof(&eof);
  EXPECT_TRUE(eof);
  EXPECT_TRUE(got == reply);
  // Our side is still readable by the server.
  ASSERT_TRUE(client.send_all("still heard"));
  EXPECT_FALSE(closed.wait_for(1, 50ms));
  client.shutdown_write();
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_FALSE(closed.first()) << closed.first().message();
  EXPECT_EQ(received, "still heard");
}

// The peer half-closes first; the server answers from `eof` and half-closes too: the connection
// ends cleanly without close(), and the peer got every byte.
TEST(EofTest, BothSidesHalfCloseAndTheConnectionEndsByItself) {
  ErrorLog closed;
  Callbacks cb;
  cb.data = [](Conn& c, std::string_view b) {
    c.write(b);
    return b.size();
  };
  cb.eof = [](Conn& c) {
    c.write("bye");
    c.shutdown_write();
  };
  cb.closed = closed.recorder();
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("echo"));
  client.shutdown_write();
  bool eof = false;
  EXPECT_EQ(client.read_to_eof(&eof), "echobye");
  EXPECT_TRUE(eof);
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_FALSE(closed.first()) << closed.first().message();
}

// A peer that half-closes and stops reading while a large reply is pending: the loop waits for
// room, it does not spin (on io_uring the kernel's wait behind a send is woken by the FIN, and the
// send used to be issued again at every iteration: about 5,000 wake-ups a second), and once the
// peer reads, every byte arrives, then the close.
TEST(EofTest, AHalfClosedPeerThatStopsReadingDoesNotSpinTheLoop) {
  const std::string reply = pattern(8u << 20, 9);
  ErrorLog closed;
  EventCounter written;
  Callbacks cb;
  cb.closed = closed.recorder();
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write(reply);  // above the high-water mark: reading pauses until it drains
    written.add();
    return bytes.size();
  };
  cb.all_sent = [](Conn& c) { c.close(); };
  Options o = loopback_options();
  o.socket_send_buffer = 16 * 1024;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  ASSERT_TRUE(client.send_all("go"));
  ASSERT_TRUE(written.wait_for(1));
  client.shutdown_write();  // the FIN is at the server when this returns (loopback)
  // Over 100 ms, the loop wakes a few times, not at every iteration.
  EXPECT_LT(waits_during(s.server, std::chrono::milliseconds(100)), 20u);
  EXPECT_GT(total_stats(s.server).output_buffered, 0u) << "the reply should still be pending";

  bool ended = false;
  EXPECT_TRUE(client.read_to_eof(&ended) == reply);
  EXPECT_TRUE(ended);
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_FALSE(closed.first()) << closed.first().message();
}

}  // namespace
}  // namespace evloop::test
