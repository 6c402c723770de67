// EMFILE storm: 5,000 connects against a process limit of 256 fds (a tenth of them reset while
// they wait). While the server cannot accept, its loops neither spin nor stop, the connections it
// already has keep being served, and every waiting connection is served once fds free up.
//
// The client sockets are made before the limit drops and moved above fd 256, so they take none of
// the fds under the limit: the server has what remains of the 256 (about 200) for its connections.
// The limit drops before the server starts, as a ulimit does: io_uring's multishot accept reads
// the limit when it is armed (the kernel takes RLIMIT_NOFILE when the request is submitted).
// Scale: 5,000 connects in the normal build, 1,500 under a sanitizer.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "fault_support.hpp"

namespace evloop::fault {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kFdLimit = 256;
constexpr int kExisting = 16;

struct StormPeer {
  int fd = -1;
  bool connected = false;
  bool served = false;
};

// Every tenth storm client gives up: it resets as soon as it is connected, while it still waits
// in the backlog (or just after being accepted).
bool quits(std::size_t index) { return index % 10 == 9; }

// Param: reuse-port (each loop has its own listener, both run out of fds) or one listener on loop
// 0 handing connections to both loops.
class EmfileStormTest : public AccountedTest, public ::testing::WithParamInterface<bool> {};

TEST_P(EmfileStormTest, FiveThousandConnectsAgainstA256FdLimit) {
  const int kStorm = scaled(5000, 1500);
  ASSERT_TRUE(raise_fd_limit(static_cast<rlim_t>(kStorm + kFdLimit + 512)));
  std::vector<StormPeer> peers(static_cast<std::size_t>(kStorm));
  for (auto& p : peers) {
    p.fd = make_socket(AF_INET, kFdLimit);
    ASSERT_GE(p.fd, kFdLimit) << std::strerror(errno);
  }
  ASSERT_TRUE(set_fd_limit(kFdLimit));
  Options o = test::loopback_options(2);
  o.reuseport = GetParam();
  o.listen = {"tcp4://127.0.0.1:0?backlog=4096"};  // the storm waits in the backlog
  EventCounter closes;
  Callbacks cb;
  cb.data = [](Conn& c, std::string_view b) {
    c.write(b);
    return b.size();
  };
  cb.closed = [&](Conn&, std::error_code) { closes.add(); };
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);

  std::vector<Client> existing;
  for (int i = 0; i < kExisting; ++i) {
    existing.emplace_back(s.address());
    ASSERT_TRUE(existing.back().send_all("hello"));
    ASSERT_EQ(existing.back().read_exactly(5), "hello");
  }
  auto serve_existing = [&](const std::string& msg) {
    for (auto& c : existing) {
      if (!c.send_all(msg) || c.read_exactly(msg.size()) != msg) return false;
    }
    return true;
  };

  PollSet sockets;
  // The storm: every socket connects at once and sends its ping when connected.
  for (std::size_t i = 0; i < peers.size(); ++i) {
    ASSERT_TRUE(begin_connect(peers[i].fd, s.address())) << std::strerror(errno);
    sockets.add(peers[i].fd, POLLOUT, i);
  }
  int served = 0, quitters = 0;
  int expected_served = 0;
  for (std::size_t i = 0; i < peers.size(); ++i) expected_served += quits(i) ? 0 : 1;
  auto step = [&](bool release, int timeout_ms) {
    for (const PollSet::Ready& ev : sockets.wait(timeout_ms)) {
      StormPeer& p = peers[ev.token];
      if (!p.connected) {
        ASSERT_EQ(socket_error(p.fd), 0) << "connect failed";
        p.connected = true;
        if (quits(ev.token)) {
          sockets.remove(p.fd);
          reset_close(p.fd);
          p.fd = -1;
          ++quitters;
          continue;
        }
        ASSERT_EQ(::send(p.fd, "ping", 4, test::kSendFlags), 4);
        sockets.modify(p.fd, POLLIN, ev.token);
      } else if (release) {
        char buf[8];
        const ssize_t n = ::recv(p.fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EAGAIN) continue;
        ASSERT_EQ(n, 4) << "storm connection " << ev.token
                        << " not served: " << (n < 0 ? std::strerror(errno) : "EOF");
        ASSERT_EQ(std::string(buf, 4), "ping");
        sockets.remove(p.fd);
        ::close(p.fd);  // frees the server's fd for the next connection in the backlog
        p.fd = -1;
        p.served = true;
        ++served;
      }
    }
  };

  // Hold: nobody leaves, so the server fills its fds and hits EMFILE on both listeners.
  ASSERT_TRUE(test::eventually([&] {
    step(false, 5);
    return test::total_stats(s.server).accept_errors >= (GetParam() ? 2u : 1u);
  })) << "never ran out of fds";
  // The limit binds: at most ~256 connections open, most of the storm still waiting. (`opened`
  // counts the quitters the server accepted and closed meanwhile too.)
  const LoopStats at_limit = test::total_stats(s.server);
  const auto opened_at_limit = at_limit.open_connections;
  EXPECT_LT(at_limit.open_connections, static_cast<std::uint64_t>(kFdLimit));
  EXPECT_LT(at_limit.opened, static_cast<std::uint64_t>(kStorm / 2));
  // Out of fds, the loops wait (accept retried on a back-off timer), they do not spin: measured
  // over an interval, by design. A spinning level-triggered listener makes ~10^5 waits here.
  const LoopStats before = test::total_stats(s.server);
  std::this_thread::sleep_for(300ms);
  const LoopStats after = test::total_stats(s.server);
  const std::uint64_t waits_out_of_fds = after.waits - before.waits;
  EXPECT_LT(waits_out_of_fds, 100u) << "the loops spin while out of fds";
  // The connections the server already had are still served.
  EXPECT_TRUE(serve_existing("still served while out of fds"));

  // Release: clients that got their echo leave, and the backlog drains through the freed fds.
  const auto deadline = Clock::now() + (kSanitized ? 75s : 60s);
  while (served < expected_served && Clock::now() < deadline && !HasFatalFailure()) {
    step(true, 100);
  }
  EXPECT_EQ(served, expected_served) << "connections never served after fds freed up";
  EXPECT_EQ(quitters, kStorm - expected_served);
  EXPECT_TRUE(serve_existing("and after the storm"));
  ASSERT_TRUE(closes.wait_for(served));
  for (auto& p : peers) {
    if (p.fd >= 0) ::close(p.fd);
  }
  // The quitters the server accepted (the kernel may drop some from the backlog) closed too:
  // after the stop, `closed` has fired once for each connection opened.
  s.server.stop();
  s.server.wait();
  const LoopStats end = test::total_stats(s.server);
  EXPECT_GE(end.opened, static_cast<std::uint64_t>(expected_served + kExisting));
  EXPECT_LE(end.opened, static_cast<std::uint64_t>(kStorm + kExisting));
  EXPECT_EQ(closes.value(), static_cast<long>(end.opened));
  EXPECT_GT(end.accept_errors, 0u);
  std::printf(
      "emfile storm: %d connects, %llu open at the limit, %llu accept errors, %llu "
      "waits in 300 ms out of fds\n",
      kStorm, static_cast<unsigned long long>(opened_at_limit),
      static_cast<unsigned long long>(end.accept_errors),
      static_cast<unsigned long long>(waits_out_of_fds));
}

INSTANTIATE_TEST_SUITE_P(Listeners, EmfileStormTest, ::testing::Values(true, false),
                         [](const auto& param_info) {
                           return std::string(param_info.param ? "ReusePort" : "HandOff");
                         });

class EmfileStopTest : public AccountedTest {};

// Stopping while the listeners are paused for lack of fds (a back-off timer armed, connections
// waiting in the backlog) closes everything and leaves nothing behind.
TEST_F(EmfileStopTest, StopWhileOutOfFdsClosesEverythingOnce) {
  constexpr int kClients = 500;
  ASSERT_TRUE(raise_fd_limit(static_cast<rlim_t>(kClients + kFdLimit + 512)));
  std::vector<int> fds;
  for (int i = 0; i < kClients; ++i) {
    fds.push_back(make_socket(AF_INET, kFdLimit));
    ASSERT_GE(fds.back(), kFdLimit);
  }
  ASSERT_TRUE(set_fd_limit(kFdLimit));  // before the server starts: see the file's comment
  EventCounter opened, closed;
  Callbacks cb;
  cb.opened = [&](Conn&) { opened.add(); };
  cb.closed = [&](Conn&, std::error_code) { closed.add(); };
  Options o = test::loopback_options(2);  // tcp4
  o.reuseport = true;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  for (int fd : fds) ASSERT_TRUE(begin_connect(fd, s.address()));
  ASSERT_TRUE(test::eventually([&] { return test::total_stats(s.server).accept_errors >= 1; }));
  const auto start = Clock::now();
  s.server.stop();
  s.server.wait();
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_GT(opened.value(), 0);
  EXPECT_EQ(closed.value(), opened.value());
  EXPECT_EQ(test::total_stats(s.server).open_connections, 0u);
  for (int fd : fds) ::close(fd);
}

}  // namespace
}  // namespace evloop::fault
