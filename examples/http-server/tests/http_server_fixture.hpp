// The fixture of the http-server integration tests: the built binary on a free loopback port.
#pragma once

#include <string>

#include "server_test.hpp"

namespace http_test {

using namespace example_test;
using std::chrono::milliseconds;

class HttpServer : public ServerTest {
 protected:
  HttpServer() : ServerTest(HTTP_SERVER_BIN) {}

  void SetUp() override { start({"--max-body", "1000"}); }

  // The server's base URL, e.g. http://127.0.0.1:PORT.
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
};

}  // namespace http_test
