// The redis-server binary under clients that pipeline far more replies than a connection may
// hold (issue 16): replies are paced by back-pressure, so a client that reads gets them all, one
// that does not read is held at bounded server memory, and the other clients on the loop are
// served meanwhile. Each test prints its figures (server RSS before, at peak, after; latency).
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "process_memory.hpp"
#include "server_test.hpp"

namespace {

using namespace example_test;
using Clock = std::chrono::steady_clock;

// evloop's default high-water mark, which the server keeps.
constexpr std::size_t kHighWater = 1024 * 1024;
constexpr std::size_t kValueSize = 64 * 1024;
// Reading a gigabyte through a loaded machine: a longer bound than kTimeout.
constexpr milliseconds kBulkTimeout{80'000};

// A value whose bytes differ from position to position, so that a misplaced byte shows.
std::string pattern_value(std::size_t size) {
  std::string v(size, '\0');
  for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return v;
}

std::string command(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

std::string repeated(const std::string& unit, std::size_t count) {
  std::string out;
  out.reserve(unit.size() * count);
  for (std::size_t i = 0; i < count; ++i) out += unit;
  return out;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

class RedisPacing : public ServerTest {
 protected:
  RedisPacing() : ServerTest(REDIS_SERVER_BIN) {}

  void SetUp() override {
    start({});
    value_ = pattern_value(kValueSize);
    reply_ = "$" + std::to_string(kValueSize) + "\r\n" + value_ + "\r\n";
    const int fd = connect_loopback(port_);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, command({"SET", "k", value_}) + command({"SET", "small", "v"})));
    ASSERT_EQ(read_until_count(fd, "+OK\r\n", 2, kTimeout), "+OK\r\n+OK\r\n");
    // 16 MiB received and 1,024 small round trips before the baseline, so that memory a loop
    // keeps whatever its connections do is resident already: on io_uring, the provided receive
    // buffers, paged in as they are first used; a receive of 16 KiB or more takes the next of
    // 64 large buffers (4 MiB), a smaller one the next of 512 small ones (8 MiB), in turn.
    ASSERT_TRUE(send_all(
        fd, command({"SET", "warm-up", std::string(16 << 20, 'w')}) + command({"DEL", "warm-up"})));
    ASSERT_EQ(read_until_count(fd, "\r\n", 2, kTimeout), "+OK\r\n:1\r\n");
    ::close(fd);
    ASSERT_EQ(round_trips(milliseconds(0), 1024).size(), 1024u);
    input_before_ = info_field("total_net_input_bytes");
    before_ = memory_of(child_->pid());
    peak_was_reset_ = reset_peak(child_->pid());
  }

  // A field of INFO, as a number (-1 if absent).
  long long info_field(const std::string& name) {
    const int fd = connect_loopback(port_);
    if (fd < 0) return -1;
    send_all(fd, "INFO\r\n");
    // "$<length>\r\n<text>\r\n"
    std::string got = read_until_count(fd, "\r\n", 1, kTimeout);
    const std::size_t head = got.find("\r\n") + 2;
    const std::size_t total = head + std::stoull(got.substr(1)) + 2;
    if (got.size() < total) got += read_exactly(fd, total - got.size(), kTimeout);
    ::close(fd);
    const std::size_t at = got.find(name + ":");
    return at == std::string::npos ? -1 : std::stoll(got.substr(at + name.size() + 1));
  }

  // Round trips of GET small on new and kept connections for `duration` (at least `min_count`),
  // in milliseconds each; empty if one failed.
  std::vector<double> round_trips(milliseconds duration, int min_count) {
    std::vector<double> ms;
    const int fd = connect_loopback(port_);
    if (fd < 0) return ms;
    const auto until = Clock::now() + duration;
    for (int i = 0; Clock::now() < until || i < min_count; ++i) {
      const auto t0 = Clock::now();
      if (!send_all(fd, "GET small\r\n") ||
          read_until_count(fd, "\r\n", 2, kTimeout) != "$1\r\nv\r\n") {
        ms.clear();
        break;
      }
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    ::close(fd);
    return ms;
  }

  void print_memory(const char* what, const ProcessMemory& peak, const ProcessMemory& after) {
    std::printf("%s: server RSS %s before, peak %s (+%s%s), %s after the client left (+%s)\n", what,
                mib(before_.rss).c_str(), mib(peak.peak).c_str(),
                mib(peak.peak - std::min(peak.peak, before_.rss)).c_str(),
                peak_was_reset_ ? "" : ", peak since start", mib(after.rss).c_str(),
                mib(after.rss - std::min(after.rss, before_.rss)).c_str());
  }

  std::string value_;
  std::string reply_;           // GET k's reply
  long long input_before_ = 0;  // bytes the server had received when the test began
  ProcessMemory before_;
  bool peak_was_reset_ = false;
};

// Issue 16's case: 2,850 GETs of a 64 KiB value (187 MB of replies), sent at once, then QUIT and
// the client's FIN. Before pacing: no reply, a reset, +494 MB at peak. The commands past the
// first ~16 are read while the output is above the mark, so they wait in the session's backlog
// and run from `low_water`: nothing new arrives to hand them back (the client only reads now).
TEST_F(RedisPacing, PipelinedGetsOfALargeValueAreAllAnsweredByteExact) {
  constexpr std::size_t kGets = 2850;
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  const std::string batch = repeated("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", kGets) + "QUIT\r\n";
  std::thread sender([fd, &batch] {
    send_all(fd, batch);
    ::shutdown(fd, SHUT_WR);
  });
  const std::size_t matched = read_repeated(fd, reply_, kGets, kBulkTimeout);
  bool closed = false;
  const std::string rest = read_until_close(fd, kTimeout, closed);
  sender.join();
  ::close(fd);
  EXPECT_EQ(matched, kGets * reply_.size())
      << "replies that came whole: " << matched / reply_.size();
  EXPECT_EQ(rest, "+OK\r\n");
  EXPECT_TRUE(closed);
  const ProcessMemory peak = memory_of(child_->pid());
  // Whether the server has freed the connection yet: INFO says when it is gone.
  const auto deadline = Clock::now() + kTimeout;
  while (info_field("connected_clients") != 1 && Clock::now() < deadline) {
  }
  const ProcessMemory after = memory_of(child_->pid());
  print_memory("2,850 pipelined GETs of 64 KiB", peak, after);
  if (!kSanitized && peak_was_reset_) {
    EXPECT_LE(peak.peak, before_.rss + 2 * kHighWater + kValueSize + 512 * 1024);
  }
}

// A command of a million (empty) arguments, within every limit, then an idle connection: the
// parser's argument arrays (about 16 bytes per argument each) are freed once it has run. Before,
// each such connection kept about 32 MiB for as long as it stayed open.
TEST_F(RedisPacing, ACommandOfAMillionArgumentsLeavesNoMemoryBehindOnItsIdleConnection) {
  constexpr int kConnections = 4;
  const std::size_t args = kSanitized ? 100'000 : 1'000'000;
  const std::string cmd =
      "*" + std::to_string(args) + "\r\n$6\r\nEXISTS\r\n" + repeated("$0\r\n\r\n", args - 1);
  std::vector<int> fds;
  for (int i = 0; i < kConnections; ++i) {
    const int fd = connect_loopback(port_);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
    ASSERT_TRUE(send_all(fd, cmd));
    ASSERT_EQ(read_until_count(fd, "\r\n", 1, kTimeout), ":0\r\n");
  }
  const ProcessMemory idle = memory_of(child_->pid());  // every connection open and idle
  for (const int fd : fds) ::close(fd);
  std::printf(
      "%d idle connections after a command of %zu arguments each: server RSS %s, %s before\n",
      kConnections, args, mib(idle.rss).c_str(), mib(before_.rss).c_str());
  if (!kSanitized) {
    EXPECT_LE(idle.rss, before_.rss + 16 * 1024 * 1024);
  }
}

// A client that renews the expiry of one large key again and again (SET key v EX n): the store
// holds the key, not a copy of it per renewal. Before, each renewal left a copy in the expiry
// heap until its time came: 800 SETs of a 1 MiB key held 800 MiB for a store of one key (and a
// DEL of the key freed none of it).
TEST_F(RedisPacing, RenewingTheExpiryOfALargeKeyHoldsNoCopyOfItPerRenewal) {
  const std::size_t renewals = kSanitized ? 50 : 300;
  const std::string set = command({"SET", std::string(1 << 20, 'k'), "v", "EX", "1000"});
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  for (std::size_t i = 0; i < renewals; ++i) {
    ASSERT_TRUE(send_all(fd, set));
    ASSERT_EQ(read_until_count(fd, "\r\n", 1, kTimeout), "+OK\r\n") << "renewal " << i;
  }
  ASSERT_TRUE(send_all(fd, "DBSIZE\r\n"));
  EXPECT_EQ(read_until_count(fd, "\r\n", 1, kTimeout), ":3\r\n");  // k, small and the large key
  const ProcessMemory held = memory_of(child_->pid());
  ::close(fd);
  std::printf("%zu renewals of the expiry of a 1 MiB key: server RSS %s, %s before\n", renewals,
              mib(held.rss).c_str(), mib(before_.rss).c_str());
  if (!kSanitized) {
    EXPECT_LE(held.rss, before_.rss + 16 * 1024 * 1024);
  }
}

// A client that pipelines and does not read: the server stops above the high-water mark, with
// bounded memory, while another client on the same (only) loop is served at once; when the
// client reads at last, every reply comes.
TEST_F(RedisPacing, AClientThatDoesNotReadIsHeldAtBoundedMemoryWhileOthersAreServed) {
  const std::size_t gets = kSanitized ? 1000 : 5000;  // 64 / 328 MB of replies
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  const std::string batch = repeated("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", gets);
  std::thread sender([fd, &batch] { send_all(fd, batch); });
  // The server holds the client once its pending output passes the mark (and stays there).
  const auto deadline = Clock::now() + kTimeout;
  long long buffered = 0;
  while ((buffered = info_field("evloop_output_buffered")) <= static_cast<long long>(kHighWater) &&
         Clock::now() < deadline) {
  }
  ASSERT_GT(buffered, static_cast<long long>(kHighWater));
  const long long read_in = info_field("total_net_input_bytes") - input_before_;
  const std::vector<double> ms = round_trips(milliseconds(1000), 200);
  ASSERT_FALSE(ms.empty()) << "the other client was not served";
  const long long still = info_field("evloop_output_buffered");
  const ProcessMemory held = memory_of(child_->pid());
  std::printf(
      "a client that does not read: %lld bytes pending at the server (mark %zu), about %lld of "
      "its %zu command bytes read; another client meanwhile: %zu GETs, p50 %.2f ms, p99 %.2f ms, "
      "max "
      "%.2f ms\n",
      still, kHighWater, read_in, batch.size(), ms.size(), percentile(ms, 0.5),
      percentile(ms, 0.99), percentile(ms, 1.0));
  // Held: the mark, the reply that crossed it, and the other replies gathered with it.
  EXPECT_LE(still, static_cast<long long>(kHighWater + reply_.size() + 64 * 1024));
  EXPECT_LT(percentile(ms, 0.99), kSanitized ? 200.0 : 50.0);
  // Now it reads: every reply comes, byte-exact.
  const std::size_t matched = read_repeated(fd, reply_, gets, kBulkTimeout);
  sender.join();
  EXPECT_EQ(matched, gets * reply_.size())
      << "replies that came whole: " << matched / reply_.size();
  ASSERT_TRUE(send_all(fd, "PING\r\n"));
  EXPECT_EQ(read_until_count(fd, "\r\n", 1, kTimeout), "+PONG\r\n");
  ::close(fd);
  print_memory("held non-reader", held, memory_of(child_->pid()));
  if (!kSanitized && peak_was_reset_) {
    EXPECT_LE(held.peak, before_.rss + 2 * kHighWater + kValueSize + 512 * 1024);
  }
}

// A read cut by the pause that ends in a partial command: the backlog runs from `low_water`,
// then reading resumes behind the partial command, which completes with the next bytes.
TEST_F(RedisPacing, APartialCommandLeftInTheBacklogCompletesWithTheNextBytes) {
  constexpr std::size_t kGets = 100;
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, repeated("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", kGets) +
                               "*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$5\r\nhel"));
  EXPECT_EQ(read_repeated(fd, reply_, kGets, kBulkTimeout), kGets * reply_.size());
  ASSERT_TRUE(send_all(fd, "lo\r\n*2\r\n$3\r\nGET\r\n$1\r\nx\r\n"));
  EXPECT_EQ(read_until_count(fd, "\r\n", 3, kTimeout), "+OK\r\n$5\r\nhello\r\n");
  ::close(fd);
}

// The target: a client that pipelines a gigabyte of GET replies and reads them gets
// them all, with server RSS growth within twice the high-water mark plus the store (the store
// is filled before the peak is reset). Another client is served meanwhile.
TEST_F(RedisPacing, AGigabyteOfPipelinedRepliesIsReadWithServerMemoryWithinTwiceTheMark) {
  const std::size_t gets = kSanitized ? 1024 : 16384;  // 64 MiB / 1 GiB of values
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  const std::string batch = repeated("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", gets);
  std::thread sender([fd, &batch] { send_all(fd, batch); });
  std::future<std::vector<double>> others =
      std::async(std::launch::async, [this] { return round_trips(milliseconds(500), 50); });
  const auto t0 = Clock::now();
  const std::size_t matched = read_repeated(fd, reply_, gets, kBulkTimeout);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  sender.join();
  const std::vector<double> ms = others.get();
  ::close(fd);
  const ProcessMemory peak = memory_of(child_->pid());
  EXPECT_EQ(matched, gets * reply_.size())
      << "replies that came whole: " << matched / reply_.size();
  ASSERT_FALSE(ms.empty()) << "the other client was not served";
  std::printf(
      "%zu GETs of 64 KiB (%s of replies) read in %.2f s (%.0f MiB/s); another client: "
      "p99 %.2f ms over %zu GETs\n",
      gets, mib(gets * reply_.size()).c_str(), seconds,
      static_cast<double>(matched) / seconds / 1048576.0, percentile(ms, 0.99), ms.size());
  const auto deadline = Clock::now() + kTimeout;
  while (info_field("connected_clients") != 1 && Clock::now() < deadline) {
  }
  print_memory("a gigabyte of replies", peak, memory_of(child_->pid()));
  if (!kSanitized && peak_was_reset_) {
    EXPECT_LE(peak.peak, before_.rss + 2 * kHighWater + kValueSize);
  }
}

}  // namespace
