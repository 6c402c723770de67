// The backend contract (src/poller.hpp), checked the same way on epoll and on kqueue: level
// triggering, interest changes, an fd without interest, end of stream with data still queued, fd
// reuse after remove + close, failed registrations, and the waker's coalescing and cross-thread
// wakeups.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "poller.hpp"

namespace evloop::detail {
namespace {

constexpr int kBlockMs = 5000;  // bound for a wait that must see an event

// What one wait() reported per token: a backend may report an fd's directions in one event
// (epoll) or one event each (kqueue), so tests look at the merged view.
struct Seen {
  bool readable = false, writable = false, error = false, hangup = false;
  int events = 0;
};

std::map<void*, Seen> wait_once(Poller& poller, int timeout_ms, int capacity = 64) {
  std::vector<PollEvent> out(static_cast<std::size_t>(capacity));
  const int n = poller.wait(out.data(), capacity, timeout_ms);
  EXPECT_GE(n, 0);
  std::map<void*, Seen> seen;
  for (int i = 0; i < n; ++i) {
    const PollEvent& e = out[static_cast<std::size_t>(i)];
    Seen& s = seen[e.token];
    s.readable |= e.readable;
    s.writable |= e.writable;
    s.error |= e.error;
    s.hangup |= e.hangup;
    ++s.events;
  }
  return seen;
}

// A connected pair of non-blocking Unix stream sockets, closed on destruction unless released.
struct Pair {
  std::array<int, 2> fd{-1, -1};
  Pair() {
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fd.data()), 0);
    for (int f : fd) ::fcntl(f, F_SETFL, ::fcntl(f, F_GETFL) | O_NONBLOCK);
  }
  ~Pair() {
    for (int f : fd) {
      if (f >= 0) ::close(f);
    }
  }
  void send(const char* s) const { ASSERT_GT(::write(fd[1], s, std::strlen(s)), 0); }
};

// A connected pair of non-blocking TCP sockets over loopback (a reset needs TCP).
struct TcpPair {
  std::array<int, 2> fd{-1, -1};
  TcpPair() {
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(::listen(listener, 1), 0);
    EXPECT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    fd[1] = ::socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(::connect(fd[1], reinterpret_cast<sockaddr*>(&addr), len), 0);
    fd[0] = ::accept(listener, nullptr, nullptr);
    ::close(listener);
    for (int f : fd) ::fcntl(f, F_SETFL, ::fcntl(f, F_GETFL) | O_NONBLOCK);
  }
  ~TcpPair() {
    for (int f : fd) {
      if (f >= 0) ::close(f);
    }
  }
  void reset_peer() {  // fd[1] closes with a reset
    const linger lg{1, 0};
    ::setsockopt(fd[1], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    ::close(fd[1]);
    fd[1] = -1;
  }
};

class PollerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(poller.open()); }
  Poller poller;
  int token_a = 0, token_b = 0;
};

TEST_F(PollerTest, ReadinessIsLevelTriggered) {
  Pair p;
  ASSERT_FALSE(poller.add(p.fd[0], kRead, &token_a));
  EXPECT_TRUE(wait_once(poller, 0).empty());
  p.send("hi");
  for (int i = 0; i < 3; ++i) {  // reported again and again until read
    auto seen = wait_once(poller, kBlockMs);
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_TRUE(seen[&token_a].readable);
    EXPECT_FALSE(seen[&token_a].writable);
  }
  char buf[8];
  ASSERT_EQ(::read(p.fd[0], buf, sizeof buf), 2);
  EXPECT_TRUE(wait_once(poller, 0).empty());
  poller.remove(p.fd[0], kRead);
}

TEST_F(PollerTest, ModifyChangesTheReportedDirections) {
  Pair p;
  p.send("x");
  ASSERT_FALSE(poller.add(p.fd[0], kRead, &token_a));
  ASSERT_FALSE(poller.modify(p.fd[0], kRead, kRead | kWrite, &token_a));
  auto seen = wait_once(poller, kBlockMs);
  EXPECT_TRUE(seen[&token_a].readable && seen[&token_a].writable);
  ASSERT_FALSE(poller.modify(p.fd[0], kRead | kWrite, kWrite, &token_a));
  seen = wait_once(poller, kBlockMs);
  EXPECT_TRUE(seen[&token_a].writable);
  EXPECT_FALSE(seen[&token_a].readable);
  ASSERT_FALSE(poller.modify(p.fd[0], kWrite, kNone, &token_a));
  EXPECT_TRUE(wait_once(poller, 0).empty()) << "kNone reports a quiet fd";
  // Changes made between two waits count in order: armed, disarmed, then read interest back.
  ASSERT_FALSE(poller.modify(p.fd[0], kNone, kWrite, &token_a));
  ASSERT_FALSE(poller.modify(p.fd[0], kWrite, kNone, &token_a));
  ASSERT_FALSE(poller.modify(p.fd[0], kNone, kRead, &token_a));
  seen = wait_once(poller, kBlockMs);
  EXPECT_TRUE(seen[&token_a].readable);
  EXPECT_FALSE(seen[&token_a].writable);
  poller.remove(p.fd[0], kRead);
}

TEST_F(PollerTest, WithoutInterestOnlyAResetIsReported) {
  // kNone keeps the fd registered for what ends it: the peer's reset. Bytes left unread and the
  // peer's FIN are not reported, not even once per wait (a paused connection would spin).
  TcpPair p;
  ASSERT_FALSE(poller.add(p.fd[0], kRead, &token_a));
  ASSERT_FALSE(poller.modify(p.fd[0], kRead, kNone, &token_a));
  ASSERT_EQ(::write(p.fd[1], "unread", 6), 6);
  ASSERT_EQ(::shutdown(p.fd[1], SHUT_WR), 0);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(wait_once(poller, 20).empty()) << "wait " << i;
  // Read interest back: the bytes are there, then without interest again, still quiet.
  ASSERT_FALSE(poller.modify(p.fd[0], kNone, kRead, &token_a));
  EXPECT_TRUE(wait_once(poller, kBlockMs)[&token_a].readable);
  ASSERT_FALSE(poller.modify(p.fd[0], kRead, kNone, &token_a));
  EXPECT_TRUE(wait_once(poller, 20).empty());
  p.reset_peer();
  auto seen = wait_once(poller, kBlockMs);
  EXPECT_TRUE(seen[&token_a].error) << "the reset of an fd without interest was not reported";
  poller.remove(p.fd[0], kNone);
  EXPECT_TRUE(wait_once(poller, 20).empty()) << "removed: nothing more";
}

TEST_F(PollerTest, EndOfStreamKeepsTheDataBeforeItReadable) {
  Pair p;
  ASSERT_FALSE(poller.add(p.fd[0], kRead, &token_a));
  p.send("last words");
  ASSERT_EQ(::shutdown(p.fd[1], SHUT_WR), 0);
  auto seen = wait_once(poller, kBlockMs);
  ASSERT_TRUE(seen[&token_a].readable) << "the bytes before the FIN must still be read";
  char buf[64];
  EXPECT_EQ(::read(p.fd[0], buf, sizeof buf), 10);
  EXPECT_EQ(::read(p.fd[0], buf, sizeof buf), 0);
  poller.remove(p.fd[0], kRead);
}

TEST_F(PollerTest, ANewFileWithARemovedFdsNumberIsReported) {
  int number = -1;
  {
    Pair old;
    ASSERT_FALSE(poller.add(old.fd[0], kRead | kWrite, &token_a));
    EXPECT_FALSE(wait_once(poller, kBlockMs).empty());
    poller.remove(old.fd[0], kRead | kWrite);
    number = old.fd[0];
  }  // closed after remove, as the contract asks
  Pair reused;
  const int fd = reused.fd[0] == number ? 0 : 1;
  ASSERT_EQ(reused.fd[fd], number) << "the test needs the number back";
  ASSERT_FALSE(poller.add(reused.fd[fd], kRead, &token_b));
  ASSERT_GT(::write(reused.fd[1 - fd], "y", 1), 0);
  auto seen = wait_once(poller, kBlockMs);
  EXPECT_TRUE(seen[&token_b].readable);
  EXPECT_EQ(seen.count(&token_a), 0u) << "no event for the removed registration";
  poller.remove(reused.fd[fd], kRead);
}

TEST_F(PollerTest, RemoveBeforeTheNextWaitLeavesNoTrace) {
  Pair p;
  p.send("z");
  ASSERT_FALSE(poller.add(p.fd[0], kRead | kWrite, &token_a));
  poller.remove(p.fd[0], kRead | kWrite);
  EXPECT_TRUE(wait_once(poller, 0).empty());
}

TEST_F(PollerTest, AFailedRegistrationIsReportedOnItsToken) {
  // A backend may refuse at once (epoll) or report an error event at the next wait (kqueue,
  // whose changes travel with the wait).
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);
  ::close(fds[1]);
  const int closed_fd = fds[0];
  if (!poller.add(closed_fd, kRead, &token_a)) {
    // BSD kernels answer at once; libkqueue holds the error until the wait ends, hence a short
    // bound rather than kBlockMs.
    PollEvent event;
    ASSERT_EQ(poller.wait(&event, 1, 200), 1);
    EXPECT_EQ(event.token, &token_a);
    EXPECT_TRUE(event.error);
    EXPECT_TRUE(event.refused);
    EXPECT_EQ(event.result, -EBADF) << "the refused change's errno";
  }
}

TEST_F(PollerTest, ManyChangesAndASmallEventArray) {
  std::vector<std::unique_ptr<Pair>> pairs;
  std::vector<int> tokens(600);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    pairs.push_back(std::make_unique<Pair>());
    pairs.back()->send("m");
    ASSERT_FALSE(poller.add(pairs.back()->fd[0], kRead, &tokens[i]));
  }
  std::map<void*, Seen> all;
  for (int round = 0; round < 200 && all.size() < tokens.size(); ++round) {
    for (auto& [token, seen] : wait_once(poller, kBlockMs, 16)) {
      EXPECT_FALSE(seen.error);
      all[token] = seen;
      // Read it, so the level-triggered fd stops being reported and others get their turn.
      const auto i = static_cast<std::size_t>(static_cast<int*>(token) - tokens.data());
      char c;
      EXPECT_EQ(::read(pairs[i]->fd[0], &c, 1), 1);
    }
  }
  EXPECT_EQ(all.size(), tokens.size());
  for (std::size_t i = 0; i < pairs.size(); ++i) poller.remove(pairs[i]->fd[0], kRead);
}

TEST_F(PollerTest, WakerCoalescesAndIsQuietOnceDrained) {
  Waker waker;
  ASSERT_FALSE(waker.open(poller, &token_a));
  EXPECT_TRUE(wait_once(poller, 0).empty());
  for (int i = 0; i < 1000; ++i) waker.notify();
  auto seen = wait_once(poller, kBlockMs);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(seen[&token_a].readable);
  EXPECT_EQ(seen[&token_a].events, 1);
  waker.drain();
  EXPECT_TRUE(wait_once(poller, 0).empty()) << "a drained waker must not wake the loop again";
}

TEST_F(PollerTest, WakerWakesABlockedWaitFromAnotherThread) {
  Waker waker;
  ASSERT_FALSE(waker.open(poller, &token_a));
  for (int i = 0; i < 100; ++i) {
    std::thread notifier([&] { waker.notify(); });
    auto seen = wait_once(poller, kBlockMs);
    notifier.join();
    ASSERT_TRUE(seen[&token_a].readable) << "round " << i;
    waker.drain();
  }
  EXPECT_TRUE(wait_once(poller, 0).empty());
}

}  // namespace
}  // namespace evloop::detail
