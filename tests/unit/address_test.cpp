// Listen-address parsing and SocketAddress formatting.
#include <arpa/inet.h>
#include <sys/un.h>

#include <gtest/gtest.h>
#include <netinet/in.h>

#include "evloop/address.hpp"

namespace evloop {
namespace {

ListenAddress parse_ok(std::string_view text) {
  ListenAddress a;
  const Status s = parse_listen_address(text, a);
  EXPECT_TRUE(s.ok()) << text << ": " << s.message();
  return a;
}

std::error_code parse_error(std::string_view text) {
  ListenAddress a;
  const Status s = parse_listen_address(text, a);
  EXPECT_FALSE(s.ok()) << text;
  EXPECT_NE(s.message().find(std::string(text)), std::string::npos) << s.message();
  return s.code();
}

TEST(ListenAddressTest, ParsesEachScheme) {
  ListenAddress a = parse_ok("tcp://127.0.0.1:8080");
  EXPECT_EQ(a.transport, Transport::tcp);
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 8080);
  a = parse_ok("tcp4://0.0.0.0:0");
  EXPECT_EQ(a.transport, Transport::tcp4);
  EXPECT_EQ(a.port, 0);
  a = parse_ok("tcp6://[::1]:65535");
  EXPECT_EQ(a.transport, Transport::tcp6);
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.port, 65535);
  a = parse_ok("unix:///tmp/x.sock");
  EXPECT_EQ(a.transport, Transport::unix_socket);
  EXPECT_EQ(a.path, "/tmp/x.sock");
  a = parse_ok("localhost:99");
  EXPECT_EQ(a.transport, Transport::tcp);
  EXPECT_EQ(a.host, "localhost");
  a = parse_ok("tcp://:7000");
  EXPECT_EQ(a.host, "");
  EXPECT_EQ(a.port, 7000);
}

TEST(ListenAddressTest, ParsesOptions) {
  ListenAddress a = parse_ok("tcp://127.0.0.1:1?reuseport=1&backlog=16");
  ASSERT_TRUE(a.reuseport.has_value());
  EXPECT_TRUE(*a.reuseport);
  EXPECT_EQ(a.backlog, 16);
  a = parse_ok("tcp://127.0.0.1:1?reuseport=false");
  EXPECT_FALSE(*a.reuseport);
  a = parse_ok("tcp://127.0.0.1:1");
  EXPECT_FALSE(a.reuseport.has_value());
}

TEST(ListenAddressTest, RejectsBadInputWithClearErrors) {
  EXPECT_EQ(parse_error("sctp://127.0.0.1:1"), errc::unknown_scheme);
  EXPECT_EQ(parse_error("http://x:1"), errc::unknown_scheme);
  EXPECT_EQ(parse_error("tcp://127.0.0.1"), errc::bad_address);
  EXPECT_EQ(parse_error("tcp://127.0.0.1:65536"), errc::bad_address);
  EXPECT_EQ(parse_error("tcp://127.0.0.1:-1"), errc::bad_address);
  EXPECT_EQ(parse_error("tcp://127.0.0.1:80x"), errc::bad_address);
  EXPECT_EQ(parse_error("tcp://127.0.0.1:"), errc::bad_address);
  EXPECT_EQ(parse_error("tcp://::1:80"), errc::bad_address);
  EXPECT_EQ(parse_error("tcp6://[::1:80"), errc::bad_address);
  EXPECT_EQ(parse_error("tcp6://[::1]80"), errc::bad_address);
  EXPECT_EQ(parse_error("tcp4://[::1]:80"), errc::bad_address);
  EXPECT_EQ(parse_error("unix://"), errc::bad_address);
  EXPECT_EQ(parse_error("unix://" + std::string(200, 'a')), errc::bad_address);
  EXPECT_EQ(parse_error(""), errc::bad_address);
  EXPECT_EQ(parse_error("tcp://127.0.0.1:1?bogus=1"), errc::bad_option);
  EXPECT_EQ(parse_error("tcp://127.0.0.1:1?reuseport=maybe"), errc::bad_option);
  EXPECT_EQ(parse_error("tcp://127.0.0.1:1?backlog=0"), errc::bad_option);
  EXPECT_EQ(parse_error("tcp://127.0.0.1:1?reuseport"), errc::bad_option);
}

// inet_aton (and so getaddrinfo) reads "1.2.3" as 1.2.0.3, "127.1" as 127.0.0.1 and "0x7f.1" or
// "010.0.0.1" in hex and octal: a typo would reach some other host. Only a dotted quad is an IPv4
// address here, and a bracketed host must be an IPv6 address.
TEST(ListenAddressTest, RejectsIpv4ShorthandsAndABracketedHostThatIsNotIpv6) {
  for (const char* text :
       {"tcp://1.2.3:80", "tcp://127.1:80", "tcp4://0x7f.0.0.1:80", "tcp://010.0.0.1:80",
        "tcp://2130706433:80", "udp://1.2.3:53", "tcp://256.0.0.1:80"}) {
    ListenAddress a;
    const Status s = parse_listen_address(text, a);
    EXPECT_EQ(s.code(), errc::bad_address) << text;
    EXPECT_NE(s.message().find("dotted"), std::string::npos) << s.message();
    EXPECT_EQ(parse_connect_address(text, a).code(), errc::bad_address) << text;
  }
  ListenAddress a;
  const Status s = parse_listen_address("tcp://[localhost]:80", a);
  EXPECT_EQ(s.code(), errc::bad_address);
  EXPECT_NE(s.message().find("IPv6"), std::string::npos) << s.message();
  EXPECT_EQ(parse_connect_address("tcp://[1.2.3.4]:80", a).code(), errc::bad_address);
  // What stays valid: dotted quads, names (also ones that start with a digit), IPv6 with a scope.
  for (const char* text : {"tcp://1.2.3.4:80", "tcp://localhost:80", "tcp://3com.example:80",
                           "tcp://[fe80::1%lo]:80", "tcp6://[::ffff:1.2.3.4]:80", "tcp://:80"}) {
    EXPECT_TRUE(parse_listen_address(text, a)) << text;
  }
}

// An option given twice is a mistake to report (which one was meant?), not a last one that wins.
TEST(ListenAddressTest, RejectsAnOptionGivenTwice) {
  ListenAddress a;
  const Status s = parse_listen_address("tcp://127.0.0.1:1?backlog=1&backlog=2", a);
  EXPECT_EQ(s.code(), errc::bad_option);
  EXPECT_NE(s.message().find("backlog is given twice"), std::string::npos) << s.message();
  EXPECT_EQ(parse_error("udp://127.0.0.1:1?reuseport=1&reuseport=0"), errc::bad_option);
}

TEST(ListenAddressTest, ParsesUdpSchemes) {
  ListenAddress a = parse_ok("udp://127.0.0.1:53");
  EXPECT_EQ(a.transport, Transport::udp);
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 53);
  EXPECT_TRUE(is_udp(a.transport));
  a = parse_ok("udp4://0.0.0.0:0?reuseport=1");
  EXPECT_EQ(a.transport, Transport::udp4);
  EXPECT_EQ(a.port, 0);
  EXPECT_TRUE(a.reuseport.value_or(false));
  a = parse_ok("udp6://[::1]:5353");
  EXPECT_EQ(a.transport, Transport::udp6);
  EXPECT_EQ(a.host, "::1");
  a = parse_ok("udp://:9000");
  EXPECT_EQ(a.host, "");
  EXPECT_EQ(a.port, 9000);
  a = parse_ok("udp://localhost:9");
  EXPECT_EQ(a.host, "localhost");
  EXPECT_FALSE(is_udp(parse_ok("tcp://127.0.0.1:1").transport));
}

TEST(ListenAddressTest, RejectsBadUdpAddresses) {
  EXPECT_EQ(parse_error("udp://127.0.0.1"), errc::bad_address);
  EXPECT_EQ(parse_error("udp://127.0.0.1:70000"), errc::bad_address);
  EXPECT_EQ(parse_error("udp://::1:53"), errc::bad_address);
  EXPECT_EQ(parse_error("udp4://[::1]:53"), errc::bad_address);
  EXPECT_EQ(parse_error("udp6://[::1:53"), errc::bad_address);
  EXPECT_EQ(parse_error("udp://127.0.0.1:53?backlog=5"), errc::bad_option);
  EXPECT_EQ(parse_error("udp://127.0.0.1:53?nope=1"), errc::bad_option);
  EXPECT_EQ(parse_error("udp7://127.0.0.1:53"), errc::unknown_scheme);
}

TEST(ConnectAddressTest, TakesUdpTargetsWithAHostAndAPort) {
  ListenAddress a;
  ASSERT_TRUE(parse_connect_address("udp6://[::1]:53", a));
  EXPECT_EQ(a.transport, Transport::udp6);
  EXPECT_EQ(parse_connect_address("udp://127.0.0.1:0", a).code(), errc::bad_address);
  EXPECT_EQ(parse_connect_address("udp://:53", a).code(), errc::bad_address);
  EXPECT_EQ(parse_connect_address("udp://127.0.0.1:53?reuseport=1", a).code(), errc::bad_option);
}

TEST(ListenAddressTest, ParsesInheritedSockets) {
  ListenAddress a = parse_ok("fd://3");
  EXPECT_EQ(a.transport, Transport::inherited_fd);
  EXPECT_EQ(a.fd, 3);
  a = parse_ok("systemd://");
  EXPECT_EQ(a.transport, Transport::systemd);
  EXPECT_EQ(a.name, "");
  a = parse_ok("systemd://web-api");
  EXPECT_EQ(a.transport, Transport::systemd);
  EXPECT_EQ(a.name, "web-api");
  EXPECT_EQ(parse_error("systemd://a:b"), errc::bad_address);  // ':' separates names
  EXPECT_EQ(parse_error("systemd://" + std::string(256, 'n')), errc::bad_address);
  EXPECT_EQ(parse_error("systemd://web?backlog=5"), errc::bad_option);
  EXPECT_EQ(parse_error("fd://3?reuseport=1"), errc::bad_option);
  EXPECT_EQ(parse_error("fd://x"), errc::bad_address);
  ListenAddress c;
  EXPECT_EQ(parse_connect_address("systemd://web", c).code(), errc::unknown_scheme);
}

TEST(ListenAddressTest, ErrorCodesHaveEvloopCategory) {
  const std::error_code ec = errc::bad_address;
  EXPECT_EQ(std::string(ec.category().name()), "evloop");
  EXPECT_EQ(ec.message(), "bad address");
}

TEST(SocketAddressTest, FormatsIpv4Ipv6AndUnix) {
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_port = htons(8080);
  ::inet_pton(AF_INET, "127.0.0.1", &v4.sin_addr);
  SocketAddress a(&v4, sizeof v4);
  EXPECT_EQ(a.family(), AF_INET);
  EXPECT_EQ(a.port(), 8080);
  EXPECT_EQ(a.to_string(), "127.0.0.1:8080");
  EXPECT_EQ(a.to_url(), "tcp4://127.0.0.1:8080");

  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = htons(9);
  v6.sin6_addr = in6addr_loopback;
  SocketAddress b(&v6, sizeof v6);
  EXPECT_EQ(b.to_string(), "[::1]:9");
  EXPECT_EQ(b.to_url(), "tcp6://[::1]:9");
  EXPECT_EQ(a.to_udp_url(), "udp4://127.0.0.1:8080");
  EXPECT_EQ(b.to_udp_url(), "udp6://[::1]:9");

  EXPECT_EQ(SocketAddress().family(), 0);
  EXPECT_EQ(SocketAddress().to_string(), "(none)");
}

// A Unix client that did not bind has an unnamed address: its URL is "unix://", which the
// parsers refuse (it names nothing to serve or dial), as address.hpp says.
TEST(SocketAddressTest, AnUnnamedUnixPeerFormatsAsABareScheme) {
  sockaddr_un unnamed{};
  unnamed.sun_family = AF_UNIX;
  const SocketAddress a(&unnamed, sizeof(sa_family_t));
  EXPECT_EQ(a.family(), AF_UNIX);
  EXPECT_EQ(a.to_string(), "unix:");
  EXPECT_EQ(a.to_url(), "unix://");
  ListenAddress parsed;
  EXPECT_EQ(parse_listen_address(a.to_url(), parsed).code(), errc::bad_address);
  EXPECT_EQ(parse_connect_address(a.to_url(), parsed).code(), errc::bad_address);
}

}  // namespace
}  // namespace evloop
