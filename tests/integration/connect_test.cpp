// Dialling out (Loop::connect), after libuv's tcp-connect checklist: a pure client group dials
// and echoes byte-exact; a refused, timed-out, cancelled or stopped dial ends in exactly one
// `connect_failed` (never `opened` or `closed`); host names resolve on resolver threads, off
// the loops; bad input fails with the documented code; source addresses bind the local side; a
// socket connected to itself is rejected; writes made while connecting go out in order once open;
// Unix sockets and IPv6 dial too; 1,000 dials at once stay byte-exact. Every test ends with the
// fds and threads it started with. Loopback only: a dial that must hang targets a loopback
// listener whose accept queue is full (Linux drops the SYN), never an outside address.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <any>
#include <atomic>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace evloop::test {
namespace {

using Clock = std::chrono::steady_clock;

// --- helpers -------------------------------------------------------------------------------------

LoopOptions loop_options(unsigned loops) {
  LoopOptions o;
  o.loops = loops;
  return o;
}

Callbacks echo_callbacks() {
  Callbacks cb;
  cb.data = [](Conn& c, std::string_view b) {
    c.write(b);
    return b.size();
  };
  return cb;
}

std::string loopback_url(std::uint16_t port) { return "tcp4://127.0.0.1:" + std::to_string(port); }

std::uint16_t port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  return ntohs(a.sin_port);
}

// A socket of 127.0.0.1 bound to port `port` (0: any); -1 on error.
int bound_socket(std::uint16_t port) {
  const int fd = open_stream_socket(AF_INET);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A loopback port nobody listens on: bound, read and closed (nothing connected: no TIME_WAIT).
// Another test may bind it again before it is used: prefer UnservedPort, unless the port must be
// free to bind on 127.0.0.1 itself.
std::uint16_t freed_port() {
  const int fd = bound_socket(0);
  const std::uint16_t port = fd >= 0 ? port_of(fd) : 0;
  if (fd >= 0) ::close(fd);
  return port;
}

bool raise_fd_limit(rlim_t n) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return false;
  if (r.rlim_cur >= n) return true;
  r.rlim_cur = std::min(n, r.rlim_max);
  return ::setrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur >= n;
}

// A loopback listener (backlog 0) that never accepts, its accept queue filled by connections
// that completed: Linux drops a SYN while the accept queue is full, so a new dial to it stays in
// SYN_SENT until it times out or is cancelled. Fullness is read from the kernel, not guessed from
// a connect that seems slow: for a listening socket, TCP_INFO's tcpi_unacked is the accept
// queue's length and tcpi_sacked its limit (Linux).
class FullListener {
 public:
  FullListener() {
    fd_ = bound_socket(0);
    if (fd_ < 0 || ::listen(fd_, 0) != 0) return;
    const sockaddr_in to = address();
    for (int i = 0; i < 8 && !queue_full(); ++i) {
      const int c = open_stream_socket(AF_INET, true);
      if (c < 0) return;
      fillers_.push_back(c);
      if (::connect(c, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0 &&
          errno != EINPROGRESS) {
        return;
      }
      // The queue had room, so this one completes; then the server side joins the queue.
      pollfd p{c, POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(kWait.count())) != 1) return;
      eventually([&] { return queue_full(); }, 1s);
    }
    full_ = queue_full();
  }
  ~FullListener() {
    for (int c : fillers_) ::close(c);
    if (fd_ >= 0) ::close(fd_);
  }
  FullListener(const FullListener&) = delete;
  FullListener& operator=(const FullListener&) = delete;

  bool full() const { return full_; }
  std::string url() const { return loopback_url(port_of(fd_)); }

 private:
  bool queue_full() const {
#ifdef __linux__
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return false;
    return info.tcpi_unacked > info.tcpi_sacked;
#else
    return false;  // not readable here: the tests that need a full queue say so and fail
#endif
  }
  sockaddr_in address() const {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_of(fd_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
  }
  int fd_ = -1;
  std::vector<int> fillers_;
  bool full_ = false;
};

// Runs `fn` on `loop` and waits until it has run; false if it could not be posted or did not
// run in time.
bool run_on(const Loop& loop, std::function<void()> fn) {
  auto done = std::make_shared<EventCounter>();
  if (!loop.post([fn = std::move(fn), done] {
        fn();
        done->add();
      })) {
    return false;
  }
  return done->wait_for(1);
}

// What one dial reported. The handlers record their counts and errors and whether they ran on
// their connection's loop thread; `more` (the test's own handlers) runs inside them, before the
// count goes up, so a test that waits on a count sees what its handler did.
struct DialLog {
  EventCounter opened, failed, closed;
  std::mutex mutex;
  std::error_code failure;       // of connect_failed
  std::error_code close_error;   // of closed
  bool off_loop_thread = false;  // a handler ran off its connection's loop thread

  Handlers handlers(Handlers more = {}) {
    Handlers h = more;
    h.opened = [this, f = std::move(more.opened)](Conn& c) {
      note_thread(c);
      if (f) f(c);
      opened.add();
    };
    h.connect_failed = [this, f = std::move(more.connect_failed)](Conn& c, std::error_code ec) {
      note_thread(c);
      {
        std::lock_guard lock(mutex);
        failure = ec;
      }
      if (f) f(c, ec);
      failed.add();
    };
    h.closed = [this, f = std::move(more.closed)](Conn& c, std::error_code ec) {
      note_thread(c);
      {
        std::lock_guard lock(mutex);
        close_error = ec;
      }
      if (f) f(c, ec);
      closed.add();
    };
    return h;
  }
  void note_thread(Conn& c) {
    if (c.loop().in_loop_thread()) return;
    std::lock_guard lock(mutex);
    off_loop_thread = true;
  }
  std::error_code failure_code() {
    std::lock_guard lock(mutex);
    return failure;
  }
  std::error_code close_code() {
    std::lock_guard lock(mutex);
    return close_error;
  }
  bool handlers_on_loop_thread() {
    std::lock_guard lock(mutex);
    return !off_loop_thread;
  }
};

// After the group has stopped and joined (so nothing more can fire): the dial failed exactly
// once with `expected`, and never opened or closed.
template <class Code>  // an evloop::errc or a std::errc
void expect_failed_once(DialLog& log, Code expected) {
  EXPECT_EQ(log.failed.value(), 1);
  EXPECT_EQ(log.opened.value(), 0);
  EXPECT_EQ(log.closed.value(), 0);
  const std::error_code ec = log.failure_code();
  EXPECT_TRUE(ec == expected) << "got " << ec.category().name() << ":" << ec.value() << " "
                              << ec.message();
  EXPECT_TRUE(log.handlers_on_loop_thread());
}

LoopStats total(const LoopGroup& group) {
  LoopStats t;
  for (const LoopStats& s : group.stats()) t += s;
  return t;
}

// The fd and thread counts before each test (after a warm-up server, client and name lookup,
// which initialise what a process keeps for good) must be the same after it.
class ConnectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    {
      RunningServer warm(loopback_options(), {});
      ASSERT_TRUE(warm.status) << warm.status.message();
      Client c(warm.address());
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    if (::getaddrinfo("localhost", "80", &hints, &list) == 0) ::freeaddrinfo(list);
    baseline_ = FdAndThreadCounts{};
  }
  void TearDown() override { EXPECT_TRUE(counts_return_to(baseline_)); }
  FdAndThreadCounts baseline_;
};

// --- 1. a pure client dials and echoes ----------------------------------------------------------

TEST_F(ConnectTest, PureClientGroupDialsAServerAndEchoesByteExact) {
  const std::string payload = pattern(1u << 20, 1);
  RunningServer server(loopback_options(), echo_callbacks());
  ASSERT_TRUE(server.status) << server.status.message();
  DialLog log;
  std::string echoed;  // loop thread until the group has stopped
  const Loop* dialled_from = nullptr;
  Handlers more;
  more.opened = [&](Conn& c) {
    EXPECT_EQ(c.state(), ConnState::open);
    EXPECT_EQ(&c.loop(), dialled_from);
    EXPECT_EQ(c.remote_address().to_string(), server.address().to_string());
    EXPECT_EQ(c.local_address().to_string().rfind("127.0.0.1:", 0), 0u);
    c.write(payload);
  };
  more.data = [&](Conn& c, std::string_view b) {
    echoed.append(b);
    if (echoed.size() >= payload.size()) c.close();
    return b.size();
  };
  LoopGroup group(loop_options(1));  // no listener at all
  ASSERT_TRUE(group.start());
  dialled_from = &group.loop(0);
  const ConnRef ref = group.loop(0).connect(server.address().to_url(), log.handlers(more));
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref.loop(), &group.loop(0));
  EXPECT_NE(ref.id(), 0u);
  ASSERT_TRUE(log.closed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());

  EXPECT_EQ(log.opened.value(), 1);
  EXPECT_EQ(log.closed.value(), 1);
  EXPECT_EQ(log.failed.value(), 0);
  EXPECT_FALSE(log.close_code()) << log.close_code().message();
  EXPECT_TRUE(log.handlers_on_loop_thread());
  EXPECT_EQ(echoed.size(), payload.size());
  EXPECT_TRUE(echoed == payload);
  const LoopStats stats = total(group);
  EXPECT_EQ(stats.dials, 1u);
  EXPECT_EQ(stats.dial_failures, 0u);
  EXPECT_EQ(stats.opened, 1u);
  EXPECT_EQ(stats.closed, 1u);
  EXPECT_EQ(stats.open_connections, 0u);
  EXPECT_EQ(stats.bytes_out, payload.size());
  EXPECT_EQ(stats.bytes_in, payload.size());
}

TEST_F(ConnectTest, DialsIpv6Loopback) {
  if (!has_ipv6_loopback()) GTEST_SKIP() << "no ::1 here";
  Options o;
  o.listen = {"tcp6://[::1]:0"};
  RunningServer server(o, echo_callbacks());
  ASSERT_TRUE(server.status) << server.status.message();
  DialLog log;
  std::string echoed;
  Handlers more;
  more.opened = [](Conn& c) { c.write("over ipv6"); };
  more.data = [&](Conn& c, std::string_view b) {
    echoed.append(b);
    if (echoed.size() >= 9) c.close();
    return b.size();
  };
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  group.loop(0).connect("tcp6://[::1]:" + std::to_string(server.address().port()),
                        log.handlers(more));
  ASSERT_TRUE(log.closed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  EXPECT_EQ(echoed, "over ipv6");
  EXPECT_EQ(log.opened.value(), 1);
  EXPECT_FALSE(log.close_code());
}

// --- 2. refused ---------------------------------------------------------------------------------

TEST_F(ConnectTest, RefusedDialFailsOnceWithEconnrefused) {
  const UnservedPort unserved;
  const std::uint16_t port = unserved.port();
  ASSERT_NE(port, 0);
  DialLog log;
  Handlers more;
  more.connect_failed = [](Conn& c, std::error_code) {
    EXPECT_EQ(c.state(), ConnState::closed);
    EXPECT_EQ(c.ref().get(), nullptr);  // a closed connection is no longer found
  };
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  const ConnRef ref = group.loop(0).connect(loopback_url(port), log.handlers(more));
  ASSERT_TRUE(ref);
  ASSERT_TRUE(log.failed.wait_for(1));
  // The ref names nothing any more: operations on it are ignored.
  ref.write("ignored");
  ref.close();
  ref.abort();
  ASSERT_TRUE(run_on(group.loop(0), [&] { EXPECT_EQ(ref.get(), nullptr); }));
  group.stop();
  ASSERT_TRUE(group.wait());

  expect_failed_once(log, std::errc::connection_refused);
  const LoopStats stats = total(group);
  EXPECT_EQ(stats.dials, 1u);
  EXPECT_EQ(stats.dial_failures, 1u);
  EXPECT_EQ(stats.opened, 0u);
  EXPECT_EQ(stats.closed, 0u);
  EXPECT_EQ(stats.open_connections, 0u);
}

// --- 3. timeout ---------------------------------------------------------------------------------

TEST_F(ConnectTest, DialToAFullAcceptQueueTimesOut) {
  constexpr auto kTimeout = 200ms;
  FullListener full;
  ASSERT_TRUE(full.full()) << "could not fill the accept queue";
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  const int fds = count_open_fds();
  DialLog log;
  Clock::time_point failed_at;
  int fds_at_failure = -1;
  Handlers more;
  more.connect_failed = [&](Conn&, std::error_code) {
    failed_at = Clock::now();
    fds_at_failure = count_open_fds();  // the dial's socket is already closed here
  };
  ConnectOptions o;
  o.connect_timeout = kTimeout;
  const Clock::time_point started = Clock::now();
  group.loop(0).connect(full.url(), log.handlers(more), o);
  ASSERT_TRUE(log.failed.wait_for(1));
  const auto took = failed_at - started;
  EXPECT_GE(took, kTimeout);
  EXPECT_LT(took, kTimeout + 3s) << "reported far too late";
  EXPECT_EQ(fds_at_failure, fds) << "the dial's socket leaked";
  EXPECT_TRUE(settles_to(count_open_fds, fds));
  group.stop();
  ASSERT_TRUE(group.wait());
  expect_failed_once(log, errc::connect_timeout);
  EXPECT_EQ(total(group).dial_failures, 1u);
}

// --- 4. cancelled and stopped while connecting --------------------------------------------------

// A live server: the connect could succeed, but the close in the same task wins.
TEST_F(ConnectTest, CloseRightAfterConnectOnTheLoopThreadCancelsTheDial) {
  RunningServer server(loopback_options(), {});
  ASSERT_TRUE(server.status);
  DialLog log;
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  ASSERT_TRUE(run_on(group.loop(0), [&] {
    const ConnRef ref = group.loop(0).connect(server.address().to_url(), log.handlers());
    Conn* c = ref.get();
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->state(), ConnState::connecting);
    c->close();
    c->close();  // twice: still one connect_failed
    EXPECT_EQ(log.failed.value(), 0) << "connect_failed ran inside close()";
  }));
  ASSERT_TRUE(log.failed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  expect_failed_once(log, errc::cancelled);
}

TEST_F(ConnectTest, AbortWhileConnectingOnTheLoopThreadCancelsTheDial) {
  FullListener full;
  ASSERT_TRUE(full.full());
  DialLog log;
  ConnectOptions o;
  o.connect_timeout = 60s;  // out of the way
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  ConnRef ref;
  ASSERT_TRUE(
      run_on(group.loop(0), [&] { ref = group.loop(0).connect(full.url(), log.handlers(), o); }));
  // A later iteration: the SYN is out and unanswered.
  ASSERT_TRUE(run_on(group.loop(0), [&] {
    Conn* c = ref.get();
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->state(), ConnState::connecting);
    EXPECT_FALSE(c->detach([](DetachedConn) {})) << "only an open connection detaches";
    c->write("dropped with the dial");
    c->abort();
    c->close();  // after abort: ignored
  }));
  ASSERT_TRUE(log.failed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  expect_failed_once(log, errc::cancelled);
  EXPECT_EQ(total(group).output_buffered, 0u);
}

TEST_F(ConnectTest, CloseAndAbortFromAnotherThreadWhileConnectingCancelTheDialOnce) {
  FullListener full;
  ASSERT_TRUE(full.full());
  DialLog log;
  ConnectOptions o;
  o.connect_timeout = 60s;
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  const ConnRef ref = group.loop(0).connect(full.url(), log.handlers(), o);
  ASSERT_TRUE(ref);
  ASSERT_TRUE(run_on(group.loop(0), [&] {
    Conn* c = ref.get();
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->state(), ConnState::connecting);
  }));
  EXPECT_TRUE(ref.close());
  EXPECT_TRUE(ref.abort());
  ASSERT_TRUE(log.failed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  expect_failed_once(log, errc::cancelled);
}

TEST_F(ConnectTest, StoppingTheGroupFailsADialInProgressWithServerStopped) {
  FullListener full;
  ASSERT_TRUE(full.full());
  DialLog log;
  ConnectOptions o;
  o.connect_timeout = 60s;
  LoopGroup group(loop_options(2));
  ASSERT_TRUE(group.start());
  const ConnRef ref = group.loop(1).connect(full.url(), log.handlers(), o);
  ASSERT_TRUE(run_on(group.loop(1), [&] {
    Conn* c = ref.get();
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->state(), ConnState::connecting);
  }));
  group.stop();
  ASSERT_TRUE(group.wait());
  expect_failed_once(log, errc::server_stopped);
}

// The loop_stopping hook runs on a loop that is stopping: a dial there cannot start (it could
// only fail), so the ref is empty and no handler runs; the same for an adoption (its fd is closed)
// and a UDP socket.
TEST_F(ConnectTest, DialAdoptionAndUdpOpenedByTheLoopStoppingHookReturnEmptyRefs) {
  RunningServer server(loopback_options(), {});
  ASSERT_TRUE(server.status);
  DialLog log;
  LoopHooks hooks;
  const std::string url = server.address().to_url();
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  bool dial_ref = true, adopt_ref = true, udp_ref = true;
  EventCounter udp_handlers;
  hooks.loop_stopping = [&](Loop& loop) {
    dial_ref = static_cast<bool>(loop.connect(url, log.handlers()));
    adopt_ref = static_cast<bool>(loop.adopt(pair[0], log.handlers()));
    DatagramHandlers udp;
    udp.opened = [&](Udp&) { udp_handlers.add(); };
    udp.open_failed = [&](Udp&, std::error_code) { udp_handlers.add(); };
    udp_ref = static_cast<bool>(loop.bind_udp("udp://127.0.0.1:0", udp));
  };
  LoopGroup group(loop_options(1), hooks);
  ASSERT_TRUE(group.start());
  group.stop();
  ASSERT_TRUE(group.wait());
  EXPECT_FALSE(dial_ref);
  EXPECT_FALSE(adopt_ref);
  EXPECT_FALSE(udp_ref);
  EXPECT_EQ(log.failed.value() + log.opened.value() + log.closed.value(), 0);
  EXPECT_EQ(udp_handlers.value(), 0);
  pollfd p{pair[1], POLLIN, 0};
  char byte;
  EXPECT_EQ(::poll(&p, 1, static_cast<int>(kWait.count())), 1);
  EXPECT_EQ(::read(pair[1], &byte, 1), 0) << "adopt() closes the fd it refuses: its peer sees EOF";
  ::close(pair[1]);
}

// The loop accepted the dial (the ref is not empty) and is about to stop: it must still report
// `connect_failed`, as Loop::connect promises exactly one of `opened` or `connect_failed`.
TEST_F(ConnectTest, DialPostedAsTheGroupStopsStillReportsServerStopped) {
  RunningServer server(loopback_options(), {});
  ASSERT_TRUE(server.status);
  DialLog log;
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  LoopHold hold(group.loop(0));
  ASSERT_TRUE(hold.holding());
  group.stop();  // seen by the loop once the held task returns
  const ConnRef ref = group.loop(0).connect(server.address().to_url(), log.handlers());
  ASSERT_TRUE(ref) << "the loop still takes tasks: the dial is accepted";
  hold.release();
  ASSERT_TRUE(group.wait());
  EXPECT_EQ(log.failed.value(), 1)
      << "a dial the loop accepted was dropped at stop: neither opened nor connect_failed fired";
  EXPECT_EQ(log.opened.value(), 0);
  EXPECT_TRUE(log.failure_code() == errc::server_stopped) << log.failure_code().message();
}

// The naive reconnect loop: `connect_failed` dials again whatever the error. Once the group
// stops, a loop that is stopping starts no dial (the ref is empty, no handler runs), so the
// chain ends and wait() returns, instead of each dial failing with server_stopped and dialling
// the next forever.
TEST_F(ConnectTest, AConnectFailedHandlerThatAlwaysDialsAgainLetsTheGroupStop) {
  const UnservedPort unserved;
  const std::string url = loopback_url(unserved.port());
  EventCounter failures, empty_refs;
  std::mutex mutex;
  std::vector<std::error_code> errors;
  auto handlers = std::make_shared<Handlers>();
  handlers->connect_failed = [&, h = std::weak_ptr<Handlers>(handlers)](Conn& c,
                                                                         std::error_code ec) {
    {
      std::lock_guard lock(mutex);
      errors.push_back(ec);
    }
    failures.add();
    if (!c.loop().connect(url, *h.lock())) empty_refs.add();
  };
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  ASSERT_TRUE(group.loop(0).connect(url, *handlers));
  ASSERT_TRUE(failures.wait_for(3)) << "the reconnect loop runs while the group does";
  group.stop();
  EventCounter stopped;
  std::thread waiter([&] {
    EXPECT_TRUE(group.wait());
    stopped.add();
  });
  const bool ended = stopped.wait_for(1);
  if (!ended) {
    ADD_FAILURE() << "wait() did not return: the stopping loop kept dialling ("
                  << failures.value() << " failures so far)";
    std::_Exit(1);  // the loop thread never ends: nothing to join
  }
  waiter.join();
  EXPECT_EQ(empty_refs.value(), 1) << "exactly one dial was refused: the one made once stopping";
  std::lock_guard lock(mutex);
  ASSERT_FALSE(errors.empty());
  for (std::size_t i = 0; i + 1 < errors.size(); ++i) {
    EXPECT_TRUE(errors[i] == std::errc::connection_refused) << i << ": " << errors[i].message();
  }
  EXPECT_TRUE(errors.back() == std::errc::connection_refused || errors.back() == errc::server_stopped)
      << errors.back().message();
}

// Once the loops have stopped, a dial cannot start: the ref is empty and no handler runs (there
// is no loop thread left to run it on).
TEST_F(ConnectTest, DialAfterTheGroupStoppedReturnsAnEmptyRef) {
  DialLog log;
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  group.stop();
  ASSERT_TRUE(group.wait());
  const UnservedPort unserved;
  const ConnRef ref = group.loop(0).connect(loopback_url(unserved.port()), log.handlers());
  EXPECT_FALSE(ref);
  EXPECT_FALSE(ref.write("x"));
  EXPECT_EQ(log.failed.value() + log.opened.value() + log.closed.value(), 0);
}

// --- 5. from a foreign thread and from the loop thread: the proxy pattern -----------------------

TEST_F(ConnectTest, DialFromTheLoopThreadIsReachableAtOnceAndOpensAfterTheCallReturns) {
  RunningServer server(loopback_options(), echo_callbacks());
  ASSERT_TRUE(server.status);
  DialLog log;
  bool returned = false;  // loop thread only
  std::string echoed;
  Handlers more;
  more.opened = [&](Conn& c) {
    EXPECT_TRUE(returned) << "opened fired inside the call that dialled";
    c.write("ping");
  };
  more.data = [&](Conn& c, std::string_view b) {
    echoed.append(b);
    if (echoed.size() >= 4) c.close();
    return b.size();
  };
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  ASSERT_TRUE(run_on(group.loop(0), [&] {
    const ConnRef ref = group.loop(0).connect(server.address().to_url(), log.handlers(more));
    returned = true;
    Conn* c = ref.get();
    ASSERT_NE(c, nullptr) << "a same-thread dial exists as soon as connect() returns";
    EXPECT_EQ(c->id(), ref.id());
    EXPECT_TRUE(c->ref() == ref);
    EXPECT_EQ(c->state(), ConnState::connecting);
    EXPECT_EQ(c->remote_address().to_string(), server.address().to_string());
  }));
  ASSERT_TRUE(log.closed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  EXPECT_EQ(echoed, "ping");
  EXPECT_EQ(log.opened.value(), 1);
  EXPECT_EQ(log.closed.value(), 1);
}

// ConnRef::get() on the loop thread before a dial posted from another thread has started: null.
TEST_F(ConnectTest, GetBeforeADialFromAnotherThreadHasStartedReturnsNull) {
  RunningServer server(loopback_options(), {});
  ASSERT_TRUE(server.status);
  DialLog log;
  Handlers close_at_once;
  close_at_once.opened = [](Conn& c) { c.close(); };
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  std::promise<ConnRef> dialled;
  auto ref_future = dialled.get_future().share();
  EventCounter holding, checked;
  // This task holds the loop until the dial below has been requested, so the dial's own task
  // is still queued behind it.
  ASSERT_TRUE(group.loop(0).post([&, ref_future] {
    holding.add();
    if (ref_future.wait_for(kWait) != std::future_status::ready) return;
    const ConnRef ref = ref_future.get();
    EXPECT_EQ(ref.get(), nullptr) << "the dial has not started yet";
    checked.add();
  }));
  ASSERT_TRUE(holding.wait_for(1));
  dialled.set_value(group.loop(0).connect(server.address().to_url(), log.handlers(close_at_once)));
  ASSERT_TRUE(checked.wait_for(1));
  ASSERT_TRUE(log.closed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  EXPECT_EQ(log.opened.value(), 1);
  EXPECT_EQ(log.failed.value(), 0);
}

TEST_F(ConnectTest, DialFromTheLoopStartedHookOpens) {
  RunningServer server(loopback_options(), echo_callbacks());
  ASSERT_TRUE(server.status);
  DialLog log;
  Handlers close_at_once;
  close_at_once.opened = [](Conn& c) { c.close(); };
  const std::string url = server.address().to_url();
  LoopHooks hooks;
  hooks.loop_started = [&](Loop& loop) {
    const ConnRef ref = loop.connect(url, log.handlers(close_at_once));
    EXPECT_NE(ref.get(), nullptr);
  };
  LoopGroup group(loop_options(1), hooks);
  ASSERT_TRUE(group.start());
  ASSERT_TRUE(log.closed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  EXPECT_EQ(log.opened.value(), 1);
  EXPECT_EQ(log.failed.value(), 0);
  EXPECT_FALSE(log.close_code());
}

// A proxy: each connection the proxy server accepts dials the upstream from its `opened`, on its
// own loop; bytes from the client are written to the upstream while it may still be connecting.
TEST_F(ConnectTest, ServerDialsUpstreamFromItsOpenedHandlerLikeAProxy) {
  RunningServer upstream(loopback_options(), echo_callbacks());
  ASSERT_TRUE(upstream.status);
  const std::string upstream_url = upstream.address().to_url();
  EventCounter up_opened, up_closed, down_closed;
  std::atomic<int> up_failed{0};
  Callbacks proxy;
  proxy.opened = [&](Conn& down) {
    Handlers h;
    h.opened = [&, down_ref = down.ref()](Conn& up) {
      EXPECT_TRUE(up.loop().in_loop_thread());
      EXPECT_EQ(&up.loop(), down_ref.loop());
      up_opened.add();
    };
    h.data = [down_ref = down.ref()](Conn&, std::string_view b) {
      if (Conn* d = down_ref.get()) d->write(b);  // same loop: reached directly
      return b.size();
    };
    h.closed = [&, down_ref = down.ref()](Conn&, std::error_code ec) {
      EXPECT_FALSE(ec) << ec.message();
      if (Conn* d = down_ref.get()) d->close();
      up_closed.add();
    };
    h.connect_failed = [&, down_ref = down.ref()](Conn&, std::error_code ec) {
      ADD_FAILURE() << "upstream dial failed: " << ec.message();
      ++up_failed;
      if (Conn* d = down_ref.get()) d->abort();
    };
    const ConnRef up = down.loop().connect(upstream_url, std::move(h));
    Conn* u = up.get();
    ASSERT_NE(u, nullptr);
    EXPECT_EQ(u->state(), ConnState::connecting);
    EXPECT_EQ(&u->loop(), &down.loop());
    down.context() = up;
  };
  proxy.data = [](Conn& down, std::string_view b) {
    if (Conn* u = std::any_cast<const ConnRef&>(down.context()).get()) u->write(b);
    return b.size();
  };
  proxy.closed = [&](Conn& down, std::error_code) {
    if (const auto* up = std::any_cast<ConnRef>(&down.context())) {
      if (Conn* u = up->get()) u->close();
    }
    down_closed.add();
  };
  RunningServer proxy_server(loopback_options(2), proxy);
  ASSERT_TRUE(proxy_server.status);

  // Several clients at once, so both proxy loops dial; each sends and reads concurrently.
  constexpr int kClients = 4;
  std::atomic<int> exact{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      const std::string payload = pattern(256 * 1024, 50 + static_cast<std::uint32_t>(i));
      Client client(proxy_server.address());
      if (!client.connected()) return;
      bool sent = false;
      std::thread sender([&] { sent = client.send_all(payload); });
      const std::string got = client.read_exactly(payload.size());
      sender.join();
      if (sent && got == payload) ++exact;
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(exact.load(), kClients) << "byte-exact round trips through the proxy";
  ASSERT_TRUE(down_closed.wait_for(kClients));
  ASSERT_TRUE(up_closed.wait_for(kClients));
  EXPECT_EQ(up_opened.value(), kClients);
  EXPECT_EQ(up_failed.load(), 0);
  proxy_server.server.stop();
  ASSERT_TRUE(proxy_server.server.wait());
  // Connections are handed to the loops in turn: each loop has clients, and dialled each one's
  // upstream itself.
  for (const LoopStats& s : proxy_server.server.stats()) {
    EXPECT_GT(s.dials, 0u);
    EXPECT_EQ(s.opened, 2 * s.dials) << "a client and its upstream, on the same loop";
    EXPECT_EQ(s.dial_failures, 0u);
  }
}

// --- 6. 1,000 dials at once ---------------------------------------------------------------------

TEST_F(ConnectTest, ThousandConcurrentDialsEchoRandomSizesByteExact) {
  constexpr int kDials = 1000;
  ASSERT_TRUE(raise_fd_limit(4 * kDials + 256));
  const std::string source = pattern(128 * 1024, 6);
  std::mt19937 rng(20261202);
  std::uniform_int_distribution<std::size_t> size_of(1, 64 * 1024);
  std::uniform_int_distribution<std::size_t> offset_of(0, 64 * 1024);

  EventCounter server_closed;
  std::atomic<int> server_errors{0};
  Callbacks echo = echo_callbacks();
  echo.closed = [&](Conn&, std::error_code ec) {
    if (ec) ++server_errors;
    server_closed.add();
  };
  RunningServer server(loopback_options(2), echo);
  ASSERT_TRUE(server.status);
  const std::string url = server.address().to_url();

  struct Progress {
    std::string_view expected;
    std::size_t received = 0;
    bool mismatch = false;
  };
  EventCounter opened, closed, failed;
  std::atomic<int> bad{0};  // wrong bytes, a wrong length, or an error at close
  std::atomic<std::uint64_t> bytes{0};
  std::mutex mutex;
  std::error_code first_failure;  // guarded by mutex
  const auto first_failure_text = [&] {
    std::lock_guard lock(mutex);
    return first_failure.message();
  };
  LoopGroup group(loop_options(2));
  ASSERT_TRUE(group.start());
  std::uint64_t expected_bytes = 0;
  for (int i = 0; i < kDials; ++i) {
    const std::string_view expected = std::string_view(source).substr(offset_of(rng), size_of(rng));
    expected_bytes += expected.size();
    Handlers h;
    h.opened = [&, expected](Conn& c) {
      c.context() = Progress{expected};
      c.write(expected);
      opened.add();
    };
    h.data = [&](Conn& c, std::string_view b) {
      auto& p = std::any_cast<Progress&>(c.context());
      if (b != p.expected.substr(p.received, b.size())) p.mismatch = true;
      p.received += b.size();
      if (p.received >= p.expected.size()) c.close();
      return b.size();
    };
    h.closed = [&](Conn& c, std::error_code ec) {
      const auto& p = std::any_cast<const Progress&>(c.context());
      if (ec || p.mismatch || p.received != p.expected.size()) ++bad;
      bytes += p.received;
      closed.add();
    };
    h.connect_failed = [&](Conn&, std::error_code ec) {
      {
        std::lock_guard lock(mutex);
        if (!first_failure) first_failure = ec;
      }
      failed.add();
    };
    ASSERT_TRUE(group.loop(static_cast<std::size_t>(i) % 2).connect(url, std::move(h)));
  }
  EXPECT_TRUE(closed.wait_for(kDials, 60s))
      << closed.value() << " closed, " << opened.value() << " opened, " << failed.value()
      << " failed (first: " << first_failure_text() << ")";
  EXPECT_TRUE(server_closed.wait_for(kDials, 10s)) << server_closed.value();
  group.stop();
  ASSERT_TRUE(group.wait());
  server.server.stop();
  ASSERT_TRUE(server.server.wait());

  EXPECT_EQ(opened.value(), kDials);
  EXPECT_EQ(closed.value(), kDials);
  EXPECT_EQ(failed.value(), 0);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(bytes.load(), expected_bytes);
  EXPECT_EQ(server_errors.load(), 0);
  const LoopStats client_stats = total(group);
  EXPECT_EQ(client_stats.dials, static_cast<std::uint64_t>(kDials));
  EXPECT_EQ(client_stats.opened, static_cast<std::uint64_t>(kDials));
  EXPECT_EQ(client_stats.closed, static_cast<std::uint64_t>(kDials));
  EXPECT_EQ(client_stats.dial_failures, 0u);
  EXPECT_EQ(client_stats.open_connections, 0u);
  for (const LoopStats& s : group.stats()) EXPECT_GT(s.opened, 0u) << "a loop dialled nothing";
  const LoopStats server_stats = total_stats(server.server);
  EXPECT_EQ(server_stats.opened, static_cast<std::uint64_t>(kDials));
  EXPECT_EQ(server_stats.closed, static_cast<std::uint64_t>(kDials));
}

// --- 7. host names ------------------------------------------------------------------------------

TEST_F(ConnectTest, HostNameIsResolvedOnOneResolverThreadThatStopsWithTheGroup) {
  RunningServer server(loopback_options(), echo_callbacks());
  ASSERT_TRUE(server.status);
  const std::string port = std::to_string(server.address().port());
  // Threads by id, not counted: a thread of the warm-up may leave /proc/self/task only now.
  const FdAndThreadCounts before;
  auto new_threads_are = [&](int n) {
    return eventually([&] { return threads_since(before) == n; });
  };
  LoopGroup group(loop_options(2));
  ASSERT_TRUE(group.start());
  EXPECT_TRUE(new_threads_are(2));

  // Dials `address` from `loop`, sends a line, waits for its echo and the close.
  auto echo_once = [&](std::size_t loop, const std::string& address) {
    DialLog log;
    std::string echoed;
    Handlers more;
    more.opened = [](Conn& c) {
      EXPECT_EQ(c.remote_address().to_string().rfind("127.0.0.1:", 0), 0u);
      c.write("by name");
    };
    more.data = [&](Conn& c, std::string_view b) {
      echoed.append(b);
      if (echoed.size() >= 7) c.close();
      return b.size();
    };
    group.loop(loop).connect(address, log.handlers(more));
    EXPECT_TRUE(log.closed.wait_for(1)) << address << ": " << log.failure_code().message();
    EXPECT_EQ(log.opened.value(), 1) << address;
    EXPECT_FALSE(log.close_code()) << address;
    return echoed;
  };
  EXPECT_EQ(echo_once(0, "tcp4://127.0.0.1:" + port), "by name");
  EXPECT_TRUE(new_threads_are(2)) << "a numeric dial needs no resolver";
  EXPECT_EQ(echo_once(0, "tcp://localhost:" + port), "by name");
  EXPECT_TRUE(new_threads_are(3)) << "one resolver thread";
  EXPECT_EQ(echo_once(1, "tcp4://localhost:" + port), "by name");
  EXPECT_TRUE(new_threads_are(3)) << "the resolver thread is shared by the loops";
  group.stop();
  ASSERT_TRUE(group.wait());
  EXPECT_TRUE(new_threads_are(0)) << threads_since(before) << " threads left after wait()";
}

TEST_F(ConnectTest, CloseWhileResolvingCancelsTheDial) {
  RunningServer server(loopback_options(), {});
  ASSERT_TRUE(server.status);
  const std::string url = "tcp://localhost:" + std::to_string(server.address().port());
  DialLog cancelled, later;
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  ASSERT_TRUE(run_on(group.loop(0), [&] {
    const ConnRef ref = group.loop(0).connect(url, cancelled.handlers());
    Conn* c = ref.get();
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->state(), ConnState::connecting);
    c->close();
  }));
  ASSERT_TRUE(cancelled.failed.wait_for(1));
  // The resolver answers in order: once a later lookup's dial has opened, the cancelled dial's
  // answer has come back too, and found nothing to open.
  Handlers close_at_once;
  close_at_once.opened = [](Conn& c) { c.close(); };
  group.loop(0).connect(url, later.handlers(close_at_once));
  ASSERT_TRUE(later.closed.wait_for(1));
  ASSERT_TRUE(run_on(group.loop(0), [] {}));
  group.stop();
  ASSERT_TRUE(group.wait());
  expect_failed_once(cancelled, errc::cancelled);
  EXPECT_EQ(later.opened.value(), 1);
  EXPECT_EQ(total(group).opened, 1u);
}

TEST_F(ConnectTest, StoppingTheGroupWhileResolvingFailsTheDialWithServerStopped) {
  RunningServer server(loopback_options(), {});
  ASSERT_TRUE(server.status);
  const std::string url = "tcp://localhost:" + std::to_string(server.address().port());
  DialLog log;
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  // The same task dials and stops: the loop stops before the resolver can answer.
  ASSERT_TRUE(run_on(group.loop(0), [&] {
    group.loop(0).connect(url, log.handlers());
    group.stop();
  }));
  ASSERT_TRUE(group.wait());
  expect_failed_once(log, errc::server_stopped);
}

// A process out of fds cannot look a name up either (glibc opens /etc/hosts, a DNS socket). The
// dial reports EMFILE, as a numeric dial would. glibc says EAI_SYSTEM with errno EMFILE, except
// for the process's first lookup, which must load its NSS modules: that one says EAI_NONAME,
// "Name or service not known", with errno EMFILE, and the dial said errc::resolve_failed, "cannot
// resolve host name", sending the user to DNS for a name that resolves. So this test makes no
// lookup before (it is not a ConnectTest, whose set-up makes one): run in a process of its own,
// as ctest runs each test, its lookup is the first.
TEST(ConnectLookupTest, ALookupOutOfFdsFailsWithEmfileNotResolveFailed) {
#if defined(__has_feature)
#if __has_feature(undefined_behavior_sanitizer)
  // Its vptr check needs a pipe the first time it meets a type: out of fds it reports an
  // "invalid vptr" where there is none (in the lookup's shared_ptrs), and a warm-up cannot meet
  // those types without making the lookup this test needs to be the first.
  GTEST_SKIP() << "UBSan's vptr check cannot run out of fds";
#endif
#endif
  const UnservedPort unserved;  // if the name resolved all the same, socket() fails with EMFILE
  const std::string url = "tcp://localhost:" + std::to_string(unserved.port());
  DialLog log;
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  std::vector<int> fillers;
  {
    // Every fd below the limit taken (the fillers fill the holes), until the dial has failed.
    rlimit low = old;
    low.rlim_cur = static_cast<rlim_t>(count_open_fds() + 8);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
    for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fillers.push_back(fd);
    const int error = errno;
    group.loop(0).connect(url, log.handlers());
    const bool failed = log.failed.wait_for(1);
    for (const int fd : fillers) ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &old);
    ASSERT_EQ(error, EMFILE);
    ASSERT_TRUE(failed);
  }
  group.stop();
  ASSERT_TRUE(group.wait());
  expect_failed_once(log, std::errc::too_many_files_open);
}

// --- 8. bad input -------------------------------------------------------------------------------

struct BadDial {
  std::string address;
  ConnectOptions options;
  std::error_code expected;
};

std::vector<BadDial> bad_dials(const std::string& target) {
  const auto with = [](auto set) {
    ConnectOptions o;
    set(o);
    return o;
  };
  const std::error_code address = errc::bad_address;
  const std::error_code scheme = errc::unknown_scheme;
  const std::error_code option = errc::bad_option;
  return {
      {"127.0.0.1", {}, address},  // no port
      {"tcp4://127.0.0.1", {}, address},
      {"tcp4://127.0.0.1:65536", {}, address},
      {"tcp4://127.0.0.1:80x", {}, address},
      {"tcp4://127.0.0.1:0", {}, address},  // port 0 cannot be dialled
      {"tcp://:8080", {}, address},         // no host
      {"tcp6://[::1:8080", {}, address},
      {"tcp4://[::1]:8080", {}, address},
      {"unix://", {}, address},
      {"", {}, address},
      {"bogus://127.0.0.1:8080", {}, scheme},
      {"fd://3", {}, scheme},  // a listening socket, not a peer
      {target + "?backlog=5", {}, option},
      {target, with([](ConnectOptions& o) { o.output_low_water = o.output_high_water + 1; }),
       option},
      {target, with([](ConnectOptions& o) { o.input_limit = 0; }), option},
      {target, with([](ConnectOptions& o) { o.socket_send_buffer = -1; }), option},
      {target, with([](ConnectOptions& o) { o.connect_timeout = -1ms; }), option},
      {target, with([](ConnectOptions& o) { o.source_address = "not-an-address"; }), address},
      {target, with([](ConnectOptions& o) { o.source_address = "localhost"; }), address},
      {target, with([](ConnectOptions& o) { o.source_address = "127.0.0.1:70000"; }), address},
      {target, with([](ConnectOptions& o) { o.source_address = "[::1"; }), address},
      // A source address is host[:port] only: an option there would be silently ignored.
      {target, with([](ConnectOptions& o) { o.source_address = "127.0.0.1:0?reuseport=1"; }),
       address},
  };
}

TEST_F(ConnectTest, BadInputFailsTheDialWithTheDocumentedCode) {
  // A port nobody listens on: a dial that wrongly got through fails with ECONNREFUSED instead.
  const UnservedPort unserved;
  const std::vector<BadDial> dials = bad_dials(loopback_url(unserved.port()));
  std::vector<std::unique_ptr<DialLog>> logs;
  for (std::size_t i = 0; i < dials.size(); ++i) logs.push_back(std::make_unique<DialLog>());
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  // Half from the loop thread (where connect_failed must still wait until connect() returns),
  // half from this thread.
  for (std::size_t i = 0; i < dials.size(); ++i) {
    const BadDial& d = dials[i];
    if (i % 2 == 0) {
      group.loop(0).connect(d.address, logs[i]->handlers(), d.options);
      continue;
    }
    ASSERT_TRUE(run_on(group.loop(0), [&] {
      group.loop(0).connect(d.address, logs[i]->handlers(), d.options);
      EXPECT_EQ(logs[i]->failed.value(), 0) << d.address << ": failed inside connect()";
    }));
  }
  for (std::size_t i = 0; i < dials.size(); ++i) ASSERT_TRUE(logs[i]->failed.wait_for(1)) << i;
  group.stop();
  ASSERT_TRUE(group.wait());
  for (std::size_t i = 0; i < dials.size(); ++i) {
    SCOPED_TRACE("dial " + std::to_string(i) + " '" + dials[i].address + "' source '" +
                 dials[i].options.source_address + "'");
    expect_failed_once(*logs[i], dials[i].expected);
  }
  const LoopStats stats = total(group);
  EXPECT_EQ(stats.dials, dials.size());
  EXPECT_EQ(stats.dial_failures, dials.size());
  EXPECT_EQ(stats.opened, 0u);
}

// UDP addresses parse as dial targets (connect_udp takes them), but Loop::connect is for streams:
// each fails with errc::unknown_scheme instead of being dialled over TCP to the same host and
// port, where a TCP server listens.
TEST_F(ConnectTest, UdpAddressFailsWithUnknownSchemeAndDialsNoTcp) {
  EventCounter accepted;
  Callbacks cb;
  cb.opened = [&](Conn&) { accepted.add(); };
  RunningServer server(loopback_options(), cb);
  ASSERT_TRUE(server.status);
  const std::string port = std::to_string(server.address().port());
  const std::vector<std::string> targets = {"udp://127.0.0.1:" + port, "udp4://127.0.0.1:" + port,
                                            "udp6://[::1]:" + port};
  std::vector<std::unique_ptr<DialLog>> logs;
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  for (const std::string& target : targets) {
    logs.push_back(std::make_unique<DialLog>());
    group.loop(0).connect(target, logs.back()->handlers());
  }
  for (std::size_t i = 0; i < logs.size(); ++i) {
    ASSERT_TRUE(eventually([&] { return logs[i]->failed.value() + logs[i]->opened.value() > 0; }))
        << targets[i] << ": neither failed nor opened";
  }
  group.stop();
  ASSERT_TRUE(group.wait());
  for (std::size_t i = 0; i < logs.size(); ++i) {
    SCOPED_TRACE(targets[i]);
    expect_failed_once(*logs[i], errc::unknown_scheme);
  }
  ASSERT_TRUE(settle(server.server));
  EXPECT_EQ(accepted.value(), 0);
}

// A source address that is well formed but cannot be bound (not on this host, taken, of the
// other family) fails the dial with bind's error; the server never sees a connection.
TEST_F(ConnectTest, SourceAddressThatCannotBeBoundFailsWithTheBindError) {
  EventCounter accepted;
  Callbacks cb;
  cb.opened = [&](Conn&) { accepted.add(); };
  RunningServer server(loopback_options(), cb);
  ASSERT_TRUE(server.status);
  DialLog not_local, taken, family;
  const int holder = bound_socket(0);  // holds 127.0.0.1:P without listening
  ASSERT_GE(holder, 0);
  const std::unique_ptr<const int, void (*)(const int*)> close_holder(
      &holder, [](const int* fd) { ::close(*fd); });
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  ConnectOptions o;
  // TEST-NET-1: no interface here has it, so bind fails locally (unless the host allows binding
  // foreign addresses: then this case proves nothing and is left out).
  const bool nonlocal_bind = [] {
    std::ifstream f("/proc/sys/net/ipv4/ip_nonlocal_bind");
    int on = 0;
    return f >> on && on != 0;
  }();
  if (!nonlocal_bind) {
    o.source_address = "192.0.2.1";
    group.loop(0).connect(server.address().to_url(), not_local.handlers(), o);
  }
  o.source_address = "127.0.0.1:" + std::to_string(port_of(holder));
  group.loop(0).connect(server.address().to_url(), taken.handlers(), o);
  o.source_address = "[::1]";
  group.loop(0).connect(server.address().to_url(), family.handlers(), o);
  if (!nonlocal_bind) {
    ASSERT_TRUE(not_local.failed.wait_for(1));
  }
  ASSERT_TRUE(taken.failed.wait_for(1));
  ASSERT_TRUE(family.failed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  if (!nonlocal_bind) expect_failed_once(not_local, std::errc::address_not_available);
  expect_failed_once(taken, std::errc::address_in_use);
  expect_failed_once(family, std::errc::address_family_not_supported);  // an IPv6 source, IPv4 peer
  ASSERT_TRUE(settle(server.server));
  EXPECT_EQ(accepted.value(), 0);
}

// --- 9. source address --------------------------------------------------------------------------

TEST_F(ConnectTest, SourceAddressBindsTheLocalSide) {
  std::mutex mutex;
  std::vector<std::string> peers_seen;  // by the server
  EventCounter server_opened;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    {
      std::lock_guard lock(mutex);
      peers_seen.push_back(c.remote_address().to_string());
    }
    server_opened.add();
    c.close();
  };
  RunningServer server(loopback_options(), cb);
  ASSERT_TRUE(server.status);
  // An explicit local port as well: held on 127.0.0.1, free on 127.0.0.4.
  const UnservedPort held;
  const std::uint16_t fixed_port = held.port();
  ASSERT_NE(fixed_port, 0);
  const std::vector<std::string> sources = {"127.0.0.2", "127.0.0.3:0",
                                            "127.0.0.4:" + std::to_string(fixed_port)};
  std::vector<std::string> locals(sources.size());  // as the dialled connections saw themselves
  std::vector<std::unique_ptr<DialLog>> logs;
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  for (std::size_t i = 0; i < sources.size(); ++i) {
    logs.push_back(std::make_unique<DialLog>());
    Handlers more;
    more.opened = [&locals, i](Conn& c) { locals[i] = c.local_address().to_string(); };
    ConnectOptions o;
    o.source_address = sources[i];
    group.loop(0).connect(server.address().to_url(), logs[i]->handlers(more), o);
    ASSERT_TRUE(logs[i]->closed.wait_for(1))
        << sources[i] << ": " << logs[i]->failure_code().message();
  }
  ASSERT_TRUE(server_opened.wait_for(3));
  group.stop();
  ASSERT_TRUE(group.wait());
  std::lock_guard lock(mutex);
  ASSERT_EQ(peers_seen.size(), 3u);
  EXPECT_EQ(peers_seen[0].rfind("127.0.0.2:", 0), 0u) << peers_seen[0];
  EXPECT_EQ(peers_seen[1].rfind("127.0.0.3:", 0), 0u) << peers_seen[1];
  EXPECT_EQ(peers_seen[2], "127.0.0.4:" + std::to_string(fixed_port));
  for (std::size_t i = 0; i < sources.size(); ++i) {
    EXPECT_EQ(locals[i], peers_seen[i]) << "both ends agree on the dialler's address";
    EXPECT_EQ(logs[i]->opened.value(), 1);
  }
}

// --- 10. self-connect ---------------------------------------------------------------------------

// Dialling 127.0.0.1:P from 127.0.0.1:P, with nobody listening on P: TCP simultaneous open
// connects the socket to itself. That is not a connection to a server.
TEST_F(ConnectTest, SelfConnectIsRejected) {
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  const int fds = count_open_fds();
  // Another test's socket may take the freed port first (bind then fails with EADDRINUSE):
  // that attempt proves nothing, so try another port.
  std::vector<std::unique_ptr<DialLog>> logs;
  for (int attempt = 0; attempt < 5; ++attempt) {
    const std::uint16_t port = freed_port();
    ASSERT_NE(port, 0);
    logs.push_back(std::make_unique<DialLog>());
    ConnectOptions o;
    o.source_address = "127.0.0.1:" + std::to_string(port);
    group.loop(0).connect(loopback_url(port), logs.back()->handlers(), o);
    ASSERT_TRUE(logs.back()->failed.wait_for(1));
    EXPECT_TRUE(settles_to(count_open_fds, fds)) << "the dial's socket leaked";
    if (logs.back()->failure_code() != std::errc::address_in_use) break;
  }
  group.stop();
  ASSERT_TRUE(group.wait());
  expect_failed_once(*logs.back(), errc::self_connect);
  EXPECT_EQ(total(group).opened, 0u);
  EXPECT_EQ(total(group).dial_failures, logs.size());
}

// --- 11. writes while connecting ----------------------------------------------------------------

TEST_F(ConnectTest, WritesOnTheLoopThreadRightAfterConnectAreSentInOrderOnceOpen) {
  RunningServer server(loopback_options(), echo_callbacks());
  ASSERT_TRUE(server.status);
  const std::string big = pattern(200 * 1024, 11);
  const std::string expected = "first|" + big + "|opened";
  DialLog log;
  std::string echoed;
  std::size_t pending_at_open = 0;
  Handlers more;
  more.opened = [&](Conn& c) {
    pending_at_open = c.output_pending();  // nothing was sent before the connection opened
    c.write("|opened");
  };
  more.data = [&](Conn& c, std::string_view b) {
    echoed.append(b);
    if (echoed.size() >= expected.size()) c.close();
    return b.size();
  };
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  ASSERT_TRUE(run_on(group.loop(0), [&] {
    const ConnRef ref = group.loop(0).connect(server.address().to_url(), log.handlers(more));
    Conn* c = ref.get();
    ASSERT_NE(c, nullptr);
    c->write("first|");
    c->write(big);
    EXPECT_EQ(c->state(), ConnState::connecting);
    EXPECT_EQ(c->output_pending(), 6 + big.size());
  }));
  ASSERT_TRUE(log.closed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  EXPECT_EQ(pending_at_open, 6 + big.size());
  EXPECT_EQ(echoed.size(), expected.size());
  EXPECT_TRUE(echoed == expected);
  EXPECT_FALSE(log.close_code());
}

TEST_F(ConnectTest, WritesFromAnotherThreadWhileConnectingAreSentInOrderOnceOpen) {
  RunningServer server(loopback_options(), echo_callbacks());
  ASSERT_TRUE(server.status);
  const std::string big = pattern(200 * 1024, 12);
  const std::string expected = "A" + big + "B" + "C";
  DialLog log;
  std::string echoed;
  std::atomic<bool> connecting_at_b{false};
  Handlers more;
  more.data = [&](Conn& c, std::string_view b) {
    echoed.append(b);
    if (echoed.size() >= expected.size()) c.close();
    return b.size();
  };
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  {
    // While the loop is held, the dial and the writes queue up and then run in one batch,
    // before the loop can learn that the connect completed.
    LoopHold hold(group.loop(0));
    ASSERT_TRUE(hold.holding());
    const ConnRef ref = group.loop(0).connect(server.address().to_url(), log.handlers(more));
    ASSERT_TRUE(ref);
    EXPECT_TRUE(ref.write("A"));
    EXPECT_TRUE(ref.write(big));
    EXPECT_TRUE(ref.post([&](Conn& c) {
      connecting_at_b = c.state() == ConnState::connecting;
      c.write("B");
    }));
    EXPECT_TRUE(ref.write("C"));
  }
  ASSERT_TRUE(log.closed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  EXPECT_TRUE(connecting_at_b.load());
  EXPECT_EQ(echoed.size(), expected.size());
  EXPECT_TRUE(echoed == expected);
  EXPECT_EQ(log.opened.value(), 1);
}

// shutdown_write() while connecting: once open, the bytes written before it go out, then the FIN;
// the server answers at its EOF and closes, and the dialled connection closes cleanly.
TEST_F(ConnectTest, WritesRightAfterMoreDialsThanOneBatchOpensAreEachSent) {
  // A loop opens at most 256 queued dials per iteration. A write posted right after its dial
  // must still find the connection, in whichever batch the dial is opened.
  RunningServer server(loopback_options(), echo_callbacks());
  ASSERT_TRUE(server.status);
  constexpr int kDials = 400;
  const std::string message = "hello, dial";
  DialLog log;
  std::atomic<int> echoes{0}, wrong_echoes{0}, closed_with_error{0};
  Handlers more;
  more.data = [&](Conn& c, std::string_view b) {
    if (b.size() < message.size()) return std::size_t{0};  // wait for the whole echo
    (b == message ? echoes : wrong_echoes) += 1;
    c.close();
    return b.size();
  };
  more.closed = [&](Conn&, std::error_code ec) { closed_with_error += ec ? 1 : 0; };
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  {
    LoopHold hold(group.loop(0));  // every dial and write queued before the loop takes any
    ASSERT_TRUE(hold.holding());
    for (int i = 0; i < kDials; ++i) {
      const ConnRef ref = group.loop(0).connect(server.address().to_url(), log.handlers(more));
      ASSERT_TRUE(ref);
      ASSERT_TRUE(ref.write(message));
    }
  }
  EXPECT_TRUE(log.closed.wait_for(kDials))
      << "closed " << log.closed.value() << " of " << kDials << ": the other writes were lost";
  group.stop();
  ASSERT_TRUE(group.wait());
  EXPECT_EQ(log.opened.value(), kDials);
  EXPECT_EQ(log.failed.value(), 0);
  EXPECT_EQ(closed_with_error.load(), 0);
  EXPECT_EQ(echoes.load(), kDials);
  EXPECT_EQ(wrong_echoes.load(), 0);
}

TEST_F(ConnectTest, ShutdownWriteWhileConnectingSendsTheBytesThenTheFinOnceOpen) {
  Callbacks cb;
  std::string request;  // server loop thread until the server stops
  cb.data = [&](Conn&, std::string_view b) {
    request.append(b);
    return b.size();
  };
  cb.eof = [&](Conn& c) {
    c.write("got " + std::to_string(request.size()));
    c.close();
  };
  RunningServer server(loopback_options(), cb);
  ASSERT_TRUE(server.status);
  const std::string body = pattern(100 * 1024, 13);
  DialLog log;
  std::string reply;
  Handlers more;
  more.data = [&](Conn&, std::string_view b) {
    reply.append(b);
    return b.size();
  };
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  ASSERT_TRUE(run_on(group.loop(0), [&] {
    const ConnRef ref = group.loop(0).connect(server.address().to_url(), log.handlers(more));
    Conn* c = ref.get();
    ASSERT_NE(c, nullptr);
    c->write(body);
    c->shutdown_write();
    c->write("ignored after shutdown_write");
    EXPECT_EQ(c->state(), ConnState::connecting);
  }));
  ASSERT_TRUE(log.closed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  server.server.stop();
  ASSERT_TRUE(server.server.wait());
  EXPECT_EQ(log.opened.value(), 1);
  EXPECT_FALSE(log.close_code()) << log.close_code().message();
  EXPECT_EQ(reply, "got " + std::to_string(body.size()));
  EXPECT_TRUE(request == body);
}

// Output written while connecting counts against output_limit like any other: past it the
// dial fails (the connection never opened, so `connect_failed`, not `closed`).
TEST_F(ConnectTest, OutputLimitPassedWhileConnectingFailsTheDial) {
  FullListener full;
  ASSERT_TRUE(full.full());
  DialLog log;
  ConnectOptions o;
  o.connect_timeout = 60s;
  o.output_high_water = 1024;
  o.output_low_water = 512;
  o.output_limit = 4096;
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  ASSERT_TRUE(run_on(group.loop(0), [&] {
    const ConnRef ref = group.loop(0).connect(full.url(), log.handlers(), o);
    Conn* c = ref.get();
    ASSERT_NE(c, nullptr);
    c->write(std::string(4096, 'x'));  // at the limit: kept
    EXPECT_EQ(c->output_pending(), 4096u);
    c->write("y");  // past it
  }));
  ASSERT_TRUE(log.failed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  expect_failed_once(log, errc::output_limit);
  EXPECT_EQ(total(group).output_buffered, 0u);
}

// --- 12. Unix sockets ---------------------------------------------------------------------------

TEST_F(ConnectTest, DialsAUnixSocket) {
  const std::string path = temp_socket_path("dial");
  Options o;
  o.listen = {"unix://" + path};
  RunningServer server(o, echo_callbacks());
  ASSERT_TRUE(server.status) << server.status.message();
  const std::string payload = pattern(256 * 1024, 12);
  DialLog log, nobody;
  std::string echoed;
  Handlers more;
  more.opened = [&](Conn& c) {
    EXPECT_EQ(c.remote_address().family(), AF_UNIX);
    c.write(payload);
  };
  more.data = [&](Conn& c, std::string_view b) {
    echoed.append(b);
    if (echoed.size() >= payload.size()) c.close();
    return b.size();
  };
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  group.loop(0).connect("unix://" + path, log.handlers(more));
  group.loop(0).connect("unix://" + temp_socket_path("nobody"), nobody.handlers());
  ASSERT_TRUE(log.closed.wait_for(1)) << log.failure_code().message();
  ASSERT_TRUE(nobody.failed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  EXPECT_EQ(log.opened.value(), 1);
  EXPECT_FALSE(log.close_code());
  EXPECT_EQ(echoed.size(), payload.size());
  EXPECT_TRUE(echoed == payload);
  expect_failed_once(nobody, std::errc::no_such_file_or_directory);
}

// A Unix listener (backlog 0) that does not accept, its queue filled until a non-blocking
// connect says EAGAIN, as it does to a dial while the queue is full. take_one() accepts one
// queued connection (and closes it), which makes room for one more.
class FullUnixListener {
 public:
  explicit FullUnixListener(std::string path) : path_(std::move(path)) {
    sockaddr_un a = address();
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(fd_, 0) != 0) {
      return;
    }
    for (int i = 0; i < 256 && !full_; ++i) {
      const int c = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (c < 0) return;
      if (::connect(c, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) {
        fillers_.push_back(c);
        continue;
      }
      full_ = errno == EAGAIN;
      ::close(c);
      if (!full_) return;
    }
  }
  ~FullUnixListener() {
    for (int c : fillers_) ::close(c);
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  FullUnixListener(const FullUnixListener&) = delete;
  FullUnixListener& operator=(const FullUnixListener&) = delete;

  bool full() const { return full_; }
  std::string url() const { return "unix://" + path_; }
  bool take_one() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(kWait.count())) != 1) return false;
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return false;
    ::close(c);
    return true;
  }

 private:
  sockaddr_un address() const {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path_.copy(a.sun_path, sizeof a.sun_path - 1);
    return a;
  }
  std::string path_;
  int fd_ = -1;
  std::vector<int> fillers_;
  bool full_ = false;
};

// A non-blocking connect to a Unix socket whose listener's backlog is full fails with EAGAIN,
// where a blocking connect waits for room (and a TCP dial's SYN is retried). Before, the dial
// failed at once with EAGAIN, "Resource temporarily unavailable": a burst of dials to a local
// server lost all those beyond its backlog. Now it waits for room within connect_timeout, and
// fails with errc::connect_timeout if none comes.
TEST_F(ConnectTest, ADialToAUnixSocketWithAFullBacklogWaitsForRoom) {
  FullUnixListener listener(temp_socket_path("full"));
  ASSERT_TRUE(listener.full());
  DialLog timed_out, waited;
  Handlers close_at_once;
  close_at_once.opened = [](Conn& c) { c.close(); };
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  ConnectOptions brief;
  brief.connect_timeout = 50ms;
  group.loop(0).connect(listener.url(), timed_out.handlers(), brief);
  ASSERT_TRUE(timed_out.failed.wait_for(1));

  // From the loop thread, the first connect is made inside connect(); the next task runs after
  // what it scheduled has settled (a failure would have fired by then).
  ConnRef ref;
  ASSERT_TRUE(run_on(group.loop(0), [&] {
    ref = group.loop(0).connect(listener.url(), waited.handlers(close_at_once));
  }));
  ASSERT_TRUE(run_on(group.loop(0), [&] {
    Conn* c = ref.get();
    ASSERT_NE(c, nullptr) << "failed at once: " << waited.failure_code().message();
    EXPECT_EQ(c->state(), ConnState::connecting);
  }));
  ASSERT_TRUE(listener.take_one());
  ASSERT_TRUE(waited.closed.wait_for(1)) << waited.failure_code().message();
  group.stop();
  ASSERT_TRUE(group.wait());
  expect_failed_once(timed_out, errc::connect_timeout);
  EXPECT_EQ(waited.opened.value(), 1);
  EXPECT_EQ(waited.failed.value(), 0);
  EXPECT_FALSE(waited.close_code());
}

// A dial waiting for room on a Unix socket ends once, when cancelled or stopped.
TEST_F(ConnectTest, ADialWaitingForRoomOnAUnixSocketEndsOnceOnCloseOrStop) {
  FullUnixListener listener(temp_socket_path("full"));
  ASSERT_TRUE(listener.full());
  DialLog cancelled, stopped;
  LoopGroup group(loop_options(1));
  ASSERT_TRUE(group.start());
  ConnectOptions unbounded;
  unbounded.connect_timeout = 0ms;  // waits for room as long as it takes
  const ConnRef ref = group.loop(0).connect(listener.url(), cancelled.handlers(), unbounded);
  group.loop(0).connect(listener.url(), stopped.handlers(), unbounded);
  ASSERT_TRUE(run_on(group.loop(0), [] {}));  // both dials have made their first connect
  EXPECT_TRUE(ref.close());
  ASSERT_TRUE(cancelled.failed.wait_for(1));
  group.stop();
  ASSERT_TRUE(group.wait());
  expect_failed_once(cancelled, errc::cancelled);
  expect_failed_once(stopped, errc::server_stopped);
}

}  // namespace
}  // namespace evloop::test
