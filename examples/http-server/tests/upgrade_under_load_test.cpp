// Live upgrades under a real load tool: wrk keeps 20 keep-alive connections busy while the test
// upgrades http-server three times (SIGUSR2, each time waiting for the old process to exit).
// The promise checked is the one users are given: wrk, a client that knows nothing of upgrades,
// sees no connect, read, write or timeout error and no answer other than 2xx, it is answered
// before the first upgrade and after each one, and none of its connections is left waiting.
// wrk itself counts a "timeout" only for an answer that comes late, never for one that does not
// come, so the kernel is asked (ss's tcp_info) when each of wrk's sockets last received a byte.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "http_server_fixture.hpp"
#include "process_memory.hpp"
#include "temp_tree.hpp"

namespace http_test {
namespace {

// Each wrk thread prints "responses ID N" every 50 responses, ID being 1 or 2 (wrk runs `setup`
// in its main Lua state, and `response` in each thread's own).
constexpr const char* kProgressScript = R"(local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local n = 0
response = function(status, headers, body)
  n = n + 1
  if n % 50 == 0 then
    io.write("responses ", id, " ", n, "\n")
    io.flush()
  end
end
)";

using Clock = std::chrono::steady_clock;
constexpr int kWrkThreads = 2;
// A connection of wrk's that has received nothing for this long is waiting on a lost request:
// each of them is answered every few milliseconds while wrk runs (more slowly under sanitizers,
// on a loaded host: hence their margin).
constexpr auto kStalled = std::chrono::seconds(example_test::kSanitized ? 2 : 1);

// Kills the serving process when a test ends early (the successors are not Child objects).
struct KillAtExit {
  pid_t pid = 0;
  ~KillAtExit() {
    if (pid > 0 && ::kill(pid, SIGKILL) == 0) wait_for_exit(pid, kTimeout);
  }
};

// wrk's output has a progress line from after this call: everything printed so far is dropped,
// then three lines are waited for; with two threads, one of them has counted at least 50 more
// responses since.
bool wrk_answered_since_now(Child& wrk) {
  wrk.rest_of_output(milliseconds(0));
  for (int i = 0; i < 3; ++i) {
    if (wrk.wait_for_line("responses ", kTimeout).empty()) return false;
  }
  return true;
}

// Reads wrk's progress until both of its threads have printed: both are running by then.
bool wrk_threads_answered(Child& wrk) {
  bool seen[kWrkThreads + 1] = {};
  int left = kWrkThreads;
  const auto deadline = Clock::now() + kTimeout;
  while (left > 0 && Clock::now() < deadline) {
    const std::string line = wrk.wait_for_line("responses ", kTimeout);
    if (line.empty()) break;
    const int id = std::atoi(line.c_str() + std::strlen("responses "));
    if (id >= 1 && id <= kWrkThreads && !seen[id]) {
      seen[id] = true;
      --left;
    }
  }
  return left == 0;
}

// For each established TCP socket connected to 127.0.0.1:`port` (wrk's), how long ago it last
// received data, in ms, as the kernel's tcp_info says (`ss -ti`, which prints "lastrcv:N" only
// when N is not 0). Empty when ss fails.
std::vector<long> ms_since_each_received(std::uint16_t port) {
  const ProgramResult ss = run_program(
      {"ss", "-Htin", "state", "established", "dst", "127.0.0.1:" + std::to_string(port)},
      kTimeout);
  std::vector<long> since;
  if (ss.exit_code != 0) return since;
  std::size_t at = 0;
  while (at < ss.output.size()) {
    std::size_t end = ss.output.find('\n', at);
    if (end == std::string::npos) end = ss.output.size();
    const std::string_view line(ss.output.data() + at, end - at);
    at = end + 1;
    if (line.empty()) continue;
    if (line.front() != ' ' && line.front() != '\t') {
      since.push_back(0);  // a socket; its tcp_info follows on the next line
    } else if (const auto field = line.find("lastrcv:");
               field != std::string_view::npos && !since.empty()) {
      since.back() = std::atol(std::string(line.substr(field + 8)).c_str());
    }
  }
  return since;
}

// Keeps reading wrk's progress (its pipe must not fill) until `until`, or until its output ends
// (a wrk that died early then leaves no summary, which the test checks).
void read_wrk_until(Child& wrk, Clock::time_point until) {
  while (Clock::now() < until) {
    const auto left = std::chrono::ceil<milliseconds>(until - Clock::now());
    if (wrk.wait_for_line("responses ", left).empty()) return;
  }
}

void upgrade_three_times_under_wrk(const std::vector<std::string>& flags,
                                   const std::vector<std::string>& wrk_flags = {}) {
  if (!have_program("wrk")) GTEST_SKIP() << "wrk is not installed";
  if (!have_program("ss")) GTEST_SKIP() << "ss (iproute2) is not installed";
  if (!become_subreaper()) GTEST_SKIP() << "needs a subreaper (Linux) to see the successors exit";
  TempTree dir;
  ASSERT_TRUE(dir.file("progress.lua", kProgressScript));
  std::unique_ptr<Child> server;
  const std::uint16_t port = start_server(server, HTTP_SERVER_BIN, flags);
  ASSERT_NE(port, 0);
  KillAtExit serving{server->pid()};
  // wrk runs until the test has looked at its connections after the upgrades (SIGINT ends it
  // with its summary); -d is only a bound.
  std::vector<std::string> wrk_argv{"wrk",       "-t2", "-c20", "-d60s",
                                    "--timeout", "1s",  "-s",   dir.at("progress.lua")};
  wrk_argv.insert(wrk_argv.end(), wrk_flags.begin(), wrk_flags.end());
  wrk_argv.push_back("http://127.0.0.1:" + std::to_string(port) + "/");
  Child wrk(wrk_argv);
  ASSERT_TRUE(wrk.running());
  ASSERT_TRUE(wrk_threads_answered(wrk)) << "wrk's threads got no answers";
  std::string upgrades;
  for (int i = 0; i < 3; ++i) {
    const pid_t old = serving.pid;
    const Upgraded u = upgrade_example(*server, old, kTimeout);
    ASSERT_NE(u.pid, 0) << u.line;
    upgrades += u.line + "\n";
    serving.pid = u.pid;
    // The old process ends once the connections it kept (requests in progress, answered with
    // "Connection: close") are done. The first is our child; each later one was reparented to us
    // when its parent exited.
    EXPECT_EQ(i == 0 ? server->wait_process(kTimeout) : wait_for_exit(old, kTimeout), 0)
        << "pid " << old << " after " << u.line;
    // So the responses wrk counts from now on come from the successor.
    ASSERT_TRUE(wrk_answered_since_now(wrk)) << "no answers after " << u.line;
  }
  // A request the upgrades left unanswered was sent before now: a little past kStalled from
  // now, its connection has received nothing for longer than that. wrk's others have.
  read_wrk_until(wrk, Clock::now() + kStalled + milliseconds(200));
  const std::vector<long> since = ms_since_each_received(port);
  // (With "Connection: close" each lives for a request: ss may catch none established.)
  if (wrk_flags.empty()) {
    ASSERT_FALSE(since.empty()) << "ss saw no connection of wrk's";
  }
  const long stalled = static_cast<long>(milliseconds(kStalled).count());
  for (const long ms : since) {
    EXPECT_LT(ms, stalled) << "one of wrk's connections has waited " << ms << " ms for an answer\n"
                           << upgrades;
  }
  wrk.signal(SIGINT);
  const std::string summary = wrk.rest_of_output(kTimeout);
  EXPECT_EQ(wrk.wait_exit(kTimeout), 0) << summary;
  if (std::getenv("EVLOOP_TEST_VERBOSE") != nullptr) {
    std::printf("%s%s", upgrades.c_str(), summary.c_str());
  }
  EXPECT_EQ(summary.find("Socket errors"), std::string::npos) << summary << upgrades;
  EXPECT_EQ(summary.find("Non-2xx"), std::string::npos) << summary << upgrades;
  EXPECT_NE(summary.find(" requests in "), std::string::npos) << summary;
  ::kill(serving.pid, SIGTERM);
  EXPECT_EQ(wait_for_exit(serving.pid, kTimeout), 0);
  serving.pid = 0;
}

TEST(HttpServerUpgradeUnderLoad, WrkSeesNoErrorThroughThreeUpgrades) {
  upgrade_three_times_under_wrk({});
}

// One SO_REUSEPORT listener per loop: each is handed over, with the connections in its queue.
TEST(HttpServerUpgradeUnderLoad, WrkSeesNoErrorThroughThreeUpgradesWithReusePort) {
  upgrade_three_times_under_wrk({"--loops", "2", "--reuseport"});
}

// Every request on a new connection ("Connection: close": wrk reconnects after each response), so
// connections arrive all through the handover of the listener: none may be refused or reset.
TEST(HttpServerUpgradeUnderLoad, WrkReconnectingForEveryRequestSeesNoErrorThroughThreeUpgrades) {
  upgrade_three_times_under_wrk({}, {"-H", "Connection: close"});
}

TEST(HttpServerUpgradeUnderLoad,
     WrkReconnectingForEveryRequestSeesNoErrorThroughThreeUpgradesWithReusePort) {
  upgrade_three_times_under_wrk({"--loops", "2", "--reuseport"}, {"-H", "Connection: close"});
}

}  // namespace
}  // namespace http_test
