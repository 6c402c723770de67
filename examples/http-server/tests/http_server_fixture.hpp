// The fixture of the http-server integration tests: runs the built binary as a child process on
// a free loopback port and stops it with SIGTERM at the end, which must exit it with code 0.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "child_process.hpp"

namespace http_test {

using namespace example_test;
using std::chrono::milliseconds;

/// The bound of every wait on the server.
constexpr milliseconds kTimeout{10'000};

class HttpServer : public ::testing::Test {
 protected:
  void SetUp() override { start({"--max-body", "1000"}); }

  void TearDown() override { stop(); }

  // Starts the server with `extra` flags (after --listen on a free port).
  void start(const std::vector<std::string>& extra) {
    port_ = start_server(child_, HTTP_SERVER_BIN, extra);
    ASSERT_NE(port_, 0) << "http-server did not print its address";
    url_ = "http://127.0.0.1:" + std::to_string(port_);
  }

  // Stops the server, if it runs, expecting a clean exit.
  void stop() {
    if (!child_ || !child_->running()) return;
    child_->signal(SIGTERM);
    EXPECT_EQ(child_->wait_exit(kTimeout), 0) << "http-server did not stop cleanly on SIGTERM";
  }

  // Sends `request` on a new connection and returns everything until the server closes.
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
  std::string url_;
};

}  // namespace http_test
