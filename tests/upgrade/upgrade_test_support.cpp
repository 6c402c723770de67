#include "upgrade_test_support.hpp"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

namespace example_test {

pid_t pid_in(const std::string& message) {
  const std::size_t at = message.find("(pid ");
  return at == std::string::npos ? 0 : static_cast<pid_t>(std::atol(message.c_str() + at + 5));
}

void UpgradeTest::SetUp() {
  if (!become_subreaper()) GTEST_SKIP() << "needs a subreaper (Linux) to see successors exit";
}

void UpgradeTest::TearDown() {
  if (server_pid_ > 0 && live_.count(server_pid_)) {
    ::kill(server_pid_, SIGTERM);
    EXPECT_EQ(wait_generation_exit(server_pid_), 0) << "the last generation stops cleanly";
  }
  for (const pid_t pid : std::set<pid_t>(live_)) {  // whatever a failed test left
    ::kill(pid, SIGKILL);
    wait_generation_exit(pid);
  }
}

void UpgradeTest::start(const std::vector<std::string>& extra, const ChildSetup& setup,
                        const std::string& listen, const std::vector<std::string>& wrapper,
                        const std::string& connect_to) {
  std::vector<std::string> argv = wrapper;
  argv.push_back(UPGRADE_TEST_SERVER_BIN);
  if (!listen.empty()) argv.insert(argv.end(), {"--listen", listen});
  argv.insert(argv.end(), extra.begin(), extra.end());
  unix_path_ = connect_to;
  child_ = std::make_unique<Child>(argv, setup);
  ASSERT_TRUE(child_->running());
  live_.insert(child_->pid());
  int first = -1;
  if (unix_path_.empty()) {
    const std::string line = child_->wait_for_line("listening on ", kTimeout);
    ASSERT_NE(line, "") << "the server did not print its address";
    port_ = static_cast<std::uint16_t>(std::atoi(line.c_str() + line.rfind(':') + 1));
  } else {
    // The socket file appears when the wrapper listens; nothing tells us when but the file.
    const auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while ((first = connect_unix(unix_path_)) < 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    ASSERT_GE(first, 0) << "nothing listens on " << unix_path_;
  }
  server_pid_ = expect_serving_line();
  if (first >= 0) ::close(first);
  ASSERT_EQ(server_pid_, child_->pid());
}

int UpgradeTest::connect() const {
  return unix_path_.empty() ? connect_loopback(port_) : connect_unix(unix_path_);
}

std::string UpgradeTest::command(const std::string& line) const {
  const int fd = connect();
  if (fd < 0) return "(connect failed)";
  bool closed = false;
  std::string reply = send_all(fd, line + "\n") ? read_until_close(fd, kTimeout, closed) : "";
  ::close(fd);
  return reply;
}

UpgradeReply UpgradeTest::upgrade(const std::string& args) {
  UpgradeReply r;
  r.message = command(args.empty() ? "UPGRADE" : "UPGRADE " + args);
  if (r.message.starts_with("OK ")) {
    char* end = nullptr;
    r.successor = static_cast<pid_t>(std::strtol(r.message.c_str() + 3, &end, 10));
    r.moved = std::strtoul(end, &end, 10);
    r.draining = std::strtoul(end, &end, 10);
    r.ok = r.successor > 0;
    if (r.ok) live_.insert(r.successor);
  } else if (r.message.starts_with("FAIL ")) {
    r.message.erase(0, 5);
  }
  return r;
}

pid_t UpgradeTest::expect_serving_line() {
  const std::string line = child_->wait_for_line("serving pid=", kTimeout);
  return line.empty() ? 0 : static_cast<pid_t>(std::atol(line.c_str() + 12));
}

int UpgradeTest::wait_generation_exit(pid_t pid) {
  const int code =
      pid == child_->pid() ? child_->wait_process(kTimeout) : wait_for_exit(pid, kTimeout);
  live_.erase(pid);
  return code;
}

bool UpgradeTest::process_stays(pid_t pid, milliseconds wait) {
  const bool stays = wait_for_exit(pid, wait, /*kill_on_timeout=*/false) == -1;
  if (!stays) live_.erase(pid);
  return stays;
}

}  // namespace example_test
