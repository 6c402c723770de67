// Half-close both ways: a client that shuts down its write side still gets its whole reply, and a
// server that writes a large reply and closes delivers every byte before its FIN. (The contract,
// Callbacks::data: after the peer's EOF, reading stops and the connection closes once pending
// output is sent; the reply is written from `data`, or from `drained` by a paced producer, whose
// pause keeps the EOF unread until it has written everything.)
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>

#include "fault_support.hpp"

namespace evloop::fault {
namespace {

constexpr std::size_t kReply = 8u << 20;

struct Transport {
  const char* name;
  bool unix_socket;
};
void PrintTo(const Transport& t, std::ostream* os) { *os << t.name; }

class HalfCloseTest : public AccountedTest, public ::testing::WithParamInterface<Transport> {
 protected:
  Options options(unsigned loops) const {
    Options o = test::loopback_options(loops);
    if (GetParam().unix_socket) o.listen = {"unix://" + test::temp_socket_path("halfclose")};
    o.socket_send_buffer = 4096;
    // The replies are MiBs through 4 KiB buffers, still pending when the server closes: the close
    // timeout (a deadline, 10 s by default) is not what these tests measure, and a sanitizer
    // build on a loaded host must not run into it.
    o.close_timeout = std::chrono::seconds(60);
    return o;
  }
};

// Closed-callback bookkeeping shared by the tests below.
struct Closes {
  std::mutex mutex;
  std::vector<std::error_code> errors;
  EventCounter count;
  void record(std::error_code ec) {
    {
      std::lock_guard lock(mutex);
      errors.push_back(ec);
    }
    count.add();
  }
  void expect_clean() {
    std::lock_guard lock(mutex);
    for (const auto& ec : errors) EXPECT_FALSE(ec) << ec.message();
  }
};

// Clients send "go\n", shut down their write side at once, then read: each gets all 8 MiB and
// then EOF. The reply is written whole from `data`.
TEST_P(HalfCloseTest, ClientShutsDownWriteAndStillReceivesTheFullReply) {
  const std::string reply = test::pattern(kReply, 21);
  Closes closes;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view b) {
    if (b.find('\n') == std::string_view::npos) return std::size_t{0};
    c.write(reply);
    return b.size();
  };
  cb.closed = [&](Conn&, std::error_code ec) { closes.record(ec); };
  RunningServer s(options(2), cb);
  ASSERT_TRUE(s.status) << s.status.message();
  const int kClients = scaled(8, 4);
  std::vector<std::thread> threads;
  std::atomic<int> complete{0};
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&] {
      Client c(s.address(), 4096);
      if (!c.send_all("go\n")) return;
      c.shutdown_write();
      bool eof = false;
      const std::string got = c.read_to_eof(&eof);
      if (eof && got == reply) ++complete;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(complete.load(), kClients);
  ASSERT_TRUE(closes.count.wait_for(kClients));
  closes.expect_clean();
}

// The same, but the reply is produced in 64 KiB pieces paced by `drained` (the bounded-memory
// way): the peer's FIN must not cut the reply short.
TEST_P(HalfCloseTest, PacedReplyCompletesAfterTheClientShutsDownWrite) {
  const std::string reply = test::pattern(kReply, 22);
  constexpr std::size_t kChunk = 64 * 1024;
  Closes closes;
  Options o = options(1);
  Callbacks cb;
  auto pump = [&](Conn& c) {
    auto& produced = *std::any_cast<std::shared_ptr<std::size_t>&>(c.context());
    while (produced < reply.size() && c.output_pending() <= o.output_high_water) {
      const std::size_t n = std::min(kChunk, reply.size() - produced);
      c.write(reply.data() + produced, n);
      produced += n;
    }
  };
  cb.opened = [&](Conn& c) { c.context() = std::make_shared<std::size_t>(0); };
  cb.data = [&](Conn& c, std::string_view b) {
    if (b.find('\n') == std::string_view::npos) return std::size_t{0};
    pump(c);
    return b.size();
  };
  cb.low_water = pump;
  cb.closed = [&](Conn&, std::error_code ec) { closes.record(ec); };
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status) << s.status.message();
  Client c(s.address(), 4096);
  ASSERT_TRUE(c.send_all("go\n"));
  c.shutdown_write();
  bool eof = false;
  const std::string got = c.read_to_eof(&eof);
  EXPECT_TRUE(eof);
  EXPECT_EQ(got.size(), reply.size()) << "the reply was cut short by the client's half-close";
  EXPECT_TRUE(got == reply);
  ASSERT_TRUE(closes.count.wait_for(1));
  closes.expect_clean();
}

// The server writes a 16 MiB reply and closes at once, while the clients are not reading yet.
// Each client then reads every byte, in order, and only then the FIN.
TEST_P(HalfCloseTest, ServerWritesLargeReplyAndClosesPeerGetsEveryByteBeforeFin) {
  const std::string reply = test::pattern(2 * kReply, 23);
  Closes closes;
  EventCounter answered;
  Options o = options(2);
  o.output_limit = 4 * kReply;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view b) {
    c.write(reply);
    c.close();
    answered.add();
    return b.size();
  };
  cb.closed = [&](Conn&, std::error_code ec) { closes.record(ec); };
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status) << s.status.message();
  const int kClients = scaled(6, 3);
  std::vector<Client> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(s.address(), 4096);
    ASSERT_TRUE(clients.back().send_all("x"));
  }
  ASSERT_TRUE(answered.wait_for(kClients));
  // Nothing has been read: most of each reply is pending behind the close.
  EXPECT_GT(test::total_stats(s.server).output_buffered, reply.size());
  std::vector<std::thread> readers;
  std::atomic<int> complete{0};
  for (auto& c : clients) {
    readers.emplace_back([&] {
      bool eof = false;
      const std::string got = c.read_to_eof(&eof);
      if (eof && got == reply) ++complete;
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(complete.load(), kClients);
  ASSERT_TRUE(closes.count.wait_for(kClients));
  closes.expect_clean();
  EXPECT_EQ(test::total_stats(s.server).output_buffered, 0u);
}

INSTANTIATE_TEST_SUITE_P(Transports, HalfCloseTest,
                         ::testing::Values(Transport{"Tcp4", false}, Transport{"Unix", true}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

}  // namespace
}  // namespace evloop::fault
