// Peers that reset (RST) while the server has a large write pending: `closed` once with an error
// code, the pending output freed, no crash, and the server keeps serving.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "fault_support.hpp"

namespace evloop::fault {
namespace {

using Clock = std::chrono::steady_clock;

struct ErrorLedger {
  std::mutex mutex;
  std::map<std::uint64_t, int> closed;
  std::vector<std::error_code> errors;
  EventCounter count;
  Callbacks wrap(Callbacks cb) {
    cb.closed = [this](Conn& c, std::error_code ec) {
      {
        std::lock_guard lock(mutex);
        ++closed[c.id()];
        errors.push_back(ec);
      }
      count.add();
    };
    return cb;
  }
  void expect_reset_errors_once_each() {
    std::lock_guard lock(mutex);
    for (const auto& [id, n] : closed) EXPECT_EQ(n, 1) << "connection " << id;
    for (const auto& ec : errors) {
      EXPECT_TRUE(ec == std::errc::connection_reset || ec == std::errc::broken_pipe)
          << "closed with '" << ec.message() << "', expected a reset";
    }
  }
};

class ResetTest : public AccountedTest {};

// Many clients on 2 loops: each gets a 4 MiB write from `opened` (most of it pending behind tiny
// socket buffers), reads a random part of it, checks that part, then resets.
TEST_F(ResetTest, ResetDuringALargePendingWriteClosesWithAnErrorAndFreesTheOutput) {
  const std::string payload = test::pattern(4u << 20, 31);
  const int kClients = scaled(32, 12);
  ErrorLedger ledger;
  EventCounter opened;
  Options o = test::loopback_options(2);
  o.socket_send_buffer = 4096;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    c.write(payload);
    opened.add();
  };
  cb.data = [](Conn& c, std::string_view b) {
    c.write(b);
    return b.size();
  };
  RunningServer s(o, ledger.wrap(cb));
  ASSERT_TRUE(s.status);
  std::mt19937 rng(std::random_device{}());
  std::vector<Client> clients;
  for (int i = 0; i < kClients; ++i) clients.emplace_back(s.address(), 4096);
  ASSERT_TRUE(opened.wait_for(kClients));
  EXPECT_GT(test::total_stats(s.server).output_buffered, std::uint64_t(kClients) * (2u << 20));
  for (auto& c : clients) {
    const std::size_t n = std::uniform_int_distribution<std::size_t>(0, 1u << 20)(rng);
    const std::string got = c.read_exactly(n);
    ASSERT_EQ(got.size(), n);
    ASSERT_TRUE(got == std::string_view(payload).substr(0, n)) << "prefix differs";
    c.reset();
  }
  ASSERT_TRUE(ledger.count.wait_for(kClients)) << ledger.count.value() << " closed";
  ledger.expect_reset_errors_once_each();
  const LoopStats st = test::total_stats(s.server);
  EXPECT_EQ(st.output_buffered, 0u) << "output of reset connections still held";
  EXPECT_EQ(st.open_connections, 0u);
  Client next(s.address());  // the server goes on
  EXPECT_EQ(next.read_exactly(4), payload.substr(0, 4));
}

// A reset while a close() waits for its pending output ends the wait with the reset's error at
// once, not with close_timeout much later.
TEST_F(ResetTest, ResetWhileClosingReportsTheResetNotATimeout) {
  ErrorLedger ledger;
  EventCounter answered;
  Options o = test::loopback_options();
  o.socket_send_buffer = 4096;
  o.close_timeout = 60s;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view b) {
    c.write(test::pattern(8u << 20, 32));
    c.close();
    answered.add();
    return b.size();
  };
  RunningServer s(o, ledger.wrap(cb));
  ASSERT_TRUE(s.status);
  Client c(s.address(), 4096);
  ASSERT_TRUE(c.send_all("x"));
  ASSERT_TRUE(answered.wait_for(1));
  const auto start = Clock::now();
  c.reset();
  ASSERT_TRUE(ledger.count.wait_for(1, 5s)) << "closing connection not closed by the reset";
  EXPECT_LT(Clock::now() - start, 5s);
  ledger.expect_reset_errors_once_each();
  EXPECT_EQ(test::total_stats(s.server).output_buffered, 0u);
}

// A reset while reading is paused (output above the mark) and a partial frame is held: both the
// output and the unconsumed input are freed.
TEST_F(ResetTest, ResetWhilePausedWithUnconsumedInputFreesBoth) {
  ErrorLedger ledger;
  EventCounter opened, partial;
  Options o = test::loopback_options();
  o.socket_send_buffer = 4096;
  o.output_high_water = 64 * 1024;
  o.output_low_water = 16 * 1024;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view b) {
    partial.add();
    const std::size_t end = b.rfind('\n');
    if (end == std::string_view::npos) return std::size_t{0};  // keep the partial line
    c.write(test::pattern(4u << 20, 33));  // a whole line: answer with a lot
    return end + 1;                         // and keep the partial one after it
  };
  RunningServer s(o, ledger.wrap(cb));
  ASSERT_TRUE(s.status);
  Client c(s.address(), 4096);
  ASSERT_TRUE(c.send_all("a partial line without its end"));
  ASSERT_TRUE(partial.wait_for(1));  // (the tail is stored just after the callback returns)
  EXPECT_TRUE(test::eventually([&] { return test::total_stats(s.server).input_buffered > 0; }));
  ASSERT_TRUE(c.send_all("... now it ends\nand another partial"));
  ASSERT_TRUE(test::eventually([&] {
    const LoopStats st = test::total_stats(s.server);
    return st.read_pauses >= 1 && st.output_buffered > 0 && st.input_buffered > 0;
  }));
  c.reset();
  ASSERT_TRUE(ledger.count.wait_for(1));
  ledger.expect_reset_errors_once_each();
  const LoopStats st = test::total_stats(s.server);
  EXPECT_EQ(st.output_buffered, 0u);
  EXPECT_EQ(st.input_buffered, 0u);
  Client next(s.address());  // the server goes on
  ASSERT_TRUE(next.send_all("x"));
  EXPECT_TRUE(partial.wait_for(3));
}

}  // namespace
}  // namespace evloop::fault
