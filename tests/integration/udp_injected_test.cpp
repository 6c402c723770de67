// What the kernel does to a UDP sender that loopback never shows, injected: EAGAIN from a full
// send buffer (over loopback a receiver that does not read drops datagrams and the sender never
// waits: every send is delivered or dropped before it returns) and EIO from a segmented send (a
// device that cannot checksum). This binary defines sendmmsg itself; the executable's definition
// is the one every call in the process reaches, and it fails the calls for one chosen fd.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <future>

#include "test_support.hpp"

namespace {
std::atomic<int> g_eagain_fd{-1};   // sendmmsg on this fd says EAGAIN
std::atomic<int> g_gso_eio_fd{-1};  // a segmented sendmmsg on this fd says EIO
std::atomic<int> g_once_fd{-1};     // the next sendmmsg on this fd fails once with g_once_error
std::atomic<int> g_once_error{0};
std::atomic<long> g_injected{0};  // failures injected
}  // namespace

extern "C" int sendmmsg(int fd, struct mmsghdr* msgs, unsigned int count, int flags) {
  using Real = int (*)(int, struct mmsghdr*, unsigned int, int);
  static const Real real = reinterpret_cast<Real>(::dlsym(RTLD_NEXT, "sendmmsg"));
  int expected = fd;
  if (g_once_fd.compare_exchange_strong(expected, -1)) {
    g_injected.fetch_add(1);
    errno = g_once_error.load();
    return -1;
  }
  if (fd == g_eagain_fd.load()) {
    g_injected.fetch_add(1);
    errno = EAGAIN;
    return -1;
  }
  if (fd == g_gso_eio_fd.load() && count > 0 && msgs[0].msg_hdr.msg_controllen > 0) {
    g_injected.fetch_add(1);
    errno = EIO;
    return -1;
  }
  return real(fd, msgs, count, flags);
}

// EPOLL_CTL_ADD of a UDP socket says ENOSPC (as when fs.epoll.max_user_watches is reached).
std::atomic<bool> g_udp_epoll_add_fails{false};

extern "C" int epoll_ctl(int epfd, int op, int fd, struct epoll_event* event) {
  using Real = int (*)(int, int, int, struct epoll_event*);
  static const Real real = reinterpret_cast<Real>(::dlsym(RTLD_NEXT, "epoll_ctl"));
  int type = 0;
  socklen_t len = sizeof type;
  if (op == EPOLL_CTL_ADD && g_udp_epoll_add_fails.load() &&
      ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_DGRAM) {
    g_injected.fetch_add(1);
    errno = ENOSPC;
    return -1;
  }
  return real(epfd, op, fd, event);
}

namespace evloop::test {
namespace {

// A one-loop server with one UDP address whose socket's fd is known once it opened.
struct Injected {
  Injected(DatagramHandlers handlers, UdpOptions options, std::chrono::milliseconds grace = 2000ms)
      : server(make_options(grace), Callbacks{}) {
    auto user_opened = std::move(handlers.opened);
    handlers.opened = [this, user_opened](Udp& udp) {
      fd = udp.native_handle();
      if (user_opened) user_opened(udp);
      opened.add();
    };
    status = server.listen_udp("udp4://127.0.0.1:0", std::move(handlers), options);
    if (status) status = server.start();
    if (status && !opened.wait_for(1)) status = {make_error_code(errc::loop_failed), "not opened"};
  }
  ~Injected() {
    g_eagain_fd = -1;
    g_gso_eio_fd = -1;
    server.stop();
    server.wait();
  }
  static Options make_options(std::chrono::milliseconds grace) {
    Options o;
    o.shutdown_grace = grace;
    return o;
  }
  LoopStats stats() const { return server.stats().at(0); }
  const SocketAddress& address() const { return server.addresses().at(0); }

  Server server;
  Status status;
  EventCounter opened;
  std::atomic<int> fd{-1};
};

// On "go N", sends N datagrams "d0", "d1", ... (numbered across calls) and counts what send_to
// accepted and refused; anything else it only counts (`sunk`).
struct Sender {
  DatagramHandlers handlers() {
    DatagramHandlers h;
    h.datagram = [this](Udp& udp, const SocketAddress& peer, std::string_view bytes) {
      if (!bytes.starts_with("go ")) {
        sunk.fetch_add(1);
        return;
      }
      const int n = std::stoi(std::string(bytes.substr(3)));
      for (int i = 0; i < n; ++i) {
        if (udp.send_to(peer, "d" + std::to_string(next++))) {
          accepted.fetch_add(1);
        } else {
          refused.fetch_add(1);
        }
      }
      calls.add();
    };
    h.closed = [this](Udp&, std::error_code ec) {
      closed_reason = ec;
      closed.add();
    };
    return h;
  }
  int next = 0;  // loop thread only
  std::atomic<int> accepted{0}, refused{0}, sunk{0};
  EventCounter calls, closed;
  std::error_code closed_reason;  // read after `closed`
};

enum class Queued { yes, failed, no_sendmmsg };

// Makes the server's socket "full" (sendmmsg says EAGAIN), has it asked for `n` datagrams, and
// waits until they wait in its queue with write interest armed. no_sendmmsg where the library
// does not send with sendmmsg (nothing to inject into).
Queued queue_behind_eagain(const Injected& s, Sender& sender, UdpPeer& peer, int n) {
  g_eagain_fd = s.fd.load();
  const long calls = sender.calls.value();
  if (!peer.send_to(s.address(), "go " + std::to_string(n)) || !sender.calls.wait_for(calls + 1)) {
    return Queued::failed;
  }
  if (eventually([&] { return s.stats().write_arms >= 1; }, 2s)) return Queued::yes;
  g_eagain_fd = -1;
  return g_injected.load() == 0 ? Queued::no_sendmmsg : Queued::failed;
}

// The peer receives "d<first>" ... "d<first + count - 1>", in order.
void expect_datagrams(UdpPeer& peer, int first, int count) {
  for (int i = first; i < first + count; ++i) {
    ASSERT_EQ(peer.receive().value_or("(none)"), "d" + std::to_string(i));
  }
}

TEST(UdpInjectedTest, AFullKernelBufferQueuesUpToTheBoundThenDropsAndCountsAndDrainsInOrder) {
  Sender sender;
  UdpOptions o;
  o.send_queue_datagrams = 20;
  Injected s(sender.handlers(), o);
  ASSERT_TRUE(s.status) << s.status.message();
  UdpPeer peer;
  const Queued queued = queue_behind_eagain(s, sender, peer, 30);
  if (queued == Queued::no_sendmmsg) GTEST_SKIP() << "no sendmmsg to inject into";
  ASSERT_EQ(queued, Queued::yes);
  EXPECT_EQ(sender.accepted.load(), 20);
  EXPECT_EQ(sender.refused.load(), 10);
  ASSERT_TRUE(peer.send_to(s.address(), "go 5"));  // still full: refused, still reading
  ASSERT_TRUE(sender.calls.wait_for(2));
  EXPECT_EQ(sender.refused.load(), 15);
  EXPECT_FALSE(peer.receive(50ms).has_value());

  g_eagain_fd = -1;  // the kernel has room again: the queue drains, in order
  expect_datagrams(peer, 0, 20);
  EXPECT_FALSE(peer.receive(50ms).has_value());
  ASSERT_TRUE(eventually([&] {
    const LoopStats st = s.stats();
    return st.datagrams_out == 20 && st.poller_changes >= 2;  // write interest armed, disarmed
  }));
  const LoopStats st = s.stats();
  EXPECT_EQ(st.datagram_drops, 15u);
  EXPECT_EQ(st.write_arms, 1u);
  EXPECT_EQ(st.datagram_send_errors, 0u);
}

TEST(UdpInjectedTest, WriteInterestEndsWhenTheFlushBetweenTwoFullBatchesEmptiesTheQueue) {
  // One readiness, readable and writable: its first batch comes back full, the handlers send
  // nothing, and the flush before the next batch sends what waited. Write interest must end
  // there, or every wait returns at once (a UDP socket is nearly always writable): a loop
  // spinning until a handler sends again.
  Sender sender;
  UdpOptions o;
  o.batch = 8;
  Injected s(sender.handlers(), o);
  ASSERT_TRUE(s.status) << s.status.message();
  UdpPeer peer;
  const Queued queued = queue_behind_eagain(s, sender, peer, 1);
  if (queued == Queued::no_sendmmsg) GTEST_SKIP() << "no sendmmsg to inject into";
  ASSERT_EQ(queued, Queued::yes);
  // Hold the loop while more than a batch arrives and the kernel has room again, so that its
  // next wait reports both at once.
  EventCounter held;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  s.server.loop(0).post([&held, released] {
    held.add();
    released.wait_for(10s);
  });
  ASSERT_TRUE(held.wait_for(1));
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(peer.send_to(s.address(), "x" + std::to_string(i)));
  g_eagain_fd = -1;
  release.set_value();
  expect_datagrams(peer, 0, 1);
  ASSERT_TRUE(eventually([&] { return sender.sunk.load() == 12; }));
  // Idle now: over 100 ms the loop may wake for the timer that ends them, not thousands of times.
  EXPECT_LT(waits_during(s.server, 100ms), 20u);
  EXPECT_EQ(s.stats().write_arms, 1u);
}

TEST(UdpInjectedTest, StopWithDatagramsQueuedDropsThemAfterTheGraceAndLeavesNothingBehind) {
  {  // warm up: whatever the process keeps once a first server has run
    Sender warm_sender;
    Injected warm(warm_sender.handlers(), {}, 10ms);
  }
  const FdAndThreadCounts baseline;
  Sender sender;
  {
    Injected s(sender.handlers(), {}, 100ms);
    ASSERT_TRUE(s.status) << s.status.message();
    UdpPeer peer;
    const Queued queued = queue_behind_eagain(s, sender, peer, 10);
    if (queued == Queued::no_sendmmsg) GTEST_SKIP() << "no sendmmsg to inject into";
    ASSERT_EQ(queued, Queued::yes);
    const auto start = std::chrono::steady_clock::now();
    s.server.stop();
    ASSERT_TRUE(s.server.wait());
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    ASSERT_TRUE(sender.closed.wait_for(1));
    EXPECT_EQ(sender.closed_reason, errc::server_stopped);
    EXPECT_EQ(s.stats().datagram_drops, 10u);
    EXPECT_EQ(s.stats().udp_sockets, 0u);
    g_eagain_fd = -1;
  }
  EXPECT_EQ(sender.closed.value(), 1);
  EXPECT_TRUE(counts_return_to(baseline));
}

TEST(UdpInjectedTest, StopSendsWhatIsQueuedWhenTheKernelTakesItWithinTheGrace) {
  Sender sender;
  Injected s(sender.handlers(), {}, 10'000ms);
  ASSERT_TRUE(s.status) << s.status.message();
  UdpPeer peer;
  const Queued queued = queue_behind_eagain(s, sender, peer, 10);
  if (queued == Queued::no_sendmmsg) GTEST_SKIP() << "no sendmmsg to inject into";
  ASSERT_EQ(queued, Queued::yes);
  s.server.stop();
  g_eagain_fd = -1;  // room again while the loop waits out its grace
  expect_datagrams(peer, 0, 10);
  ASSERT_TRUE(sender.closed.wait_for(1));
  EXPECT_EQ(sender.closed_reason, errc::server_stopped);
  ASSERT_TRUE(s.server.wait());
  EXPECT_EQ(s.stats().datagram_drops, 0u);
}

TEST(UdpInjectedTest, GsoTurnsOffForGoodOnEioAndNothingIsLost) {
  Sender sender;
  UdpOptions o;
  o.gso = true;
  std::atomic<bool> gso_at_open{false};
  DatagramHandlers h = sender.handlers();
  h.opened = [&](Udp& udp) { gso_at_open = udp.gso(); };
  Injected s(h, o);
  ASSERT_TRUE(s.status) << s.status.message();
  if (!gso_at_open) GTEST_SKIP() << "no UDP GSO on this system";
  UdpPeer peer;
  const long injected = g_injected.load();
  g_gso_eio_fd = s.fd.load();
  ASSERT_TRUE(peer.send_to(s.address(), "go 10"));
  expect_datagrams(peer, 0, 10);
  // Refused twice: the first refusal alone could have been the socket's pending error.
  EXPECT_EQ(g_injected.load() - injected, 2);
  ASSERT_TRUE(peer.send_to(s.address(), "go 10"));  // GSO stays off: no third EIO
  expect_datagrams(peer, 10, 10);
  EXPECT_EQ(g_injected.load() - injected, 2);
  const LoopStats st = s.stats();
  EXPECT_EQ(st.gso_sends, 0u);
  EXPECT_EQ(st.datagram_send_errors, 0u);
  EXPECT_EQ(st.datagram_drops, 0u);
}

// A socket's pending error (EMSGSIZE: an ICMP "fragmentation needed" on a connected socket) is
// what the next send returns, whatever that send is. Returned by a segmented send, it is reported
// as the socket's error, and GSO stays on: the same send, tried again, goes through.
TEST(UdpInjectedTest, APendingErrorOnASegmentedSendIsReportedAndGsoStaysOn) {
  Sender sender;
  UdpOptions o;
  o.gso = true;
  std::atomic<bool> gso_at_open{false};
  ErrorLog errors;
  DatagramHandlers h = sender.handlers();
  h.opened = [&](Udp& udp) { gso_at_open = udp.gso(); };
  h.error = [&](Udp&, std::error_code ec) { errors.record(ec); };
  Injected s(h, o);
  ASSERT_TRUE(s.status) << s.status.message();
  if (!gso_at_open) GTEST_SKIP() << "no UDP GSO on this system";
  UdpPeer peer;
  const long injected = g_injected.load();
  g_once_error = EMSGSIZE;
  g_once_fd = s.fd.load();
  ASSERT_TRUE(peer.send_to(s.address(), "go 10"));
  expect_datagrams(peer, 0, 10);
  EXPECT_EQ(g_injected.load() - injected, 1);
  ASSERT_TRUE(errors.wait_for(1));
  EXPECT_EQ(errors.errors(),
            std::vector<std::error_code>{std::error_code(EMSGSIZE, std::system_category())});
  ASSERT_TRUE(peer.send_to(s.address(), "go 10"));
  expect_datagrams(peer, 10, 10);
  // Counted just after the send that delivered them.
  EXPECT_TRUE(eventually([&] { return s.stats().gso_sends == 2; }))
      << "GSO went off: " << s.stats().gso_sends << " segmented sends";
  const LoopStats st = s.stats();
  EXPECT_EQ(st.datagram_send_errors, 0u);
  EXPECT_EQ(st.datagram_drops, 0u);
}

// A server's UDP socket the poller will not take fails Server::start() with a message that says
// which address and why, and leaves no socket open, as a TCP listener's does.
TEST(UdpInjectedTest, ASocketThePollerRefusesFailsStartClearly) {
  {
    LoopGroup probe;
    ASSERT_TRUE(probe.start());
    const std::string backend = probe.backend();
    probe.stop();
    ASSERT_TRUE(probe.wait());
    if (backend != "epoll") GTEST_SKIP() << "injects into epoll_ctl; the backend is " << backend;
  }
  const int fds_before = count_open_fds();
  const long injected_before = g_injected.load();
  g_udp_epoll_add_fails = true;
  Status status;
  {
    Server server(Options{}, Callbacks{});
    ASSERT_TRUE(server.listen_udp("udp4://127.0.0.1:0", DatagramHandlers{}));
    status = server.start();
  }
  g_udp_epoll_add_fails = false;
  EXPECT_EQ(g_injected.load(), injected_before + 1);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.code(), std::error_code(ENOSPC, std::system_category()));
  EXPECT_NE(status.message().find("listen udp4://127.0.0.1:0"), std::string::npos)
      << status.message();
  EXPECT_NE(status.message().find("epoll"), std::string::npos) << status.message();
  EXPECT_EQ(count_open_fds(), fds_before);
}

}  // namespace
}  // namespace evloop::test
