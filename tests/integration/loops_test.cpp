// Several loops: reuse-port listeners (one per loop, none shared), hand-off policies, and the
// one-loop-per-connection rule.
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "test_support.hpp"

namespace evloop::test {
namespace {

// Records, per connection id, the loop and the threads its callbacks ran on.
struct ThreadRecorder {
  std::mutex mutex;
  std::map<std::uint64_t, std::set<std::thread::id>> threads;
  std::map<std::uint64_t, std::size_t> loop_of;
  EventCounter opened, closed;

  void note(Conn& c) {
    std::lock_guard lock(mutex);
    threads[c.id()].insert(std::this_thread::get_id());
    loop_of[c.id()] = c.loop().index();
  }
  Callbacks callbacks() {
    Callbacks cb;
    cb.opened = [this](Conn& c) {
      note(c);
      opened.add();
    };
    cb.data = [this](Conn& c, std::string_view bytes) {
      note(c);
      c.write(bytes);
      return bytes.size();
    };
    cb.closed = [this](Conn& c, std::error_code) {
      note(c);
      closed.add();
    };
    return cb;
  }
  std::map<std::size_t, int> per_loop() {
    std::lock_guard lock(mutex);
    std::map<std::size_t, int> count;
    for (auto& [id, loop] : loop_of) ++count[loop];
    return count;
  }
};

void connect_echo_close(const SocketAddress& addr, int n) {
  std::vector<Client> clients;
  for (int i = 0; i < n; ++i) {
    clients.emplace_back(addr);
    ASSERT_TRUE(clients.back().connected());
  }
  for (auto& c : clients) {
    ASSERT_TRUE(c.send_all("ping"));
    ASSERT_EQ(c.read_exactly(4), "ping");
  }
}

TEST(LoopsTest, ReusePortGivesEachLoopItsOwnListenerAndSpreadsConnections) {
  Options o = loopback_options(4);
  o.reuseport = true;
  ThreadRecorder rec;
  RunningServer s(o, rec.callbacks());
  ASSERT_TRUE(s.status) << s.status.message();
  EXPECT_EQ(listening_tcp_sockets_on(s.address().port()), 4);  // one per loop, no shared fd

  connect_echo_close(s.address(), 200);
  ASSERT_TRUE(rec.closed.wait_for(200));
  const auto per_loop = rec.per_loop();
  EXPECT_GE(per_loop.size(), 2u) << "the kernel put every connection on one loop";
  std::lock_guard lock(rec.mutex);
  for (auto& [id, threads] : rec.threads) EXPECT_EQ(threads.size(), 1u) << "connection " << id;
}

TEST(LoopsTest, WithoutReusePortOneListenerAndRoundRobinHandOff) {
  Options o = loopback_options(4);
  ThreadRecorder rec;
  RunningServer s(o, rec.callbacks());
  ASSERT_TRUE(s.status);
  EXPECT_EQ(listening_tcp_sockets_on(s.address().port()), 1);
  connect_echo_close(s.address(), 100);
  ASSERT_TRUE(rec.closed.wait_for(100));
  const auto per_loop = rec.per_loop();
  ASSERT_EQ(per_loop.size(), 4u);
  for (auto& [loop, n] : per_loop) EXPECT_EQ(n, 25) << "loop " << loop;
  std::lock_guard lock(rec.mutex);
  for (auto& [id, threads] : rec.threads) EXPECT_EQ(threads.size(), 1u) << "connection " << id;
}

TEST(LoopsTest, LeastConnectionsFillsTheEmptiestLoop) {
  Options o = loopback_options(3);
  o.balance = Balance::least_connections;
  ThreadRecorder rec;
  RunningServer s(o, rec.callbacks());
  ASSERT_TRUE(s.status);
  // Connections that stay open: each new one goes to a loop with the fewest.
  std::vector<Client> clients;
  for (int i = 0; i < 30; ++i) {
    clients.emplace_back(s.address());
    ASSERT_TRUE(rec.opened.wait_for(i + 1));
  }
  for (auto& [loop, n] : rec.per_loop()) EXPECT_EQ(n, 10) << "loop " << loop;
}

TEST(LoopsTest, SourceHashKeepsOneClientHostOnOneLoop) {
  Options o = loopback_options(4);
  o.balance = Balance::source_hash;
  ThreadRecorder rec;
  RunningServer s(o, rec.callbacks());
  ASSERT_TRUE(s.status);
  connect_echo_close(s.address(), 40);
  ASSERT_TRUE(rec.closed.wait_for(40));
  EXPECT_EQ(rec.per_loop().size(), 1u);  // all from 127.0.0.1
}

TEST(LoopsTest, AutoLoopsMeansOnePerHardwareThread) {
  Options o = loopback_options(Options::kAutoLoops);
  RunningServer s(o, {});
  ASSERT_TRUE(s.status);
  EXPECT_EQ(s.server.loop_count(), std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace
}  // namespace evloop::test
