// Unit tests of the store and of command replies: SET options, expiry (with explicit clock
// values, so no test waits for time to pass), INCR, concurrent use from several threads.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "store.hpp"

namespace resp {
namespace {

// Runs one command and returns its reply.
std::string run(Store& store, std::vector<std::string_view> args, Millis now = 1000) {
  std::string out;
  execute(args, store, now, out);
  return out;
}

std::string get(Store& store, std::string_view key, Millis now) {
  std::string v = "(nil)";
  store.get(key, now, [&v](std::string_view s) { v = s; });
  return v;
}

TEST(RedisStore, SetOptions) {
  Store s;
  EXPECT_EQ(run(s, {"SET", "k", "v1", "XX"}), "$-1\r\n");
  EXPECT_EQ(run(s, {"set", "k", "v1", "nx"}), "+OK\r\n");
  EXPECT_EQ(run(s, {"SET", "k", "v2", "NX"}), "$-1\r\n");
  EXPECT_EQ(run(s, {"SET", "k", "v3", "XX"}), "+OK\r\n");
  EXPECT_EQ(run(s, {"GET", "k"}), "$2\r\nv3\r\n");
  EXPECT_EQ(run(s, {"SET", "k", "v", "NX", "XX"}), "-ERR syntax error\r\n");
  EXPECT_EQ(run(s, {"SET", "k", "v", "EX", "1", "PX", "5"}), "-ERR syntax error\r\n");
  EXPECT_EQ(run(s, {"SET", "k", "v", "EX"}), "-ERR syntax error\r\n");
  EXPECT_EQ(run(s, {"SET", "k", "v", "EX", "x"}),
            "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(run(s, {"SET", "k", "v", "EX", "0"}), "-ERR invalid expire time in 'set' command\r\n");
  EXPECT_EQ(run(s, {"SET", "k", "v", "PX", "-5"}), "-ERR invalid expire time in 'set' command\r\n");
  EXPECT_EQ(run(s, {"SET", "k", "v", "EX", "9223372036854775807"}),
            "-ERR invalid expire time in 'set' command\r\n");
  EXPECT_EQ(run(s, {"SET", "k"}), "-ERR wrong number of arguments for 'set' command\r\n");
}

TEST(RedisStore, KeysExpireLazilyAndActively) {
  Store s;
  EXPECT_EQ(run(s, {"SET", "a", "1", "PX", "100"}, 1000), "+OK\r\n");
  EXPECT_EQ(run(s, {"SET", "b", "2", "EX", "1"}, 1000), "+OK\r\n");
  EXPECT_EQ(get(s, "a", 1099), "1");
  EXPECT_EQ(get(s, "a", 1100), "(nil)");  // lazily, on access
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(s.expire_due(1999), 0u);
  EXPECT_EQ(s.expire_due(2000), 1u);  // actively
  EXPECT_EQ(s.size(), 0u);
}

TEST(RedisStore, SetWithoutTtlClearsItAndKeepTtlKeepsIt) {
  Store s;
  run(s, {"SET", "a", "1", "PX", "100"}, 1000);
  run(s, {"SET", "a", "2"}, 1000);
  EXPECT_EQ(get(s, "a", 5000), "2");
  EXPECT_EQ(s.expire_due(5000), 0u);  // the stale timer is dropped, not the key
  EXPECT_EQ(get(s, "a", 5000), "2");
  run(s, {"SET", "b", "1", "PX", "100"}, 1000);
  run(s, {"SET", "b", "2", "KEEPTTL"}, 1000);
  EXPECT_EQ(get(s, "b", 1050), "2");
  EXPECT_EQ(get(s, "b", 1100), "(nil)");
}

TEST(RedisStore, IncrRules) {
  Store s;
  EXPECT_EQ(run(s, {"INCR", "n"}), ":1\r\n");
  EXPECT_EQ(run(s, {"incr", "n"}), ":2\r\n");
  run(s, {"SET", "t", "text"});
  EXPECT_EQ(run(s, {"INCR", "t"}), "-ERR value is not an integer or out of range\r\n");
  run(s, {"SET", "big", "9223372036854775807"});
  EXPECT_EQ(run(s, {"INCR", "big"}), "-ERR increment or decrement would overflow\r\n");
  run(s, {"SET", "z", "007"});
  EXPECT_EQ(run(s, {"INCR", "z"}), "-ERR value is not an integer or out of range\r\n");
}

TEST(RedisStore, MultiKeyCommands) {
  Store s;
  EXPECT_EQ(run(s, {"MSET", "a", "1", "b", "2"}), "+OK\r\n");
  EXPECT_EQ(run(s, {"MSET", "a", "1", "b"}),
            "-ERR wrong number of arguments for 'mset' command\r\n");
  EXPECT_EQ(run(s, {"MGET", "a", "nope", "b"}), "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n");
  EXPECT_EQ(run(s, {"EXISTS", "a", "a", "nope"}), ":2\r\n");
  EXPECT_EQ(run(s, {"DBSIZE"}), ":2\r\n");
  EXPECT_EQ(run(s, {"DEL", "a", "nope"}), ":1\r\n");
  EXPECT_EQ(run(s, {"FLUSHALL"}), "+OK\r\n");
  EXPECT_EQ(run(s, {"DBSIZE"}), ":0\r\n");
}

// An MGET whose reply would pass the limit (a few bytes asking for one large value many times)
// is refused with an error and closes, instead of being built in memory first.
TEST(RedisStore, AnMgetReplyPastTheLimitIsRefused) {
  Store s;
  const std::string value(1000, 'v');
  EXPECT_EQ(run(s, {"SET", "k", value}), "+OK\r\n");
  const std::size_t one = bulk_reply_size(value.size());
  std::string out;
  const std::size_t reply = 4 + 2 * one + 5;  // "*3\r\n", two values, a nil
  EXPECT_EQ(execute({"MGET", "k", "k", "nope"}, s, 1000, out, reply), After::keep_open);
  EXPECT_EQ(out.size(), reply);
  out.clear();
  EXPECT_EQ(execute({"MGET", "k", "k", "nope"}, s, 1000, out, reply - 1), After::close);
  EXPECT_EQ(out, "-ERR MGET reply would pass the connection's output limit (" +
                     std::to_string(reply - 1) + " bytes)\r\n");
}

// COMMAND INFO makes about 70 bytes of reply per name asked for (a few bytes each): past the
// limit it is refused as an MGET is, not built whole (a 10 MB command made a 71 MB reply).
TEST(RedisStore, ACommandInfoReplyPastTheLimitIsRefused) {
  Store s;
  std::vector<std::string_view> args{"COMMAND", "INFO"};
  for (int i = 0; i < 1000; ++i) args.push_back("mset");
  std::string out;
  EXPECT_EQ(execute(args, s, 1000, out), After::keep_open);
  const std::size_t whole = out.size();
  ASSERT_GT(whole, 1000u * 20);
  out = "+OK\r\n";  // a reply before it, in the same output, stays
  EXPECT_EQ(execute(args, s, 1000, out, whole - 1), After::close);
  EXPECT_EQ(out, "+OK\r\n-ERR COMMAND INFO reply would pass the connection's output limit (" +
                     std::to_string(whole - 1) + " bytes)\r\n");
  out.clear();
  EXPECT_EQ(execute(args, s, 1000, out, whole), After::keep_open);
  EXPECT_EQ(out.size(), whole);
}

// CONFIG GET patterns are a peer's input: many stars neither overflow the stack nor take
// exponential time (a recursive matcher crashed on 200,000 and ran for minutes on 30 and a 'z').
TEST(RedisStore, ConfigGetPatternsOfManyStarsAnswerAtOnce) {
  Store s;
  EXPECT_EQ(run(s, {"CONFIG", "GET", std::string(30, '*') + "z"}), "*0\r\n");
  EXPECT_EQ(run(s, {"CONFIG", "GET", std::string(200000, '*')}).substr(0, 1), "*");
  EXPECT_EQ(run(s, {"CONFIG", "GET", "*p*n*y"}), "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
  EXPECT_EQ(run(s, {"CONFIG", "GET", "s?ve"}), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
  EXPECT_EQ(run(s, {"CONFIG", "GET", "SAVE*"}), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
  EXPECT_EQ(run(s, {"CONFIG", "GET", "sav"}), "*0\r\n");
  EXPECT_EQ(run(s, {"CONFIG", "GET", "*ave?"}), "*0\r\n");
}

TEST(RedisStore, ConnectionCommandsAndErrors) {
  Store s;
  EXPECT_EQ(run(s, {"PING"}), "+PONG\r\n");
  EXPECT_EQ(run(s, {"PING", "hi"}), "$2\r\nhi\r\n");
  EXPECT_EQ(run(s, {"ECHO", "x y"}), "$3\r\nx y\r\n");
  EXPECT_EQ(run(s, {"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(run(s, {"NOPE", "a", "b"}),
            "-ERR unknown command 'NOPE', with args beginning with: 'a' 'b' \r\n");
  EXPECT_EQ(run(s, {"NO\r\nPE"}), "-ERR unknown command 'NO  PE', with args beginning with: \r\n");
  EXPECT_EQ(run(s, {"CONFIG", "GET", "save"}), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
  EXPECT_EQ(run(s, {"CONFIG", "GET", "append*"}), "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
  EXPECT_EQ(run(s, {"CONFIG", "GET", "nothing"}), "*0\r\n");
  EXPECT_EQ(run(s, {"CONFIG", "SET", "a", "b"}),
            "-ERR unknown subcommand 'SET'. Try CONFIG HELP.\r\n");
  EXPECT_EQ(run(s, {"COMMAND", "COUNT"}), ":16\r\n");
  EXPECT_EQ(run(s, {"COMMAND", "DOCS"}), "*0\r\n");
  EXPECT_EQ(run(s, {"COMMAND", "INFO", "nope"}), "*1\r\n*-1\r\n");
  EXPECT_EQ(run(s, {"COMMAND", "INFO", "get"}).substr(0, 22), "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n");
  EXPECT_EQ(run(s, {"COMMAND"}).substr(0, 5), "*16\r\n");
  EXPECT_EQ(run(s, {"SELECT", "0"}), "+OK\r\n");
  EXPECT_EQ(run(s, {"SELECT", "1"}), "-ERR DB index is out of range\r\n");
  std::string out;
  EXPECT_EQ(execute({"QUIT"}, s, 0, out), After::close);
  EXPECT_EQ(out, "+OK\r\n");
}

TEST(RedisStore, ConcurrentIncrementsAreNotLost) {
  Store s;
  constexpr int kThreads = 4;
  constexpr int kEach = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&s, t] {
      std::int64_t r = 0;
      std::string key = "own" + std::to_string(t);
      for (int i = 0; i < kEach; ++i) {
        ASSERT_EQ(s.incr("shared", 1, 1, r), Store::IncrStatus::ok);
        s.set(key, std::to_string(i), Store::Condition::always, i % 2 ? 0 : 5, false, 1);
        if (i % 1000 == 0) s.expire_due(10);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(get(s, "shared", 1), std::to_string(kThreads * kEach));
  EXPECT_EQ(s.size(), 1u + kThreads);  // each own key was last set without expiry
}

}  // namespace
}  // namespace resp
