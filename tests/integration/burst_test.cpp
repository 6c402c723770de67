// Thousands of connections on one loop becoming ready in the same instant: every byte is echoed,
// and a stop with thousands of receives in flight ends each connection once. On io_uring the stop
// queues a cancel per connection in one iteration, more than the submission queue's 2048 entries
// (flushed mid-iteration: without that flush the test fails, 2047 of 5000 closed), and their
// completions, two per cancel, overflow the completion queue (the kernel keeps the overflow).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace evloop::test {
namespace {

// More than io_uring's submission queue (2048) entries, and than its completion queue (4096)
// holds of two completions per connection. Two fds each.
constexpr int kConnections = kSanitized ? 2500 : 5000;

// Raises the soft fd limit to what the test needs (within the hard limit); false if it cannot.
bool enough_fds() {
  constexpr rlim_t kNeeded = 2 * kConnections + 256;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return false;
  if (limit.rlim_cur >= kNeeded) return true;
  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < kNeeded) return false;
  limit.rlim_cur = kNeeded;
  return ::setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

// Blocking connects (loopback: the handshake completes in the kernel); reads use MSG_DONTWAIT.
std::vector<int> connect_many(const SocketAddress& addr, int n) {
  std::vector<int> fds;
  fds.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    if (::connect(fd, static_cast<const sockaddr*>(addr.data()),
                  static_cast<socklen_t>(addr.size())) != 0) {
      ::close(fd);
      break;
    }
    fds.push_back(fd);
  }
  return fds;
}

void close_all(std::vector<int>& fds) {
  for (const int fd : fds) ::close(fd);
  fds.clear();
}

// Reads from every fd until it has want[i] bytes (0: until its FIN or an error), within
// `within`. Returns how many fds got there; `got` holds what each read.
int read_all(const std::vector<int>& fds, const std::vector<std::size_t>& want,
             std::vector<std::string>& got, std::chrono::milliseconds within) {
  got.assign(fds.size(), {});
  std::vector<bool> done(fds.size(), false);
  int completed = 0;
  const auto deadline = std::chrono::steady_clock::now() + within;
  std::vector<pollfd> pfds;
  std::vector<std::size_t> index;
  while (completed < static_cast<int>(fds.size()) && std::chrono::steady_clock::now() < deadline) {
    pfds.clear();
    index.clear();
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (done[i]) continue;
      pfds.push_back({fds[i], POLLIN, 0});
      index.push_back(i);
    }
    if (::poll(pfds.data(), pfds.size(), 100) <= 0) continue;
    for (std::size_t k = 0; k < pfds.size(); ++k) {
      if (pfds[k].revents == 0) continue;
      const std::size_t i = index[k];
      char buf[4096];
      const ssize_t n = ::recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) got[i].append(buf, static_cast<std::size_t>(n));
      const bool ended = n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
      if (ended || (want[i] > 0 && got[i].size() >= want[i])) {
        done[i] = true;
        ++completed;
      }
    }
  }
  return completed;
}

TEST(BurstTest, ThousandsOfConnectionsSendingAtOnceAreEachEchoedByteExact) {
  if (!enough_fds()) GTEST_SKIP() << "the fd limit is below " << 2 * kConnections + 256;
  EventCounter opened;
  Callbacks cb;
  cb.opened = [&](Conn&) { opened.add(); };
  cb.data = [](Conn& c, std::string_view bytes) {
    c.write(bytes);
    return bytes.size();
  };
  Options options = loopback_options();
  options.listen = {"tcp4://127.0.0.1:0?backlog=4096"};
  RunningServer s(options, cb);
  ASSERT_TRUE(s.status) << s.status.message();
  std::vector<int> fds = connect_many(s.address(), kConnections);
  ASSERT_EQ(static_cast<int>(fds.size()), kConnections);
  ASSERT_TRUE(opened.wait_for(kConnections, 30s)) << opened.value();
  // Every connection's bytes arrive within a few microseconds of each other: the loop finds
  // thousands of receives completed (or sockets readable) in one wait.
  for (int round = 0; round < 3; ++round) {
    std::vector<std::string> sent(fds.size());
    for (std::size_t i = 0; i < fds.size(); ++i) {
      sent[i] = pattern(100 + (i % 300), static_cast<std::uint32_t>(i * 3 + round));
      ASSERT_EQ(::send(fds[i], sent[i].data(), sent[i].size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(sent[i].size()));
    }
    std::vector<std::size_t> want(fds.size());
    for (std::size_t i = 0; i < fds.size(); ++i) want[i] = sent[i].size();
    std::vector<std::string> got;
    const int echoed = read_all(fds, want, got, 30s);
    ASSERT_EQ(echoed, kConnections) << "round " << round;
    int wrong = 0;
    for (std::size_t i = 0; i < fds.size(); ++i) wrong += got[i] != sent[i] ? 1 : 0;
    ASSERT_EQ(wrong, 0) << "round " << round;
  }
  const LoopStats stats = total_stats(s.server);
  EXPECT_EQ(stats.open_connections, static_cast<std::uint64_t>(kConnections));
  close_all(fds);
  s.server.stop();
  EXPECT_TRUE(s.server.wait());
}

TEST(BurstTest, StopWithThousandsOfReceivesInFlightClosesEachOnceAndSendsEachAFin) {
  if (!enough_fds()) GTEST_SKIP() << "the fd limit is below " << 2 * kConnections + 256;
  EventCounter opened;
  std::atomic<int> closed{0};
  std::atomic<int> closed_with_error{0};
  Callbacks cb;
  cb.opened = [&](Conn&) { opened.add(); };
  cb.closed = [&](Conn&, std::error_code ec) {
    ++closed;
    if (ec && ec != make_error_code(errc::server_stopped)) ++closed_with_error;
  };
  Options options = loopback_options();
  options.listen = {"tcp4://127.0.0.1:0?backlog=4096"};
  {  // warm up: whatever a process keeps once a first server has run (TSan's own thread, say)
    RunningServer warm(loopback_options(), {});
    ASSERT_TRUE(warm.status) << warm.status.message();
  }
  const FdAndThreadCounts baseline;
  {
    RunningServer s(options, cb);
    ASSERT_TRUE(s.status) << s.status.message();
    std::vector<int> fds = connect_many(s.address(), kConnections);
    ASSERT_EQ(static_cast<int>(fds.size()), kConnections);
    ASSERT_TRUE(opened.wait_for(kConnections, 30s)) << opened.value();
    ASSERT_TRUE(settle(s.server));  // every connection's first receive is in the kernel
    const auto before = std::chrono::steady_clock::now();
    s.server.stop();
    EXPECT_TRUE(s.server.wait()) << "a loop failed";
    EXPECT_LT(std::chrono::steady_clock::now() - before, 5s);
    EXPECT_EQ(closed.load(), kConnections);
    EXPECT_EQ(closed_with_error.load(), 0);
    std::vector<std::string> got;
    EXPECT_EQ(read_all(fds, std::vector<std::size_t>(fds.size(), 0), got, 10s), kConnections)
        << "a client saw no end";
    close_all(fds);
  }
  EXPECT_TRUE(counts_return_to(baseline));
}

}  // namespace
}  // namespace evloop::test
