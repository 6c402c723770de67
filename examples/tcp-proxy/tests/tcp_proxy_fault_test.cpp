// The tcp-proxy binary under the conditions a proxy exists for: a side that reads slowly or not
// at all (back-pressure, the proxy's memory bounded), half-closes both ways, resets both ways, an
// upstream that refuses or never answers, and 1,000 pairs at once; after each, the proxy's fds and
// threads are back where they started. The upstream is played by the test over raw loopback
// sockets (or is the echo-server example); every wait is bounded.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <ostream>
#include <random>
#include <string>
#include <thread>

#include "proxy_test_support.hpp"
#include "test_support.hpp"

namespace example_test {
namespace {

using Clock = std::chrono::steady_clock;

// The proxy's fds and threads once its loops run, and a check that they come back to that.
// ("listening on" is printed before the loop threads start: wait for the main thread, the one
// that takes the signals, one per loop, the sanitizer's own and the backend's.)
struct Baseline {
  Baseline(pid_t of, int loops)
      : pid(of),
        ready(eventually(
            [&] { return threads(of) == 2 + loops + kRuntimeThreads + kBackendThreads; })),
        fds(open_fds(of)),
        tasks(threads(of)) {}
  // At most as many: an fd open for a moment when the baseline was read (seen once under ASan:
  // 11 against 12) is no leak.
  void expect_restored() const {
    EXPECT_TRUE(eventually([&] { return open_fds(pid) <= fds && threads(pid) == tasks; }))
        << "fds " << open_fds(pid) << " (were " << fds << "), threads " << threads(pid) << " (were "
        << tasks << ")";
  }
  pid_t pid;
  bool ready;
  int fds, tasks;
};

// A proxy in front of an upstream the test plays, one client connected through it, and the
// upstream's side of that pair accepted. The test closes `client` and `up` (or sets them to -1
// once it has); then the proxy's fds and threads must come back to where they were.
class OnePair : public ::testing::Test {
 protected:
  void SetUp() override {
    proxy_ = std::make_unique<Proxy>(upstream_.url(), proxy_flags());
    ASSERT_NE(proxy_->port(), 0);
    baseline_ = std::make_unique<Baseline>(proxy_->pid(), 1);
    ASSERT_TRUE(baseline_->ready) << threads(proxy_->pid()) << " threads";
    client = connect_loopback(proxy_->port());
    ASSERT_GE(client, 0);
    up = upstream_.accept();
    ASSERT_GE(up, 0);
  }

  void TearDown() override {
    if (client >= 0) ::close(client);
    if (up >= 0) ::close(up);
    if (baseline_) baseline_->expect_restored();
  }

  pid_t proxy_pid() const { return proxy_->pid(); }
  virtual std::vector<std::string> proxy_flags() const { return {}; }

  int client = -1;
  int up = -1;

 private:
  Listener upstream_;
  std::unique_ptr<Proxy> proxy_;
  std::unique_ptr<Baseline> baseline_;
};

long elapsed_ms(Clock::time_point since) {
  return static_cast<long>(std::chrono::duration_cast<milliseconds>(Clock::now() - since).count());
}

// --- back-pressure ----------------------------------------------------------------------------

enum class SlowSide { client, upstream };
void PrintTo(SlowSide side, std::ostream* os) {
  *os << (side == SlowSide::client ? "the client reads slowly" : "the upstream reads slowly");
}

class SlowReader : public OnePair, public ::testing::WithParamInterface<SlowSide> {};

// One side streams 200 MiB as fast as the proxy takes it; the other reads nothing at first, then
// reads in small pieces. The proxy must hold back the fast side (it stops reading from it, so
// TCP holds back the sender) rather than buffer: its RSS stays within a small bound of what it
// was before the stream, and every byte arrives in order.
TEST_P(SlowReader, TwoHundredMiBArriveByteExactWithTheProxysMemoryBounded) {
  const std::size_t total = (kSanitized ? std::size_t{48} : std::size_t{200}) << 20;
  // Per direction the proxy holds at most 256 KiB + one 256 KiB read; the rest of the bound is
  // allocator slack (and sanitizer bookkeeping).
  const long bound = (kSanitized ? 24L : 4L) << 20;
  const int source = GetParam() == SlowSide::client ? up : client;
  const int reader = GetParam() == SlowSide::client ? client : up;
  const int small = 64 * 1024;
  ::setsockopt(reader, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  // The baseline is taken after 16 MiB have gone through, so that memory a loop keeps whatever
  // its connections do is already resident (io_uring's provided receive buffers a stream takes,
  // paged in as the kernel fills them: after its first receive, the 64 large ones, 4 MiB per
  // loop; the output chunk pool): what grows after it is the pair's.
  const std::string warm_up = pattern(16 << 20, 4);
  std::thread warm_sender([&] { EXPECT_TRUE(send_all(source, warm_up)); });
  const bool warmed = read_exactly(reader, warm_up.size(), kWait) == warm_up;
  warm_sender.join();
  ASSERT_TRUE(warmed);
  const long rss_before = rss_bytes(proxy_pid());
  ASSERT_GT(rss_before, 0);

  // A repeating unit whose length is no multiple of any buffer size, so a lost or repeated
  // piece shows.
  const std::string unit = pattern((1 << 20) + 4093, 3);
  std::mutex m;
  std::condition_variable cv;
  bool held_back = false, source_done = false;
  std::size_t sent_when_held = 0, source_sent = 0;
  int source_error = 0;
  std::thread sender([&] {
    ::fcntl(source, F_SETFL, ::fcntl(source, F_GETFL) | O_NONBLOCK);
    std::size_t sent = 0;
    const auto deadline = Clock::now() + milliseconds(180'000);
    while (sent < total && Clock::now() < deadline) {
      pollfd p{source, POLLOUT, 0};
      // No room for a whole second while nobody reads: the proxy is holding us back.
      if (::poll(&p, 1, 1000) == 0) {
        std::lock_guard lock(m);
        if (!held_back) {
          held_back = true;
          sent_when_held = sent;
          cv.notify_all();
        }
        continue;
      }
      const std::size_t at = sent % unit.size();
      const std::size_t n = std::min({unit.size() - at, total - sent, std::size_t{64 * 1024}});
      const ssize_t w = ::send(source, unit.data() + at, n, MSG_NOSIGNAL);
      if (w > 0) {
        sent += static_cast<std::size_t>(w);
      } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        source_error = errno;
        break;
      }
    }
    ::shutdown(source, SHUT_WR);
    std::lock_guard lock(m);
    source_sent = sent;
    source_done = true;
    cv.notify_all();
  });

  long rss_held = -1;
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, milliseconds(60'000), [&] { return held_back || source_done; }));
    EXPECT_TRUE(held_back) << "the source sent everything while nobody read";
    rss_held = rss_bytes(proxy_pid());
  }

  // Now read it all, 4 KiB at a time, checking every byte and sampling the proxy's RSS.
  std::size_t received = 0, mismatch_at = std::string::npos;
  long rss_max = rss_held;
  End end = End::open;
  char buf[4096];
  const auto deadline = Clock::now() + milliseconds(180'000);
  while (end == End::open) {
    pollfd p{reader, POLLIN, 0};
    const int left =
        static_cast<int>(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count());
    if (left <= 0 || ::poll(&p, 1, left) != 1) {
      end = End::timeout;
      break;
    }
    const ssize_t r = ::recv(reader, buf, sizeof buf, 0);
    if (r == 0) end = End::eof;
    if (r < 0) end = errno == ECONNRESET ? End::reset : End::error;
    for (std::size_t i = 0; r > 0 && i < static_cast<std::size_t>(r);) {
      const std::size_t at = (received + i) % unit.size();
      const std::size_t n = std::min(static_cast<std::size_t>(r) - i, unit.size() - at);
      if (mismatch_at == std::string::npos && std::memcmp(buf + i, unit.data() + at, n) != 0) {
        mismatch_at = received + i;  // within this piece
      }
      i += n;
    }
    if (r > 0) {
      const std::size_t before = received;
      received += static_cast<std::size_t>(r);
      if (before >> 23 != received >> 23) rss_max = std::max(rss_max, rss_bytes(proxy_pid()));
    }
  }
  sender.join();
  EXPECT_EQ(end, End::eof) << to_string(end);
  EXPECT_EQ(source_error, 0) << std::strerror(source_error);
  EXPECT_EQ(source_sent, total);
  EXPECT_EQ(received, total);
  EXPECT_EQ(mismatch_at, std::string::npos) << "first wrong byte at " << mismatch_at;
  EXPECT_LE(rss_max - rss_before, bound)
      << "RSS " << rss_before << " before, " << rss_held << " while held back, max " << rss_max;
  std::printf(
      "proxy RSS: %ld KiB before, +%ld KiB while held back (the source had sent %zu KiB), "
      "max +%ld KiB over %zu MiB\n",
      rss_before >> 10, (rss_held - rss_before) >> 10, sent_when_held >> 10,
      (rss_max - rss_before) >> 10, total >> 20);
}

INSTANTIATE_TEST_SUITE_P(TcpProxy, SlowReader,
                         ::testing::Values(SlowSide::client, SlowSide::upstream),
                         [](const ::testing::TestParamInfo<SlowSide>& p) {
                           return p.param == SlowSide::client ? "SlowClient" : "SlowUpstream";
                         });

// --- half-close -------------------------------------------------------------------------------

using TcpProxyHalfClose = OnePair;

// The client's FIN reaches the upstream after every byte before it; the upstream, having read to
// the end, still answers, and the answer reaches the client, then the upstream's FIN.
TEST_F(TcpProxyHalfClose, ClientFinReachesTheUpstreamAndTheReplyStillFlows) {
  const std::string request = pattern(3 << 20, 11), reply = pattern(5 << 20, 12);
  Flow at_upstream, reply_sent;
  std::thread upstream_side([&] {
    at_upstream = exchange(up, {}, false);  // read until the client's FIN
    reply_sent = exchange(up, reply, true);
  });
  const Flow at_client = exchange(client, request, true);
  upstream_side.join();
  EXPECT_EQ(at_upstream.end, End::eof) << to_string(at_upstream.end);
  EXPECT_TRUE(at_upstream.in == request) << at_upstream.in.size() << " of " << request.size();
  EXPECT_EQ(reply_sent.sent, reply.size());
  EXPECT_EQ(at_client.end, End::eof) << to_string(at_client.end);
  EXPECT_TRUE(at_client.in == reply) << at_client.in.size() << " of " << reply.size();
}

// The upstream's FIN reaches the client after its bytes; the client keeps sending, and all of it
// reaches the upstream, then the client's FIN. Neither side is reset.
TEST_F(TcpProxyHalfClose, UpstreamFinReachesTheClientWhichKeepsSending) {
  const std::string greeting = pattern(2 << 20, 21), request = pattern(4 << 20, 22);
  Flow at_upstream;
  std::thread upstream_side([&] { at_upstream = exchange(up, greeting, true); });
  const Flow greeted = exchange(client, {}, false);  // until the upstream's FIN
  EXPECT_EQ(greeted.end, End::eof) << to_string(greeted.end);
  EXPECT_TRUE(greeted.in == greeting) << greeted.in.size() << " of " << greeting.size();
  const Flow sent = exchange(client, request, true);
  upstream_side.join();
  EXPECT_EQ(sent.sent, request.size());
  EXPECT_EQ(sent.end, End::eof) << to_string(sent.end);
  EXPECT_EQ(at_upstream.end, End::eof) << to_string(at_upstream.end);
  EXPECT_TRUE(at_upstream.in == request) << at_upstream.in.size() << " of " << request.size();
}

// --- failures ---------------------------------------------------------------------------------

using TcpProxyReset = OnePair;

TEST_F(TcpProxyReset, UpstreamResetMidStreamResetsTheClient) {
  const std::string request = pattern(64 << 10, 31), reply = pattern(1 << 20, 32);
  std::string got_request;
  std::thread upstream_side([&] {
    got_request = read_exactly(up, request.size(), kWait);
    send_all(up, std::string_view(reply).substr(0, reply.size() / 2));  // then dies
    close_with_reset(up);
    up = -1;
  });
  const Flow at_client = exchange(client, request, false);
  upstream_side.join();
  EXPECT_TRUE(got_request == request);
  EXPECT_EQ(at_client.end, End::reset) << to_string(at_client.end);
  EXPECT_EQ(at_client.error, ECONNRESET) << std::strerror(at_client.error);
  EXPECT_LE(at_client.received, reply.size() / 2);
}

TEST_F(TcpProxyReset, ClientResetResetsTheUpstream) {
  ASSERT_TRUE(send_all(client, "hello"));
  EXPECT_EQ(read_exactly(up, 5, kWait), "hello");
  close_with_reset(client);
  client = -1;
  const Flow at_upstream = exchange(up, {}, false);
  EXPECT_EQ(at_upstream.end, End::reset) << to_string(at_upstream.end);
  EXPECT_EQ(at_upstream.error, ECONNRESET) << std::strerror(at_upstream.error);
}

// A client that stops reading while the upstream streams: the proxy stops reading the upstream
// (back-pressure), and --send-timeout resets the stalled side, then the other, so the pair (two
// fds and its pending output) is not held for as long as the client stays connected.
class TcpProxyStalledClient : public OnePair {
 protected:
  std::vector<std::string> proxy_flags() const override { return {"--send-timeout", "1"}; }
};

TEST_F(TcpProxyStalledClient, SendTimeoutResetsBothSides) {
  const Clock::time_point start = Clock::now();  // before the proxy's clock can start
  // The upstream's send ends when the proxy resets its side (or, bounded, when it times out).
  const timeval bound{static_cast<time_t>(kWait.count() / 1000), 0};
  ASSERT_EQ(::setsockopt(up, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound), 0);
  int upstream_error = 0;
  std::thread upstream_side([&] {
    if (!send_all(up, pattern(64 << 20, 41))) upstream_error = errno;
  });
  // The client reads nothing; its TCP state says when the proxy's reset arrives.
  const double took = ms_until_reset_unread(client, start, kWait);
  upstream_side.join();
  std::printf("--send-timeout 1: a client that stopped reading was reset after %.0f ms\n", took);
  EXPECT_GE(took, 0.0) << "the stalled client was not reset";
  EXPECT_TRUE(upstream_error == ECONNRESET || upstream_error == EPIPE)
      << "the upstream's side was not reset: " << std::strerror(upstream_error);
  EXPECT_GE(took, 999.0);
}

// --idle-timeout: a pair is idle when no byte moves either way. A download whose client only
// reads (its side of the proxy only sends) goes on past the timeout; once nothing moves, both
// sides get a FIN, and the pair's fds are freed (TearDown).
class TcpProxyIdle : public OnePair {
 protected:
  std::vector<std::string> proxy_flags() const override { return {"--idle-timeout", "1"}; }
};

TEST_F(TcpProxyIdle, AOneWayDownloadIsNotCutAndAPairWhereNothingMovesGetsAFinEachWay) {
  constexpr int kChunks = 12;
  constexpr milliseconds kPace{250};  // 3 s of download in all, 4 chunks per idle timeout
  const std::string chunk = pattern(16 << 10, 51);
  Clock::time_point last_sent;
  Flow at_upstream;
  std::thread upstream_side([&] {
    for (int i = 0; i < kChunks; ++i) {
      if (i > 0) std::this_thread::sleep_for(kPace);  // pacing the download, not synchronizing
      if (!send_all(up, chunk)) break;
    }
    last_sent = Clock::now();
    at_upstream = exchange(up, {}, false);  // sends nothing more; reads until the proxy's FIN
  });
  const Flow at_client = exchange(client, {}, false);  // reads until the proxy's FIN
  const Clock::time_point client_end = Clock::now();
  upstream_side.join();
  EXPECT_EQ(at_client.end, End::eof) << to_string(at_client.end);
  EXPECT_EQ(at_client.received, kChunks * chunk.size()) << "the download was cut";
  EXPECT_EQ(at_upstream.end, End::eof) << to_string(at_upstream.end);
  const long quiet_ms =
      static_cast<long>(std::chrono::duration_cast<milliseconds>(client_end - last_sent).count());
  std::printf("--idle-timeout 1: the client's FIN came %ld ms after the last byte\n", quiet_ms);
  EXPECT_GE(quiet_ms, 900);
  EXPECT_LT(quiet_ms, 5000);
}

TEST(TcpProxyFailure, RefusedUpstreamResetsTheClientPromptly) {
  const evloop::test::UnservedPort unserved;
  Proxy proxy(loopback_url(unserved.port()));
  ASSERT_NE(proxy.port(), 0);
  const Baseline baseline(proxy.pid(), 1);
  ASSERT_TRUE(baseline.ready) << threads(proxy.pid()) << " threads";
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    const int client = connect_loopback(proxy.port());
    ASSERT_GE(client, 0);
    const Flow f = exchange(client, "hello", false);
    EXPECT_EQ(f.end, End::reset) << to_string(f.end);
    EXPECT_EQ(f.error, ECONNRESET) << std::strerror(f.error);
    EXPECT_LT(elapsed_ms(start), 2'000);
    ::close(client);
  }
  baseline.expect_restored();
}

// An upstream whose accept queue is full never answers the SYN: the dial times out after
// --connect-timeout and the client is reset then, not earlier and not much later.
TEST(TcpProxyFailure, ConnectTimeoutResetsTheClientAfterTheTimeout) {
  Listener upstream(0);
  ASSERT_TRUE(upstream.fill_accept_queue()) << "cannot fill a loopback accept queue";
  Proxy proxy(upstream.url(), {"--connect-timeout", "300"});
  ASSERT_NE(proxy.port(), 0);
  const Baseline baseline(proxy.pid(), 1);
  ASSERT_TRUE(baseline.ready) << threads(proxy.pid()) << " threads";
  const auto start = Clock::now();
  const int client = connect_loopback(proxy.port());
  ASSERT_GE(client, 0);
  const Flow f = exchange(client, "hello", false);
  const long took = elapsed_ms(start);
  EXPECT_EQ(f.end, End::reset) << to_string(f.end);
  EXPECT_EQ(f.error, ECONNRESET) << std::strerror(f.error);
  EXPECT_GE(took, 280);
  EXPECT_LT(took, 5'000);
  ::close(client);
  baseline.expect_restored();
}

// --- many pairs at once -----------------------------------------------------------------------

TEST(TcpProxyScale, ThousandConcurrentPairsRandomSizesByteExactThenNothingLeft) {
  const int pairs = kSanitized ? 300 : 1000;
  ASSERT_TRUE(raise_fd_limit(4 * static_cast<std::size_t>(pairs) + 256));
  std::unique_ptr<Child> echo;
  const std::uint16_t echo_port = start_server(echo, ECHO_SERVER_BIN, {"--loops", "2"});
  ASSERT_NE(echo_port, 0);
  {
    Proxy proxy(loopback_url(echo_port), {"--loops", "2"});
    ASSERT_NE(proxy.port(), 0);
    const Baseline baseline(proxy.pid(), 2);
    ASSERT_TRUE(baseline.ready);
    const std::string source = pattern(256 << 10, 6);
    std::mt19937 rng(20261210);
    std::uniform_int_distribution<std::size_t> size_of(1, 128 << 10);
    std::uniform_int_distribution<std::size_t> offset_of(0, 128 << 10);
    std::vector<Flow> flows(static_cast<std::size_t>(pairs));
    for (Flow& f : flows) {
      f.fd = connect_loopback(proxy.port());
      ASSERT_GE(f.fd, 0) << std::strerror(errno);
      f.out = std::string_view(source).substr(offset_of(rng), size_of(rng));
      f.expect = f.out;
    }
    drive(flows, milliseconds(90'000));
    int bad = 0;
    for (const Flow& f : flows) {
      if (f.end == End::eof && f.received == f.out.size() && f.mismatch_at == std::string::npos) {
        continue;
      }
      if (++bad <= 5) {
        ADD_FAILURE() << "pair ended with " << to_string(f.end) << " (" << std::strerror(f.error)
                      << "): " << f.received << " of " << f.out.size() << " bytes, first wrong at "
                      << f.mismatch_at;
      }
    }
    EXPECT_EQ(bad, 0);
    for (Flow& f : flows) ::close(f.fd);
    baseline.expect_restored();
  }
  echo->signal(SIGTERM);
  EXPECT_EQ(echo->wait_exit(kWait), 0);
}

}  // namespace
}  // namespace example_test
