// `closed` fires exactly once for every `opened`, on every path.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace evloop::test {
namespace {

// Counts opened/closed per connection id and keeps each close's error.
struct Ledger {
  std::mutex mutex;
  std::map<std::uint64_t, int> opened, closed;
  std::map<std::uint64_t, std::error_code> errors;
  EventCounter opens, closes;

  Callbacks callbacks(std::function<std::size_t(Conn&, std::string_view)> data = nullptr) {
    Callbacks cb;
    cb.opened = [this](Conn& c) {
      {
        std::lock_guard lock(mutex);
        ++opened[c.id()];
      }
      opens.add();
    };
    cb.data = data ? std::move(data) : [](Conn& c, std::string_view b) {
      c.write(b);
      return b.size();
    };
    cb.closed = [this](Conn& c, std::error_code ec) {
      {
        std::lock_guard lock(mutex);
        ++closed[c.id()];
        errors[c.id()] = ec;
      }
      closes.add();
    };
    return cb;
  }
  void expect_each_closed_once() {
    std::lock_guard lock(mutex);
    EXPECT_EQ(opened.size(), closed.size());
    for (auto& [id, n] : opened) {
      EXPECT_EQ(n, 1) << id;
      EXPECT_EQ(closed[id], 1) << "connection " << id << " closed " << closed[id] << " times";
    }
  }
  std::error_code only_error() {
    std::lock_guard lock(mutex);
    EXPECT_EQ(errors.size(), 1u);
    return errors.empty() ? std::error_code{} : errors.begin()->second;
  }
};

TEST(ClosedOnceTest, PeerCloseReportsNoError) {
  Ledger ledger;
  RunningServer s(loopback_options(), ledger.callbacks());
  ASSERT_TRUE(s.status);
  {
    Client c(s.address());
    ASSERT_TRUE(c.send_all("x"));
    ASSERT_EQ(c.read_exactly(1), "x");
  }
  ASSERT_TRUE(ledger.closes.wait_for(1));
  EXPECT_FALSE(ledger.only_error());
  s.server.stop();
  s.server.wait();
  ledger.expect_each_closed_once();
}

TEST(ClosedOnceTest, PeerResetReportsConnectionReset) {
  Ledger ledger;
  RunningServer s(loopback_options(), ledger.callbacks());
  ASSERT_TRUE(s.status);
  Client c(s.address());
  ASSERT_TRUE(c.send_all("x"));
  ASSERT_EQ(c.read_exactly(1), "x");
  c.reset();
  ASSERT_TRUE(ledger.closes.wait_for(1));
  EXPECT_EQ(ledger.only_error(), std::errc::connection_reset);
  s.server.stop();
  s.server.wait();
  ledger.expect_each_closed_once();
}

// The connection completes its handshake and resets while it waits in the backlog (the loop is
// held busy, so nothing accepts it): accept still hands it over, and it is opened, with its reset
// reported, on every backend. (io_uring asks getpeername for the address, which then has none.)
TEST(ClosedOnceTest, APeerThatResetsBeforeItIsAcceptedIsOpenedAndReportsTheReset) {
  Ledger ledger;
  RunningServer s(loopback_options(), ledger.callbacks());
  ASSERT_TRUE(s.status);
  std::promise<void> release;
  EventCounter holding;
  ASSERT_TRUE(s.server.loop(0).post([&holding, until = release.get_future().share()] {
    holding.add();
    until.wait_for(kWait);
  }));
  ASSERT_TRUE(holding.wait_for(1));
  {
    Client c(s.address());  // connect() returns once the kernel has it in the backlog
    ASSERT_TRUE(c.connected());
    c.reset();
  }
  release.set_value();
  ASSERT_TRUE(ledger.closes.wait_for(1));
  EXPECT_EQ(ledger.only_error(), std::errc::connection_reset);
  EXPECT_EQ(total_stats(s.server).accepts, 1u);
  s.server.stop();
  s.server.wait();
  ledger.expect_each_closed_once();
}

TEST(ClosedOnceTest, UserCloseAndAbortReportNoError) {
  Ledger ledger;
  RunningServer s(loopback_options(), ledger.callbacks([](Conn& c, std::string_view b) {
    if (b == "close") {
      c.write("bye");
      c.close();
      c.close();  // twice is harmless
    } else {
      c.write("lost");
      c.abort();  // output discarded
    }
    return b.size();
  }));
  ASSERT_TRUE(s.status);
  Client a(s.address()), b(s.address());
  ASSERT_TRUE(a.send_all("close"));
  ASSERT_TRUE(b.send_all("abort"));
  bool eof = false;
  EXPECT_EQ(a.read_to_eof(&eof), "bye");
  EXPECT_TRUE(eof);
  EXPECT_EQ(b.read_to_eof(), "");
  ASSERT_TRUE(ledger.closes.wait_for(2));
  s.server.stop();
  s.server.wait();
  ledger.expect_each_closed_once();
  for (auto& [id, ec] : ledger.errors) EXPECT_FALSE(ec) << ec.message();
}

TEST(ClosedOnceTest, StopUnderLoadClosesEveryConnectionOnce) {
  Ledger ledger;
  Options o = loopback_options(2);
  o.reuseport = true;
  RunningServer s(o, ledger.callbacks());
  ASSERT_TRUE(s.status);
  constexpr int kClients = 64;
  std::vector<Client> clients;
  for (int i = 0; i < kClients; ++i) clients.emplace_back(s.address());
  ASSERT_TRUE(ledger.opens.wait_for(kClients));
  // Two threads keep every connection busy while the server stops.
  std::atomic<bool> run{true};
  std::vector<std::thread> load;
  for (int t = 0; t < 2; ++t) {
    load.emplace_back([&, t] {
      const std::string msg = pattern(4096, static_cast<std::uint32_t>(t));
      while (run) {
        for (int i = t; i < kClients; i += 2) {
          if (!clients[static_cast<std::size_t>(i)].send_all(msg)) continue;
          clients[static_cast<std::size_t>(i)].read_exactly(msg.size());
        }
      }
    });
  }
  ASSERT_TRUE(eventually([&] { return total_stats(s.server).bytes_out > (4u << 20); }));
  s.server.stop();
  s.server.wait();
  run = false;  // the server closed every connection: the load threads' reads now end at once
  for (auto& t : load) t.join();
  EXPECT_EQ(ledger.closes.value(), kClients);
  ledger.expect_each_closed_once();
  std::lock_guard lock(ledger.mutex);
  for (auto& [id, ec] : ledger.errors) EXPECT_EQ(ec, errc::server_stopped) << ec.message();
}

// A connection that opens late in a long loop iteration (here a task that takes 20 ms, as a
// busy batch of handlers can) with output already queued (an adoption's, or bytes written while
// a dial connects) and a send timeout shorter than that: the timeout was checked as the
// connection opened, against the iteration's clock, read before the task ran. It found the output
// "stuck" for 20 ms, reset the connection and fired `closed` (send_timeout) before `opened`, then
// `opened` on the closed connection (found by the conn stress test, EVLOOP_STRESS_SEED=857755782
// on io_uring). A timeout cannot be due on a connection that is just opening.
TEST(ClosedOnceTest, ASendTimeoutShorterThanALongIterationNeverEndsAConnectionBeforeItOpens) {
  LoopGroup group;
  ASSERT_TRUE(group.start());
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  timeval tv{static_cast<time_t>(kWait.count() / 1000), 0};
  ::setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::mutex mutex;
  std::vector<std::string> events;
  EventCounter opened, closed;
  Handlers h;
  h.opened = [&](Conn& c) {
    {
      std::lock_guard lock(mutex);
      events.push_back(c.state() == ConnState::open ? "opened" : "opened, not open");
    }
    opened.add();
  };
  h.closed = [&](Conn&, std::error_code ec) {
    {
      std::lock_guard lock(mutex);
      events.push_back("closed: " + (ec ? ec.message() : std::string("clean")));
    }
    closed.add();
  };
  AdoptOptions o;
  o.output = "queued before the open";
  o.send_timeout = 1ms;
  Loop& loop = group.loop(0);
  ASSERT_TRUE(loop.post([&loop, fd = sv[0], h, o] {
    // Not a wait for anything: the stimulus, a task that keeps the loop for 20 ms.
    const auto until = std::chrono::steady_clock::now() + 20ms;
    while (std::chrono::steady_clock::now() < until) {
    }
    loop.adopt(fd, h, o);
  }));
  ASSERT_TRUE(opened.wait_for(1));
  std::string got(o.output.size(), '\0');
  EXPECT_EQ(::recv(sv[1], got.data(), got.size(), MSG_WAITALL), static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, o.output);
  group.stop();
  ASSERT_TRUE(group.wait());
  ASSERT_TRUE(closed.wait_for(1));
  ::close(sv[1]);
  std::lock_guard lock(mutex);
  EXPECT_EQ(events, (std::vector<std::string>{"opened", "closed: server stopped"}));
}

}  // namespace
}  // namespace evloop::test
