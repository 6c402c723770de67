// The tcp-proxy binary as a user runs it: in front of the echo-server and http-server examples
// and of a real redis-server, driven by real clients (redis-cli, redis-benchmark, curl, wrk; each
// test skips itself, saying why, when its programs are not installed), stopped by SIGINT and
// SIGTERM, and rejecting bad flags.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>

#include "proxy_test_support.hpp"

namespace example_test {
namespace {

TEST(TcpProxy, PipesBothWaysToTheEchoServerAndStopsOnSigintWithStats) {
  std::unique_ptr<Child> echo;
  const std::uint16_t echo_port = start_server(echo, ECHO_SERVER_BIN, {"--loops", "2"});
  ASSERT_NE(echo_port, 0);
  Proxy proxy(loopback_url(echo_port), {"--loops", "2", "--stats"});
  ASSERT_NE(proxy.port(), 0);
  for (int i = 0; i < 8; ++i) {
    const int fd = connect_loopback(proxy.port());
    ASSERT_GE(fd, 0);
    const std::string msg = pattern(1000 + 997 * static_cast<std::size_t>(i), 1 + i);
    const Flow f = exchange(fd, msg, true);
    ::close(fd);
    EXPECT_EQ(f.end, End::eof) << to_string(f.end);
    EXPECT_TRUE(f.in == msg) << "got " << f.in.size() << " of " << msg.size() << " bytes";
  }
  proxy.child().signal(SIGINT);
  const std::string stats = proxy.child().wait_for_line("{\"stats\":", kWait);
  EXPECT_NE(stats.find("\"accepts\":8,"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"dials\":8,"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"dial_failures\":0,"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"resets\":0,"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"read_pauses\":0,"), std::string::npos)
      << "evloop's own back-pressure pause must stay off in a proxy: " << stats;
  EXPECT_EQ(proxy.child().wait_exit(kWait), 0);
  echo->signal(SIGTERM);
  EXPECT_EQ(echo->wait_exit(kWait), 0);
}

// A stop with pairs open ends each side with a FIN after its pending bytes, not a reset.
TEST(TcpProxy, SigtermWithPairsOpenEndsThemCleanly) {
  Listener upstream;
  Proxy proxy(upstream.url(), {"--reuseport", "--loops", "2"});
  ASSERT_NE(proxy.port(), 0);
  const int client = connect_loopback(proxy.port());
  ASSERT_GE(client, 0);
  const int up = upstream.accept();
  ASSERT_GE(up, 0);
  ASSERT_TRUE(send_all(client, "ping"));
  EXPECT_EQ(read_exactly(up, 4, kWait), "ping");
  proxy.child().signal(SIGTERM);
  const Flow c = exchange(client, {}, false);
  const Flow u = exchange(up, {}, false);
  EXPECT_EQ(c.end, End::eof) << to_string(c.end);
  EXPECT_EQ(u.end, End::eof) << to_string(u.end);
  EXPECT_EQ(proxy.child().wait_exit(kWait), 0);
  ::close(client);
  ::close(up);
}

TEST(TcpProxyFlags, HelpBadFlagsAndBadAddresses) {
  const ProgramResult help = run_program({TCP_PROXY_BIN, "--help"}, kWait);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("Usage: tcp-proxy --upstream ADDR"), std::string::npos);

  const struct {
    std::vector<std::string> args;
    const char* says;
  } bad[] = {
      {{}, "--upstream is required"},
      {{"--upstream"}, "--upstream needs a value"},
      {{"--upstream", "bogus://x"}, "--upstream: "},
      {{"--upstream", "tcp://127.0.0.1:0"}, "--upstream: "},
      {{"--upstream", "tcp://127.0.0.1:99999"}, "--upstream: "},
      {{"--upstream", "tcp://127.0.0.1:1", "--connect-timeout", "soon"}, "--connect-timeout"},
      {{"--upstream", "tcp://127.0.0.1:1", "--idle-timeout", "-1"}, "--idle-timeout takes 0.."},
      {{"--upstream", "tcp://127.0.0.1:1", "--send-timeout", "1m"}, "--send-timeout takes 0.."},
      {{"--upstream", "tcp://127.0.0.1:1", "--loops", "0"}, "--loops"},
      {{"--upstream", "tcp://127.0.0.1:1", "--frobnicate"}, "unknown option '--frobnicate'"},
      // A --listen address that does not parse, or a UDP one, is a bad flag too.
      {{"--upstream", "tcp://127.0.0.1:1", "--listen", "tcp://127.0.0.1:99999"},
       "port must be 0..65535"},
      {{"--upstream", "tcp://127.0.0.1:1", "--listen", "bogus://x"}, "bogus://x"},
      {{"--upstream", "tcp://127.0.0.1:1", "--listen", "udp://127.0.0.1:0"}, "not UDP"},
  };
  for (const auto& b : bad) {
    std::vector<std::string> argv{TCP_PROXY_BIN};
    argv.insert(argv.end(), b.args.begin(), b.args.end());
    const ProgramResult r = run_program(argv, kWait);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(b.says), std::string::npos) << r.output;
  }

  // A listen address that cannot be served (a port in use) is a start-up failure (exit 1), as
  // for the servers.
  std::unique_ptr<Child> first;
  const std::uint16_t port =
      start_server(first, TCP_PROXY_BIN, {"--upstream", "tcp://127.0.0.1:1"});
  ASSERT_NE(port, 0);
  const ProgramResult in_use = run_program({TCP_PROXY_BIN, "--upstream", "tcp://127.0.0.1:1",
                                            "--listen", "tcp4://127.0.0.1:" + std::to_string(port)},
                                           kWait);
  EXPECT_EQ(in_use.exit_code, 1) << in_use.output;
  EXPECT_NE(in_use.output.find("Address already in use"), std::string::npos) << in_use.output;
  first->signal(SIGTERM);
  EXPECT_EQ(first->wait_exit(kWait), 0);
}

// A UDP upstream is refused as a bad flag, as a UDP --listen address is. Before, the proxy
// started and served, and reset every client it accepted ("unknown address scheme").
TEST(TcpProxyFlags, AUdpUpstreamIsABadFlagNotAResetOfEveryClient) {
  for (const char* upstream :
       {"udp://127.0.0.1:5353", "udp4://127.0.0.1:5353", "udp6://[::1]:53"}) {
    const ProgramResult r = run_program(
        {TCP_PROXY_BIN, "--listen", "tcp://127.0.0.1:0", "--upstream", upstream}, kWait);
    EXPECT_EQ(r.exit_code, 2) << upstream << ": " << r.output;
    EXPECT_NE(r.output.find("--upstream " + std::string(upstream) +
                            ": this program forwards TCP, not UDP"),
              std::string::npos)
        << r.output;
  }
}

// --- a real redis-server behind the proxy, on a Unix socket
// ----------------------------------------

class RedisBehindTheProxy : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* p : {"redis-server", "redis-cli", "redis-benchmark"}) {
      if (!have_program(p)) {
        GTEST_SKIP() << p << " is not installed (Debian: apt-get install redis-server redis-tools)";
      }
    }
    char dir[] = "/tmp/tcp-proxy-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    socket_ = dir_ + "/redis.sock";
    // --port 0: no TCP listener at all; the proxy reaches redis on its Unix socket only.
    redis_ = std::make_unique<Child>(std::vector<std::string>{
        "redis-server", "--port", "0", "--unixsocket", socket_, "--save", "", "--appendonly", "no",
        "--dir", dir_, "--daemonize", "no", "--loglevel", "notice"});
    ASSERT_TRUE(redis_->running());
    // "The server is now ready to accept connections at PATH" (Redis 7), "Ready to accept
    // connections" (older).
    ASSERT_FALSE(redis_->wait_for_line_containing("eady to accept connections", kWait).empty())
        << "redis-server did not start";
    proxy_ = std::make_unique<Proxy>("unix://" + socket_, std::vector<std::string>{"--loops", "2"});
    ASSERT_NE(proxy_->port(), 0);
  }

  void TearDown() override {
    proxy_.reset();  // SIGTERM, exit code checked
    if (redis_) {
      redis_->signal(SIGTERM);
      EXPECT_EQ(redis_->wait_exit(kWait), 0);
    }
    if (!dir_.empty()) {
      ::unlink(socket_.c_str());
      ::rmdir(dir_.c_str());
    }
  }

  // redis-cli through the proxy (or, with `direct`, straight to redis's socket).
  std::string cli(std::vector<std::string> args, bool direct = false) {
    std::vector<std::string> argv{"redis-cli"};
    if (direct) {
      argv.insert(argv.end(), {"-s", socket_});
    } else {
      argv.insert(argv.end(), {"-h", "127.0.0.1", "-p", std::to_string(proxy_->port())});
    }
    argv.insert(argv.end(), args.begin(), args.end());
    const ProgramResult r = run_program(argv, kWait);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.output;
  }

  std::string dir_, socket_;
  std::unique_ptr<Child> redis_;
  std::unique_ptr<Proxy> proxy_;
};

TEST_F(RedisBehindTheProxy, RedisCliCommandsReachTheRealServer) {
  EXPECT_EQ(cli({"PING"}), "PONG\n");
  EXPECT_EQ(cli({"SET", "greeting", "hello through the proxy"}), "OK\n");
  EXPECT_EQ(cli({"GET", "greeting"}), "hello through the proxy\n");
  EXPECT_EQ(cli({"INCRBY", "counter", "41"}), "41\n");
  EXPECT_EQ(cli({"INCR", "counter"}), "42\n");
  // A value larger than every socket buffer on the way, both ways (-x: the last argument is
  // read from stdin).
  const std::string big(3 * 1024 * 1024 + 17, 'v');
  const ProgramResult set = run_program(
      {"redis-cli", "-h", "127.0.0.1", "-p", std::to_string(proxy_->port()), "-x", "SET", "big"},
      kWait, big);
  EXPECT_EQ(set.output, "OK\n");
  EXPECT_EQ(cli({"STRLEN", "big"}), std::to_string(big.size()) + "\n");
  EXPECT_EQ(cli({"GET", "big"}), big + "\n");
  // The real server has them.
  EXPECT_EQ(cli({"GET", "greeting"}, true), "hello through the proxy\n");
  EXPECT_EQ(cli({"DBSIZE"}, true), "3\n");
}

TEST_F(RedisBehindTheProxy, RedisBenchmarkRunsWithoutErrors) {
  const std::string requests = kSanitized ? "5000" : "50000";
  const ProgramResult r = run_program(
      {"redis-benchmark", "-h", "127.0.0.1", "-p", std::to_string(proxy_->port()), "-c", "50", "-n",
       requests, "-P", "16", "-t", "ping_inline,set,get,lpush,lrange_100", "-q"},
      milliseconds(90'000));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* test : {"PING_INLINE:", "SET:", "GET:", "LPUSH:", "LRANGE_100"}) {
    EXPECT_NE(r.output.find(test), std::string::npos) << test << " missing:\n" << r.output;
  }
  EXPECT_EQ(r.output.find("rror"), std::string::npos) << r.output;
  EXPECT_EQ(cli({"PING"}), "PONG\n");
}

// --- the http-server example behind the proxy
// ------------------------------------------------------

class HttpBehindTheProxy : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::uint16_t port = start_server(http_, HTTP_SERVER_BIN, {"--loops", "2"});
    ASSERT_NE(port, 0);
    proxy_ = std::make_unique<Proxy>(loopback_url(port), std::vector<std::string>{"--loops", "2"});
    ASSERT_NE(proxy_->port(), 0);
    url_ = "http://127.0.0.1:" + std::to_string(proxy_->port());
  }

  void TearDown() override {
    proxy_.reset();
    if (http_) {
      http_->signal(SIGTERM);
      EXPECT_EQ(http_->wait_exit(kWait), 0);
    }
  }

  std::unique_ptr<Child> http_;
  std::unique_ptr<Proxy> proxy_;
  std::string url_;
};

TEST_F(HttpBehindTheProxy, CurlGetsAndPostsThroughTheProxy) {
  if (!have_program("curl")) GTEST_SKIP() << "curl is not installed";
  const ProgramResult get = run_program({"curl", "-sS", "-i", url_ + "/", url_ + "/"}, kWait);
  ASSERT_EQ(get.exit_code, 0) << get.output;
  EXPECT_EQ(count_of(get.output, "HTTP/1.1 200 OK\r\n"), 2) << get.output;
  EXPECT_EQ(count_of(get.output, "Hello, World!"), 2) << get.output;

  const std::string body = pattern(200'000, 7);
  std::string text;  // curl reads the body from stdin: keep it printable
  for (char c : body) text += static_cast<char>('a' + static_cast<unsigned char>(c) % 26);
  const ProgramResult post =
      run_program({"curl", "-sS", "--data-binary", "@-", url_ + "/echo"}, kWait, text);
  ASSERT_EQ(post.exit_code, 0) << post.output.substr(0, 300);
  EXPECT_TRUE(post.output == text) << "echoed " << post.output.size() << " of " << text.size();
}

TEST_F(HttpBehindTheProxy, WrkGetsOnlyOks) {
  if (!have_program("wrk")) GTEST_SKIP() << "wrk is not installed";
  const WrkRun w = run_wrk(url_ + "/");
  ASSERT_EQ(w.exit_code, 0) << w.output;
  EXPECT_FALSE(w.non_2xx) << w.output;
  EXPECT_FALSE(w.socket_errors) << w.output;
  EXPECT_GT(w.requests, 100) << w.output;
}

}  // namespace
}  // namespace example_test
