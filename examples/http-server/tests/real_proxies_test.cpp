// The http-server example behind the reverse proxies users put in front of it: nginx
// (proxy_pass, HTTP/1.1 with upstream keep-alive, chunked uploads passed on unbuffered) and HAProxy
// (mode http, connection reuse, an HTTP health check every 100 ms that takes the server out at its
// first failure). No port is fixed: HAProxy serves a socket the test bound to port 0 (handed over
// at fd 3: `bind fd@3`), nginx a Unix socket in a scratch directory. curl and wrk are the clients.
// Skipped, saying why, when a program is not installed.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "child_process.hpp"
#include "temp_tree.hpp"

namespace example_test {
namespace {

constexpr milliseconds kWait{20'000};

int count_of(const std::string& text, const std::string& what) {
  int n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

// The http-server example (2 loops) and, in front of it, a proxy serving `listener_`.
class BehindARealProxy : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    upstream_port_ = start_server(http_, HTTP_SERVER_BIN, {"--loops", "2"});
    ASSERT_NE(upstream_port_, 0);
    listener_ = listen_loopback();
    ASSERT_GE(listener_, 0);
    url_ = "http://127.0.0.1:" + std::to_string(bound_port(listener_));
  }

  void TearDown() override {
    if (proxy_) {
      proxy_->signal(SIGTERM);
      // nginx and HAProxy stop on SIGTERM at once (their "fast shutdown").
      EXPECT_NE(proxy_->wait_exit(kWait), -1) << "the proxy did not stop";
    }
    if (listener_ >= 0) ::close(listener_);
    if (http_) {
      http_->signal(SIGTERM);
      EXPECT_EQ(http_->wait_exit(kWait), 0);
    }
  }

  // Starts the proxy with the listener at fd 3; true once it answers GET / with 200.
  bool start_proxy(const std::vector<std::string>& argv) {
    ChildSetup setup;
    setup.fds = {listener_};
    proxy_ = std::make_unique<Child>(argv, setup);
    if (!proxy_->running()) return false;
    // The kernel queues curl's connection on the listener until the proxy accepts it. A Unix
    // socket exists once the proxy has bound it, and nothing but the file says when.
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    if (!unix_socket_.empty()) {
      int fd;
      while ((fd = connect_unix(unix_socket_)) < 0) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(milliseconds(10));
      }
      ::close(fd);
    }
    const ProgramResult r = run_program(
        curl({"--max-time", "15", "-o", "/dev/null", "-w", "%{http_code}", url_ + "/"}), kWait);
    return r.exit_code == 0 && r.output == "200";
  }

  // curl with `args`, through the proxy's Unix socket when it has one.
  std::vector<std::string> curl(const std::vector<std::string>& args) const {
    std::vector<std::string> argv{"curl", "-sS"};
    if (!unix_socket_.empty()) argv.insert(argv.end(), {"--unix-socket", unix_socket_});
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // What users check first: GETs, and a 200 KB POST echoed byte for byte.
  void expect_curl_gets_and_posts() {
    const ProgramResult get = run_program(curl({"-i", url_ + "/", url_ + "/"}), kWait);
    ASSERT_EQ(get.exit_code, 0) << get.output;
    EXPECT_EQ(count_of(get.output, " 200 OK\r\n"), 2) << get.output;
    EXPECT_EQ(count_of(get.output, "Hello, World!"), 2) << get.output;
    const ProgramResult missing =
        run_program(curl({"-o", "/dev/null", "-w", "%{http_code}", url_ + "/nothing"}), kWait);
    EXPECT_EQ(missing.output, "404");

    std::string body(200'000, 'a');  // curl reads it from stdin: printable, and not periodic
    std::uint32_t x = 9;
    for (char& c : body) c = static_cast<char>('a' + (x = x * 1664525u + 1013904223u) % 26);
    const ProgramResult post =
        run_program(curl({"--data-binary", "@-", url_ + "/echo"}), kWait, body);
    ASSERT_EQ(post.exit_code, 0) << post.output.substr(0, 300);
    EXPECT_TRUE(post.output == body) << "echoed " << post.output.size() << " of " << body.size();
  }

  // 2,000 GETs, 20 at a time over kept-alive connections: every one a 200.
  void expect_parallel_curl_gets_only_oks() {
    const ProgramResult r = run_program(curl({"-Z", "--parallel-max", "20", "-o", "/dev/null", "-w",
                                              "%{http_code}\n", url_ + "/?[1-2000]"}),
                                        milliseconds(60'000));
    ASSERT_EQ(r.exit_code, 0) << r.output.substr(0, 500);
    EXPECT_EQ(count_of(r.output, "200\n"), 2000) << r.output.substr(0, 500);
  }

  // Load through the proxy: every answer a 2xx, no socket error, and more than a trickle.
  void expect_wrk_gets_only_oks() {
    if (!have_program("wrk")) return;  // (wrk speaks TCP only)
    const WrkRun w = run_wrk(url_ + "/");
    ASSERT_EQ(w.exit_code, 0) << w.output;
    EXPECT_FALSE(w.non_2xx) << w.output;
    EXPECT_FALSE(w.socket_errors) << w.output;
    EXPECT_GT(w.requests, 100) << w.output;
  }

  http_test::TempTree dir_;
  std::unique_ptr<Child> http_;
  std::unique_ptr<Child> proxy_;
  std::uint16_t upstream_port_ = 0;
  int listener_ = -1;
  std::string url_;
  std::string unix_socket_;  // where the proxy listens, when not on listener_
};

using HttpBehindNginx = BehindARealProxy;

TEST_F(HttpBehindNginx, CurlThroughNginxWithUpstreamKeepAlive) {
  const std::string nginx = program_path("nginx");
  if (nginx.empty()) GTEST_SKIP() << "nginx is not installed (Debian: nginx-light)";
  if (!have_program("curl")) GTEST_SKIP() << "curl is not installed";
  const std::string& d = dir_.path();
  unix_socket_ = d + "/nginx.sock";
  url_ = "http://localhost";
  // One process (no master, no user switch), everything it writes in the scratch directory,
  // its listen address the inherited socket's. The upstream connections are kept alive
  // (HTTP/1.1, no "Connection: close"), so nginx reuses them across requests.
  ASSERT_TRUE(dir_.file("nginx.conf", R"(daemon off;
master_process off;
worker_processes 1;
pid )" + d + R"(/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path )" + d + R"(/body;
  proxy_temp_path )" + d + R"(/proxy;
  fastcgi_temp_path )" + d + R"(/fastcgi;
  uwsgi_temp_path )" + d + R"(/uwsgi;
  scgi_temp_path )" + d + R"(/scgi;
  client_max_body_size 1m;
  upstream app {
    server 127.0.0.1:)" + std::to_string(upstream_port_) +
                                          R"(;
    keepalive 16;
  }
  server {
    listen unix:)" + unix_socket_ + R"(;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
    }
  }
}
)"));
  ASSERT_TRUE(start_proxy({nginx, "-p", d, "-c", d + "/nginx.conf", "-e", "stderr"}))
      << "nginx did not answer";
  expect_curl_gets_and_posts();
  expect_parallel_curl_gets_only_oks();
  // A chunked upload: with request buffering off nginx passes it on as it comes, chunked.
  std::string body(300'000, 'a');
  std::uint32_t x = 5;
  for (char& c : body) c = static_cast<char>('a' + (x = x * 1664525u + 1013904223u) % 26);
  const ProgramResult chunked =
      run_program(curl({"-H", "Transfer-Encoding: chunked", "--data-binary", "@-", url_ + "/echo"}),
                  kWait, body);
  ASSERT_EQ(chunked.exit_code, 0) << chunked.output.substr(0, 300);
  EXPECT_TRUE(chunked.output == body)
      << "echoed " << chunked.output.size() << " of " << body.size();
}

using HttpBehindHaproxy = BehindARealProxy;

TEST_F(HttpBehindHaproxy, CurlAndWrkThroughHaproxyWithHealthChecks) {
  const std::string haproxy = program_path("haproxy");
  if (haproxy.empty()) GTEST_SKIP() << "haproxy is not installed";
  if (!have_program("curl")) GTEST_SKIP() << "curl is not installed";
  // An HTTP/1.1 health check every 100 ms; one failure takes the server out (HAProxy then
  // answers 503), so a single bad answer to a check fails the requests after it. (A check may
  // take up to 5 s: under wrk, on a loaded machine, 100 ms is not always enough.) HAProxy's
  // log on stderr says why a server went down.
  ASSERT_TRUE(dir_.file("haproxy.cfg", R"(global
  nbthread 1
  maxconn 256
  stats socket )" + dir_.at("stats.sock") + R"(
  log stderr format raw daemon notice
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout check 5s
  log global
frontend web
  bind fd@3
  default_backend app
backend app
  http-reuse always
  option httpchk
  http-check send meth GET uri / ver HTTP/1.1 hdr Host localhost
  http-check expect status 200
  server example 127.0.0.1:)" + std::to_string(upstream_port_) +
                                           R"( check inter 100ms fall 1 rise 1
)"));
  ASSERT_TRUE(start_proxy({haproxy, "-f", dir_.at("haproxy.cfg"), "-db"}))
      << "haproxy did not answer";
  expect_curl_gets_and_posts();
  expect_parallel_curl_gets_only_oks();
  expect_wrk_gets_only_oks();
  // The checks went on through all of that: the server is still in, and a check has passed.
  const ProgramResult after =
      run_program(curl({"-o", "/dev/null", "-w", "%{http_code}", url_ + "/"}), kWait);
  EXPECT_EQ(after.output, "200");
  const std::string stat = haproxy_server_checked(dir_.at("stats.sock"), "app", "example", kWait);
  EXPECT_NE(stat.find(",L7OK,"), std::string::npos) << stat;
}

}  // namespace
}  // namespace example_test
