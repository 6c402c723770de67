// Running out of fds (EMFILE) neither spins the loop nor stops the server: it serves the
// waiting connections once fds are free again. The Go ancestor's accept loop died here.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <thread>

#include "test_support.hpp"

namespace evloop::test {
namespace {

TEST(EmfileTest, AcceptPausesWithoutSpinningAndRecoversWhenFdsFree) {
  Callbacks cb;
  cb.data = [](Conn& c, std::string_view b) {
    c.write(b);
    return b.size();
  };
  // Client sockets exist before the limit drops, so connecting needs no new fd in this process.
  // The limit drops before the server starts, as a ulimit does: io_uring's multishot accept reads
  // the limit when it is armed (the kernel takes RLIMIT_NOFILE when the request is submitted).
  constexpr int kClients = 40;
  std::vector<int> clients;
  for (int i = 0; i < kClients; ++i) {
    const int fd = open_stream_socket(AF_INET);
    ASSERT_GE(fd, 0);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    clients.push_back(fd);
  }
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  struct RestoreFdLimit {  // however the test ends
    rlimit saved;
    ~RestoreFdLimit() { ::setrlimit(RLIMIT_NOFILE, &saved); }
  } const restore{old};
  rlimit low = old;
  // Room for the server's own fds (poller, waker, listener; libkqueue's helpers) and a few
  // connections, far fewer than the clients.
  low.rlim_cur = static_cast<rlim_t>(count_open_fds() + 16);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status) << s.status.message();

  for (int fd : clients) {  // the kernel completes these into the backlog
    ASSERT_EQ(::connect(fd, static_cast<const sockaddr*>(s.address().data()),
                        static_cast<socklen_t>(s.address().size())),
              0);
  }
  ASSERT_TRUE(eventually([&] { return total_stats(s.server).accept_errors > 0; }));
  // Over an interval (by design, a measurement) the loop waits, it does not spin: a
  // level-triggered listener that cannot be accepted from would make millions of iterations.
  const LoopStats before = total_stats(s.server);
  std::this_thread::sleep_for(300ms);
  const LoopStats after = total_stats(s.server);
  EXPECT_LT(after.waits - before.waits, 60u) << "the loop spins on EMFILE";
  EXPECT_LT(after.opened, static_cast<std::uint64_t>(kClients));

  // Serve the clients in order, closing each: every close frees an fd for the next accept.
  for (int i = 0; i < kClients; ++i) {
    const int fd = clients[static_cast<std::size_t>(i)];
    ASSERT_EQ(::send(fd, "ping", 4, kSendFlags), 4) << "client " << i;
    char buf[4];
    ASSERT_EQ(::recv(fd, buf, 4, MSG_WAITALL), 4) << "client " << i << " was not served";
    EXPECT_EQ(std::string(buf, 4), "ping");
    ::close(fd);
  }
  ::setrlimit(RLIMIT_NOFILE, &old);
  ASSERT_TRUE(settle(s.server));
  EXPECT_EQ(total_stats(s.server).opened, static_cast<std::uint64_t>(kClients));
}

}  // namespace
}  // namespace evloop::test
