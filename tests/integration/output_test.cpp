// The write path: partial writes buffered in order, back-pressure, limits, no SIGPIPE, and the
// steady-state hot path (one send per callback, no poller change per message).
#include <gtest/gtest.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "platform.hpp"
#include "test_support.hpp"

namespace evloop::test {
namespace {

constexpr std::size_t kBig = 64u << 20;

struct BigWriteCase {
  int server_sndbuf;
  int client_rcvbuf;
};

class BigWriteTest : public ::testing::TestWithParam<BigWriteCase> {};

// The server writes 64 MiB from `opened` to a client that reads nothing at first; the client
// then sends a byte (which must wait: reading is paused above the high-water mark) and reads
// everything. Every byte arrives, in order, and `data` never runs while output is above the mark.
TEST_P(BigWriteTest, ArrivesByteExactWhileReadingPausesAboveHighWater) {
  const std::string payload = pattern(kBig, 3);
  Options o = loopback_options();
  o.output_limit = 2 * kBig;
  o.socket_send_buffer = GetParam().server_sndbuf;
  std::atomic<std::size_t> max_pending_at_data{0};
  EventCounter data_calls;
  Callbacks cb;
  cb.opened = [&](Conn& c) { c.write(payload); };
  cb.data = [&](Conn& c, std::string_view bytes) {
    max_pending_at_data = std::max(max_pending_at_data.load(), c.output_pending());
    data_calls.add();
    return bytes.size();
  };
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), GetParam().client_rcvbuf);
  ASSERT_TRUE(client.connected());
  // The kernel took what it could; the rest is pending and reading is paused. (Not a count of
  // write arms: on io_uring a send the socket cannot take yet waits inside the kernel, and
  // whether it comes back short, so that evloop arms POLLOUT, depends on the kernel's timing.)
  ASSERT_TRUE(eventually([&] { return total_stats(s.server).read_pauses >= 1; }));
  ASSERT_TRUE(client.send_all("?"));
  const std::string got = client.read_exactly(kBig);
  ASSERT_EQ(got.size(), kBig);
  EXPECT_TRUE(got == payload) << "content or order differs";
  ASSERT_TRUE(data_calls.wait_for(1));  // reading resumed once drained
  EXPECT_LE(max_pending_at_data.load(), o.output_low_water);
}

INSTANTIATE_TEST_SUITE_P(Buffers, BigWriteTest,
                         ::testing::Values(BigWriteCase{0, 0}, BigWriteCase{4096, 4096}),
                         [](const auto& param_info) {
                           return param_info.param.server_sndbuf == 0
                                      ? std::string("DefaultBuffers")
                                      : std::string("TinyBuffers");
                         });

// A producer that writes only while below the high-water mark and continues on `drained`
// never holds much more than the mark in memory, and still delivers every byte in order.
TEST(OutputTest, ProducerPacedByDrainedStaysNearHighWater) {
  const std::string payload = pattern(kBig, 4);
  constexpr std::size_t kBlock = 256 * 1024;
  Options o = loopback_options();
  o.socket_send_buffer = 16384;
  std::size_t sent = 0;
  std::size_t max_pending = 0;
  std::atomic<int> drained_calls{0};
  auto produce = [&](Conn& c) {
    while (sent < payload.size() && c.output_pending() <= o.output_high_water) {
      const std::size_t n = std::min(kBlock, payload.size() - sent);
      c.write(payload.data() + sent, n);
      sent += n;
      max_pending = std::max(max_pending, c.output_pending());
    }
  };
  Callbacks cb;
  cb.opened = produce;
  cb.low_water = [&](Conn& c) {
    ++drained_calls;
    produce(c);
  };
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 8192);
  const std::string got = client.read_exactly(payload.size());
  ASSERT_EQ(got.size(), payload.size());
  EXPECT_TRUE(got == payload);
  s.server.stop();
  s.server.wait();
  EXPECT_GT(drained_calls.load(), 0);
  EXPECT_LE(max_pending, o.output_high_water + kBlock);
}

TEST(OutputTest, OutputOverLimitClosesOnlyThatConnection) {
  Options o = loopback_options();
  o.output_high_water = 256 * 1024;
  o.output_low_water = 64 * 1024;
  o.output_limit = 1024 * 1024;
  o.socket_send_buffer = 4096;
  ErrorLog closed;  // the flooder's first; the bystander's at the server's stop
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    if (bytes == "flood") {
      for (int i = 0; i < 64; ++i) c.write(pattern(64 * 1024, static_cast<std::uint32_t>(i)));
    } else {
      c.write(bytes);
    }
    return bytes.size();
  };
  cb.closed = closed.recorder();
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client bystander(s.address());
  Client flooder(s.address(), 4096);
  ASSERT_TRUE(flooder.send_all("flood"));
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_EQ(closed.first(), errc::output_limit);
  EXPECT_TRUE(flooder.wait_eof() || true);  // closed: EOF or reset, either way gone
  ASSERT_TRUE(bystander.send_all("still here"));
  EXPECT_EQ(bystander.read_exactly(10), "still here");
}

// output_limit bounds the memory the output holds, not only its bytes: a pending SharedBuffer
// write holds a record (about 48 bytes) besides its bytes, so 10,000 writes of a 4-byte buffer
// (40,000 bytes, under a 64 KiB limit) hold about half a megabyte. A push server's peer that never
// reads, sent tiny messages (presence, typing, heartbeats), held over ten times the limit.
TEST(OutputTest, TinySharedBufferWritesCountTheirRecordsTowardTheLimit) {
  Options o = loopback_options();
  o.output_limit = o.output_high_water = o.output_low_water = 64 * 1024;
  ErrorLog closed;
  std::atomic<bool> cut_at_once{false};
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    const SharedBuffer tiny(std::string("HB!\n"));
    for (int i = 0; i < 10'000 && !c.closing(); ++i) c.write(tiny);
    cut_at_once = c.closing();
    if (!c.closing()) c.abort();  // not cut: end it now (closed with no error) to fail fast
    return bytes.size();
  };
  cb.closed = closed.recorder();
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  ASSERT_TRUE(client.send_all("go"));
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_EQ(closed.first(), errc::output_limit);
  EXPECT_TRUE(cut_at_once);
}

TEST(OutputTest, UnconsumedInputOverLimitClosesWithError) {
  Options o = loopback_options();
  o.input_limit = 64 * 1024;
  ErrorLog closed;
  Callbacks cb;
  cb.data = [](Conn&, std::string_view) { return std::size_t{0}; };  // waits for a frame forever
  cb.closed = closed.recorder();
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  client.send_all(pattern(200 * 1024));
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_EQ(closed.first(), errc::input_limit);
}

TEST(OutputTest, CloseAfterWriteSendsEverythingBeforeFin) {
  const std::string payload = pattern(8u << 20, 5);
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write(payload);
    c.close();
    c.write("dropped: written after close");
    return bytes.size();
  };
  Options o = loopback_options();
  o.socket_send_buffer = 4096;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  ASSERT_TRUE(client.send_all("go"));
  expect_stream_then_fin(client, payload);
}

// A server that answers a connection's first bytes with `payload` and a close(), and records
// how each connection ended; `close_called` counts the close()s.
struct WriteThenClose {
  explicit WriteThenClose(std::string bytes) : payload(std::move(bytes)) {
    callbacks.data = [this](Conn& c, std::string_view in) {
      if (!c.closing()) {
        c.write(payload);
        c.close();
        close_called.add();
      }
      return in.size();
    };
    callbacks.closed = closed.recorder();
  }
  const std::string payload;
  EventCounter close_called;
  ErrorLog closed;
  Callbacks callbacks;
};

// A client that pipelines its next request behind the one answered by a close(): its bytes sit
// unread when the server's output has gone, or arrive while the kernel still sends it. A plain
// close() then makes the kernel answer with a reset and drop what it still holds; the lingering
// close (FIN, then read and drop until the peer has everything) loses nothing.
TEST(OutputTest, CloseWithThePeersBytesUnreadStillSendsEverythingThenAFin) {
  WriteThenClose server(pattern(8u << 20, 5));
  Options o = loopback_options();
  o.socket_send_buffer = 64 * 1024;
  RunningServer s(o, server.callbacks);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 64 * 1024);
  ASSERT_TRUE(client.send_all("go"));
  ASSERT_TRUE(server.close_called.wait_for(1));
  ASSERT_TRUE(client.send_all("the next request, never read"));  // while 8 MiB wait
  expect_stream_then_fin(client, server.payload);
  ASSERT_TRUE(server.closed.wait_for(1));
  EXPECT_FALSE(server.closed.errors().front()) << server.closed.errors().front().message();
  EXPECT_EQ(total_stats(s.server).resets, 0u);
}

// The same when the peer's bytes come only after the server's output has all gone to the kernel:
// the connection waits, reading and dropping them, until the peer has taken everything.
TEST(OutputTest, BytesArrivingAfterTheOutputWentToTheKernelDoNotResetIt) {
  WriteThenClose server(pattern(1u << 20, 6));
  Options o = loopback_options();
  o.socket_send_buffer = 4 * 1024 * 1024;  // takes the whole payload at once
  RunningServer s(o, server.callbacks);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 64 * 1024);
  ASSERT_TRUE(client.send_all("go"));
  // The payload has left evloop's buffer: in the kernel, most of it not yet delivered.
  ASSERT_TRUE(eventually([&] {
    const LoopStats st = total_stats(s.server);
    return st.bytes_out == server.payload.size() && st.output_buffered == 0;
  }));
  ASSERT_TRUE(client.send_all("the next request, never read"));
  expect_stream_then_fin(client, server.payload);
  ASSERT_TRUE(server.closed.wait_for(1));
  EXPECT_FALSE(server.closed.errors().front()) << server.closed.errors().front().message();
}

// A peer that takes nothing more: the lingering close ends at close_timeout, with a reset.
TEST(OutputTest, ALingeringCloseEndsAtTheCloseTimeout) {
  WriteThenClose server(pattern(1u << 20, 7));
  Options o = loopback_options();
  o.socket_send_buffer = 4 * 1024 * 1024;
  o.close_timeout = 300ms;
  RunningServer s(o, server.callbacks);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 64 * 1024);
  ASSERT_TRUE(client.send_all("go"));
  ASSERT_TRUE(server.closed.wait_for(1));
  EXPECT_EQ(server.closed.errors().front(), make_error_code(errc::close_timeout));
  EXPECT_EQ(total_stats(s.server).resets, 1u);
}

// Reads `size` bytes 8 KiB at a time, 10 ms apart (a slow peer that never stops reading), then
// waits for the end of the stream; `eof` says whether it came as a FIN.
std::string read_slowly(Client& client, std::size_t size, bool& eof) {
  std::string got;
  while (got.size() < size) {
    const std::string chunk = client.read_exactly(std::min<std::size_t>(8192, size - got.size()));
    if (chunk.empty()) break;
    got += chunk;
    std::this_thread::sleep_for(10ms);  // the peer's own pace, not a wait for an event
  }
  eof = client.wait_eof();
  return got;
}

// close_timeout bounds a drain without progress, not the whole download of a peer that keeps
// reading: here the drain takes several close_timeouts, in evloop's output (a 4 KiB send buffer
// holds the rest back) and then in the kernel's (a 4 MiB one takes it all at once and close()
// lingers for the peer's acknowledgement). Every byte arrives, then a FIN, and `closed` reports
// a clean close.
void expect_a_slow_download_completes(int socket_send_buffer) {
  constexpr auto kCloseTimeout = 200ms;
  WriteThenClose server(pattern(512 * 1024, 9));
  Options o = loopback_options();
  o.socket_send_buffer = socket_send_buffer;
  o.close_timeout = kCloseTimeout;
  RunningServer s(o, server.callbacks);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(client.send_all("go"));
  bool eof = false;
  const std::string got = read_slowly(client, server.payload.size(), eof);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 3 * kCloseTimeout) << "not slow enough";
  EXPECT_EQ(got.size(), server.payload.size());
  EXPECT_TRUE(got == server.payload) << "the bytes differ";
  EXPECT_TRUE(eof) << "no FIN after the download";
  ASSERT_TRUE(server.closed.wait_for(1));
  EXPECT_FALSE(server.closed.errors().front()) << server.closed.errors().front().message();
}

TEST(OutputTest, ASlowPeerThatKeepsReadingGetsTheWholeOutputAfterClosePastTheCloseTimeout) {
  expect_a_slow_download_completes(4096);
}

TEST(OutputTest, ASlowPeerThatKeepsAcknowledgingGetsALingeringCloseLongerThanTheCloseTimeout) {
  expect_a_slow_download_completes(4 * 1024 * 1024);
}

// close() stops reading at once, also while the close lingers for the peer's acknowledgement:
// bytes and a FIN that arrive meanwhile are read and dropped, never handed to `data` or `eof`.
TEST(OutputTest, ALingeringCloseHandsNoInputOrEofToTheHandlers) {
  const std::string payload = pattern(1u << 20, 8);
  EventCounter close_called;
  EventCounter data_after_close;
  EventCounter eofs;
  ErrorLog closed;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view in) {
    if (c.closing()) {
      data_after_close.add();
    } else {
      c.write(payload);
      c.close();
      close_called.add();
    }
    return in.size();
  };
  cb.eof = [&](Conn&) { eofs.add(); };
  cb.closed = closed.recorder();
  Options o = loopback_options();
  o.socket_send_buffer = 4 * 1024 * 1024;  // takes the whole payload at once
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 64 * 1024);
  ASSERT_TRUE(client.send_all("go"));
  ASSERT_TRUE(close_called.wait_for(1));
  // The payload is with the kernel, most of it unacknowledged: the close lingers. Its checks
  // (the server's only timers) come at 1, 2, 4... ms: after the 7th, the next is 100 ms away, and
  // the bytes below come between two checks.
  ASSERT_TRUE(eventually([&] {
    const LoopStats st = total_stats(s.server);
    return st.bytes_out == payload.size() && st.output_buffered == 0 && st.timers_fired >= 7;
  }));
  ASSERT_TRUE(client.send_all("the next request, never read"));
  client.shutdown_write();
  expect_stream_then_fin(client, payload);
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_FALSE(closed.first()) << closed.first().message();
  EXPECT_EQ(data_after_close.value(), 0);
  EXPECT_EQ(eofs.value(), 0);
}

// A lingering close waits on a timer, not on the socket: with the output gone to the kernel and
// the peer still to acknowledge some of it, the socket is writable, and the loop must sleep.
TEST(OutputTest, ALingeringCloseSleepsWhileThePeerHasNotAcknowledged) {
  WriteThenClose server(pattern(16u << 20, 9));
  const std::size_t total = server.payload.size();
  Options o = loopback_options();
  o.socket_send_buffer = 4 * 1024 * 1024;
  RunningServer s(o, server.callbacks);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 64 * 1024);
  ASSERT_TRUE(client.send_all("go"));
  ASSERT_TRUE(server.close_called.wait_for(1));
  // Read until evloop's buffer has gone to the kernel (the connection waited for writability
  // meanwhile), then on until the server's kernel holds less than a third of its send buffer:
  // its socket is writable, and unacknowledged bytes remain.
  std::string got;
  while (got.size() < total && total_stats(s.server).output_buffered > 0) {
    const std::string piece = client.read_exactly(64 * 1024);
    ASSERT_FALSE(piece.empty());
    got += piece;
  }
  std::size_t held_by_server = total;
  while (got.size() < total) {
    int unread = 0;
    ASSERT_EQ(::ioctl(client.fd(), FIONREAD, &unread), 0);
    held_by_server = total - got.size() - static_cast<std::size_t>(unread);
    if (held_by_server < (1u << 20)) break;
    const std::string piece = client.read_exactly(16 * 1024);
    ASSERT_FALSE(piece.empty());
    got += piece;
  }
  ASSERT_GT(held_by_server, 0u);
  ASSERT_EQ(server.closed.count(), 0);
  EXPECT_LT(waits_during(s.server, 100ms), 20u);
  bool eof = false;
  got += client.read_to_eof(&eof);
  EXPECT_TRUE(eof);
  EXPECT_TRUE(got == server.payload);
  ASSERT_TRUE(server.closed.wait_for(1));
  EXPECT_FALSE(server.closed.first()) << server.closed.first().message();
}

// A peer that resets while the close lingers has not taken everything: `closed` says so, as it
// does when the reset comes while the output is still being sent.
TEST(OutputTest, AResetDuringALingeringCloseReachesClosed) {
  WriteThenClose server(pattern(1u << 20, 10));
  Options o = loopback_options();
  o.socket_send_buffer = 4 * 1024 * 1024;  // takes the whole payload at once
  RunningServer s(o, server.callbacks);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 64 * 1024);
  ASSERT_TRUE(client.send_all("go"));
  ASSERT_TRUE(server.close_called.wait_for(1));
  ASSERT_TRUE(eventually([&] {
    const LoopStats st = total_stats(s.server);
    return st.bytes_out == server.payload.size() && st.output_buffered == 0;
  }));
  ASSERT_EQ(server.closed.count(), 0);  // most of the payload is unacknowledged: it lingers
  client.reset();
  ASSERT_TRUE(server.closed.wait_for(1));
  EXPECT_EQ(server.closed.first(), std::errc::connection_reset) << server.closed.first().message();
}

// A close that finds more of the peer's bytes than a lingering check reads, when the peer is owed
// nothing, closes at once: the kernel resets the connection (unread bytes), and `resets` counts it.
TEST(OutputTest, ACloseWithMoreUnreadBytesThanALingerReadsCountsItsReset) {
  ConnRef conn;
  EventCounter opened;
  ErrorLog closed;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    c.pause_reading();
    conn = c.ref();
    opened.add();
  };
  cb.data = [](Conn&, std::string_view in) { return in.size(); };
  cb.closed = closed.recorder();
  Options o = loopback_options();
  o.socket_receive_buffer = 4 * 1024 * 1024;  // holds all the peer sends, never read
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(opened.wait_for(1));
  ASSERT_TRUE(client.send_all(pattern(1u << 20, 11)));  // 4 lingering checks' worth
  ASSERT_TRUE(eventually([&] {  // all of it is in the server's receive queue
    return !detail::platform::tcp_output_unacknowledged(client.fd());
  }));
  ASSERT_TRUE(conn.close());
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_FALSE(closed.first()) << closed.first().message();  // our own close: no error
  bool eof = true;
  client.read_to_eof(&eof);
  EXPECT_FALSE(eof);
  EXPECT_EQ(errno, ECONNRESET);
  EXPECT_EQ(total_stats(s.server).resets, 1u);
}

TEST(OutputTest, WritingToAResetPeerGivesAnErrorNotSigpipe) {
  // If SIGPIPE were raised, its default action would kill this test process.
  EventCounter got_data;
  ErrorLog closed;
  ConnRef ref;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    ref = c.ref();
    got_data.add();
    return bytes.size();
  };
  cb.closed = closed.recorder();
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("x"));
  ASSERT_TRUE(got_data.wait_for(1));
  client.reset();
  // Keep writing until the kernel reports the reset (EPIPE or ECONNRESET).
  for (int i = 0; i < 200 && closed.count() == 0; ++i) {
    ref.write(pattern(256 * 1024));
    closed.wait_for(1, 5ms);
  }
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_TRUE(closed.first() == std::errc::broken_pipe ||
              closed.first() == std::errc::connection_reset)
      << closed.first().message();
}

TEST(OutputTest, SteadyEchoMakesOneSendAndNoPollerChangePerMessage) {
  Callbacks cb;
  cb.data = [](Conn& c, std::string_view bytes) {
    c.write(bytes.substr(0, 1));  // several writes in one callback...
    c.write(bytes.substr(1));
    return bytes.size();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(eventually([&] { return total_stats(s.server).opened == 1; }));
  ASSERT_TRUE(settle(s.server));
  const LoopStats before = total_stats(s.server);
  constexpr int kMessages = 500;
  for (int i = 0; i < kMessages; ++i) {
    const std::string msg = "message " + std::to_string(i);
    ASSERT_TRUE(client.send_all(msg));
    ASSERT_EQ(client.read_exactly(msg.size()), msg);
  }
  ASSERT_TRUE(settle(s.server));  // the last send's counter is written after the client saw it
  const LoopStats after = total_stats(s.server);
  EXPECT_EQ(after.writes - before.writes, static_cast<std::uint64_t>(kMessages));  // ...one send
  EXPECT_EQ(after.reads - before.reads, static_cast<std::uint64_t>(kMessages));
  EXPECT_EQ(after.poller_changes, before.poller_changes);
  EXPECT_EQ(after.write_arms, before.write_arms);
}

}  // namespace
}  // namespace evloop::test
