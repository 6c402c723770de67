// UDP sockets: byte-exact echo over IPv4 and IPv6, one socket per loop with reuse-port (and a
// datagram wakes only the loop whose socket gets it), truncation, the send queue's bound,
// connected client sockets and their ICMP errors, sends from other threads, GSO/GRO, bad
// addresses and options, and nothing left behind after a stop.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "test_support.hpp"

namespace evloop::test {
namespace {

// A Server with one UDP address (and no TCP one), started in the constructor.
struct UdpServer {
  UdpServer(const std::string& address, DatagramHandlers handlers, UdpOptions udp = {},
            unsigned loops = 1, bool reuseport = false)
      : server(make_options(loops, reuseport), Callbacks{}) {
    status = server.listen_udp(address, std::move(handlers), udp);
    if (status) status = server.start();
  }
  ~UdpServer() {
    server.stop();
    server.wait();
  }
  static Options make_options(unsigned loops, bool reuseport) {
    Options o;
    o.loops = loops;
    o.reuseport = reuseport;
    return o;
  }
  const SocketAddress& address() const { return server.addresses().at(0); }

  Server server;
  Status status;
};

DatagramHandlers echo_handlers(EventCounter* opened = nullptr) {
  DatagramHandlers h;
  h.opened = [opened](Udp&) {
    if (opened != nullptr) opened->add();
  };
  h.datagram = [](Udp& udp, const SocketAddress& peer, std::string_view bytes) {
    udp.send_to(peer, bytes);
  };
  return h;
}

// A loopback UDP port nobody is served on, held for the object's life: a socket bound there and
// connected to itself, so a datagram from any other socket finds no receiver and draws ICMP port
// unreachable, and no other test (the suite runs in parallel) can bind the port meanwhile.
struct UnservedUdpPort {
  UnservedUdpPort() {
    const SocketAddress self = holder.address();
    connected = ::connect(holder.fd(), static_cast<const sockaddr*>(self.data()),
                          static_cast<socklen_t>(self.size())) == 0;
  }
  std::uint16_t port() const { return connected ? holder.address().port() : 0; }

  UdpPeer holder;
  bool connected = false;
};

// Sends datagrams of many sizes one at a time and checks each echo byte for byte.
void expect_echo(const SocketAddress& server, int family) {
  UdpPeer peer(family);
  ASSERT_TRUE(peer.ok());
  const std::size_t sizes[] = {0, 1, 7, 64, 512, 1400, 1472, 9000, 32768, 65507};
  std::uint32_t seed = 1;
  for (int round = 0; round < (kSanitized ? 2 : 10); ++round) {
    for (std::size_t size : sizes) {
      const std::string msg = pattern(size, seed++);
      ASSERT_TRUE(peer.send_to(server, msg));
      SocketAddress from;
      const auto echo = peer.receive(kWait, &from);
      ASSERT_TRUE(echo.has_value()) << "no echo of " << size << " bytes";
      ASSERT_EQ(*echo, msg) << size << " bytes";
      EXPECT_EQ(from.port(), server.port());
    }
  }
}

TEST(UdpTest, EchoesByteExactOverIpv4) {
  UdpServer s("udp4://127.0.0.1:0", echo_handlers());
  ASSERT_TRUE(s.status) << s.status.message();
  expect_echo(s.address(), AF_INET);
  ASSERT_TRUE(settle(s.server));
  const LoopStats t = total_stats(s.server);
  EXPECT_EQ(t.datagrams_in, t.datagrams_out);
  EXPECT_EQ(t.datagram_drops, 0u);
  EXPECT_EQ(t.udp_sockets, 1u);
}

TEST(UdpTest, EchoesByteExactOverIpv6) {
  if (!has_ipv6_loopback()) GTEST_SKIP() << "::1 cannot be bound here";
  UdpServer s("udp6://[::1]:0", echo_handlers());
  ASSERT_TRUE(s.status) << s.status.message();
  EXPECT_EQ(s.address().family(), AF_INET6);
  expect_echo(s.address(), AF_INET6);
}

TEST(UdpTest, ServingReportsUdpUrls) {
  Options o;
  std::vector<std::string> urls;
  Callbacks cb;
  cb.serving = [&](const ServingInfo& info) { urls = info.urls; };
  Server server(o, cb);
  ASSERT_TRUE(server.listen_udp("udp://127.0.0.1:0", {}));
  ASSERT_TRUE(server.listen("tcp4://127.0.0.1:0", {}, {}));
  ASSERT_TRUE(server.start());
  ASSERT_EQ(urls.size(), 2u);
  EXPECT_EQ(urls[0], "udp4://127.0.0.1:" + std::to_string(server.addresses()[0].port()));
  EXPECT_EQ(urls[1], "tcp4://127.0.0.1:" + std::to_string(server.addresses()[1].port()));
  server.stop();
  server.wait();
}

// With reuse-port each loop has its own socket on the port; the kernel hashes each flow to one
// of them, and only that loop wakes (evio put one fd in every loop's poller: every datagram
// woke every loop).
TEST(UdpTest, ReusePortGivesEachLoopItsOwnSocketAndADatagramWakesOneLoop) {
  EventCounter opened;
  std::mutex mutex;
  std::set<std::size_t> loops_used;
  DatagramHandlers h = echo_handlers(&opened);
  h.datagram = [&](Udp& udp, const SocketAddress& peer, std::string_view bytes) {
    {
      std::lock_guard lock(mutex);
      loops_used.insert(udp.loop().index());
    }
    udp.send_to(peer, bytes);
  };
  UdpServer s("udp4://127.0.0.1:0", h, {}, 4, true);
  ASSERT_TRUE(s.status) << s.status.message();
  ASSERT_TRUE(opened.wait_for(4));
  EXPECT_EQ(udp_sockets_on(s.address().port()), 4);

  // No task is posted and no timer runs: a loop's `waits` moves only when I/O wakes it.
  std::vector<LoopStats> before = s.server.stats();
  for (int flow = 0; flow < 16; ++flow) {
    UdpPeer peer;  // a new source port: a new flow for the kernel's hash
    ASSERT_TRUE(peer.send_to(s.address(), "ping " + std::to_string(flow)));
    ASSERT_EQ(peer.receive().value_or(""), "ping " + std::to_string(flow));
    std::vector<LoopStats> after;
    int serving = -1;
    ASSERT_TRUE(eventually([&] {
      after = s.server.stats();
      for (std::size_t i = 0; i < after.size(); ++i) {
        if (after[i].datagrams_out != before[i].datagrams_out) serving = static_cast<int>(i);
      }
      return serving >= 0;
    }));
    for (std::size_t i = 0; i < after.size(); ++i) {
      const bool is_serving = static_cast<int>(i) == serving;
      EXPECT_EQ(after[i].datagrams_in - before[i].datagrams_in, is_serving ? 1u : 0u) << i;
      if (is_serving) {
        EXPECT_GE(after[i].waits - before[i].waits, 1u) << "loop " << i;
      } else {
        EXPECT_EQ(after[i].waits, before[i].waits) << "loop " << i << " woke for flow " << flow;
        EXPECT_EQ(after[i].wakeups, before[i].wakeups) << "loop " << i;
      }
    }
    before = after;
  }
  std::lock_guard lock(mutex);
  EXPECT_GE(loops_used.size(), 2u) << "the kernel put 16 flows on one socket";
}

TEST(UdpTest, WithoutReusePortLoopZeroServesTheAddressAlone) {
  EventCounter opened;
  std::atomic<int> off_loop_zero{0};
  DatagramHandlers h = echo_handlers(&opened);
  h.datagram = [&](Udp& udp, const SocketAddress& peer, std::string_view bytes) {
    if (udp.loop().index() != 0) off_loop_zero.fetch_add(1);
    udp.send_to(peer, bytes);
  };
  UdpServer s("udp4://127.0.0.1:0", h, {}, 4, false);
  ASSERT_TRUE(s.status) << s.status.message();
  ASSERT_TRUE(opened.wait_for(1));
  EXPECT_EQ(udp_sockets_on(s.address().port()), 1);
  for (int flow = 0; flow < 8; ++flow) {
    UdpPeer peer;
    ASSERT_TRUE(peer.send_to(s.address(), "x"));
    ASSERT_EQ(peer.receive().value_or(""), "x");
  }
  EXPECT_EQ(off_loop_zero.load(), 0);
  EXPECT_EQ(opened.value(), 1);
}

// A socket whose batches keep coming back full leaves the poller (a busy spell, on every backend),
// is read every loop iteration instead, and registers again once a read finds nothing. Nothing is
// lost or reordered on the way.
TEST(UdpTest, ABusySocketIsReadOutOfThePollerUntilItDrains) {
  EventCounter entered, delivered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::mutex mutex;
  std::vector<std::string> got;
  DatagramHandlers h;
  h.datagram = [&](Udp&, const SocketAddress&, std::string_view bytes) {
    if (bytes == "hold") {
      entered.add();
      released.wait_for(kWait);  // the test fills the socket's queue meanwhile
    } else {
      std::lock_guard lock(mutex);
      got.emplace_back(bytes);
    }
    delivered.add();
  };
  UdpOptions o;
  o.batch = 4;  // 4 batches of 4 full: busy
  UdpServer s("udp4://127.0.0.1:0", h, o);
  ASSERT_TRUE(s.status) << s.status.message();
  UdpPeer peer;
  ASSERT_TRUE(peer.send_to(s.address(), "hold"));
  ASSERT_TRUE(entered.wait_for(1));
  const LoopStats before = total_stats(s.server);
  constexpr int kQueued = 100;
  for (int i = 0; i < kQueued; ++i) ASSERT_TRUE(peer.send_to(s.address(), std::to_string(i)));
  release.set_value();
  ASSERT_TRUE(delivered.wait_for(kQueued + 1));
  ASSERT_TRUE(peer.send_to(s.address(), "after"));  // registered again: a lone datagram arrives
  ASSERT_TRUE(delivered.wait_for(kQueued + 2));
  // "after" may still be read out of the poller, in the iteration that then registers the
  // socket again (after the handler ran): the count settles a moment after the delivery.
  const auto changes = [&] {
    return static_cast<int>(total_stats(s.server).poller_changes - before.poller_changes);
  };
  EXPECT_TRUE(settles_to(changes, 2)) << changes() << " poller changes: out of the poller and back";
  std::lock_guard lock(mutex);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kQueued + 1));
  for (int i = 0; i < kQueued; ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)], std::to_string(i));
  EXPECT_EQ(got.back(), "after");
}

// Busy spells (epoll, kqueue): a readiness that brings at least two datagrams takes the socket
// out of the poller, and the loop reads it every iteration, asking the poller only now and then,
// until a read finds nothing. A spell of fewer than 4 reads (the empty one included) doubles what
// the next must bring; a longer one brings it back to two. The handler makes the load, from the
// loop thread, with a blocking loopback send (over loopback the datagram is in the socket's queue
// when the send returns): "send N" puts N datagrams before the next read, "chain K" one more
// before each of the next K reads, "fan K" seven and a "chain K".
TEST(UdpTest, BusySpellsBeginUnderLoadAndAdaptToWastedOnes) {
  UdpPeer feeder;  // used by the loop thread only
  ASSERT_TRUE(feeder.ok());
  EventCounter seen;
  DatagramHandlers h;
  h.datagram = [&](Udp& udp, const SocketAddress&, std::string_view bytes) {
    const std::size_t space = bytes.find(' ');
    const std::string_view word = bytes.substr(0, space);
    const int n =
        space == std::string_view::npos ? 0 : std::stoi(std::string(bytes.substr(space + 1)));
    const SocketAddress& self = udp.local_address();
    if (word == "send" || word == "fan") {
      for (int i = 0; i < (word == "fan" ? 7 : n); ++i) EXPECT_TRUE(feeder.send_to(self, "x"));
    }
    if ((word == "chain" && n > 0) || word == "fan") {
      EXPECT_TRUE(feeder.send_to(self, "chain " + std::to_string(word == "fan" ? n : n - 1)));
    }
    seen.add();
  };
  UdpServer s("udp4://127.0.0.1:0", h);
  ASSERT_TRUE(s.status) << s.status.message();
  UdpPeer peer;
  const LoopStats start = total_stats(s.server);
  const auto changes = [&] {
    return static_cast<int>(total_stats(s.server).poller_changes - start.poller_changes);
  };
  int expected = 0;
  // Sends `command`, which brings `more` datagrams, and once they are all seen a lone "sync":
  // once that is seen too, the loop is past the reads of the command's datagrams (and a spell
  // they began has left the poller).
  const auto run = [&](const std::string& command, int more) {
    ASSERT_TRUE(peer.send_to(s.address(), command));
    expected += 1 + more;
    ASSERT_TRUE(seen.wait_for(expected)) << command;
    ASSERT_TRUE(peer.send_to(s.address(), "sync"));
    ASSERT_TRUE(seen.wait_for(++expected)) << command;
  };

  // On io_uring only full batches begin a spell (the wait runs every iteration there): none here.
  const bool readiness = std::string_view(s.server.backend()) != "io_uring";
  const auto spells = [&](int n) { return readiness ? 2 * n : 0; };  // out and back: 2 changes

  // One datagram at a time (a ping-pong) never begins a spell.
  for (int i = 0; i < 20; ++i) run("ping", 0);
  EXPECT_EQ(changes(), 0);
  run("send 2", 2);  // two at once: a spell, whose first read finds nothing (4 from now on)
  EXPECT_TRUE(settles_to(changes, spells(1))) << changes() << " poller changes";
  run("send 2", 2);  // two are not enough now
  run("send 3", 3);
  EXPECT_TRUE(settles_to(changes, spells(1))) << changes();
  run("send 4", 4);  // four are: another short spell (8 from now on)
  EXPECT_TRUE(settles_to(changes, spells(2))) << changes();
  const LoopStats before_long = total_stats(s.server);
  constexpr int kChain = 60;
  run("fan " + std::to_string(kChain), 7 + kChain + 1);  // eight at once, then one per read
  EXPECT_TRUE(settles_to(changes, spells(3))) << changes();
  const LoopStats after_long = total_stats(s.server);
  const auto reads = after_long.datagram_receive_calls - before_long.datagram_receive_calls;
  const auto waits = after_long.waits - before_long.waits;
  EXPECT_GE(reads, std::uint64_t{kChain});
  // The poller is asked every 8th iteration, or sooner when 200 µs have passed (a sanitizer's
  // iterations can take that long): fewer waits than reads either way, unless every one does.
  if (readiness) {
    EXPECT_LT(waits, reads) << "a busy socket is read without a wait per read";
  }
  run("send 2", 2);  // after a long spell two are enough again
  EXPECT_TRUE(settles_to(changes, spells(4))) << changes();
}

TEST(UdpTest, TruncatedDatagramsAreCountedAndReportedNeverDeliveredAsWhole) {
  EventCounter truncated, delivered;
  std::mutex mutex;
  std::string head, whole;
  DatagramHandlers h;
  h.truncated = [&](Udp&, const SocketAddress&, std::string_view bytes) {
    {
      std::lock_guard lock(mutex);
      head = std::string(bytes);
    }
    truncated.add();
  };
  h.datagram = [&](Udp&, const SocketAddress&, std::string_view bytes) {
    {
      std::lock_guard lock(mutex);
      whole = std::string(bytes);
    }
    delivered.add();
  };
  UdpOptions o;
  o.max_datagram_size = 100;
  UdpServer s("udp4://127.0.0.1:0", h, o);
  ASSERT_TRUE(s.status) << s.status.message();
  UdpPeer peer;
  const std::string big = pattern(300, 7), fits = pattern(100, 8);
  ASSERT_TRUE(peer.send_to(s.address(), big));
  ASSERT_TRUE(truncated.wait_for(1));
  ASSERT_TRUE(peer.send_to(s.address(), fits));
  ASSERT_TRUE(delivered.wait_for(1));
  EXPECT_EQ(truncated.value(), 1);
  EXPECT_EQ(delivered.value(), 1);
  std::lock_guard lock(mutex);
  EXPECT_EQ(head, big.substr(0, 100));
  EXPECT_EQ(whole, fits);
  EXPECT_EQ(total_stats(s.server).datagram_truncations, 1u);
}

// A handler that closes the socket mid-batch: the datagrams after it in the batch were received
// from the kernel, reach no handler, and are counted as received and dropped.
TEST(UdpTest, DatagramsLeftInABatchWhenAHandlerClosesAreCountedAsDropped) {
  EventCounter entered, closed;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> delivered{0};
  DatagramHandlers h;
  h.datagram = [&](Udp& udp, const SocketAddress&, std::string_view bytes) {
    ++delivered;
    if (bytes == "hold") {
      entered.add();
      released.wait_for(kWait);  // the test queues the next batch meanwhile
    } else if (bytes == "close") {
      udp.close();
    }
  };
  h.closed = [&](Udp&, std::error_code) { closed.add(); };
  UdpServer s("udp4://127.0.0.1:0", h);
  ASSERT_TRUE(s.status) << s.status.message();
  UdpPeer peer;
  ASSERT_TRUE(peer.send_to(s.address(), "hold"));
  ASSERT_TRUE(entered.wait_for(1));
  for (const char* d : {"close", "a", "b", "c"}) ASSERT_TRUE(peer.send_to(s.address(), d));
  release.set_value();
  ASSERT_TRUE(closed.wait_for(1));
  ASSERT_TRUE(settle(s.server));
  const LoopStats t = total_stats(s.server);
  EXPECT_EQ(delivered.load(), 2);
  EXPECT_EQ(t.datagrams_in, 5u);
  EXPECT_EQ(t.datagram_drops, 3u);
}

// The queue's bounds hold what the kernel cannot take yet. A handler that sends more than a bound
// in one call, before the loop has sent anything, fills the queue while the kernel has room: the
// queue goes to the kernel then, and nothing is lost. (Before, the excess was dropped. The bound
// with a full kernel, EAGAIN, is in udp_injected_test.cpp.)
TEST(UdpTest, AHandlerThatSendsMoreThanTheQueueBoundInOneCallLosesNothingTheKernelTakes) {
  std::atomic<int> accepted{0}, refused{0};
  DatagramHandlers h;
  h.datagram = [&](Udp& udp, const SocketAddress& peer, std::string_view) {
    for (int i = 0; i < 50; ++i) {
      if (udp.send_to(peer, "reply " + std::to_string(i))) {
        accepted.fetch_add(1);
      } else {
        refused.fetch_add(1);
      }
    }
  };
  UdpOptions o;
  o.send_queue_datagrams = 10;
  UdpServer s("udp4://127.0.0.1:0", h, o);
  ASSERT_TRUE(s.status) << s.status.message();
  UdpPeer peer;
  ASSERT_TRUE(peer.send_to(s.address(), "go"));
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(peer.receive().value_or("(none)"), "reply " + std::to_string(i));
  }
  EXPECT_FALSE(peer.receive(100ms).has_value());
  EXPECT_EQ(accepted.load(), 50);
  EXPECT_EQ(refused.load(), 0);
  ASSERT_TRUE(settle(s.server));
  const LoopStats t = total_stats(s.server);
  EXPECT_EQ(t.datagram_drops, 0u);
  EXPECT_EQ(t.datagrams_out, 50u);
}

// The byte bound counts queued bytes: a datagram that fits exactly is queued; one past it sends
// the queue to the kernel first (which takes it: loopback), then waits alone.
TEST(UdpTest, TheByteBoundCountsQueuedBytes) {
  std::atomic<int> accepted{0};
  DatagramHandlers h;
  h.datagram = [&](Udp& udp, const SocketAddress& peer, std::string_view) {
    for (int i = 0; i < 3; ++i) accepted.fetch_add(udp.send_to(peer, std::string(300, 'a')));
    EXPECT_EQ(udp.queued_bytes(), 900u);
    EXPECT_EQ(udp.queued_datagrams(), 3u);
    accepted.fetch_add(udp.send_to(peer, std::string(100, 'b')));  // exactly at the bound
    EXPECT_EQ(udp.queued_bytes(), 1000u);
    EXPECT_EQ(udp.queued_datagrams(), 4u);
    accepted.fetch_add(udp.send_to(peer, std::string(300, 'c')));  // past it
    EXPECT_EQ(udp.queued_bytes(), 300u);
    EXPECT_EQ(udp.queued_datagrams(), 1u);
  };
  UdpOptions o;
  o.send_queue_bytes = 1000;
  UdpServer s("udp4://127.0.0.1:0", h, o);
  ASSERT_TRUE(s.status) << s.status.message();
  UdpPeer peer;
  ASSERT_TRUE(peer.send_to(s.address(), "go"));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(peer.receive().value_or(""), std::string(300, 'a'));
  EXPECT_EQ(peer.receive().value_or(""), std::string(100, 'b'));
  EXPECT_EQ(peer.receive().value_or(""), std::string(300, 'c'));
  EXPECT_EQ(accepted.load(), 5);
  ASSERT_TRUE(settle(s.server));
  EXPECT_EQ(total_stats(s.server).datagram_drops, 0u);
}

TEST(UdpTest, ADatagramTheKernelRefusesIsReportedAndTheOthersStillGo) {
  ErrorLog errors;
  DatagramHandlers h;
  h.datagram = [](Udp& udp, const SocketAddress& peer, std::string_view) {
    udp.send_to(peer, "before");
    udp.send_to(peer, std::string(65508, 'x'));  // larger than any IPv4 UDP datagram: EMSGSIZE
    udp.send_to(peer, "after");
  };
  h.error = [&](Udp&, std::error_code ec) { errors.record(ec); };
  UdpServer s("udp4://127.0.0.1:0", h);
  ASSERT_TRUE(s.status) << s.status.message();
  UdpPeer peer;
  ASSERT_TRUE(peer.send_to(s.address(), "go"));
  EXPECT_EQ(peer.receive().value_or(""), "before");
  EXPECT_EQ(peer.receive().value_or(""), "after");
  ASSERT_TRUE(errors.wait_for(1));
  EXPECT_EQ(errors.first().value(), EMSGSIZE);
  ASSERT_TRUE(settle(s.server));
  const LoopStats t = total_stats(s.server);
  EXPECT_EQ(t.datagram_send_errors, 1u);
  EXPECT_EQ(t.datagrams_out, 2u);
}

// The same refusal met when a full queue goes to the kernel inside the handler: reported after
// the handler returns, as every send error is, never from inside send_to().
TEST(UdpTest, ARefusalMetWhileAFullQueueGoesToTheKernelIsReportedAfterTheHandler) {
  ErrorLog errors;
  std::atomic<bool> in_handler{false}, reported_inside{false};
  DatagramHandlers h;
  h.datagram = [&](Udp& udp, const SocketAddress& peer, std::string_view) {
    in_handler = true;
    udp.send_to(peer, "before");
    udp.send_to(peer, std::string(65508, 'x'));  // EMSGSIZE from the kernel
    EXPECT_TRUE(udp.send_to(peer, "after"));     // past the bound: the queue goes first
    EXPECT_TRUE(udp.send_to(peer, "last"));
    in_handler = false;
  };
  h.error = [&](Udp&, std::error_code ec) {
    if (in_handler) reported_inside = true;
    errors.record(ec);
  };
  UdpOptions options;
  options.send_queue_datagrams = 2;
  UdpServer s("udp4://127.0.0.1:0", h, options);
  ASSERT_TRUE(s.status) << s.status.message();
  UdpPeer peer;
  ASSERT_TRUE(peer.send_to(s.address(), "go"));
  EXPECT_EQ(peer.receive().value_or(""), "before");
  EXPECT_EQ(peer.receive().value_or(""), "after");
  EXPECT_EQ(peer.receive().value_or(""), "last");
  ASSERT_TRUE(errors.wait_for(1));
  EXPECT_EQ(errors.first().value(), EMSGSIZE);
  EXPECT_FALSE(reported_inside.load()) << "`error` ran inside the handler's send_to()";
  ASSERT_TRUE(settle(s.server));
  const LoopStats t = total_stats(s.server);
  EXPECT_EQ(t.datagram_send_errors, 1u);
  EXPECT_EQ(t.datagrams_out, 3u);
  EXPECT_EQ(t.datagram_drops, 0u);
  EXPECT_EQ(errors.count(), 1);
}

// A datagram longer than any UDP datagram and than the send queue's byte bound: refused as the
// kernel would refuse it (EMSGSIZE, reported and counted as a send error), not passed off as a
// full queue. (Before, it was dropped and counted as if the queue were full, and `error` never
// heard of it: a silent loss whenever the datagram exceeded send_queue_bytes.)
TEST(UdpTest, ADatagramLongerThanAnyUdpDatagramIsRefusedAsTooLongWhateverTheQueueBound) {
  ErrorLog errors;
  std::atomic<int> accepted{-1};
  DatagramHandlers h;
  h.datagram = [&](Udp& udp, const SocketAddress& peer, std::string_view) {
    udp.send_to(peer, "before");
    accepted = udp.send_to(peer, std::string(70000, 'x')) ? 1 : 0;
    udp.send_to(peer, "after");
  };
  h.error = [&](Udp&, std::error_code ec) { errors.record(ec); };
  UdpOptions options;
  options.send_queue_bytes = 65536;
  UdpServer s("udp4://127.0.0.1:0", h, options);
  ASSERT_TRUE(s.status) << s.status.message();
  UdpPeer peer;
  ASSERT_TRUE(peer.send_to(s.address(), "go"));
  EXPECT_EQ(peer.receive().value_or(""), "before");
  EXPECT_EQ(peer.receive().value_or(""), "after");
  ASSERT_TRUE(errors.wait_for(1));
  EXPECT_EQ(errors.first().value(), EMSGSIZE);
  EXPECT_EQ(accepted.load(), 0);
  ASSERT_TRUE(settle(s.server));
  const LoopStats t = total_stats(s.server);
  EXPECT_EQ(t.datagram_send_errors, 1u);
  EXPECT_EQ(t.datagram_drops, 0u);
  EXPECT_EQ(t.datagrams_out, 2u);
}

// A client flow: a LoopGroup with a connected socket talking to a server.
TEST(UdpTest, ConnectedClientSocketTalksToItsPeer) {
  UdpServer s("udp4://127.0.0.1:0", echo_handlers());
  ASSERT_TRUE(s.status) << s.status.message();
  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  EventCounter opened, replies, closed;
  std::mutex mutex;
  std::vector<std::string> got;
  bool connected = false;
  SocketAddress remote;
  DatagramHandlers h;
  h.opened = [&](Udp& udp) {
    {
      std::lock_guard lock(mutex);
      connected = udp.connected();
      remote = udp.remote_address();
    }
    for (int i = 0; i < 20; ++i) udp.send("msg " + std::to_string(i));
    opened.add();
  };
  h.datagram = [&](Udp& udp, const SocketAddress&, std::string_view bytes) {
    {
      std::lock_guard lock(mutex);
      got.emplace_back(bytes);
    }
    if (replies.value() == 19) udp.close();
    replies.add();
  };
  h.closed = [&](Udp&, std::error_code ec) {
    EXPECT_FALSE(ec) << ec.message();
    closed.add();
  };
  const UdpRef ref =
      loops.loop(0).connect_udp("udp4://127.0.0.1:" + std::to_string(s.address().port()), h);
  ASSERT_TRUE(ref);
  ASSERT_TRUE(opened.wait_for(1));
  ASSERT_TRUE(replies.wait_for(20));
  ASSERT_TRUE(closed.wait_for(1));
  loops.stop();
  ASSERT_TRUE(loops.wait());
  EXPECT_EQ(closed.value(), 1);
  std::lock_guard lock(mutex);
  EXPECT_TRUE(connected);
  EXPECT_EQ(remote.port(), s.address().port());
  ASSERT_EQ(got.size(), 20u);
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(got[static_cast<std::size_t>(i)], "msg " + std::to_string(i));
}

TEST(UdpTest, ConnectedSocketHearsConnectionRefusedFromAClosedPort) {
  const UnservedUdpPort unserved;
  const std::uint16_t closed_port = unserved.port();
  ASSERT_NE(closed_port, 0);
  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  EventCounter refused;
  DatagramHandlers h;
  h.opened = [](Udp& udp) { udp.send("anyone there?"); };
  h.error = [&](Udp& udp, std::error_code ec) {
    EXPECT_EQ(ec, std::errc::connection_refused) << ec.message();
    refused.add();
    udp.close();
  };
  loops.loop(0).connect_udp("udp://127.0.0.1:" + std::to_string(closed_port), h);
  EXPECT_TRUE(refused.wait_for(1));
  loops.stop();
  ASSERT_TRUE(loops.wait());
  EXPECT_EQ(refused.value(), 1);
}

#if defined(__linux__)
// IP_RECVERR, set by the application through native_handle(), queues each ICMP error on the
// socket's error queue as well. The queue keeps EPOLLERR raised: the loop must drain it, or it
// spins (every wait returns at once) and the queue fills the socket's receive budget.
TEST(UdpTest, AnErrorQueueTheApplicationEnabledIsDrainedNotSpunOn) {
  const UnservedUdpPort unserved;
  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  EventCounter refused;
  std::atomic<int> errors{0};
  DatagramHandlers h;
  h.opened = [](Udp& udp) {
    const int on = 1;
    EXPECT_EQ(::setsockopt(udp.native_handle(), SOL_IP, IP_RECVERR, &on, sizeof on), 0);
    udp.send("anyone there?");
  };
  h.error = [&](Udp&, std::error_code ec) {
    EXPECT_EQ(ec, std::errc::connection_refused) << ec.message();
    ++errors;
    refused.add();
  };
  loops.loop(0).connect_udp("udp://127.0.0.1:" + std::to_string(unserved.port()), h);
  ASSERT_TRUE(refused.wait_for(1));
  // Quiet once the error is reported: an undrained queue makes every wait return at once.
  const bool quiet = loop_goes_quiet(loops.loop(0));
  loops.stop();
  ASSERT_TRUE(loops.wait());
  EXPECT_TRUE(quiet) << "the loop kept waking for the error queue";
  EXPECT_EQ(errors.load(), 1) << "one ICMP error, reported once";
}
#endif

// A connected socket holds the ICMP error its last datagram drew; the next send returns it, and
// clears it, without trying its own datagram. That datagram is sent anyway (tried once more),
// and the error is reported, never counted as a datagram refused.
TEST(UdpTest, AnErrorTheSocketHoldsIsReportedAndTheNextDatagramStillGoes) {
  const UnservedUdpPort unserved;
  const std::uint16_t closed_port = unserved.port();
  ASSERT_NE(closed_port, 0);
  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  // A client socket talking to the closed port, and two sockets that each make it send once.
  // Both of their readiness come back from one wait, so the second send follows the first with no
  // wait between (a wait would report the error first), when over loopback the first one's
  // port-unreachable has already come back.
  UdpRef client;  // loop thread only
  std::atomic<int> refused{0}, other{0};
  EventCounter opened;
  DatagramHandlers ch;
  ch.opened = [&](Udp& udp) {
    client = udp.ref();
    opened.add();
  };
  ch.error = [&](Udp&, std::error_code ec) {
    ++(ec == std::errc::connection_refused ? refused : other);
  };
  loops.loop(0).connect_udp("udp://127.0.0.1:" + std::to_string(closed_port), ch);
  std::mutex mutex;
  std::vector<SocketAddress> triggers;
  int sends = 0;  // loop thread only
  DatagramHandlers th;
  th.opened = [&](Udp& udp) {
    std::lock_guard lock(mutex);
    triggers.push_back(udp.local_address());
    opened.add();
  };
  th.datagram = [&](Udp&, const SocketAddress&, std::string_view) {
    if (Udp* c = client.get()) c->send(sends++ == 0 ? "one" : "two");
  };
  loops.loop(0).bind_udp("udp4://127.0.0.1:0", th);
  loops.loop(0).bind_udp("udp4://127.0.0.1:0", th);
  ASSERT_TRUE(opened.wait_for(3));
  EventCounter held;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  loops.loop(0).post([&] {
    held.add();
    released.wait_for(kWait);  // the test sends to both triggers meanwhile
  });
  ASSERT_TRUE(held.wait_for(1));
  UdpPeer peer;
  {
    std::lock_guard lock(mutex);
    for (const SocketAddress& to : triggers) ASSERT_TRUE(peer.send_to(to, "go"));
  }
  release.set_value();
  const auto stat = [&](std::uint64_t LoopStats::*field) {
    std::uint64_t n = 0;
    for (const LoopStats& st : loops.stats()) n += st.*field;
    return static_cast<int>(n);
  };
  EXPECT_TRUE(settles_to([&] { return stat(&LoopStats::datagrams_out); }, 2));
  EXPECT_TRUE(settles_to([&] { return refused.load() >= 1 ? 1 : 0; }, 1));
  EXPECT_EQ(stat(&LoopStats::datagram_send_errors), 0);
  EXPECT_EQ(other.load(), 0);
  loops.stop();
  ASSERT_TRUE(loops.wait());
}

TEST(UdpTest, ConnectUdpResolvesHostNames) {
  UdpServer s("udp4://127.0.0.1:0", echo_handlers());
  ASSERT_TRUE(s.status) << s.status.message();
  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  EventCounter echoed;
  DatagramHandlers h;
  h.opened = [](Udp& udp) { udp.send("by name"); };
  h.datagram = [&](Udp&, const SocketAddress&, std::string_view bytes) {
    EXPECT_EQ(bytes, "by name");
    echoed.add();
  };
  loops.loop(0).connect_udp("udp4://localhost:" + std::to_string(s.address().port()), h);
  EXPECT_TRUE(echoed.wait_for(1));
  loops.stop();
  ASSERT_TRUE(loops.wait());
}

TEST(UdpTest, BindUdpOpensAnUnconnectedSocketOnALoop) {
  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  EventCounter opened, got;
  std::mutex mutex;
  SocketAddress local;
  DatagramHandlers h;
  h.opened = [&](Udp& udp) {
    {
      std::lock_guard lock(mutex);
      local = udp.local_address();
    }
    EXPECT_FALSE(udp.connected());
    EXPECT_FALSE(udp.send("no peer"));  // not connected
    opened.add();
  };
  h.datagram = [&](Udp& udp, const SocketAddress& peer, std::string_view bytes) {
    udp.send_to(peer, std::string(bytes) + "!");
    got.add();
  };
  loops.loop(0).bind_udp("udp4://127.0.0.1:0", h);
  ASSERT_TRUE(opened.wait_for(1));
  SocketAddress to;
  {
    std::lock_guard lock(mutex);
    to = local;
  }
  UdpPeer peer;
  ASSERT_TRUE(peer.send_to(to, "hi"));
  EXPECT_EQ(peer.receive().value_or(""), "hi!");
  loops.stop();
  ASSERT_TRUE(loops.wait());
}

TEST(UdpTest, UdpRefSendsFromAnotherThreadInOrder) {
  EventCounter opened;
  std::mutex mutex;
  UdpRef ref;
  DatagramHandlers h;
  h.opened = [&](Udp& udp) {
    {
      std::lock_guard lock(mutex);
      ref = udp.ref();
    }
    opened.add();
  };
  UdpServer s("udp4://127.0.0.1:0", h);
  ASSERT_TRUE(s.status) << s.status.message();
  ASSERT_TRUE(opened.wait_for(1));
  UdpPeer peer;
  // Posted from another thread in chunks that the peer's receive buffer surely holds (a UDP
  // receiver that falls behind loses datagrams: that is the peer's doing, not evloop's).
  const int chunks = kSanitized ? 4 : 40, chunk = 50;
  UdpRef target;
  {
    std::lock_guard lock(mutex);
    target = ref;
  }
  for (int c = 0; c < chunks; ++c) {
    std::thread sender([&] {
      for (int i = 0; i < chunk; ++i) {
        EXPECT_TRUE(target.send_to(peer.address(), std::to_string(c * chunk + i)));
      }
    });
    sender.join();
    for (int i = 0; i < chunk; ++i) {
      ASSERT_EQ(peer.receive().value_or("(none)"), std::to_string(c * chunk + i));
    }
  }
}

// Threads that send through a UdpRef faster than the loop runs their tasks: the sends on their
// way to the socket are bounded as its send queue is. Past the bound they are dropped and counted
// at once, on the sender's thread, and never posted. (Before, every send became a task: a loop
// that fell behind held them all, e.g. 550 MB for 2 million 200-byte sends, whatever the bounds.)
TEST(UdpTest, UdpRefSendsAheadOfTheLoopAreBoundedAsTheSendQueueIs) {
  UdpPeer peer(AF_INET, 1 << 20);
  ASSERT_TRUE(peer.ok());
  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  std::promise<UdpRef> opened;
  DatagramHandlers h;
  h.opened = [&](Udp& udp) { opened.set_value(udp.ref()); };
  UdpOptions options;
  options.send_queue_datagrams = 50;
  options.send_queue_bytes = 1 << 20;
  loops.loop(0).bind_udp("udp4://127.0.0.1:0", h, options);
  auto future = opened.get_future();
  ASSERT_EQ(future.wait_for(kWait), std::future_status::ready);
  const UdpRef ref = future.get();
  const LoopStats before = loops.loop(0).stats();
  const int sends = 5000;
  {
    // The loop runs nothing meanwhile: every send it would run later is still on its way.
    LoopHold hold(loops.loop(0));
    ASSERT_TRUE(hold.holding());
    std::thread sender([&] {
      for (int i = 0; i < sends; ++i) EXPECT_TRUE(ref.send_to(peer.address(), pattern(100, i)));
    });
    sender.join();
    EXPECT_EQ(loops.loop(0).stats().datagram_drops - before.datagram_drops, sends - 50u)
        << "sends past the bound were not dropped at once";
  }
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(peer.receive().value_or("(none)"), pattern(100, i)) << i;
  }
  // The bound is free again once the loop has run them.
  EXPECT_TRUE(ref.send_to(peer.address(), "after"));
  EXPECT_EQ(peer.receive().value_or("(none)"), "after");
  // The loop counts a send after the kernel took it: read the counters from a later task.
  std::promise<void> counted;
  ASSERT_TRUE(loops.loop(0).post([&] { counted.set_value(); }));
  ASSERT_EQ(counted.get_future().wait_for(kWait), std::future_status::ready);
  const LoopStats after = loops.loop(0).stats();
  EXPECT_EQ(after.datagrams_out - before.datagrams_out, 51u);
  EXPECT_EQ(after.datagram_drops - before.datagram_drops, sends - 50u);
  EXPECT_LE(after.tasks - before.tasks, 60u) << "the dropped sends were posted as tasks";
  loops.stop();
  ASSERT_TRUE(loops.wait());
}

// connect_udp returns before the socket has opened: what a UdpRef asks of it meanwhile waits for
// `opened` and then runs in order, also while a host name is being resolved.
TEST(UdpTest, UdpRefTasksThatComeWhileTheSocketOpensRunOnceItHas) {
  UdpPeer peer;
  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  for (const std::string host : {"127.0.0.1", "localhost"}) {
    SCOPED_TRACE(host);
    EventCounter opened;
    DatagramHandlers h;
    h.opened = [&](Udp&) { opened.add(); };
    LoopHold hold(loops.loop(0));
    ASSERT_TRUE(hold.holding());
    UdpRef ref = loops.loop(0).connect_udp(
        "udp4://" + host + ":" + std::to_string(peer.address().port()), h);
    ASSERT_TRUE(ref);
    EXPECT_TRUE(ref.send("first"));
    EXPECT_TRUE(ref.post([](Udp& udp) { udp.send("second"); }));
    EXPECT_TRUE(ref.send("third"));
    hold.release();
    for (const char* expected : {"first", "second", "third"}) {
      EXPECT_EQ(peer.receive().value_or("(none)"), expected);
    }
    EXPECT_EQ(opened.value(), 1);
    EXPECT_TRUE(ref.close());
  }
  loops.stop();
  ASSERT_TRUE(loops.wait());
}

TEST(UdpTest, UdpRefCloseWhileTheSocketOpensCancelsIt) {
  UdpPeer peer;
  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  EventCounter opened, failed;
  std::atomic<int> reason{0};
  DatagramHandlers h;
  h.opened = [&](Udp&) { opened.add(); };
  h.open_failed = [&](Udp&, std::error_code ec) {
    reason = ec == make_error_code(errc::cancelled) ? 1 : -1;
    failed.add();
  };
  UdpRef ref;
  {
    LoopHold hold(loops.loop(0));
    ASSERT_TRUE(hold.holding());
    ref = loops.loop(0).connect_udp("udp4://127.0.0.1:" + std::to_string(peer.address().port()), h);
    EXPECT_TRUE(ref.send("never"));  // waits for `opened`, which never comes
    EXPECT_TRUE(ref.close());
  }
  ASSERT_TRUE(failed.wait_for(1));
  EXPECT_EQ(reason.load(), 1);
  EXPECT_TRUE(ref.send("late"));  // the socket is gone
  std::promise<void> ran;         // posted after it: runs after it
  ASSERT_TRUE(loops.loop(0).post([&] { ran.set_value(); }));
  ASSERT_EQ(ran.get_future().wait_for(kWait), std::future_status::ready);
  loops.stop();
  ASSERT_TRUE(loops.wait());
  EXPECT_EQ(opened.value(), 0);
  LoopStats total;
  for (const LoopStats& s : loops.stats()) total += s;
  EXPECT_EQ(total.datagrams_out, 0u);
  // A UdpRef's sender never sees a `false`: both datagrams are counted as dropped.
  EXPECT_EQ(total.datagram_drops, 2u);
}

// A peer's SocketAddress may be longer than its family's sockaddr (one made from a whole
// sockaddr_storage): only the family's bytes go to the kernel. A shorter one, or an IPv6 peer
// on an IPv4 socket, is refused at once, and counted as dropped.
TEST(UdpTest, PeerAddressesAreCheckedAgainstTheirFamilyAndTheSocket) {
  UdpPeer peer;
  UdpPeer peer6(AF_INET6);
  ASSERT_TRUE(peer6.ok());
  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  EventCounter done;
  std::atomic<int> whole{-1}, short_one{-1}, other_family{-1}, unconnected{-1};
  DatagramHandlers h;
  h.opened = [&](Udp& udp) {
    sockaddr_storage storage{};
    std::memcpy(&storage, peer.address().data(), peer.address().size());
    whole = udp.send_to(SocketAddress(&storage, sizeof storage), "whole") ? 1 : 0;
    short_one = udp.send_to(SocketAddress(&storage, sizeof(sockaddr_in) - 1), "short") ? 1 : 0;
    other_family = udp.send_to(peer6.address(), "v6") ? 1 : 0;
    unconnected = udp.send("nowhere") ? 1 : 0;
    done.add();
  };
  const UdpRef ref = loops.loop(0).bind_udp("udp4://127.0.0.1:0", h);
  ASSERT_TRUE(done.wait_for(1));
  EXPECT_EQ(whole.load(), 1);
  EXPECT_EQ(short_one.load(), 0);
  EXPECT_EQ(other_family.load(), 0);
  EXPECT_EQ(unconnected.load(), 0);
  EXPECT_EQ(peer.receive().value_or("(none)"), "whole");
  // Through a UdpRef the `false` never reaches the sender: the drop is counted all the same.
  ASSERT_TRUE(ref.send_to(peer6.address(), "v6 again"));
  std::promise<void> ran;  // posted after it: runs after it
  ASSERT_TRUE(loops.loop(0).post([&] { ran.set_value(); }));
  ASSERT_EQ(ran.get_future().wait_for(kWait), std::future_status::ready);
  loops.stop();
  ASSERT_TRUE(loops.wait());
  LoopStats total;
  for (const LoopStats& s : loops.stats()) total += s;
  EXPECT_EQ(total.datagram_drops, 4u);  // each refused datagram once
  EXPECT_EQ(total.datagram_send_errors, 0u);
  EXPECT_EQ(total.datagrams_out, 1u);
}

// udp6:// means IPv6 only, for a server's address and a loop's own sockets alike.
TEST(UdpTest, Udp6SocketsAreIpv6Only) {
  const auto v6only = [](const Udp& udp) {
    int on = -1;
    socklen_t len = sizeof on;
    getsockopt(udp.native_handle(), IPPROTO_IPV6, IPV6_V6ONLY, &on, &len);
    return on;
  };
  std::atomic<int> served{-1}, bound{-1};
  EventCounter opened;
  DatagramHandlers sh;
  sh.opened = [&](Udp& udp) {
    served = v6only(udp);
    opened.add();
  };
  UdpServer s("udp6://[::1]:0", sh);
  ASSERT_TRUE(s.status) << s.status.message();
  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  DatagramHandlers bh;
  bh.opened = [&](Udp& udp) {
    bound = v6only(udp);
    opened.add();
  };
  loops.loop(0).bind_udp("udp6://[::]:0", bh);
  ASSERT_TRUE(opened.wait_for(2));
  EXPECT_EQ(served.load(), 1);
  EXPECT_EQ(bound.load(), 1);
  loops.stop();
  ASSERT_TRUE(loops.wait());
}

// An echo of bursts through GSO and GRO on both sides; with `server_cmsgs`, the server's socket
// also asks for a receive timestamp and the packet info through native_handle(), control
// messages the kernel puts before UDP_GRO's.
void gso_gro_round_trip(bool server_cmsgs) {
  UdpOptions o;
  o.gso = true;
  o.gro = true;
  std::atomic<bool> server_gso{false}, server_gro{false};
  DatagramHandlers sh = echo_handlers();
  sh.opened = [&](Udp& udp) {
    server_gso = udp.gso();
    server_gro = udp.gro();
#if defined(__linux__)  // GSO and GRO are Linux's
    const int on = 1;
    if (server_cmsgs) {
      EXPECT_EQ(setsockopt(udp.native_handle(), SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on), 0);
      EXPECT_EQ(setsockopt(udp.native_handle(), IPPROTO_IP, IP_PKTINFO, &on, sizeof on), 0);
    }
#else
    (void)server_cmsgs;
#endif
  };
  UdpServer s("udp4://127.0.0.1:0", sh, o);
  ASSERT_TRUE(s.status) << s.status.message();

  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  // Bursts of 64 (one segmented send each with GSO), the next when the last echo is back, so no
  // socket buffer overflows; the last burst is shorter and ends with a shorter datagram.
  constexpr int kDatagrams = 64 * 3 + 5;
  auto datagram = [](int i) {
    return pattern(i == kDatagrams - 1 ? 700 : 1400, static_cast<std::uint32_t>(i));
  };
  auto send_burst = [&](Udp& udp, int first) {
    for (int i = first; i < std::min(first + 64, kDatagrams); ++i)
      EXPECT_TRUE(udp.send(datagram(i)));
  };
  EventCounter got;
  std::mutex mutex;
  std::vector<std::string> received;
  DatagramHandlers ch;
  ch.opened = [&](Udp& udp) { send_burst(udp, 0); };
  ch.datagram = [&](Udp& udp, const SocketAddress&, std::string_view bytes) {
    std::size_t n = 0;
    {
      std::lock_guard lock(mutex);
      received.emplace_back(bytes);
      n = received.size();
    }
    if (n % 64 == 0) send_burst(udp, static_cast<int>(n));
    got.add();
  };
  UdpConnectOptions co;
  co.gso = co.gro = true;
  loops.loop(0).connect_udp("udp4://127.0.0.1:" + std::to_string(s.address().port()), ch, co);
  ASSERT_TRUE(got.wait_for(kDatagrams)) << got.value() << " of " << kDatagrams;
  {
    std::lock_guard lock(mutex);
    for (int i = 0; i < kDatagrams; ++i) {
      ASSERT_EQ(received[static_cast<std::size_t>(i)], datagram(i)) << i;
    }
  }
  ASSERT_TRUE(settle(s.server));
  const LoopStats server_stats = total_stats(s.server);
  const LoopStats client_stats = loops.stats()[0];
  EXPECT_EQ(server_stats.datagrams_in, static_cast<std::uint64_t>(kDatagrams));
  EXPECT_EQ(server_stats.datagrams_out, static_cast<std::uint64_t>(kDatagrams));
  if (server_gso && server_gro) {
    // Over loopback a segmented send reaches a GRO socket whole: both sides used the offloads.
    EXPECT_GE(client_stats.gso_sends, 1u);
    EXPECT_GE(server_stats.gro_receives, 1u);
    EXPECT_GE(server_stats.gso_sends, 1u);
    EXPECT_LT(server_stats.datagram_send_calls, static_cast<std::uint64_t>(kDatagrams));
  } else {
    std::printf("note: this kernel has no UDP GSO/GRO; the datagrams went one by one\n");
  }
  loops.stop();
  ASSERT_TRUE(loops.wait());
}

TEST(UdpTest, GsoAndGroKeepEveryDatagramWholeAndInOrder) { gso_gro_round_trip(false); }

TEST(UdpTest, GroSplitsDatagramsAlsoWithTheUsersOwnControlMessages) { gso_gro_round_trip(true); }

TEST(UdpTest, BadAddressesAndOptionsFailClearly) {
  {
    Server server(Options{}, Callbacks{});
    ASSERT_TRUE(server.listen_udp("tcp://127.0.0.1:0", {}));
    const Status st = server.start();
    EXPECT_EQ(st.code(), errc::bad_address);
    EXPECT_NE(st.message().find("udp://"), std::string::npos) << st.message();
  }
  {
    Options o;
    o.listen = {"udp://127.0.0.1:0"};
    Server server(o, Callbacks{});
    const Status st = server.start();
    EXPECT_EQ(st.code(), errc::bad_address);
    EXPECT_NE(st.message().find("listen_udp"), std::string::npos) << st.message();
  }
  {
    Server server(Options{}, Callbacks{});
    UdpOptions o;
    o.batch = 0;
    ASSERT_TRUE(server.listen_udp("udp://127.0.0.1:0", {}, o));
    const Status st = server.start();
    EXPECT_EQ(st.code(), errc::bad_option);
    EXPECT_NE(st.message().find("batch"), std::string::npos) << st.message();
  }
  {
    Server server(Options{}, Callbacks{});
    UdpOptions o;
    o.send_queue_bytes = std::size_t{1} << 32;  // past what the queue's 32-bit offsets hold
    ASSERT_TRUE(server.listen_udp("udp://127.0.0.1:0", {}, o));
    const Status st = server.start();
    EXPECT_EQ(st.code(), errc::bad_option);
    EXPECT_NE(st.message().find("send_queue_bytes (4294967296)"), std::string::npos)
        << st.message();
  }
  {
    Server server(Options{}, Callbacks{});
    ASSERT_TRUE(server.listen_udp("udp://127.0.0.1:0?backlog=5", {}));
    EXPECT_EQ(server.start().code(), errc::bad_option);
  }
  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  EventCounter failed;
  std::mutex mutex;
  std::vector<std::error_code> errors;
  DatagramHandlers h;
  h.opened = [](Udp&) { ADD_FAILURE() << "opened"; };
  h.open_failed = [&](Udp&, std::error_code ec) {
    {
      std::lock_guard lock(mutex);
      errors.push_back(ec);
    }
    failed.add();
  };
  loops.loop(0).connect_udp("udp://127.0.0.1:0", h);  // port 0 cannot be dialled
  loops.loop(0).connect_udp("tcp://127.0.0.1:9", h);  // not UDP
  loops.loop(0).bind_udp("udp://203.0.113.1:0", h);   // not a local address
  UdpOptions bad;
  bad.max_datagram_size = 0;
  loops.loop(0).bind_udp("udp://127.0.0.1:0", h, bad);
  UdpConnectOptions queried;  // a source address is host[:port]: its option would be ignored
  queried.source_address = "127.0.0.1:0?reuseport=1";
  loops.loop(0).connect_udp("udp://127.0.0.1:9", h, queried);
  ASSERT_TRUE(failed.wait_for(5));
  loops.stop();
  ASSERT_TRUE(loops.wait());
  std::lock_guard lock(mutex);
  ASSERT_EQ(errors.size(), 5u);
  EXPECT_EQ(errors[0], errc::bad_address);
  EXPECT_EQ(errors[1], errc::unknown_scheme);
  EXPECT_EQ(errors[2], std::errc::address_not_available);
  EXPECT_EQ(errors[3], errc::bad_option);
  EXPECT_EQ(errors[4], errc::bad_address);
}

TEST(UdpTest, StopClosesEverySocketOnceAndLeavesNoFdOrThreadBehind) {
  {  // warm up: whatever the process keeps once a first server has run
    UdpServer warm("udp4://127.0.0.1:0", echo_handlers(), {}, 2, true);
  }
  const FdAndThreadCounts baseline;
  EventCounter opened, closed;
  {
    DatagramHandlers h = echo_handlers(&opened);
    h.closed = [&](Udp&, std::error_code ec) {
      EXPECT_EQ(ec, errc::server_stopped);
      closed.add();
    };
    UdpServer s("udp4://127.0.0.1:0", h, {}, 4, true);
    ASSERT_TRUE(s.status) << s.status.message();
    LoopGroup clients(LoopOptions{.loops = 2});
    ASSERT_TRUE(clients.start());
    DatagramHandlers ch;
    ch.opened = [&](Udp& udp) {
      opened.add();
      udp.send("hello");
    };
    ch.closed = h.closed;
    for (int i = 0; i < 8; ++i) {
      clients.loop(static_cast<std::size_t>(i % 2))
          .connect_udp("udp4://127.0.0.1:" + std::to_string(s.address().port()), ch);
    }
    ASSERT_TRUE(opened.wait_for(12));
    clients.stop();
    ASSERT_TRUE(clients.wait());
  }  // the server stops here
  EXPECT_EQ(opened.value(), 12);
  EXPECT_EQ(closed.value(), 12);
  EXPECT_TRUE(counts_return_to(baseline));
}

// A socket closed on the loop thread has let go of its address once its fd is closed: a socket
// bound there next, before the loop waits again, opens (as after close(2) on any socket). On
// io_uring the closed socket's poll, cancelled only at the next wait, held the file and with it
// the port: the new bind failed with EADDRINUSE.
TEST(UdpTest, AClosedSocketsAddressCanBeBoundAgainAtOnce) {
  LoopGroup loops;
  ASSERT_TRUE(loops.start());
  EventCounter opened, reopened;
  std::mutex mutex;
  SocketAddress local;  // the first socket's
  UdpRef first_ref;
  std::error_code open_error;
  DatagramHandlers again;  // bound to the first socket's address after it closed
  again.opened = [&](Udp&) { reopened.add(); };
  again.open_failed = [&](Udp&, std::error_code ec) {
    {
      std::lock_guard lock(mutex);
      open_error = ec;
    }
    reopened.add();
  };
  again.datagram = [&](Udp& udp, const SocketAddress& peer, std::string_view bytes) {
    udp.send_to(peer, std::string(bytes) + "!");
  };
  DatagramHandlers first;  // idle: its poll is in the kernel when it closes
  first.opened = [&](Udp& udp) {
    {
      std::lock_guard lock(mutex);
      local = udp.local_address();
      first_ref = udp.ref();
    }
    opened.add();
  };
  SocketAddress trigger_address;
  DatagramHandlers trigger;  // a datagram here closes the first socket and binds its address
  trigger.opened = [&](Udp& udp) {
    {
      std::lock_guard lock(mutex);
      trigger_address = udp.local_address();
    }
    opened.add();
  };
  trigger.datagram = [&](Udp& udp, const SocketAddress&, std::string_view) {
    std::string address;
    {
      std::lock_guard lock(mutex);
      if (Udp* first_socket = first_ref.get()) first_socket->close();
      address = "udp4://127.0.0.1:" + std::to_string(local.port());
    }
    // Runs in this iteration, after the close is carried out, before the loop waits again.
    udp.loop().post([&, address] { loops.loop(0).bind_udp(address, again); });
  };
  loops.loop(0).bind_udp("udp4://127.0.0.1:0", first);
  ASSERT_TRUE(opened.wait_for(1));
  loops.loop(0).bind_udp("udp4://127.0.0.1:0", trigger);
  ASSERT_TRUE(opened.wait_for(2));
  SocketAddress first_address, to_trigger;
  {
    std::lock_guard lock(mutex);
    first_address = local;
    to_trigger = trigger_address;
  }
  UdpPeer peer;
  ASSERT_TRUE(peer.send_to(to_trigger, "go"));
  ASSERT_TRUE(reopened.wait_for(1));
  {
    std::lock_guard lock(mutex);
    EXPECT_FALSE(open_error) << open_error.message();
  }
  ASSERT_TRUE(peer.send_to(first_address, "hi"));
  EXPECT_EQ(peer.receive(2s).value_or(""), "hi!");
  loops.stop();
  ASSERT_TRUE(loops.wait());
}

}  // namespace
}  // namespace evloop::test
