// Live upgrades while bytes flow: four connections stream to echo-server without a pause, each
// from its own thread, while the test upgrades it three times back to back (SIGUSR2, each time
// waiting for the old process to exit). Every byte must come back, in order, with no reset and no
// close: echo-server moves every connection, with what it had read and not yet echoed.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"

namespace example_test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Byte i of stream `seed` (not periodic over a short span, so a lost or repeated chunk shows).
char byte_at(std::uint64_t i, unsigned seed) {
  std::uint64_t x = (i >> 8) * 0x9E3779B97F4A7C15ULL + seed;
  x ^= x >> 29;
  return static_cast<char>((x + i) & 0xff);
}

// What the streams have received so far, for the test to wait on.
struct Progress {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::uint64_t> received;

  // Waits until every stream has received more than `marks` says (bounded).
  bool wait_past(const std::vector<std::uint64_t>& marks) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, 20s, [&] {
      for (std::size_t i = 0; i < marks.size(); ++i) {
        if (received[i] <= marks[i]) return false;
      }
      return true;
    });
  }
  std::vector<std::uint64_t> now() {
    std::lock_guard lock(mutex);
    return received;
  }
};

// One stream: sends the pattern and checks what comes back, keeping at most `kWindow` bytes
// unechoed, until `stop` is set and all
// it sent has come back; or until something goes wrong, which `failure` says.
struct Stream {
  static constexpr std::uint64_t kWindow = 8 * 1024 * 1024;
  int fd = -1;
  unsigned seed = 0;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::string failure;

  void run(const std::atomic<bool>& stop, Progress& progress, std::size_t index) {
    const auto deadline = Clock::now() + 60s;
    char out[16 * 1024];
    char in[16 * 1024];
    while (failure.empty()) {
      const bool stopping = stop.load();
      if (stopping && received == sent) return;
      if (Clock::now() > deadline) {
        failure = "deadline passed with " + std::to_string(sent - received) + " bytes unechoed";
        return;
      }
      const bool may_send = !stopping && sent - received < kWindow;
      pollfd p{fd, static_cast<short>(POLLIN | (may_send ? POLLOUT : 0)), 0};
      if (::poll(&p, 1, 100) < 0 && errno != EINTR) {
        failure = std::string("poll: ") + std::strerror(errno);
        return;
      }
      // Sending comes first: the socket buffers fill, echo-server's output backs up to its
      // high-water mark and it stops reading, so upgrades find connections with bytes to write
      // and bytes read but not yet echoed, which move with them.
      bool sent_now = false;
      if (p.revents & POLLOUT) {
        const std::size_t n = static_cast<std::size_t>(
            std::min<std::uint64_t>(sizeof out, kWindow - (sent - received)));
        for (std::size_t i = 0; i < n; ++i) out[i] = byte_at(sent + i, seed);
        const ssize_t w = ::send(fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
          failure = std::string("send: ") + std::strerror(errno);
          return;
        }
        if (w > 0) sent += static_cast<std::uint64_t>(w);
        sent_now = w > 0;
      }
      if (!sent_now && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
        const ssize_t r = ::recv(fd, in, sizeof in, MSG_DONTWAIT);
        if (r == 0) {
          failure = "closed by the server after " + std::to_string(received) + " bytes";
          return;
        }
        if (r < 0 && errno != EAGAIN && errno != EINTR) {
          failure = std::string("recv: ") + std::strerror(errno) + " after " +
                    std::to_string(received) + " bytes";
          return;
        }
        for (ssize_t i = 0; i < r; ++i) {
          if (in[i] != byte_at(received, seed)) {
            failure = "byte " + std::to_string(received) + " is wrong";
            return;
          }
          ++received;
        }
        if (r > 0) {
          {
            std::lock_guard lock(progress.mutex);
            progress.received[index] = received;
          }
          progress.changed.notify_all();
        }
      }
    }
  }
};

TEST(EchoServerBinary, FourStreamsKeepEveryByteThroughThreeBackToBackUpgrades) {
  if (!become_subreaper()) GTEST_SKIP() << "needs a subreaper (Linux) to see the successors exit";
  std::unique_ptr<Child> child;
  const std::uint16_t port = start_server(child, ECHO_SERVER_BIN, {"--loops", "2"});
  ASSERT_NE(port, 0);
  std::vector<Stream> streams(4);
  for (unsigned i = 0; i < streams.size(); ++i) {
    streams[i].fd = connect_loopback(port);
    ASSERT_GE(streams[i].fd, 0);
    streams[i].seed = i + 1;
  }
  std::atomic<bool> stop{false};
  Progress progress;
  progress.received.assign(streams.size(), 0);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < streams.size(); ++i) {
    threads.emplace_back([&, i] { streams[i].run(stop, progress, i); });
  }
  pid_t serving = child->pid();
  std::string upgrades;
  int done = 0;
  // Each stream gets bytes back before the first upgrade, and after each one.
  std::vector<std::uint64_t> marks(streams.size(), 0);
  const auto flowing = [&](const char* when) {
    const bool flowed = progress.wait_past(marks);
    EXPECT_TRUE(flowed) << "no bytes echoed on some stream " << when << "\n" << upgrades;
    marks = progress.now();
    return flowed;
  };
  for (int i = 0; i < 3 && flowing(i == 0 ? "before the first upgrade" : "after an upgrade"); ++i) {
    const pid_t old = serving;
    const Upgraded u = upgrade_example(*child, old, 20s);
    upgrades += u.line + "\n";
    if (u.pid == 0) break;
    EXPECT_EQ(u.moved, 4) << u.line;
    EXPECT_EQ(u.draining, 0) << u.line;
    serving = u.pid;
    EXPECT_EQ(i == 0 ? child->wait_process(20s) : wait_for_exit(old, 20s), 0) << "pid " << old;
    ++done;
  }
  if (done == 3) flowing("after the last upgrade");
  stop.store(true);
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(done, 3) << upgrades;
  for (std::size_t i = 0; i < streams.size(); ++i) {
    EXPECT_EQ(streams[i].failure, "") << "stream " << i << "\n" << upgrades;
    EXPECT_EQ(streams[i].received, streams[i].sent) << "stream " << i;
    ::close(streams[i].fd);
  }
  ::kill(serving, SIGTERM);
  EXPECT_EQ(wait_for_exit(serving, 20s), 0);
}

}  // namespace
}  // namespace example_test
