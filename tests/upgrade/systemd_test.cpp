// systemd socket activation: through the real systemd-socket-activate tool (skipped, saying so,
// when it is not installed), and through this harness, which passes the sockets at fds 3, 4, ...
// with LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES itself, as systemd does.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <set>

#include "child_process.hpp"
#include "upgrade_test_support.hpp"

namespace example_test {
namespace {

using namespace std::chrono_literals;

// Sockets passed as systemd passes them: fds 3, 4, ... named by LISTEN_FDNAMES.
ChildSetup systemd_setup(const std::vector<int>& fds, const std::string& names,
                         const std::string& listen_pid = "self") {
  ChildSetup setup;
  setup.fds = fds;
  setup.env = {"LISTEN_FDS=" + std::to_string(fds.size()), "LISTEN_FDNAMES=" + names};
  setup.listen_pid = listen_pid;
  return setup;
}

std::string temp_path(const std::string& tag) {
  return (std::filesystem::temp_directory_path() /
          ("evloop-" + tag + "-" + std::to_string(::getpid()) + ".sock"))
      .string();
}

// The server fails to start: its exit code and what it said (stderr goes to the test log; the
// message is checked through a short wrapper that copies it to stdout).
ProgramResult start_expecting_failure(const std::string& listen, const ChildSetup& setup) {
  // Run through sh so that stderr reaches the pipe we read; sh execs the server, keeping its pid.
  const std::vector<std::string> argv{"sh", "-c", "exec 2>&1; exec \"$0\" --listen \"$1\"",
                                      UPGRADE_TEST_SERVER_BIN, listen};
  Child child(argv, setup);
  ProgramResult result;
  for (std::string line; !(line = child.wait_for_line("", kTimeout)).empty();) {
    result.output += line + "\n";
  }
  result.exit_code = child.wait_process(kTimeout);
  return result;
}

TEST_F(UpgradeTest, TheRealSystemdSocketActivateToolStartsAServerOnItsSocket) {
  if (!have_program("systemd-socket-activate")) {
    GTEST_SKIP() << "systemd-socket-activate is not installed (Debian package 'systemd'; "
                    ".ci/examples-deps.sh installs it)";
  }
  const std::string path = temp_path("ssa");
  std::filesystem::remove(path);
  ASSERT_NO_FATAL_FAILURE(start({"--loops", "2"}, {}, "systemd://web",
                                {"systemd-socket-activate", "--listen=" + path, "--fdname=web"},
                                path));
  EXPECT_EQ(std::atol(command("PID").c_str()), server_pid_);
  EXPECT_EQ(command("INHERIT"), "env=unset cloexec=1\n")
      << "LISTEN_* must be unset and the socket close-on-exec";
  // An upgrade of a socket-activated server: the successor takes systemd's socket over.
  const UpgradeReply reply = upgrade();
  ASSERT_TRUE(reply.ok) << reply.message;
  EXPECT_EQ(wait_generation_exit(server_pid_), 0);
  server_pid_ = reply.successor;
  EXPECT_EQ(std::atol(command("PID").c_str()), server_pid_);
  EXPECT_EQ(command("INHERIT"), "env=unset cloexec=1\n");
  // The socket file is systemd's, not ours: still there while the successor serves.
  EXPECT_TRUE(std::filesystem::exists(path));
  std::filesystem::remove(path);
}

TEST_F(UpgradeTest, SystemdSocketsAreSelectedByNameAndTheRestAreLeftAlone) {
  const int web = listen_loopback();
  const int admin = listen_loopback();
  ASSERT_GE(web, 0);
  ASSERT_GE(admin, 0);
  ASSERT_NO_FATAL_FAILURE(start({}, systemd_setup({web, admin}, "web:admin"), "systemd://admin"));
  EXPECT_EQ(port_, bound_port(admin));
  EXPECT_EQ(std::atol(command("PID").c_str()), server_pid_);
  EXPECT_EQ(command("INHERIT"), "env=unset cloexec=1\n");
  ::close(web);
  ::close(admin);
}

TEST_F(UpgradeTest, SystemdAllServesEverySocketPassed) {
  const int a = listen_loopback();
  const int b = listen_loopback();
  ASSERT_NO_FATAL_FAILURE(start({}, systemd_setup({a, b}, "one:two"), "systemd://"));
  for (const int fd : {a, b}) {
    const int c = connect_loopback(bound_port(fd));
    ASSERT_GE(c, 0);
    ASSERT_TRUE(send_all(c, "PID\n"));
    bool closed = false;
    EXPECT_EQ(std::atol(read_until_close(c, kTimeout, closed).c_str()), server_pid_);
    ::close(c);
  }
  ::close(a);
  ::close(b);
}

TEST_F(UpgradeTest, ReusePortSocketsOfOneAddressGoOnePerLoop) {
  const int first = listen_loopback(0, /*reuseport=*/true);
  ASSERT_GE(first, 0);
  const int second = listen_loopback(bound_port(first), /*reuseport=*/true);
  ASSERT_GE(second, 0);
  ASSERT_NO_FATAL_FAILURE(
      start({"--loops", "2"}, systemd_setup({first, second}, "web:web"), "systemd://web"));
  // The kernel spreads connections over the two sockets: both loops accept.
  std::set<std::string> loops;
  for (int i = 0; i < 200 && loops.size() < 2; ++i) loops.insert(command("LOOP"));
  EXPECT_EQ(loops, (std::set<std::string>{"0\n", "1\n"}));
  ::close(first);
  ::close(second);
}

TEST(SystemdActivation, SocketsMeantForAnotherProcessAreIgnoredAndTheAddressRefused) {
  const int fd = listen_loopback();
  const ProgramResult r = start_expecting_failure("systemd://web", systemd_setup({fd}, "web", "1"));
  ::close(fd);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("systemd passed no socket (LISTEN_PID=1 names another process"),
            std::string::npos)
      << r.output;
}

TEST(SystemdActivation, AnFdThatIsNotAListeningStreamSocketIsRefused) {
  const int listening = listen_loopback();
  const int connected = connect_loopback(bound_port(listening));
  const ProgramResult r =
      start_expecting_failure("systemd://", systemd_setup({listening, connected}, "a:b"));
  ::close(listening);
  ::close(connected);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("listen systemd://: fd 4 is not a listening stream socket"),
            std::string::npos)
      << r.output;
}

TEST(SystemdActivation, AnUnknownNameSaysWhichNamesWerePassed) {
  const int fd = listen_loopback();
  const ProgramResult r = start_expecting_failure("systemd://api", systemd_setup({fd}, "web"));
  ::close(fd);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("systemd passed no socket named 'api' (FileDescriptorName= of the "
                          "sockets passed: 'web')"),
            std::string::npos)
      << r.output;
}

TEST(SystemdActivation, WithoutTheVariablesTheAddressIsRefused) {
  const ProgramResult r = start_expecting_failure("systemd://", {});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("not socket-activated"), std::string::npos) << r.output;
}

TEST_F(UpgradeTest, AnInheritedFdServesAndMovesToTheSuccessor) {
  const int fd = listen_loopback();
  ChildSetup setup;
  setup.fds = {fd};
  ASSERT_NO_FATAL_FAILURE(start({"--loops", "2"}, setup, "fd://3"));
  EXPECT_EQ(port_, bound_port(fd));
  ::close(fd);  // ours; the server has its own
  EXPECT_EQ(std::atol(command("PID").c_str()), server_pid_);
  // The successor gets the same command line, "--listen fd://3", which means nothing to it: it
  // takes its predecessor's socket for that address instead.
  const UpgradeReply reply = upgrade();
  ASSERT_TRUE(reply.ok) << reply.message;
  EXPECT_EQ(wait_generation_exit(server_pid_), 0);
  server_pid_ = reply.successor;
  EXPECT_EQ(std::atol(command("PID").c_str()), server_pid_);
}

// The kernel wakes io_uring's accepts exclusively, one per connection: another process's accept
// on the same socket, armed first (a frozen process's, a killed one's whose ring the kernel has
// not torn down yet, an older evloop's), takes a connection's wake-up alone. The server, on
// io_uring, must be told of the connection all the same. It was not: its own multishot accept
// waited behind that one, and PID got no answer.
TEST_F(UpgradeTest, AnInheritedFdIsServedWhileAnotherProcessesAcceptWaitsOnIt) {
  const BackendForChildren uring("io_uring");
  const int fd = listen_loopback();
  ASSERT_GE(fd, 0);
  StuckAccept other;
  if (!other.arm(fd)) {
    ::close(fd);
    GTEST_SKIP() << "no io_uring with DEFER_TASKRUN here";
  }
  ChildSetup setup;
  setup.fds = {fd};
  ASSERT_NO_FATAL_FAILURE(start({}, setup, "fd://3"));
  ::close(fd);
  // Twice: the second connection arrives once the server's own accept is surely in line (a
  // connection that comes before it is armed is taken by its first try).
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(std::atol(command("PID", milliseconds(10'000)).c_str()), server_pid_)
        << "connection " << i << " was left in the backlog";
  }
}

}  // namespace
}  // namespace example_test
