// Signals interrupting the loop's wait (EINTR from epoll_wait or io_uring_enter, a handler
// installed without SA_RESTART, as a profiler's or a runtime's is): the loop carries on with no
// byte lost or reordered, its timers keep firing, and it neither fails nor stops.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/time.h>

#include <atomic>
#include <string>
#include <thread>

#include "test_support.hpp"

namespace evloop::test {
namespace {

std::atomic<long> g_signals{0};
void on_alarm(int) { g_signals.fetch_add(1, std::memory_order_relaxed); }

TEST(SignalTest, AStormOfSignalsLosesNoByteAndStopsNoLoop) {
  constexpr std::size_t kTotal = 2u << 20;
  Callbacks cb;
  cb.data = [](Conn& c, std::string_view bytes) {
    c.write(bytes);
    return bytes.size();
  };
  std::atomic<long> ticks{0};
  cb.loop_started = [&](Loop& loop) { loop.run_every(1ms, [&] { ++ticks; }); };
  Options o = loopback_options(2);
  // The loop threads start with SIGALRM unblocked, and the handler interrupts their waits.
  struct sigaction sa {};
  sa.sa_handler = on_alarm;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART
  struct sigaction old {};
  ASSERT_EQ(::sigaction(SIGALRM, &sa, &old), 0);
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status) << s.status.message();
  // This thread (and the reader it starts) blocks it: the signals go to the loops' threads.
  sigset_t alarm;
  sigemptyset(&alarm);
  sigaddset(&alarm, SIGALRM);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &alarm, nullptr), 0);
  itimerval every{{0, 200}, {0, 200}};  // every 200 us
  ASSERT_EQ(::setitimer(ITIMER_REAL, &every, nullptr), 0);

  // Rounds of an echo of kTotal bytes on each of 4 clients, until the loops have taken 200
  // signals during one (a fast build finishes a round within a few signals).
  const std::string payload = pattern(kTotal, 11);
  std::vector<Client> clients;
  for (int i = 0; i < 4; ++i) clients.emplace_back(s.address());
  long signals_during = 0;
  for (int round = 0; round < 20 && signals_during < 200; ++round) {
    const long signals_before = g_signals.load();
    std::vector<std::string> echoed(clients.size());
    std::vector<std::thread> readers;
    for (std::size_t i = 0; i < clients.size(); ++i) {
      readers.emplace_back([&, i] { echoed[i] = clients[i].read_exactly(kTotal); });
    }
    bool sent = true;
    for (std::size_t off = 0; off < kTotal && sent; off += 64 * 1024) {
      for (Client& c : clients) sent = sent && c.send_all(payload.substr(off, 64 * 1024));
    }
    for (std::thread& t : readers) t.join();  // each read is bounded by the client's timeout
    signals_during += g_signals.load() - signals_before;
    ASSERT_TRUE(sent) << "round " << round;
    for (std::size_t i = 0; i < clients.size(); ++i) {
      ASSERT_EQ(echoed[i].size(), kTotal) << "round " << round << ", client " << i;
      ASSERT_TRUE(echoed[i] == payload)
          << "round " << round << ", client " << i << ": content or order differs";
    }
  }
  EXPECT_GE(signals_during, 200) << "the storm did not happen";
  const long ticks_before = ticks.load();
  EXPECT_TRUE(eventually([&] { return ticks.load() >= ticks_before + 20; }))
      << "the timers stopped firing";
  itimerval off{};
  ::setitimer(ITIMER_REAL, &off, nullptr);
  // Still serving after the storm.
  Client late(s.address());
  ASSERT_TRUE(late.send_all("after"));
  EXPECT_EQ(late.read_exactly(5), "after");
  s.server.stop();
  EXPECT_TRUE(s.server.wait()) << "a loop failed";
  ::pthread_sigmask(SIG_UNBLOCK, &alarm, nullptr);
  ::sigaction(SIGALRM, &old, nullptr);
}

}  // namespace
}  // namespace evloop::test
