// Bad configuration fails start() with a clear, documented error, before any thread starts and
// without leaking an fd.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <limits>

#include "test_support.hpp"

namespace evloop::test {
namespace {

// Starts a server that must fail; checks the code, that the message names `mention`, and that
// no thread and no fd is left.
template <class Code>  // an evloop::errc or a std::errc (compared as an error condition)
void expect_start_fails(Options o, Code expected, const std::string& mention) {
  // Process-wide backend state (libkqueue's helper threads and fds) out of the baseline.
  { RunningServer warm(loopback_options(), {}); }
  const FdAndThreadCounts before;
  {
    Server server(std::move(o), {});
    const Status s = server.start();
    EXPECT_FALSE(s.ok());
    EXPECT_TRUE(s.code() == expected) << s.message();
    EXPECT_NE(s.message().find(mention), std::string::npos) << s.message();
    EXPECT_TRUE(eventually([&] { return threads_since(before) == 0; })) << "a thread started";
    EXPECT_FALSE(server.running());
  }
  EXPECT_TRUE(counts_return_to(before));
}

Options with(std::vector<std::string> listen, unsigned loops = 1) {
  Options o;
  o.listen = std::move(listen);
  o.loops = loops;
  return o;
}

TEST(ErrorsTest, BadAddressesAndUnknownSchemes) {
  expect_start_fails(with({"tcp://127.0.0.1:0", "tcp://127.0.0.1:99999"}), errc::bad_address,
                     "tcp://127.0.0.1:99999");
  expect_start_fails(with({"sctp://127.0.0.1:1"}), errc::unknown_scheme, "sctp");
  expect_start_fails(with({"tcp://127.0.0.1:1?fast=1"}), errc::bad_option, "fast");
  expect_start_fails(with({"tcp6://[::1:1"}), errc::bad_address, "[::1:1");
  expect_start_fails(with({}), errc::no_address, "no listen address");
}

TEST(ErrorsTest, BadOptionValues) {
  Options o = loopback_options();
  o.output_low_water = o.output_high_water + 1;
  expect_start_fails(o, errc::bad_option, "output_low_water");
  o = loopback_options();
  o.output_high_water = o.output_limit + 1;
  expect_start_fails(o, errc::bad_option, "output_high_water");
  o = loopback_options();
  o.read_buffer_size = 0;
  expect_start_fails(o, errc::bad_option, "read_buffer_size");
  o = loopback_options();
  o.read_buffer_size = std::numeric_limits<std::size_t>::max();  // was std::bad_alloc: a crash
  expect_start_fails(o, errc::bad_option, "read_buffer_size (18446744073709551615) must be 1..");
  o = loopback_options();
  o.keepalive = std::chrono::seconds(100000);  // Linux refuses it: keep-alive stayed at 2 hours
  expect_start_fails(o, errc::bad_option, "keepalive (100000 s) must be at most 32767 s");
  o = loopback_options();
  o.socket_send_buffer = -1;
  expect_start_fails(o, errc::bad_option, "socket_send_buffer (-1) must not be negative");
  o = loopback_options();
  o.socket_receive_buffer = -5;
  expect_start_fails(o, errc::bad_option, "socket_receive_buffer (-5)");
  o = loopback_options();
  o.input_limit = 0;
  expect_start_fails(o, errc::bad_option, "input_limit must be positive");
  o = loopback_options();
  o.send_timeout = std::chrono::milliseconds(-1);
  expect_start_fails(o, errc::bad_option, "send_timeout");
  o = loopback_options();
  o.loops = 5000;
  expect_start_fails(o, errc::bad_option, "loops (5000) must be at most 4096");
}

// A Backend value that names no backend (a cast, or a value read from a configuration file
// unchecked) used to run on epoll as if all was well.
TEST(ErrorsTest, ABackendValueThatNamesNoBackendIsRefused) {
  Options o = loopback_options();
  o.backend = static_cast<Backend>(42);
  expect_start_fails(o, errc::bad_option, "backend (42) is not a Backend");
}

// Where two fields disagree, the message says which the user set and which kept its default.
TEST(ErrorsTest, ConflictingWaterMarksNameTheFieldTheUserSet) {
  Options o = loopback_options();
  o.output_high_water = 100'000;  // below the default low-water mark (256 KiB)
  expect_start_fails(o, errc::bad_option,
                     "output_low_water (262144, the default) must not exceed "
                     "output_high_water (100000)");
  o = loopback_options();
  o.output_low_water = 2u << 20;  // above the default high-water mark (1 MiB)
  expect_start_fails(o, errc::bad_option,
                     "output_low_water (2097152) must not exceed output_high_water (1048576, the "
                     "default)");
}

// A listener added with its own options is checked the same way, naming its address.
TEST(ErrorsTest, AListenersOwnOptionsAreChecked) {
  { RunningServer warm(loopback_options(), {}); }
  const FdAndThreadCounts before;
  {
    Server server(loopback_options(), {});
    ConnOptions bad;
    bad.input_limit = 0;
    ASSERT_TRUE(server.listen("tcp4://127.0.0.1:0", {}, bad));
    const Status s = server.start();
    EXPECT_EQ(s.code(), errc::bad_option);
    EXPECT_NE(s.message().find("listen tcp4://127.0.0.1:0: input_limit"), std::string::npos)
        << s.message();
  }
  EXPECT_TRUE(settles_to(count_open_fds, before.fds));
}

TEST(ErrorsTest, PortInUseFailsAndClosesEverythingOpenedBefore) {
  RunningServer taken(loopback_options(), {});
  ASSERT_TRUE(taken.status);
  const std::string busy = "tcp4://127.0.0.1:" + std::to_string(taken.address().port());
  // The first address binds (on all 4 loops), the second fails: all of it is undone.
  Options o =
      with({"tcp4://127.0.0.1:0?reuseport=1", "unix://" + temp_socket_path("undo"), busy}, 4);
  expect_start_fails(o, std::errc::address_in_use, busy);
}

TEST(ErrorsTest, StartTwiceIsRefused) {
  RunningServer s(loopback_options(), {});
  ASSERT_TRUE(s.status);
  const Status again = s.server.start();
  EXPECT_EQ(again.code(), errc::already_started);
  EXPECT_EQ(s.server.listen("tcp4://127.0.0.1:0", {}, {}).code(), errc::already_started);
}

// Each of the two says which call came too late (listen_udp's said "Server::listen(").
TEST(ErrorsTest, ListenAndListenUdpAfterStartNameTheCall) {
  RunningServer s(loopback_options(), {});
  ASSERT_TRUE(s.status);
  const Status tcp = s.server.listen("tcp4://127.0.0.1:0", {}, {});
  EXPECT_EQ(tcp.code(), errc::already_started);
  EXPECT_EQ(tcp.message(), "Server::listen(tcp4://127.0.0.1:0): call it before start()");
  const Status udp = s.server.listen_udp("udp4://127.0.0.1:0", {}, {});
  EXPECT_EQ(udp.code(), errc::already_started);
  EXPECT_EQ(udp.message(), "Server::listen_udp(udp4://127.0.0.1:0): call it before start()");
}

// A Server runs once; starting it again after stop() says so and what to do instead.
TEST(ErrorsTest, RestartAfterStopIsRefusedWithAMessage) {
  RunningServer s(loopback_options(), {});
  ASSERT_TRUE(s.status);
  s.server.stop();
  EXPECT_TRUE(s.server.wait());
  const Status again = s.server.start();
  EXPECT_EQ(again.code(), errc::already_started);
  EXPECT_NE(again.message().find("create a new Server"), std::string::npos) << again.message();
  EXPECT_FALSE(s.server.running());
}

// stop() before start() is harmless, but the stopped Server is then done: run() is refused at
// once, as after a stop() of a running one, instead of returning ok without serving.
TEST(ErrorsTest, RunAfterAStopBeforeStartIsRefused) {
  Server server(loopback_options(), {});
  server.stop();
  const Status run = server.run();
  EXPECT_EQ(run.code(), errc::already_started) << run.message();
  EXPECT_NE(run.message().find("create a new one"), std::string::npos) << run.message();
  EXPECT_FALSE(server.running());
  EXPECT_EQ(server.start().code(), errc::already_started);
  EXPECT_TRUE(server.wait());
}

// The same for a LoopGroup: start() used to succeed with loops that had stopped at once
// (running() true, connect() an empty ref, post() refused).
TEST(ErrorsTest, LoopGroupStartAfterAStopBeforeStartIsRefused) {
  LoopGroup group;
  group.stop();
  const Status start = group.start();
  EXPECT_EQ(start.code(), errc::already_started) << start.message();
  EXPECT_NE(start.message().find("create a new one"), std::string::npos) << start.message();
  EXPECT_FALSE(group.running());
  EXPECT_EQ(group.loop_count(), 0u);
  EXPECT_EQ(group.run().code(), errc::already_started);
  EXPECT_TRUE(group.wait());
  EXPECT_FALSE(group.running());
}

// A poller that fails (here: its epoll or io_uring fd replaced under it) must not spin silently:
// the loops stop and wait() says which loop failed and why.
TEST(ErrorsTest, AFailingPollerStopsTheLoopsAndWaitSaysWhy) {
  const std::vector<int> before = new_poller_fds({});
  Server server(loopback_options(), {});
  ASSERT_TRUE(server.start());
  const std::vector<int> mine = new_poller_fds(before);
  if (mine.size() != 1) GTEST_SKIP() << "not the epoll or io_uring backend";
  ASSERT_TRUE(break_poller(mine[0]));
  server.loop(0).wake();  // the current wait returns; the next one fails (EBADF/EINVAL)
  const Status s = server.wait();
  EXPECT_EQ(s.code(), errc::loop_failed);
  EXPECT_NE(s.message().find("loop 0: waiting for events failed"), std::string::npos)
      << s.message();
  EXPECT_GE(total_stats(server).waits, 1u);
  EXPECT_LT(total_stats(server).waits, 10u) << "the failed loop spun";
}

TEST(ErrorsTest, UnixPathThatIsARegularFileIsNeverRemoved) {
  const std::string path = temp_socket_path("file");
  std::ofstream(path) << "precious";
  expect_start_fails(with({"unix://" + path}), std::errc::address_in_use, "not a socket");
  std::ifstream in(path);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
  ::unlink(path.c_str());
}

TEST(ErrorsTest, UnixPathInAMissingDirectory) {
  expect_start_fails(with({"unix:///nonexistent-evloop-dir/x.sock"}),
                     std::errc::no_such_file_or_directory, "/nonexistent-evloop-dir/x.sock");
}

TEST(ErrorsTest, UnixPathOfALiveServerIsRefusedAStaleOneIsReused) {
  const std::string path = temp_socket_path("live");
  { RunningServer warm(loopback_options(), {}); }
  const FdAndThreadCounts before;
  {
    RunningServer live(with({"unix://" + path}), {});
    ASSERT_TRUE(live.status);
    // Not expect_start_fails: the probe that finds the server live is a connection the live
    // server accepts, so its fd is released only when the live server sees it close.
    Server second(with({"unix://" + path}), {});
    const Status s = second.start();
    EXPECT_TRUE(s.code() == std::errc::address_in_use) << s.message();
    EXPECT_NE(s.message().find("already listening"), std::string::npos) << s.message();
    Client still(live.address());
    EXPECT_TRUE(still.connected());
  }
  EXPECT_TRUE(counts_return_to(before));
  // A socket file left by a process that died: bound, never unlinked, nobody listening.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
  ::close(fd);
  RunningServer reuse(with({"unix://" + path}), {});
  EXPECT_TRUE(reuse.status) << reuse.status.message();
}

}  // namespace
}  // namespace evloop::test
