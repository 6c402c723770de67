// Graceful shutdown from another thread, a callback and a signal handler; pending output is
// flushed within the grace period; nothing is left open afterwards.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <future>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace evloop::test {
namespace {

TEST(ShutdownTest, StopFromAnotherThreadEndsRun) {
  EventCounter serving;
  Callbacks cb;
  cb.serving = [&](const ServingInfo&) { serving.add(); };
  Server server(loopback_options(2), cb);
  Status status;
  std::thread runner([&] { status = server.run(); });
  ASSERT_TRUE(serving.wait_for(1));
  server.stop();
  runner.join();  // bounded by the test timeout; run() must return
  EXPECT_TRUE(status) << status.message();
  EXPECT_FALSE(server.running());
}

// A goodbye: a write posted from another thread, then stop(). The task was queued before the
// stop, so it runs before the loop closes its connections and its bytes go before the FIN. The
// loop is held in a task of its own meanwhile, so it sees the write and the stop at once, after
// the batch it was running (a stop noticed first closed the connection, and the write that came
// after it was dropped).
TEST(ShutdownTest, AWritePostedBeforeStopIsSentBeforeTheConnectionCloses) {
  std::promise<ConnRef> opened;
  ErrorLog closed;
  Callbacks cb;
  cb.opened = [&](Conn& c) { opened.set_value(c.ref()); };
  cb.closed = closed.recorder();
  RunningServer s(loopback_options(1), cb);
  ASSERT_TRUE(s.status) << s.status.message();
  Client client(s.address());
  ASSERT_TRUE(client.connected());
  auto ref = opened.get_future();
  ASSERT_EQ(ref.wait_for(kWait), std::future_status::ready);
  const ConnRef conn = ref.get();

  LoopHold hold(s.server.loop(0));
  ASSERT_TRUE(hold.holding());
  ASSERT_TRUE(conn.write(std::string("goodbye\n")));
  s.server.stop();
  hold.release();

  expect_stream_then_fin(client, "goodbye\n");
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_EQ(closed.last(), errc::server_stopped);
}

TEST(ShutdownTest, StopFromACallbackEndsRun) {
  Server* self = nullptr;
  Callbacks cb;
  cb.data = [&](Conn&, std::string_view b) {
    self->stop();
    return b.size();
  };
  SocketAddress addr;
  EventCounter serving;
  cb.serving = [&](const ServingInfo& info) {
    addr = info.addresses.at(0);
    serving.add();
  };
  Server server(loopback_options(), cb);
  self = &server;
  Status status;
  std::thread runner([&] { status = server.run(); });
  ASSERT_TRUE(serving.wait_for(1));
  Client c(addr);
  ASSERT_TRUE(c.send_all("stop"));
  runner.join();
  EXPECT_TRUE(status);
  EXPECT_TRUE(c.wait_eof());
}

Server* g_server = nullptr;
extern "C" void stop_on_signal(int) { g_server->stop(); }

TEST(ShutdownTest, StopFromASignalHandlerEndsRun) {
  EventCounter serving;
  Callbacks cb;
  cb.serving = [&](const ServingInfo&) { serving.add(); };
  Server server(loopback_options(2), cb);
  g_server = &server;
  struct sigaction sa {
  }, old{};
  sa.sa_handler = stop_on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, &old);
  Status status;
  std::thread runner([&] { status = server.run(); });
  ASSERT_TRUE(serving.wait_for(1));
  ::kill(::getpid(), SIGUSR1);
  runner.join();
  sigaction(SIGUSR1, &old, nullptr);
  EXPECT_TRUE(status);
}

TEST(ShutdownTest, StopFlushesPendingOutputThenCloses) {
  const std::string payload = pattern(8u << 20, 9);
  EventCounter opened;
  ErrorLog closed;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    c.write(payload);
    opened.add();
  };
  cb.closed = closed.recorder();
  Options o = loopback_options();
  o.shutdown_grace = 10s;
  o.socket_send_buffer = 4096;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  ASSERT_TRUE(opened.wait_for(1));
  s.server.stop();  // while most of the payload is still pending
  bool eof = false;
  const std::string got = client.read_to_eof(&eof);
  s.server.wait();
  EXPECT_TRUE(eof);
  EXPECT_EQ(got.size(), payload.size());
  EXPECT_TRUE(got == payload);
  ASSERT_EQ(closed.count(), 1);
  EXPECT_EQ(closed.first(), errc::server_stopped);
}

// True when a connect to `addr` is refused (nothing listens there any more). Non-blocking with a
// bound: a listening socket nobody accepts from fills its backlog, and a connect then hangs.
bool refuses_connections(const SocketAddress& addr) {
  const int fd = open_stream_socket(addr.family(), true);
  if (fd < 0) return false;
  int error = 0;
  if (::connect(fd, static_cast<const sockaddr*>(addr.data()),
                static_cast<socklen_t>(addr.size())) != 0) {
    error = errno;
    pollfd p{fd, POLLOUT, 0};
    if (error == EINPROGRESS && ::poll(&p, 1, 1000) == 1) {
      socklen_t len = sizeof error;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
    }
  }
  ::close(fd);
  return error == ECONNREFUSED;
}

// The listeners close when the stop begins, not when the last connection has drained: new
// connections are refused (not accepted and closed) during the grace period. On io_uring the
// multishot accept holds the listening socket until its cancel has run.
TEST(ShutdownTest, ListenersCloseWhenTheStopBeginsWhileOutputDrains) {
  EventCounter opened;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    c.write(pattern(8u << 20, 3));
    opened.add();
  };
  Options o = loopback_options(2);
  o.reuseport = true;
  o.shutdown_grace = 10s;
  o.socket_send_buffer = 4096;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);  // reads nothing until the check below
  ASSERT_TRUE(opened.wait_for(1));
  s.server.stop();
  EXPECT_TRUE(eventually([&] { return refuses_connections(s.address()); }));
  bool eof = false;
  EXPECT_EQ(client.read_to_eof(&eof).size(), 8u << 20);  // the stream still finishes
  EXPECT_TRUE(eof);
  s.server.wait();
}

// Once wait() has returned nothing listens on the server's addresses, even while the Server
// object lives on.
TEST(ShutdownTest, NothingListensAfterWaitReturns) {
  Options o = loopback_options(2);
  o.reuseport = true;
  RunningServer s(o, {});
  ASSERT_TRUE(s.status);
  s.server.stop();
  s.server.wait();
  EXPECT_TRUE(refuses_connections(s.address()));
}

TEST(ShutdownTest, GracePeriodBoundsAPeerThatNeverReads) {
  EventCounter opened;
  std::error_code error;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    c.write(pattern(16u << 20));
    opened.add();
  };
  cb.closed = [&](Conn&, std::error_code ec) { error = ec; };
  Options o = loopback_options();
  o.shutdown_grace = 100ms;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  ASSERT_TRUE(opened.wait_for(1));
  const auto start = std::chrono::steady_clock::now();
  s.server.stop();
  s.server.wait();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(error, errc::shutdown_timeout) << error.message();
  // The output was cut short: the peer sees a reset, not a clean end.
  bool eof = true;
  client.read_to_eof(&eof);
  EXPECT_FALSE(eof);
  EXPECT_EQ(errno, ECONNRESET);
}

// Once wait() has returned, every connection has ended on the wire too, while the Server still
// exists: paused ones included, with their peers' bytes unread. (On io_uring a closed socket
// stays open while a poll on it is being cancelled; a stop that did not wait for those left
// most of 100 paused peers without an end until ~Server.)
TEST(ShutdownTest, PausedConnectionsEndOnTheWireBeforeWaitReturns) {
  constexpr int kClients = 200;
  EventCounter opened;
  Callbacks cb;
  cb.opened = [&opened](Conn& c) {
    c.pause_reading();
    opened.add();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  std::vector<Client> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(s.address());
    ASSERT_TRUE(clients.back().send_all("unread"));
  }
  ASSERT_TRUE(opened.wait_for(kClients));
  s.server.stop();
  s.server.wait();
  // Each peer reads its end (EOF, or a reset for the unread bytes), all within one bound.
  std::vector<pollfd> waiting;
  for (const Client& c : clients) waiting.push_back({c.fd(), POLLIN, 0});
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (!waiting.empty() && std::chrono::steady_clock::now() < deadline) {
    ASSERT_GE(::poll(waiting.data(), waiting.size(), 100), 0);
    std::erase_if(waiting, [](const pollfd& p) {
      if (p.revents == 0) return false;
      char buf[64];
      const ssize_t r = ::recv(p.fd, buf, sizeof buf, MSG_DONTWAIT);
      return r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
    });
  }
  EXPECT_EQ(waiting.size(), 0u) << "peers that saw no end after wait() returned";
}

TEST(ShutdownTest, NoFdOrThreadLeftAfterStop) {
  {  // the first server initialises whatever the process keeps (e.g. resolver state)
    RunningServer warm(loopback_options(), {});
  }
  const FdAndThreadCounts before;
  {
    Options o = loopback_options(3);
    const std::string path = temp_socket_path("leak");
    o.listen.push_back("unix://" + path);
    o.listen.push_back("tcp4://127.0.0.1:0?reuseport=1");
    EventCounter opened;
    Callbacks cb;
    cb.opened = [&](Conn&) { opened.add(); };
    RunningServer s(o, cb);
    ASSERT_TRUE(s.status) << s.status.message();
    EXPECT_TRUE(eventually([&] { return threads_since(before) == 3; }));  // the loops
    std::vector<Client> clients;
    for (int i = 0; i < 10; ++i) clients.emplace_back(s.address(i % 3));
    ASSERT_TRUE(opened.wait_for(10));
    s.server.stop();
    s.server.wait();
  }
  EXPECT_TRUE(counts_return_to(before));
}

}  // namespace
}  // namespace evloop::test
