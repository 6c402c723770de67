// Test helper: a googletest fixture that runs one example server binary as a child process on
// a free loopback port and stops it with SIGTERM at the end, which must exit it with code 0.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "child_process.hpp"

namespace example_test {

/// The bound of every wait on a server in the example tests.
inline constexpr milliseconds kTimeout{10'000};

/// The fixture: start() in SetUp() or in the test, stop() at the end.
class ServerTest : public ::testing::Test {
 protected:
  /// A fixture for the server at `binary`.
  explicit ServerTest(std::string binary) : binary_(std::move(binary)) {}

  void TearDown() override { stop(); }

  /// Starts the server with `extra` flags (after --listen on a free port).
  void start(const std::vector<std::string>& extra) {
    port_ = start_server(child_, binary_, extra);
    ASSERT_NE(port_, 0) << binary_ << " did not print its address";
  }

  /// Stops the server, if it runs, expecting a clean exit.
  void stop() {
    if (!child_ || !child_->running()) return;
    child_->signal(SIGTERM);
    EXPECT_EQ(child_->wait_exit(kTimeout), 0) << binary_ << " did not stop cleanly on SIGTERM";
  }

  /// Sends `request` on a new connection and returns everything until the server closes.
  std::string exchange_until_close(std::string_view request, bool& closed) {
    int fd = connect_loopback(port_);
    EXPECT_GE(fd, 0);
    EXPECT_TRUE(send_all(fd, request));
    std::string got = read_until_close(fd, kTimeout, closed);
    ::close(fd);
    return got;
  }

  std::unique_ptr<Child> child_;
  std::uint16_t port_ = 0;

 private:
  std::string binary_;
};

}  // namespace example_test
