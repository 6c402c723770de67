// The echo-server binary as a user runs it: it prints its address, echoes, stops cleanly on
// SIGINT and SIGTERM (printing its counters with --stats), and rejects bad input clearly.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>

#include "child_process.hpp"

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

TEST(EchoServerBinary, HelpBadFlagsAndBadAddresses) {
  ProgramResult help = run_program({ECHO_SERVER_BIN, "--help"}, 10s);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("Usage: echo-server"), std::string::npos);

  ProgramResult bad_flag = run_program({ECHO_SERVER_BIN, "--frobnicate"}, 10s);
  EXPECT_EQ(bad_flag.exit_code, 2);
  EXPECT_NE(bad_flag.output.find("unknown option '--frobnicate'"), std::string::npos);

  ProgramResult bad_loops = run_program({ECHO_SERVER_BIN, "--loops", "0"}, 10s);
  EXPECT_EQ(bad_loops.exit_code, 2);

  ProgramResult bad_addr = run_program({ECHO_SERVER_BIN, "--listen", "tcp://127.0.0.1:99999"}, 10s);
  EXPECT_EQ(bad_addr.exit_code, 1);
  EXPECT_NE(bad_addr.output.find("port must be 0..65535"), std::string::npos) << bad_addr.output;

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

}  // namespace
}  // namespace example_test
