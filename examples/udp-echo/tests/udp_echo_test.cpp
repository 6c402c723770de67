// The udp-echo binary as a user runs it: it prints its address, echoes every datagram byte for
// byte (one loop, several loops with reuse-port, GSO/GRO), stops cleanly on SIGINT and SIGTERM
// (printing its counters with --stats), and rejects bad input clearly.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <future>
#include <optional>
#include <thread>

#include "child_process.hpp"
#include "portable_socket.hpp"

namespace example_test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kListen = "udp://127.0.0.1:0";

// A UDP socket on 127.0.0.1 (a new source port each time: a new flow for reuse-port).
class Peer {
 public:
  Peer() { fd_ = evloop::test::open_socket(AF_INET, SOCK_DGRAM); }
  ~Peer() { ::close(fd_); }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  bool send(std::uint16_t port, std::string_view bytes) const {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to),
                    sizeof to) == static_cast<ssize_t>(bytes.size());
  }
  std::optional<std::string> receive(milliseconds timeout = 5s) const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    std::string out(65536, '\0');
    const ssize_t n = ::recv(fd_, out.data(), out.size(), 0);
    if (n < 0) return std::nullopt;
    out.resize(static_cast<std::size_t>(n));
    return out;
  }

 private:
  int fd_ = -1;
};

std::string payload(int i, std::size_t size) {
  std::string s = "datagram " + std::to_string(i) + " ";
  while (s.size() < size)
    s += static_cast<char>('a' + (s.size() * 7 + static_cast<std::size_t>(i)) % 26);
  s.resize(size);
  return s;
}

// `flows` peers, each sending `count` datagrams one at a time and checking each echo.
void expect_echo(std::uint16_t port, int flows, int count) {
  for (int f = 0; f < flows; ++f) {
    Peer peer;
    for (int i = 0; i < count; ++i) {
      const std::string msg = payload(f * 1000 + i, 1 + static_cast<std::size_t>(i * 131 % 1400));
      ASSERT_TRUE(peer.send(port, msg));
      ASSERT_EQ(peer.receive().value_or("(none)"), msg) << "flow " << f << " datagram " << i;
    }
  }
}

TEST(UdpEchoBinary, EchoesAndStopsCleanlyOnSigintWithStats) {
  std::unique_ptr<Child> child;
  const std::uint16_t port =
      start_server(child, UDP_ECHO_BIN, {"--loops", "2", "--reuseport", "--stats"}, kListen);
  ASSERT_NE(port, 0);
  expect_echo(port, 8, 10);
  child->signal(SIGINT);
  const std::string stats = child->wait_for_line("{\"stats\":", 10s);
  EXPECT_NE(stats.find("\"datagrams_in\":80,"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"datagrams_out\":80,"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"drops\":0,"), std::string::npos) << stats;
  EXPECT_EQ(child->wait_exit(10s), 0);
}

TEST(UdpEchoBinary, EchoesWithGsoAndGroAndStopsOnSigterm) {
  std::unique_ptr<Child> child;
  const std::uint16_t port =
      start_server(child, UDP_ECHO_BIN, {"--gso", "--gro", "--batch", "8"}, kListen);
  ASSERT_NE(port, 0);
  expect_echo(port, 2, 20);
  // A burst: the replies may leave as one segmented send; each arrives whole and in order.
  Peer peer;
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(peer.send(port, payload(i, 1200)));
  for (int i = 0; i < 16; ++i) ASSERT_EQ(peer.receive().value_or("(none)"), payload(i, 1200));
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait_exit(10s), 0);
}

TEST(UdpEchoBinary, ListensOnIpv6) {
  std::unique_ptr<Child> child;
  const std::uint16_t port = start_server(child, UDP_ECHO_BIN, {}, "udp6://[::1]:0");
  if (port == 0) GTEST_SKIP() << "::1 cannot be bound here";
  const int fd = evloop::test::open_socket(AF_INET6, SOCK_DGRAM);
  sockaddr_in6 to{};
  to.sin6_family = AF_INET6;
  to.sin6_port = htons(port);
  to.sin6_addr = in6addr_loopback;
  ASSERT_EQ(::sendto(fd, "six", 3, 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 3);
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  char buf[16];
  EXPECT_EQ(::recv(fd, buf, sizeof buf, 0), 3);
  EXPECT_EQ(std::string(buf, 3), "six");
  ::close(fd);
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait_exit(10s), 0);
}

// SIGUSR2: the successor takes the very UDP sockets (one, or one per loop with reuse-port), so it
// binds nothing (without reuse-port a second bind would fail) and reads what is queued on them.
// A peer that pings without pause through the upgrade gets every echo; afterwards only the
// successor answers, and the old process has exited 0.
TEST(UdpEchoBinary, Sigusr2HandsTheSocketsToTheSuccessorAndNoDatagramIsLost) {
  if (!become_subreaper()) GTEST_SKIP() << "needs a subreaper (Linux) to see the successor exit";
  for (const bool reuseport : {false, true}) {
    SCOPED_TRACE(reuseport ? "--reuseport" : "one socket");
    std::vector<std::string> flags{"--loops", "2"};
    if (reuseport) flags.push_back("--reuseport");
    std::unique_ptr<Child> child;
    const std::uint16_t port = start_server(child, UDP_ECHO_BIN, flags, kListen);
    ASSERT_NE(port, 0);
    std::atomic<bool> upgraded{false};
    std::atomic<int> sent{0}, lost{0};
    std::promise<void> pinging;  // 10 echoes came back: the upgrade starts while it pings
    std::thread pinger([&] {
      Peer peer;
      // Until the upgrade is over, then 50 more: each datagram waits for its echo (5 s at most).
      for (int after = 0; after < 50 && sent < 100'000; after += upgraded ? 1 : 0) {
        const std::string msg = payload(sent, 64);
        ++sent;
        if (!peer.send(port, msg) || peer.receive().value_or("") != msg) ++lost;
        if (sent == 10) pinging.set_value();
      }
    });
    const bool pinged = pinging.get_future().wait_for(20s) == std::future_status::ready;
    const Upgraded u = pinged ? upgrade_example(*child, 20s) : Upgraded{};
    upgraded = true;
    pinger.join();
    ASSERT_TRUE(pinged) << "no echo came back before the upgrade";
    ASSERT_NE(u.pid, 0) << u.line;
    EXPECT_EQ(child->wait_process(20s), 0) << "the old process exits 0 once it handed over";
    EXPECT_EQ(lost, 0) << "of " << sent << " datagrams";
    EXPECT_GT(sent, 60);
    expect_echo(port, 4, 5);  // only the successor is left to answer
    ::kill(u.pid, SIGTERM);
    EXPECT_EQ(wait_for_exit(u.pid, 20s), 0);
  }
}

TEST(UdpEchoBinary, HelpBadFlagsBadAddressesAndAPortInUse) {
  ProgramResult help = run_program({UDP_ECHO_BIN, "--help"}, 10s);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("Usage: udp-echo"), std::string::npos);

  ProgramResult bad_flag = run_program({UDP_ECHO_BIN, "--frobnicate"}, 10s);
  EXPECT_EQ(bad_flag.exit_code, 2);
  EXPECT_NE(bad_flag.output.find("unknown option '--frobnicate'"), std::string::npos);

  EXPECT_EQ(run_program({UDP_ECHO_BIN, "--batch", "0"}, 10s).exit_code, 2);
  EXPECT_EQ(run_program({UDP_ECHO_BIN, "--batch"}, 10s).exit_code, 2);
  EXPECT_EQ(run_program({UDP_ECHO_BIN, "--loops", "0"}, 10s).exit_code, 2);
  // A bad --rcvbuf names the range it takes (0, the kernel's default, is not a value to give).
  for (const char* bad : {"0", "-1", "1073741825", "1M"}) {
    ProgramResult bad_rcvbuf = run_program({UDP_ECHO_BIN, "--rcvbuf", bad}, 10s);
    EXPECT_EQ(bad_rcvbuf.exit_code, 2) << bad;
    EXPECT_NE(bad_rcvbuf.output.find("--rcvbuf takes 1..1073741824 bytes, not '" +
                                     std::string(bad) + "'"),
              std::string::npos)
        << bad_rcvbuf.output;
  }

  ProgramResult bad_port = run_program({UDP_ECHO_BIN, "--listen", "udp://127.0.0.1:99999"}, 10s);
  EXPECT_EQ(bad_port.exit_code, 2) << bad_port.output;
  EXPECT_NE(bad_port.output.find("port must be 0..65535"), std::string::npos) << bad_port.output;

  // Only UDP addresses: the rest is a bad flag, refused before anything is bound.
  for (const char* other :
       {"tcp://127.0.0.1:0", "unix:///tmp/udp-echo-test.sock", "fd://0", "systemd://"}) {
    ProgramResult r = run_program({UDP_ECHO_BIN, "--listen", other}, 10s);
    EXPECT_EQ(r.exit_code, 2) << other << ": " << r.output;
    EXPECT_NE(r.output.find("udp://"), std::string::npos) << r.output;
  }

  std::unique_ptr<Child> first;
  const std::uint16_t port = start_server(first, UDP_ECHO_BIN, {}, kListen);
  ASSERT_NE(port, 0);
  ProgramResult in_use =
      run_program({UDP_ECHO_BIN, "--listen", "udp4://127.0.0.1:" + std::to_string(port)}, 10s);
  EXPECT_EQ(in_use.exit_code, 1);
  EXPECT_NE(in_use.output.find("Address already in use"), std::string::npos) << in_use.output;
  first->signal(SIGTERM);
  EXPECT_EQ(first->wait_exit(10s), 0);
}

}  // namespace
}  // namespace example_test
