// Live upgrades under a real load tool: redis-benchmark goes round its tests (each opens its 20
// keep-alive connections afresh) while the test upgrades redis-server three times (SIGUSR2).
// What redis-server's upgrade keeps (its README): the listeners move, so new connections reach
// the successor, whose store starts empty; a connected client stays with the old process and its
// store until it leaves. So redis-benchmark must see no error at all, a client connected before
// the upgrades goes on with its old store, and a client that connects after each upgrade finds
// an empty one.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "server_test.hpp"

namespace {

using namespace example_test;
using std::chrono::milliseconds;

const std::string kIncr = "*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n";

// INCR counter on `fd`: the reply (":N\r\n").
std::string incr(int fd) {
  if (!send_all(fd, kIncr)) return "(send failed)";
  return read_until_count(fd, "\r\n", 1, kTimeout);
}

// Kills the serving processes left when a test ends early (the successors are not Child
// objects).
struct KillAtExit {
  std::vector<pid_t> pids;
  ~KillAtExit() {
    for (const pid_t pid : pids) {
      if (::kill(pid, SIGKILL) == 0) wait_for_exit(pid, kTimeout);
    }
  }
};

TEST(RedisServerUpgradeUnderLoad, RedisBenchmarkSeesNoErrorThroughThreeUpgrades) {
  if (!have_program("redis-benchmark")) GTEST_SKIP() << "redis-benchmark is not installed";
  if (!have_program("stdbuf")) GTEST_SKIP() << "stdbuf is not installed";
  if (!become_subreaper()) GTEST_SKIP() << "needs a subreaper (Linux) to see the successors exit";
  std::unique_ptr<Child> server;
  const std::uint16_t port = start_server(server, REDIS_SERVER_BIN, {"--loops", "2"});
  ASSERT_NE(port, 0);
  KillAtExit left;
  // A client connected before the upgrades (it stays with the first process and its store).
  const int held = connect_loopback(port);
  ASSERT_GE(held, 0);
  ASSERT_EQ(incr(held), ":1\r\n");
  // redis-benchmark goes round its tests (-l) until told to stop, opening 20 connections for
  // each; --csv prints a line as each test ends, and stdbuf makes its stdout line-buffered, so
  // each line reaches us then, not at exit. Its errors come on the same pipe.
  Child bench({"sh", "-c", "exec 2>&1; exec stdbuf -oL redis-benchmark \"$@\"", "sh", "-h",
               "127.0.0.1", "-p", std::to_string(port), "-c", "20", "-n", "2000", "-l", "--csv",
               "-t", "ping_inline,ping_mbulk,set,get,incr,mset"});
  ASSERT_TRUE(bench.running());
  std::string output;  // all redis-benchmark said
  int tests = 0;       // tests it reported done
  // Waits for the next test to end; false when redis-benchmark said something else (an error).
  const auto test_ended = [&] {
    for (;;) {
      const std::string line = bench.wait_for_line("", kTimeout);
      output += line + "\n";
      if (line.rfind("\"test\"", 0) == 0) continue;  // the CSV header
      if (line.rfind("\"", 0) != 0) return false;
      ++tests;
      return true;
    }
  };
  ASSERT_TRUE(test_ended()) << output;  // some requests were answered before the first upgrade
  std::vector<pid_t> generations{server->pid()};
  std::string upgrades;
  for (int i = 0; i < 3; ++i) {
    const Upgraded u = upgrade_example(*server, generations.back(), kTimeout);
    ASSERT_NE(u.pid, 0) << u.line;
    EXPECT_EQ(u.moved, 0) << u.line;  // connections stay
    upgrades += u.line + "\n";
    generations.push_back(u.pid);
    left.pids.push_back(u.pid);
    // The client from before keeps its connection and the first process's store...
    EXPECT_EQ(incr(held), ":" + std::to_string(i + 2) + "\r\n") << u.line;
    // ...while a new client reaches the successor, whose store started empty (what new clients
    // did after the upgrades before went to stores that did not move).
    const int fresh = connect_loopback(port);
    ASSERT_GE(fresh, 0);
    EXPECT_EQ(incr(fresh), ":1\r\n") << u.line;
    ::close(fresh);
    // Two more tests end: the second one began after the upgrade was over (the first ended
    // after what was printed until now), so it ran on the successor alone.
    output += bench.rest_of_output(milliseconds(0));
    ASSERT_TRUE(test_ended() && test_ended()) << output << upgrades;
  }
  bench.signal(SIGINT);
  output += bench.rest_of_output(kTimeout);
  EXPECT_EQ(bench.wait_exit(kTimeout), 128 + SIGINT) << output;
  if (std::getenv("EVLOOP_TEST_VERBOSE") != nullptr) {
    std::printf("%s%s", upgrades.c_str(), output.c_str());
  }
  EXPECT_EQ(output.find("rror"), std::string::npos) << output << upgrades;
  EXPECT_GE(tests, 7) << output;
  // The client from before is still answered from the first store; once it leaves, the first
  // process exits 0. The middle ones exit 0 once redis-benchmark's connections are gone.
  EXPECT_EQ(incr(held), ":5\r\n");
  ::close(held);
  EXPECT_EQ(server->wait_process(kTimeout), 0) << "pid " << generations[0];
  for (std::size_t g = 1; g + 1 < generations.size(); ++g) {
    EXPECT_EQ(wait_for_exit(generations[g], kTimeout), 0) << "pid " << generations[g];
  }
  ::kill(generations.back(), SIGTERM);
  EXPECT_EQ(wait_for_exit(generations.back(), kTimeout), 0);
  left.pids.clear();
}

}  // namespace
