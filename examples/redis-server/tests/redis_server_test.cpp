// Integration tests of the redis-server binary: started as a child process on a free loopback
// port, driven by redis-cli and redis-benchmark (skipped when not installed) and by raw sockets,
// then stopped with SIGTERM, which must end it with exit code 0.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <string>
#include <thread>

#include "server_test.hpp"

namespace {

using namespace example_test;
using std::chrono::milliseconds;

class RedisServer : public ServerTest {
 protected:
  RedisServer() : ServerTest(REDIS_SERVER_BIN) {}

  void SetUp() override { start({"--max-bulk", "1000"}); }

  // SET of a value of `size` bytes and GET of it, in one write: both replies come back whole.
  void expect_set_then_get(std::size_t size) {
    const std::string value(size, 'v');
    const std::string length = std::to_string(size);
    const int fd = connect_loopback(port_);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$" + length + "\r\n" + value +
                                 "\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"));
    const std::string want = "+OK\r\n$" + length + "\r\n" + value + "\r\n";
    // Tens of MiB through a sanitized server on a loaded machine: a longer bound than kTimeout.
    const std::string got = read_exactly(fd, want.size(), milliseconds(60'000));
    ::close(fd);
    EXPECT_TRUE(got == want) << "got " << got.size() << " bytes of " << want.size() << ": "
                             << got.substr(0, 40);
  }

  // redis-cli with the given arguments; returns its output (stdout + stderr).
  std::string cli(std::vector<std::string> args) {
    std::vector<std::string> argv{"redis-cli", "-h", "127.0.0.1", "-p", std::to_string(port_)};
    argv.insert(argv.end(), args.begin(), args.end());
    ProgramResult r = run_program(argv, kTimeout);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.output;
  }
};

TEST_F(RedisServer, RedisCliCommands) {
  if (!have_program("redis-cli")) GTEST_SKIP() << "redis-cli is not installed";
  EXPECT_EQ(cli({"PING"}), "PONG\n");
  EXPECT_EQ(cli({"ECHO", "hello world"}), "hello world\n");
  EXPECT_EQ(cli({"SET", "k", "v"}), "OK\n");
  EXPECT_EQ(cli({"GET", "k"}), "v\n");
  EXPECT_EQ(cli({"SET", "k", "w", "NX"}), "\n");  // nil prints as an empty line when piped
  EXPECT_EQ(cli({"INCR", "n"}), "1\n");
  // redis-cli prints errors followed by an empty line when stdout is not a tty.
  EXPECT_EQ(cli({"INCR", "k"}), "ERR value is not an integer or out of range\n\n");
  EXPECT_EQ(cli({"MSET", "a", "1", "b", "2"}), "OK\n");
  EXPECT_EQ(cli({"MGET", "a", "nope", "b"}), "1\n\n2\n");
  EXPECT_EQ(cli({"EXISTS", "a", "b", "nope"}), "2\n");
  EXPECT_EQ(cli({"DEL", "a", "b"}), "2\n");
  EXPECT_EQ(cli({"DBSIZE"}), "2\n");
  EXPECT_EQ(cli({"CONFIG", "GET", "save"}), "save\n\n");
  EXPECT_EQ(cli({"FLUSHALL"}), "OK\n");
  EXPECT_EQ(cli({"DBSIZE"}), "0\n");
}

TEST_F(RedisServer, RedisCliInteractiveModeStarts) {
  if (!have_program("redis-cli")) GTEST_SKIP() << "redis-cli is not installed";
  // Interactive mode asks COMMAND DOCS first; stdin that is not a tty makes it read commands.
  ProgramResult r =
      run_program({"redis-cli", "-p", std::to_string(port_)}, kTimeout, "SET x 1\nGET x\nQUIT\n");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "OK\n1\n");  // redis-cli does not print QUIT's reply
}

TEST_F(RedisServer, KeysExpire) {
  if (!have_program("redis-cli")) GTEST_SKIP() << "redis-cli is not installed";
  EXPECT_EQ(cli({"SET", "gone", "1", "PX", "20"}), "OK\n");
  EXPECT_EQ(cli({"SET", "kept", "1", "EX", "100"}), "OK\n");
  // Expiry is about time: poll, bounded. DBSIZE touches no key, so only the active expiry (the
  // tick on loop 0) can bring it down to 1.
  auto deadline = std::chrono::steady_clock::now() + kTimeout;
  while (cli({"DBSIZE"}) != "1\n" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(cli({"DBSIZE"}), "1\n");
  EXPECT_EQ(cli({"EXISTS", "gone"}), "0\n");
  EXPECT_EQ(cli({"EXISTS", "kept"}), "1\n");
  EXPECT_EQ(cli({"SET", "lazy", "1", "PX", "1"}), "OK\n");
  // (Lazy expiry on access is covered with an explicit clock in store_test.cpp.)
  deadline = std::chrono::steady_clock::now() + kTimeout;
  while (cli({"GET", "lazy"}) != "\n" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_EQ(cli({"GET", "lazy"}), "\n");
}

TEST_F(RedisServer, RedisBenchmarkRunsWithoutWarnings) {
  if (!have_program("redis-benchmark")) GTEST_SKIP() << "redis-benchmark is not installed";
  ProgramResult r =
      run_program({"redis-benchmark", "-h", "127.0.0.1", "-p", std::to_string(port_), "-q", "-n",
                   "2000", "-c", "4", "-P", "8", "-t", "ping_inline,ping_mbulk,set,get,incr,mset"},
                  milliseconds(60'000));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("WARN"), std::string::npos) << r.output;
  EXPECT_EQ(count_of(r.output, "requests per second"), 6) << r.output;
}

// Behind HAProxy in TCP mode, with its Redis health check (PING, expecting +PONG) every 100 ms
// and the server taken out at the first failure: redis-cli and redis-benchmark through HAProxy
// get every answer. HAProxy serves a socket the test bound to port 0 (`bind fd@3`).
TEST_F(RedisServer, RedisBenchmarkThroughHaproxyWithRedisHealthChecks) {
  const std::string haproxy = program_path("haproxy");
  if (haproxy.empty()) GTEST_SKIP() << "haproxy is not installed";
  if (!have_program("redis-benchmark")) GTEST_SKIP() << "redis-benchmark is not installed";
  char dir[] = "/tmp/evloop-redis-haproxy-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string config = std::string(dir) + "/haproxy.cfg";
  {
    std::FILE* f = std::fopen(config.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fprintf(f,
                 "global\n  nbthread 1\n  maxconn 256\n  stats socket %s/stats.sock\n"
                 "  log stderr format raw daemon notice\n"
                 "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n"
                 "  timeout server 30s\n  timeout check 5s\n  log global\n"
                 "listen redis\n  bind fd@3\n  option redis-check\n"
                 "  server example 127.0.0.1:%u check inter 100ms fall 1 rise 1\n",
                 dir, static_cast<unsigned>(port_));
    std::fclose(f);
  }
  const int listener = listen_loopback();
  ASSERT_GE(listener, 0);
  const std::string port = std::to_string(bound_port(listener));
  ChildSetup setup;
  setup.fds = {listener};
  Child proxy({haproxy, "-f", config, "-db"}, setup);
  ASSERT_TRUE(proxy.running());
  const auto through = [&](std::vector<std::string> argv, milliseconds timeout) {
    argv.insert(argv.begin() + 1, {"-h", "127.0.0.1", "-p", port});
    return run_program(argv, timeout);
  };
  // The kernel queues the first connection until HAProxy accepts it.
  EXPECT_EQ(through({"redis-cli", "PING"}, kTimeout).output, "PONG\n");
  const ProgramResult bench = through({"redis-benchmark", "-q", "-n", "20000", "-c", "20", "-P",
                                       "16", "-t", "ping_inline,set,get,incr"},
                                      milliseconds(60'000));
  EXPECT_EQ(bench.exit_code, 0) << bench.output;
  EXPECT_EQ(bench.output.find("rror"), std::string::npos) << bench.output;
  EXPECT_EQ(count_of(bench.output, "requests per second"), 4) << bench.output;
  // The checks went on through all of that: the server is still in, and a check has passed.
  EXPECT_EQ(through({"redis-cli", "INCR", "after"}, kTimeout).output, "1\n");
  const std::string stat =
      haproxy_server_checked(std::string(dir) + "/stats.sock", "redis", "example", kTimeout);
  EXPECT_NE(stat.find(",L7OK,"), std::string::npos) << stat;
  proxy.signal(SIGTERM);
  EXPECT_NE(proxy.wait_exit(kTimeout), -1) << "haproxy did not stop";
  ::close(listener);
  std::remove(config.c_str());
  std::remove((std::string(dir) + "/stats.sock").c_str());
  ::rmdir(dir);
}

TEST_F(RedisServer, PipelinedCommandsAreAnsweredInOrder) {
  int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  std::string batch;
  for (int i = 0; i < 100; ++i) batch += "*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n";
  batch += "PING\r\n*2\r\n$3\r\nGET\r\n$1\r\nc\r\nQUIT\r\n";
  ASSERT_TRUE(send_all(fd, batch));
  bool closed = false;
  std::string got = read_until_close(fd, kTimeout, closed);
  ::close(fd);
  EXPECT_TRUE(closed);  // QUIT
  std::string want;
  for (int i = 1; i <= 100; ++i) want.append(":").append(std::to_string(i)).append("\r\n");
  want += "+PONG\r\n$3\r\n100\r\n+OK\r\n";
  EXPECT_EQ(got, want);
}

TEST_F(RedisServer, CommandSplitIntoSingleBytesIsParsed) {
  int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  std::string cmd =
      "*3\r\n$3\r\nSET\r\n$5\r\nsplit\r\n$7\r\na\r\nb\r\nc\r\n*2\r\n$3\r\nGET\r\n$5\r\nsplit\r\n";
  for (char c : cmd) ASSERT_TRUE(send_all(fd, std::string_view(&c, 1)));
  std::string want = "+OK\r\n$7\r\na\r\nb\r\nc\r\n";
  std::string got = read_until_count(fd, "c\r\n", 1, kTimeout);
  EXPECT_EQ(got, want);
  ::close(fd);
}

struct BadInput {
  std::string input;
  std::string reply;
};

TEST_F(RedisServer, ProtocolErrorsReplyAndClose) {
  const BadInput cases[] = {
      {"*1\r\n:5\r\n", "-ERR Protocol error: expected '$', got ':'\r\n"},
      {"*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
      {"*1\r\n$1001\r\n", "-ERR Protocol error: invalid bulk length\r\n"},  // --max-bulk 1000
      {"PING\r\nSET \"a\r\n", "+PONG\r\n-ERR Protocol error: unbalanced quotes in request\r\n"},
      {std::string(70000, 'a'), "-ERR Protocol error: too big inline request\r\n"},
  };
  for (const BadInput& c : cases) {
    bool closed = false;
    std::string got = exchange_until_close(c.input, closed);
    EXPECT_TRUE(closed) << c.input.substr(0, 40);
    EXPECT_EQ(got, c.reply) << c.input.substr(0, 40);
  }
}

TEST_F(RedisServer, BulkAtTheLimitIsAccepted) {
  int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  std::string value(1000, 'v');
  ASSERT_TRUE(send_all(fd, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\n" + value +
                               "\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"));
  std::string got = read_until_count(fd, value, 1, kTimeout);
  EXPECT_EQ(got, "+OK\r\n$1000\r\n" + value + "\r\n");
  ::close(fd);
}

TEST_F(RedisServer, AValueOfMaxBulkBytesIsReadBackWhole) {
  stop();
  start({"--max-bulk", "4194304"});
  expect_set_then_get(4194304);
  bool closed = false;
  EXPECT_EQ(exchange_until_close("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4194305\r\n", closed),
            "-ERR Protocol error: invalid bulk length\r\n");
}

// The case of issue 16: the default --max-bulk of 64 MiB took a SET, but GET closed the
// connection, its reply being 13 bytes over evloop's default output limit.
TEST_F(RedisServer, TheLargestValueOfTheDefaultConfigurationIsReadBackWhole) {
  stop();
  start({});
  expect_set_then_get(64 << 20);
}

TEST_F(RedisServer, TimeoutClosesIdleClientsButNotBusyOnes) {
  stop();
  start({"--timeout", "1"});
  // An idle client: one command, then nothing. The server closes it at its own pace while a
  // busy client keeps going below.
  const int idle = connect_loopback(port_);
  ASSERT_GE(idle, 0);
  const auto sent = std::chrono::steady_clock::now();  // before the server's clock can start
  ASSERT_TRUE(send_all(idle, "CONFIG GET timeout\r\n"));
  ASSERT_EQ(read_until_count(idle, "\r\n", 5, kTimeout), "*2\r\n$7\r\ntimeout\r\n$1\r\n1\r\n");
  std::future<double> idle_closed_after =
      std::async(std::launch::async, ms_until_closed_silently, idle, sent, kTimeout);
  // A busy client: a command after each pause of up to 0.5 s, for over three timeouts.
  const int busy = connect_loopback(port_);
  ASSERT_GE(busy, 0);
  const BusyResult result = keep_busy(busy, milliseconds(3500), [](int fd, int i) {
    return send_all(fd, "INCR n\r\n") &&
           read_until_count(fd, "\r\n", 1, kTimeout) == ":" + std::to_string(i + 1) + "\r\n";
  });
  ::close(busy);
  EXPECT_EQ(result.failure, "");
  const double took = idle_closed_after.get();
  std::printf(
      "--timeout 1: the idle client was closed %.0f ms after its command; the busy one sent "
      "%d commands over 3.5 s\n",
      took, result.exchanges);
  EXPECT_GE(took, 999.0);
  EXPECT_LE(took, 3000.0);
}

// A client that asks for a large value and stops reading: --send-timeout resets it, which frees
// the reply. Without a send timeout it held the reply (up to the output limit, 64 MiB and more)
// for as long as it stayed connected.
TEST_F(RedisServer, SendTimeoutResetsAClientThatStopsReading) {
  stop();
  start({"--send-timeout", "1"});
  const std::string value(32 << 20, 'v');  // more than the socket buffers of both ends hold
  const int setter = connect_loopback(port_);
  ASSERT_GE(setter, 0);
  ASSERT_TRUE(send_all(setter, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$" + std::to_string(value.size()) +
                                   "\r\n" + value + "\r\n"));
  ASSERT_EQ(read_until_count(setter, "\r\n", 1, milliseconds(60'000)), "+OK\r\n");
  ::close(setter);
  const int reader = connect_loopback(port_);
  ASSERT_GE(reader, 0);
  const auto sent = std::chrono::steady_clock::now();  // before the server's clock can start
  ASSERT_TRUE(send_all(reader, "GET k\r\n"));
  // Reads nothing; the connection's TCP state says when the server's reset arrives.
  const double took = ms_until_reset_unread(reader, sent, kTimeout);
  ::close(reader);
  std::printf(
      "--send-timeout 1: a client that stopped reading a 32 MiB reply was reset after %.0f ms\n",
      took);
  EXPECT_GE(took, 0.0) << "not reset within " << kTimeout.count() << " ms";
  EXPECT_GE(took, 999.0);
}

TEST_F(RedisServer, StoreIsSharedAcrossLoops) {
  stop();
  start({"--loops", "4", "--reuseport"});
  constexpr int kClients = 16;
  constexpr int kIncrements = 500;
  std::vector<std::thread> clients;
  std::vector<int> ok(kClients, 0);
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([this, i, &ok] {
      int fd = connect_loopback(port_);
      if (fd < 0) return;
      std::string batch;
      for (int k = 0; k < kIncrements; ++k) batch += "INCR total\r\n";
      batch.append("SET own").append(std::to_string(i)).append(" x\r\n");
      if (send_all(fd, batch)) {
        std::string got = read_until_count(fd, "\r\n", kIncrements + 1, kTimeout);
        ok[static_cast<std::size_t>(i)] =
            count_of(got, "\r\n") == kIncrements + 1 && got.substr(got.size() - 5) == "+OK\r\n";
      }
      ::close(fd);
    });
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < kClients; ++i) EXPECT_TRUE(ok[static_cast<std::size_t>(i)]) << i;
  int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "GET total\r\nDBSIZE\r\n"));
  std::string want = "$4\r\n";
  want.append(std::to_string(kClients * kIncrements)).append("\r\n:17\r\n");
  EXPECT_EQ(read_until_count(fd, "\r\n", 3, kTimeout), want);
  ::close(fd);
}

// SIGUSR2 hands the listeners over: new clients reach the successor (and its own, empty, store);
// a client already connected stays with the old process and its store until it leaves, then the
// old process exits 0.
TEST_F(RedisServer, Sigusr2HandsTheListenersOverAndConnectedClientsStay) {
  if (!become_subreaper()) GTEST_SKIP() << "needs a subreaper (Linux) to see the successor exit";
  const std::string set = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
  const std::string get = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
  const int stays = connect_loopback(port_);
  ASSERT_TRUE(send_all(stays, set));
  ASSERT_EQ(read_until_count(stays, "\r\n", 1, kTimeout), "+OK\r\n");
  const Upgraded u = upgrade_example(*child_, kTimeout);
  ASSERT_NE(u.pid, 0) << u.line;
  EXPECT_EQ(u.moved, 0) << u.line;
  EXPECT_EQ(u.draining, 1) << u.line;
  const int fresh = connect_loopback(port_);
  ASSERT_TRUE(send_all(fresh, get));
  EXPECT_EQ(read_until_count(fresh, "\r\n", 1, kTimeout), "$-1\r\n") << "the successor's store";
  ::close(fresh);
  ASSERT_TRUE(send_all(stays, get));
  EXPECT_EQ(read_until_count(stays, "\r\n", 2, kTimeout), "$1\r\nv\r\n") << "the old store";
  ::close(stays);
  EXPECT_EQ(child_->wait_process(kTimeout), 0);
  ::kill(u.pid, SIGTERM);
  EXPECT_EQ(wait_for_exit(u.pid, kTimeout), 0);
}

TEST(RedisServerFlags, ServesAnInheritedFd) {
  const int listener = listen_loopback();
  ChildSetup setup;
  setup.fds = {listener};
  std::unique_ptr<Child> child;
  const std::uint16_t port = start_server(child, REDIS_SERVER_BIN, {}, "fd://3", setup);
  EXPECT_EQ(port, bound_port(listener));
  ::close(listener);
  const int fd = connect_loopback(port);
  ASSERT_TRUE(send_all(fd, "*1\r\n$4\r\nPING\r\n"));
  EXPECT_EQ(read_until_count(fd, "\r\n", 1, kTimeout), "+PONG\r\n");
  ::close(fd);
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait_exit(kTimeout), 0);
}

TEST(RedisServerFlags, BadFlagsExitWithCode2AndStartFailureWith1) {
  ProgramResult r = run_program({REDIS_SERVER_BIN, "--loops", "-1"}, kTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_program({REDIS_SERVER_BIN, "--listen"}, kTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--listen needs a value"), std::string::npos) << r.output;
  r = run_program({REDIS_SERVER_BIN, "--help"}, kTimeout);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("Usage: redis-server"), std::string::npos);
  // A --listen address that does not parse, or a UDP one, is a bad flag too.
  r = run_program({REDIS_SERVER_BIN, "--listen", "tcp://127.0.0.1:99999"}, kTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("127.0.0.1:99999"), std::string::npos) << r.output;
  r = run_program({REDIS_SERVER_BIN, "--listen", "udp://127.0.0.1:0"}, kTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("not UDP"), std::string::npos) << r.output;

  // A port really in use is a start-up failure: 1.
  std::unique_ptr<Child> first;
  const std::uint16_t port = start_server(first, REDIS_SERVER_BIN);
  ASSERT_NE(port, 0);
  r = run_program({REDIS_SERVER_BIN, "--listen", "tcp4://127.0.0.1:" + std::to_string(port)},
                  kTimeout);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("Address already in use"), std::string::npos) << r.output;
  first->signal(SIGTERM);
  EXPECT_EQ(first->wait_exit(kTimeout), 0);
}

}  // namespace
