// io_uring's provided receive buffers running out. A receive that finds every buffer in use ends
// with ENOBUFS and must be asked again once buffers come back (the next wait recycles them),
// neither failing its connection nor losing or reordering a byte. With the default 512 buffers
// loopback never runs out; LoopOptions::uring_buffers = 1 (one small and one large buffer per
// loop) makes many connections sending at once run out at almost every wait.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace evloop::test {
namespace {

constexpr int kConnections = kSanitized ? 16 : 48;
// Over a small buffer (16 KiB), so large receives run out as well as small ones.
constexpr std::size_t kBytesEach = 96 * 1024;

// A connected socket (a blocking connect: loopback completes it in the kernel), or -1. Its
// sends and receives use MSG_DONTWAIT.
int connect_to(const SocketAddress& addr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, static_cast<const sockaddr*>(addr.data()),
                static_cast<socklen_t>(addr.size())) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends the first `n` bytes of sent[i] on every fds[i]; returns how many each took.
std::vector<std::size_t> send_first(const std::vector<int>& fds,
                                    const std::vector<std::string>& sent, std::size_t n) {
  std::vector<std::size_t> offset(fds.size(), 0);
  for (std::size_t i = 0; i < fds.size(); ++i) {
    const ssize_t took =
        ::send(fds[i], sent[i].data(), std::min(sent[i].size(), n), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (took > 0) offset[i] = static_cast<std::size_t>(took);
  }
  return offset;
}

// Sends the rest of sent[i] (from offset[i]) on fds[i] while reading the echo into got[i], all
// connections at once from one thread (poll), until every echo is complete or `within` passes.
// Returns the complete ones.
int echo_all(const std::vector<int>& fds, const std::vector<std::string>& sent,
             std::vector<std::size_t> offset, std::vector<std::string>& got,
             std::chrono::milliseconds within) {
  got.assign(fds.size(), {});
  int complete = 0;
  const auto deadline = std::chrono::steady_clock::now() + within;
  std::vector<pollfd> pfds(fds.size());
  while (complete < static_cast<int>(fds.size()) && std::chrono::steady_clock::now() < deadline) {
    for (std::size_t i = 0; i < fds.size(); ++i) {
      const bool done = got[i].size() >= sent[i].size();
      const short events =
          static_cast<short>((done ? 0 : POLLIN) | (offset[i] < sent[i].size() ? POLLOUT : 0));
      pfds[i] = {events != 0 ? fds[i] : -1, events, 0};
    }
    if (::poll(pfds.data(), pfds.size(), 100) <= 0) continue;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (pfds[i].revents & POLLOUT) {
        const ssize_t n = ::send(fds[i], sent[i].data() + offset[i], sent[i].size() - offset[i],
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) offset[i] += static_cast<std::size_t>(n);
      }
      if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        char buf[16384];
        const ssize_t n = ::recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
          got[i].append(buf, static_cast<std::size_t>(n));
          if (got[i].size() >= sent[i].size()) ++complete;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          offset[i] = sent[i].size();  // closed on us: stop; the byte check reports it
          got[i].append(sent[i].size() + 1 - got[i].size(), '!');
          ++complete;
        }
      }
    }
  }
  return complete;
}

TEST(UringBuffersTest, ManyConnectionsSharingOneBufferEachGetEveryByteInOrder) {
  std::atomic<bool> stopping{false};
  std::atomic<int> closed_early{0};  // closed before the test stopped the server
  EventCounter opened;
  Callbacks cb;
  cb.opened = [&](Conn&) { opened.add(); };
  cb.data = [](Conn& c, std::string_view bytes) {
    c.write(bytes);
    return bytes.size();
  };
  cb.closed = [&](Conn&, std::error_code) {
    if (!stopping.load()) closed_early.fetch_add(1);
  };
  Options options = loopback_options();
  options.backend = Backend::io_uring;
  options.uring_buffers = 1;  // one small and one large provided buffer for the loop
  RunningServer s(options, cb);
  ASSERT_TRUE(s.status) << s.status.message();
  if (std::string(s.server.backend()) != "io_uring") {
    GTEST_SKIP() << "io_uring unavailable here: " << s.server.backend();
  }
  std::vector<int> fds;
  for (int i = 0; i < kConnections; ++i) {
    fds.push_back(connect_to(s.address()));
    ASSERT_GE(fds.back(), 0);
  }
  std::vector<std::string> sent;
  for (int i = 0; i < kConnections; ++i) {
    sent.push_back(pattern(kBytesEach, static_cast<std::uint32_t>(i + 1)));
  }
  ASSERT_TRUE(opened.wait_for(kConnections));
  // Every connection's first piece arrives while the loop is held: its next wait then finds them
  // all received at once, with one buffer for the lot. Then the rest, as the echo comes back.
  std::vector<std::size_t> offset;
  {
    LoopHold hold(s.server.loop(0));
    ASSERT_TRUE(hold.holding());
    offset = send_first(fds, sent, 16 * 1024);
  }
  std::vector<std::string> got;
  EXPECT_EQ(echo_all(fds, sent, std::move(offset), got, 30s), kConnections);
  int wrong = 0;
  for (std::size_t i = 0; i < fds.size(); ++i) wrong += got[i] != sent[i] ? 1 : 0;
  EXPECT_EQ(wrong, 0) << "connections whose echo differs from what they sent";
  const LoopStats stats = total_stats(s.server);
  EXPECT_GT(stats.receive_buffer_waits, 0u) << "no receive ever ran out: the test tested nothing";
  EXPECT_EQ(stats.open_connections, static_cast<std::uint64_t>(kConnections));
  EXPECT_EQ(closed_early.load(), 0) << "connections closed while echoing";
  stopping.store(true);
  s.server.stop();
  EXPECT_TRUE(s.server.wait());
  for (const int fd : fds) ::close(fd);
}

TEST(UringBuffersTest, UringBuffersMustBeAPowerOfTwoWithinTheLimit) {
  for (const unsigned bad : {3u, 100u, LoopOptions::kMaxUringBuffers * 2}) {
    Options options = loopback_options();
    options.uring_buffers = bad;
    Server server(options, Callbacks{});
    const Status s = server.start();
    EXPECT_EQ(s.code(), make_error_code(errc::bad_option)) << bad;
    EXPECT_NE(s.message().find("uring_buffers"), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace evloop::test
