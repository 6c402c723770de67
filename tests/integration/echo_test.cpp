// Echo round trips over each transport, partial-frame input, several addresses at once.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "test_support.hpp"

namespace evloop::test {
namespace {

Callbacks echo_callbacks() {
  Callbacks cb;
  cb.data = [](Conn& c, std::string_view bytes) {
    c.write(bytes);
    return bytes.size();
  };
  return cb;
}

void expect_echo(const SocketAddress& addr) {
  Client client(addr);
  ASSERT_TRUE(client.connected()) << addr.to_string();
  const std::string msg = pattern(100000, 7);
  ASSERT_TRUE(client.send_all(msg));
  EXPECT_EQ(client.read_exactly(msg.size()), msg);
}

TEST(EchoTest, RoundTripTcp4) {
  RunningServer s(loopback_options(), echo_callbacks());
  ASSERT_TRUE(s.status) << s.status.message();
  EXPECT_EQ(s.address().family(), AF_INET);
  EXPECT_NE(s.address().port(), 0);
  expect_echo(s.address());
}

TEST(EchoTest, RoundTripTcp6) {
  if (!has_ipv6_loopback()) GTEST_SKIP() << "no ::1 on this machine";
  Options o;
  o.listen = {"tcp6://[::1]:0"};
  RunningServer s(o, echo_callbacks());
  ASSERT_TRUE(s.status) << s.status.message();
  EXPECT_EQ(s.address().family(), AF_INET6);
  expect_echo(s.address());
}

TEST(EchoTest, RoundTripUnixAndSocketFileRemovedOnStop) {
  const std::string path = temp_socket_path("echo");
  {
    Options o;
    o.listen = {"unix://" + path};
    o.loops = 2;  // Unix sockets: one loop accepts and hands off
    RunningServer s(o, echo_callbacks());
    ASSERT_TRUE(s.status) << s.status.message();
    EXPECT_EQ(s.address().to_url(), "unix://" + path);
    for (int i = 0; i < 4; ++i) expect_echo(s.address());
  }
  struct stat st {};
  EXPECT_NE(::stat(path.c_str(), &st), 0) << "socket file left behind";
}

TEST(EchoTest, ServesSeveralAddressesAndReportsThemInOrder) {
  Options o = loopback_options();
  const std::string path = temp_socket_path("multi");
  o.listen.push_back("unix://" + path);
  o.listen.push_back("tcp://127.0.0.1:0");
  std::vector<SocketAddress> served;
  Callbacks cb = echo_callbacks();
  cb.serving = [&](const ServingInfo& info) {
    served = info.addresses;
    EXPECT_EQ(info.loops, 1u);
  };
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status) << s.status.message();
  ASSERT_EQ(served.size(), 3u);
  EXPECT_EQ(served[0].family(), AF_INET);
  EXPECT_EQ(served[1].family(), AF_UNIX);
  EXPECT_EQ(served[2].family(), AF_INET);
  EXPECT_NE(served[0].port(), served[2].port());
  for (const SocketAddress& a : served) expect_echo(a);
}

TEST(EchoTest, UnconsumedTailIsHandedBackWithTheNextBytes) {
  // A line protocol: consume whole lines only; the partial line waits for its end.
  std::vector<std::string> lines;
  EventCounter got;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    std::size_t used = 0;
    for (std::size_t nl; (nl = bytes.find('\n', used)) != std::string_view::npos; used = nl + 1) {
      lines.emplace_back(bytes.substr(used, nl - used));
      c.write(std::string("ok\n"));
      got.add();
    }
    return used;
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("hel"));
  ASSERT_TRUE(client.send_all("lo\nwor"));
  ASSERT_EQ(client.read_exactly(3), "ok\n");
  ASSERT_TRUE(client.send_all("ld\n\n"));
  ASSERT_TRUE(got.wait_for(3));
  EXPECT_EQ(client.read_exactly(6), "ok\nok\n");
  EXPECT_EQ(lines, (std::vector<std::string>{"hello", "world", ""}));
}

TEST(EchoTest, ConnectionReportsItsAddressesAndLoop) {
  EventCounter opened;
  SocketAddress local, remote;
  std::size_t loop_index = 99;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    local = c.local_address();
    remote = c.remote_address();
    loop_index = c.loop().index();
    EXPECT_TRUE(c.loop().in_loop_thread());
    opened.add();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(opened.wait_for(1));
  EXPECT_EQ(local.port(), s.address().port());
  EXPECT_EQ(remote.family(), AF_INET);
  EXPECT_NE(remote.port(), 0);
  EXPECT_EQ(loop_index, 0u);
}

}  // namespace
}  // namespace evloop::test
