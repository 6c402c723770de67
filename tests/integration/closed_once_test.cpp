// `closed` fires exactly once for every `opened`, on every path.
#include <gtest/gtest.h>

#include <future>
#include <map>
#include <mutex>
#include <thread>

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

}  // namespace
}  // namespace evloop::test
