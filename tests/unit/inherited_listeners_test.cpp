// What the systemd variables mean (as sd_listen_fds(3) reads them), and how inherited sockets of
// one address are spread over the loops. The real processes are in tests/upgrade/.
#include <gtest/gtest.h>

#include "inherited_listeners.hpp"

namespace evloop::detail {
namespace {

TEST(SystemdEnvironmentTest, NamesEachFdFromThree) {
  SystemdEnvironment env;
  ASSERT_TRUE(parse_systemd_environment("42", "3", "web:admin:web", 42, env));
  ASSERT_EQ(env.sockets.size(), 3u);
  EXPECT_EQ(env.sockets[0].fd, 3);
  EXPECT_EQ(env.sockets[0].name, "web");
  EXPECT_EQ(env.sockets[1].fd, 4);
  EXPECT_EQ(env.sockets[1].name, "admin");
  EXPECT_EQ(env.sockets[2].fd, 5);
  EXPECT_EQ(env.sockets[2].name, "web");
}

TEST(SystemdEnvironmentTest, UnnamedSocketsAreUnknownAsSystemdNamesThem) {
  SystemdEnvironment env;
  ASSERT_TRUE(parse_systemd_environment("7", "2", nullptr, 7, env));
  ASSERT_EQ(env.sockets.size(), 2u);
  EXPECT_EQ(env.sockets[1].name, "unknown");
}

TEST(SystemdEnvironmentTest, AnotherProcessesSocketsAreIgnoredWithAReason) {
  SystemdEnvironment env;
  ASSERT_TRUE(parse_systemd_environment("41", "1", "web", 42, env));
  EXPECT_TRUE(env.sockets.empty());
  EXPECT_NE(env.note.find("LISTEN_PID=41 names another process (this one is 42)"),
            std::string::npos)
      << env.note;
  ASSERT_TRUE(parse_systemd_environment(nullptr, nullptr, nullptr, 42, env));
  EXPECT_TRUE(env.sockets.empty());
  EXPECT_NE(env.note.find("not socket-activated"), std::string::npos) << env.note;
}

TEST(SystemdEnvironmentTest, MalformedVariablesAreRefused) {
  SystemdEnvironment env;
  EXPECT_EQ(parse_systemd_environment("x", "1", nullptr, 1, env).code(), errc::bad_address);
  EXPECT_EQ(parse_systemd_environment("1", "-1", nullptr, 1, env).code(), errc::bad_address);
  EXPECT_EQ(parse_systemd_environment("1", "2x", nullptr, 1, env).code(), errc::bad_address);
  const Status names = parse_systemd_environment("1", "2", "only-one", 1, env);
  EXPECT_EQ(names.code(), errc::bad_address);
  EXPECT_NE(names.message().find("LISTEN_FDNAMES names 1 fds but LISTEN_FDS is 2"),
            std::string::npos)
      << names.message();
}

TEST(PlaceInheritedTest, OneSocketPerLoopByIndexElseHandOff) {
  // As many sockets as loops (a predecessor with the same loop count): socket i on loop i.
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(place_inherited(i, 4, 4).loop, i);
    EXPECT_FALSE(place_inherited(i, 4, 4).spreads);
  }
  // One socket, several loops: loop 0 accepts and hands off.
  EXPECT_EQ(place_inherited(0, 1, 3).loop, 0u);
  EXPECT_TRUE(place_inherited(0, 1, 3).spreads);
  EXPECT_FALSE(place_inherited(0, 1, 1).spreads);
  // More sockets than loops: none is dropped, they share loops.
  EXPECT_EQ(place_inherited(3, 4, 2).loop, 1u);
  EXPECT_FALSE(place_inherited(3, 4, 2).spreads);
  // Fewer (but several): each on its own loop, handing off so every loop gets connections.
  EXPECT_EQ(place_inherited(1, 2, 4).loop, 1u);
  EXPECT_TRUE(place_inherited(1, 2, 4).spreads);
}

}  // namespace
}  // namespace evloop::detail
