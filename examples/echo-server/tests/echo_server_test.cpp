// The echo-server binary as a user runs it: it prints its address, echoes, stops cleanly on
// SIGINT and SIGTERM (printing its counters with --stats), and rejects bad input clearly.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "child_process.hpp"
#include "portable_socket.hpp"
#include "process_memory.hpp"

namespace example_test {
namespace {

using namespace std::chrono_literals;

void expect_echo(std::uint16_t port, int loops_hint) {
  for (int i = 0; i < loops_hint * 4; ++i) {
    const int fd = connect_loopback(port);
    ASSERT_GE(fd, 0);
    const std::string msg = "hello " + std::to_string(i) + "\n";
    ASSERT_TRUE(send_all(fd, msg));
    EXPECT_EQ(read_until_count(fd, "\n", 1, 5s), msg);
    ::close(fd);
  }
}

TEST(EchoServerBinary, EchoesAndStopsCleanlyOnSigintWithStats) {
  std::unique_ptr<Child> child;
  const std::uint16_t port = start_server(child, ECHO_SERVER_BIN, {"--loops", "2", "--stats"});
  ASSERT_NE(port, 0);
  expect_echo(port, 2);
  child->signal(SIGINT);
  const std::string stats = child->wait_for_line("{\"stats\":", 10s);
  EXPECT_NE(stats.find("\"opened\":8"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"closed\":8"), std::string::npos) << stats;
  EXPECT_EQ(child->wait_exit(10s), 0);
}

TEST(EchoServerBinary, StopsCleanlyOnSigtermWithReusePort) {
  std::unique_ptr<Child> child;
  const std::uint16_t port = start_server(child, ECHO_SERVER_BIN, {"--loops", "2", "--reuseport"});
  ASSERT_NE(port, 0);
  expect_echo(port, 2);
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait_exit(10s), 0);
}

// --write-through reaches ConnOptions: at 1 every echo goes to the kernel uncopied, at "never"
// every echoed byte is copied first (8 messages of 8 bytes). On epoll: io_uring copies always.
TEST(EchoServerBinary, WriteThroughDecidesWhatIsCopied) {
  for (const auto& [setting, copied] : {std::pair{"1", "0"}, std::pair{"never", "64"}}) {
    std::unique_ptr<Child> child;
    const std::uint16_t port = start_server(
        child, ECHO_SERVER_BIN, {"--backend", "epoll", "--write-through", setting, "--stats"});
    ASSERT_NE(port, 0);
    expect_echo(port, 2);
    child->signal(SIGTERM);
    const std::string stats = child->wait_for_line("{\"stats\":", 10s);
    EXPECT_NE(stats.find(std::string("\"bytes_copied\":") + copied + ","), std::string::npos)
        << "--write-through " << setting << ": " << stats;
    EXPECT_EQ(child->wait_exit(10s), 0);
  }
}

TEST(EchoServerBinary, IdleTimeoutClosesSilentConnectionsButNotChattyOnes) {
  std::unique_ptr<Child> child;
  const std::uint16_t port = start_server(child, ECHO_SERVER_BIN, {"--idle-timeout", "1"});
  ASSERT_NE(port, 0);
  const int silent = connect_loopback(port);
  ASSERT_GE(silent, 0);
  const auto sent = std::chrono::steady_clock::now();  // before the server's clock can start
  ASSERT_TRUE(send_all(silent, "once\n"));
  ASSERT_EQ(read_until_count(silent, "\n", 1, 5s), "once\n");
  // The silent connection is closed at the server's pace while the chatty one goes on.
  std::future<double> silent_closed_after =
      std::async(std::launch::async, ms_until_closed_silently, silent, sent, 10s);
  const int chatty = connect_loopback(port);
  ASSERT_GE(chatty, 0);
  const BusyResult result = keep_busy(chatty, 3500ms, [](int fd, int i) {
    const std::string msg = "message " + std::to_string(i) + "\n";
    return send_all(fd, msg) && read_until_count(fd, "\n", 1, 5s) == msg;
  });
  ::close(chatty);
  EXPECT_EQ(result.failure, "");
  const double took = silent_closed_after.get();
  std::printf(
      "--idle-timeout 1: a silent connection was closed %.0f ms after its message; a chatty "
      "one sent %d messages over 3.5 s\n",
      took, result.exchanges);
  EXPECT_GE(took, 999.0);
  EXPECT_LE(took, 3000.0);
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait_exit(10s), 0);
}

// A client that sends and does not read: the echo goes above evloop's high-water mark (1 MiB),
// which pauses reading from it, so the server holds about the mark and the client's sends stall
// (TCP flow control). When it reads at last, every byte comes back in order.
TEST(EchoServerBinary, AClientThatDoesNotReadIsHeldAtTheHighWaterMark) {
  constexpr std::size_t kHighWater = 1024 * 1024;
  std::unique_ptr<Child> child;
  const std::uint16_t port = start_server(child, ECHO_SERVER_BIN);
  ASSERT_NE(port, 0);
  const int fd = connect_loopback(port);
  ASSERT_GE(fd, 0);
  // 16 MiB echoed before the baseline, so that memory a loop keeps whatever its connections do
  // is resident already (on io_uring, the provided receive buffers a stream takes, paged in as
  // they are first used: after its first receive, the 64 large ones, 4 MiB per loop).
  const std::string warm_up(16 << 20, 'w');
  std::thread warm_sender([&] { EXPECT_TRUE(send_all(fd, warm_up)); });
  const bool warmed = read_exactly(fd, warm_up.size(), 20s) == warm_up;
  warm_sender.join();
  ASSERT_TRUE(warmed);
  const ProcessMemory before = memory_of(child->pid());
  const bool peak_reset = reset_peak(child->pid());
  std::string unit(64 * 1024, '\0');
  for (std::size_t i = 0; i < unit.size(); ++i) unit[i] = static_cast<char>('A' + (i * 13) % 58);
  constexpr std::size_t kUnits = 1024;  // 64 MiB: the size of evloop's output limit
  const std::size_t total = kUnits * unit.size();
  // Send without reading until the socket stays full for 300 ms: the server stopped reading.
  std::size_t sent = 0;
  while (sent < total) {
    const ssize_t n = ::send(fd, unit.data() + sent % unit.size(), unit.size() - sent % unit.size(),
                             MSG_DONTWAIT | evloop::test::kSendFlags);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    ASSERT_TRUE(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) << std::strerror(errno);
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 300) == 0) break;
  }
  const ProcessMemory held = memory_of(child->pid());
  std::printf(
      "a client that does not read: %.1f MiB of 64 sent before the sends stalled; "
      "server RSS %s before, %s at peak\n",
      static_cast<double>(sent) / 1048576.0, mib(before.rss).c_str(), mib(held.peak).c_str());
  EXPECT_LT(sent, total) << "the sends never stalled";
  if (peak_reset && !kSanitized) {
    EXPECT_LE(held.peak, before.rss + 2 * kHighWater);
  }
  // Now it reads, while the rest is sent: every byte comes back in order.
  std::thread sender([&] {
    for (std::size_t at = sent; at < total; at += unit.size() - at % unit.size()) {
      if (!send_all(fd, std::string_view(unit).substr(at % unit.size()))) break;
    }
  });
  EXPECT_EQ(read_repeated(fd, unit, kUnits, 60s), total);
  sender.join();
  ::close(fd);
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait_exit(10s), 0);
}

// A message echoed whole on `fd`.
void expect_echoed(int fd, const std::string& msg) {
  ASSERT_TRUE(send_all(fd, msg));
  EXPECT_EQ(read_exactly(fd, msg.size(), 10s), msg);
}

TEST(EchoServerBinary, Sigusr2UpgradesLiveAndEveryConnectionMoves) {
  if (!become_subreaper()) GTEST_SKIP() << "needs a subreaper (Linux) to see the successor exit";
  std::unique_ptr<Child> child;
  const std::uint16_t port = start_server(child, ECHO_SERVER_BIN, {"--loops", "2", "--reuseport"});
  ASSERT_NE(port, 0);
  std::vector<int> conns;
  for (int i = 0; i < 6; ++i) {
    conns.push_back(connect_loopback(port));
    ASSERT_GE(conns.back(), 0);
    expect_echoed(conns.back(), "before " + std::to_string(i) + "\n");
  }
  // Bytes in flight across the move: sent before the signal, read back after.
  ASSERT_TRUE(send_all(conns[0], std::string(100'000, 'x')));
  const Upgraded u = upgrade_example(*child, 20s);
  ASSERT_NE(u.pid, 0) << u.line;
  EXPECT_EQ(u.moved, 6) << u.line;
  EXPECT_EQ(u.draining, 0) << u.line;
  EXPECT_EQ(child->wait_process(20s), 0) << "the old process exits 0 once it handed over";
  EXPECT_EQ(read_exactly(conns[0], 100'000, 10s), std::string(100'000, 'x'));
  for (std::size_t i = 0; i < conns.size(); ++i) {
    expect_echoed(conns[i], "after " + std::to_string(i) + "\n");
    ::close(conns[i]);
  }
  expect_echo(port, 2);  // new connections: only the successor is left to serve them
  // A second upgrade, from the successor: it re-executes itself the same way.
  ::kill(u.pid, SIGUSR2);
  std::string line = child->wait_for_line("upgrade", 20s);
  EXPECT_EQ(line.rfind("upgraded: pid ", 0), 0u) << line;
  EXPECT_EQ(wait_for_exit(u.pid, 20s), 0);
  const pid_t third = static_cast<pid_t>(std::atol(line.c_str() + 14));
  expect_echo(port, 1);
  ::kill(third, SIGTERM);
  EXPECT_EQ(wait_for_exit(third, 20s), 0);
}

// The datagrams sent to a NOTIFY_SOCKET of ours, sorted, once all of `want` came (or 20 s pass).
std::vector<std::string> notifications(int socket, std::vector<std::string> want) {
  std::vector<std::string> got;
  std::sort(want.begin(), want.end());
  while (got != want && got.size() < want.size()) {
    pollfd p{socket, POLLIN, 0};
    if (::poll(&p, 1, 20'000) != 1) break;
    char buf[256];
    const ssize_t n = ::recv(socket, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.emplace_back(buf, static_cast<std::size_t>(n));
    std::sort(got.begin(), got.end());
  }
  return got;
}

// Under systemd (Type=notify, NotifyAccess=all) the service follows the successor: each process
// says READY=1 once it serves, and the old one MAINPID=<successor> once it handed over.
TEST(EchoServerBinary, TellsSystemdItIsReadyAndWhichProcessServesAfterAnUpgrade) {
  if (!become_subreaper()) GTEST_SKIP() << "needs a subreaper (Linux) to see the successor exit";
  const std::string path = "/tmp/evloop-notify-" + std::to_string(::getpid());
  ::unlink(path.c_str());
  const int notify = evloop::test::open_socket(AF_UNIX, SOCK_DGRAM);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(notify, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ChildSetup setup;
  setup.env = {"NOTIFY_SOCKET=" + path};
  std::unique_ptr<Child> child;
  ASSERT_NE(start_server(child, ECHO_SERVER_BIN, {}, "tcp://127.0.0.1:0", setup), 0);
  EXPECT_EQ(notifications(notify, {"READY=1"}), std::vector<std::string>{"READY=1"});
  const Upgraded u = upgrade_example(*child, 20s);
  ASSERT_NE(u.pid, 0) << u.line;
  // The successor's READY=1 and the old process's MAINPID=<successor>, in either order.
  const std::string main_pid = "MAINPID=" + std::to_string(u.pid);
  EXPECT_EQ(notifications(notify, {"READY=1", main_pid}),
            (std::vector<std::string>{main_pid, "READY=1"}));
  EXPECT_EQ(child->wait_process(20s), 0);
  ::kill(u.pid, SIGTERM);
  EXPECT_EQ(wait_for_exit(u.pid, 20s), 0);
  ::close(notify);
  ::unlink(path.c_str());
}

TEST(EchoServerBinary, ServesAnInheritedFdAndSystemdSockets) {
  const int listener = listen_loopback();
  ASSERT_GE(listener, 0);
  ChildSetup fd3;
  fd3.fds = {listener};
  std::unique_ptr<Child> child;
  EXPECT_EQ(start_server(child, ECHO_SERVER_BIN, {}, "fd://3", fd3), bound_port(listener));
  expect_echo(bound_port(listener), 1);
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait_exit(10s), 0);

  ChildSetup systemd = fd3;
  systemd.env = {"LISTEN_FDS=1", "LISTEN_FDNAMES=echo"};
  systemd.listen_pid = "self";
  EXPECT_EQ(start_server(child, ECHO_SERVER_BIN, {"--loops", "2"}, "systemd://echo", systemd),
            bound_port(listener));
  expect_echo(bound_port(listener), 2);
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait_exit(10s), 0);
  ::close(listener);
}

TEST(EchoServerBinary, HelpBadFlagsAndBadAddresses) {
  ProgramResult help = run_program({ECHO_SERVER_BIN, "--help"}, 10s);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("Usage: echo-server"), std::string::npos);

  ProgramResult bad_flag = run_program({ECHO_SERVER_BIN, "--frobnicate"}, 10s);
  EXPECT_EQ(bad_flag.exit_code, 2);
  EXPECT_NE(bad_flag.output.find("unknown option '--frobnicate'"), std::string::npos);

  ProgramResult bad_loops = run_program({ECHO_SERVER_BIN, "--loops", "0"}, 10s);
  EXPECT_EQ(bad_loops.exit_code, 2);

  // A bad value names the values the flag takes.
  ProgramResult bad_balance = run_program({ECHO_SERVER_BIN, "--balance", "random"}, 10s);
  EXPECT_EQ(bad_balance.exit_code, 2);
  EXPECT_NE(bad_balance.output.find(
                "--balance takes round-robin, least-connections or source-hash, not 'random'"),
            std::string::npos)
      << bad_balance.output;

  ProgramResult bad_timeout = run_program({ECHO_SERVER_BIN, "--idle-timeout", "-1"}, 10s);
  EXPECT_EQ(bad_timeout.exit_code, 2);
  EXPECT_NE(bad_timeout.output.find("--idle-timeout takes 0..31536000 seconds, not '-1'"),
            std::string::npos)
      << bad_timeout.output;

  for (const char* bad : {"0", "16k", "-1", "1099511627777"}) {
    ProgramResult bad_write_through = run_program({ECHO_SERVER_BIN, "--write-through", bad}, 10s);
    EXPECT_EQ(bad_write_through.exit_code, 2) << bad;
    EXPECT_NE(bad_write_through.output.find("--write-through takes 1..1099511627776 bytes or "
                                            "never, not '" +
                                            std::string(bad) + "'"),
              std::string::npos)
        << bad_write_through.output;
  }

  // A --listen address that does not parse is a bad flag (2), found before anything is bound.
  ProgramResult bad_addr = run_program({ECHO_SERVER_BIN, "--listen", "tcp://127.0.0.1:99999"}, 10s);
  EXPECT_EQ(bad_addr.exit_code, 2) << bad_addr.output;
  EXPECT_NE(bad_addr.output.find("port must be 0..65535"), std::string::npos) << bad_addr.output;
  ProgramResult bad_scheme = run_program({ECHO_SERVER_BIN, "--listen", "bogus://x"}, 10s);
  EXPECT_EQ(bad_scheme.exit_code, 2) << bad_scheme.output;
  EXPECT_NE(bad_scheme.output.find("bogus://x"), std::string::npos) << bad_scheme.output;
  ProgramResult udp = run_program({ECHO_SERVER_BIN, "--listen", "udp://127.0.0.1:0"}, 10s);
  EXPECT_EQ(udp.exit_code, 2) << udp.output;
  EXPECT_NE(udp.output.find("not UDP"), std::string::npos) << udp.output;

  // What only binding can tell stays a start-up failure (1): an fd that is not a listening
  // socket, systemd:// without sockets passed, an address in use.
  ProgramResult not_a_socket = run_program({ECHO_SERVER_BIN, "--listen", "fd://0"}, 10s);
  EXPECT_EQ(not_a_socket.exit_code, 1) << not_a_socket.output;
  ProgramResult no_systemd = run_program({ECHO_SERVER_BIN, "--listen", "systemd://"}, 10s);
  EXPECT_EQ(no_systemd.exit_code, 1) << no_systemd.output;

  std::unique_ptr<Child> first;
  const std::uint16_t port = start_server(first, ECHO_SERVER_BIN);
  ASSERT_NE(port, 0);
  ProgramResult in_use =
      run_program({ECHO_SERVER_BIN, "--listen", "tcp4://127.0.0.1:" + std::to_string(port)}, 10s);
  EXPECT_EQ(in_use.exit_code, 1);
  EXPECT_NE(in_use.output.find("Address already in use"), std::string::npos) << in_use.output;
  first->signal(SIGTERM);
  EXPECT_EQ(first->wait_exit(10s), 0);
}

// The helpers of examples/common/testing: every wait ends by its deadline, whatever the size.
TEST(ChildProcessHelpers, RunProgramFeedsAMegabyteThroughCatWithinTheDeadline) {
  const std::string input(1 << 20, 'x');
  const auto start = std::chrono::steady_clock::now();
  const ProgramResult r = run_program({"cat"}, 5s, input);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output.size(), input.size());
  EXPECT_TRUE(r.output == input);
}

TEST(ChildProcessHelpers, RunProgramGivesUpOnAnInputTheProgramDoesNotRead) {
  // `sleep` never reads its stdin: the write waits with the output, and both end at the deadline.
  const auto start = std::chrono::steady_clock::now();
  const ProgramResult r = run_program({"sleep", "30"}, 500ms, std::string(1 << 20, 'x'));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_EQ(r.exit_code, -1);  // killed at the deadline
  // A program that exits without reading it all: no SIGPIPE for us, its exit code as usual.
  EXPECT_EQ(run_program({"true"}, 5s, std::string(1 << 20, 'x')).exit_code, 0);
}

TEST(ChildProcessHelpers, AProgramThatClosesItsOutputAndRunsOnEndsAtTheDeadline) {
  // Its output ends at once, but it does not exit: the wait for its exit is bounded too.
  const std::vector<std::string> argv{"sh", "-c", "exec >/dev/null 2>&1; exec sleep 30"};
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(run_program(argv, 500ms).exit_code, -1);  // killed at the deadline
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  Child child(argv);
  ASSERT_TRUE(child.running());
  start = std::chrono::steady_clock::now();
  EXPECT_EQ(child.wait_exit(500ms), -1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST(ChildProcessHelpers, WaitForExitSeesTheEndOfAnotherProcesssChildItsParentReaped) {
  // sh starts a grandchild, says its pid, and reaps it before sh itself exits.
  Child sh({"sh", "-c", "sleep 0.1 & echo \"pid $!\"; wait"});
  const std::string line = sh.wait_for_line("pid ", 10s);
  ASSERT_NE(line, "");
  const pid_t grandchild = static_cast<pid_t>(std::atol(line.c_str() + 4));
  ASSERT_GT(grandchild, 0);
  EXPECT_EQ(sh.wait_exit(10s), 0);  // so the grandchild has ended, and been reaped by sh
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(wait_for_exit(grandchild, 10s), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(ChildProcessHelpers, SendAllStopsAtItsDeadlineWhenThePeerDoesNotRead) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  const auto start = std::chrono::steady_clock::now();
  // Far more than the socket buffers hold; the peer never reads.
  EXPECT_FALSE(send_all(pair[0], std::string(64 << 20, 'x'), 300ms));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 10s);
  // What fits goes, in pieces, and a peer that reads gets it all.
  const std::string small(1000, 'y');
  ::close(pair[0]);
  ::close(pair[1]);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  EXPECT_TRUE(send_all(pair[0], small, 1s));
  EXPECT_EQ(read_exactly(pair[1], small.size(), 5s), small);
  ::close(pair[0]);
  ::close(pair[1]);
}

}  // namespace
}  // namespace example_test
