// Unit tests of the RESP command parser: every split point, pipelining, inline commands, Redis's
// protocol errors, limits. feed() plays evloop's part (keeps and re-hands the unconsumed tail).
#include "resp_parser.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace resp {
namespace {

using Command = std::vector<std::string>;

struct Outcome {
  std::vector<Command> commands;
  std::string error;  // The protocol error, empty if none.
  std::size_t tail = 0;
  bool operator==(const Outcome&) const = default;
};

Outcome feed(const std::vector<std::string>& chunks, Limits limits = {}) {
  CommandParser parser(limits);
  std::string tail;
  Outcome out;
  for (const std::string& chunk : chunks) {
    tail += chunk;
    std::size_t used = 0;
    for (;;) {
      ParseResult r = parser.parse(std::string_view(tail).substr(used));
      if (r.status == ParseStatus::error) {
        out.error = std::string(r.error);
        return out;
      }
      if (r.status == ParseStatus::incomplete) {
        EXPECT_EQ(r.consumed, 0u);
        break;
      }
      EXPECT_GT(r.consumed, 0u);
      out.commands.emplace_back(parser.args().begin(), parser.args().end());
      used += r.consumed;
    }
    tail.erase(0, used);
  }
  out.tail = tail.size();
  return out;
}

Outcome feed_whole(const std::string& s, Limits limits = {}) { return feed({s}, limits); }

void expect_same_for_every_split(const std::string& s, Limits limits = {}) {
  Outcome whole = feed_whole(s, limits);
  for (std::size_t k = 0; k <= s.size(); ++k) {
    ASSERT_EQ(feed({s.substr(0, k), s.substr(k)}, limits), whole) << "split at " << k;
  }
  std::vector<std::string> bytes;
  for (char c : s) bytes.emplace_back(1, c);
  EXPECT_EQ(feed(bytes, limits), whole);
}

const std::string kPipeline =
    std::string(
        "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n"  // CRLF inside a bulk
        "PING\r\n"
        "\r\n"           // blank inline line: skipped
        "*0\r\n*-1\r\n"  // empty multibulks: skipped
        "*2\r\n$3\r\nGET\r\n$0\r\n\r\n"
        "echo \"a b\\x41\\n\" 'it\\'s'\n"
        "*1\r\n$4\r\nnul") +
    std::string(1, '\0') + "\r\n";

TEST(RespParser, ParsesPipelinedMultibulkAndInlineCommands) {
  Outcome o = feed_whole(kPipeline);
  ASSERT_EQ(o.error, "");
  ASSERT_EQ(o.commands.size(), 5u);
  EXPECT_EQ(o.commands[0], (Command{"SET", "key", "va\r\nl"}));
  EXPECT_EQ(o.commands[1], (Command{"PING"}));
  EXPECT_EQ(o.commands[2], (Command{"GET", ""}));
  EXPECT_EQ(o.commands[3], (Command{"echo", "a bA\n", "it's"}));
  EXPECT_EQ(o.commands[4], (Command{std::string("nul") + '\0'}));
  EXPECT_EQ(o.tail, 0u);
}

TEST(RespParser, EverySplitPointGivesTheSameCommands) { expect_same_for_every_split(kPipeline); }

TEST(RespParser, EverySplitPointOfAPartialCommandLeavesTheSameTail) {
  expect_same_for_every_split("*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$10\r\nabc");
  expect_same_for_every_split("PING\r\nECHO hel");
}

TEST(RespParser, EverySplitPointOfABadCommandGivesTheSameError) {
  expect_same_for_every_split("*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n:5\r\n");
  expect_same_for_every_split("PING\r\nSET \"a\r\n");
}

TEST(RespParser, InlineCommandsSplitLikeRedis) {
  EXPECT_EQ(feed_whole("  set  k\t v  \r\n").commands, (std::vector<Command>{{"set", "k", "v"}}));
  EXPECT_EQ(feed_whole("PING\n").commands, (std::vector<Command>{{"PING"}}));
  EXPECT_EQ(feed_whole("echo \"\"\r\n").commands, (std::vector<Command>{{"echo", ""}}));
  EXPECT_EQ(feed_whole("echo a\"b c\"\r\n").commands, (std::vector<Command>{{"echo", "ab c"}}));
  EXPECT_EQ(feed_whole("echo \"\\x4g\"\r\n").commands, (std::vector<Command>{{"echo", "x4g"}}));
}

struct BadCase {
  std::string input;
  std::string error;
};

TEST(RespParser, ProtocolErrorsUseRedisWording) {
  const BadCase cases[] = {
      {"*x\r\n", "Protocol error: invalid multibulk length"},
      {"*01\r\n", "Protocol error: invalid multibulk length"},
      {"*+1\r\n", "Protocol error: invalid multibulk length"},
      {"*1 \r\n", "Protocol error: invalid multibulk length"},
      {"*1\rx", "Protocol error: invalid multibulk length"},
      {"*99999999999999999999\r\n", "Protocol error: invalid multibulk length"},
      {"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"},
      {"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$3\r\nabcd\r\n", "Protocol error: expected '\\r\\n' after bulk data"},
      {"set \"a\r\n", "Protocol error: unbalanced quotes in request"},
      {"set \"a\"b\r\n", "Protocol error: unbalanced quotes in request"},
      {"set 'a\r\n", "Protocol error: unbalanced quotes in request"},
  };
  for (const BadCase& c : cases) {
    Outcome o = feed_whole(c.input);
    EXPECT_EQ(o.error, c.error) << c.input;
    EXPECT_TRUE(o.commands.empty()) << c.input;
  }
}

TEST(RespParser, AnErrorIsSticky) {
  CommandParser p;
  EXPECT_EQ(p.parse("*x\r\n").status, ParseStatus::error);
  EXPECT_EQ(p.parse("PING\r\n").status, ParseStatus::error);
  p.reset();
  EXPECT_EQ(p.parse("PING\r\n").status, ParseStatus::complete);
}

TEST(RespParser, ArrayAndBulkLimits) {
  Limits limits;
  limits.max_array_len = 3;
  limits.max_bulk_bytes = 4;
  EXPECT_EQ(feed_whole("*3\r\n$1\r\na\r\n$1\r\nb\r\n$4\r\ncccc\r\n", limits).commands.size(), 1u);
  EXPECT_EQ(feed_whole("*4\r\n", limits).error, "Protocol error: invalid multibulk length");
  EXPECT_EQ(feed_whole("*1\r\n$5\r\n", limits).error, "Protocol error: invalid bulk length");
}

TEST(RespParser, InlineAndCountLineLimits) {
  Limits limits;
  limits.max_inline_bytes = 16;
  EXPECT_EQ(feed_whole(std::string(16, 'a') + "\r\n", limits).commands.size(), 1u);
  EXPECT_EQ(feed_whole(std::string(17, 'a'), limits).error,
            "Protocol error: too big inline request");
  EXPECT_EQ(feed_whole(std::string(17, 'a') + "\n", limits).error,
            "Protocol error: too big inline request");
  EXPECT_EQ(feed_whole("*" + std::string(17, '1'), limits).error,
            "Protocol error: too big mbulk count string");
  EXPECT_EQ(feed_whole("*1\r\n$" + std::string(17, '1'), limits).error,
            "Protocol error: too big bulk count string");
}

// A line at the limit is judged the same whether its end is in the same read or not (the fuzzer
// found "*<long count>" answered "invalid multibulk length" whole but "too big mbulk count
// string" split).
TEST(RespParser, EverySplitPointAroundTheLineLimitsGivesTheSameOutcome) {
  Limits limits;
  limits.max_inline_bytes = 16;
  for (std::size_t n : {14, 15, 16, 17}) {
    SCOPED_TRACE(n);
    const std::string digits(n, '1');
    expect_same_for_every_split(std::string(n, 'a') + "\r\nPING\r\n", limits);
    expect_same_for_every_split(std::string(n, 'a') + "\nPING\r\n", limits);
    expect_same_for_every_split(std::string(n, 'a') + "\rb\r\n", limits);
    expect_same_for_every_split("*" + digits + "\r\n", limits);
    expect_same_for_every_split("*" + digits + "x\r\n", limits);
    expect_same_for_every_split("*1\r\n$" + digits + "\r\n", limits);
  }
  // The limit itself: an inline command of 16 bytes is run; "*count" of 16 bytes is read as a
  // count (too large a one here), of 17 refused unread.
  EXPECT_EQ(feed_whole(std::string(16, 'a') + "\r\n", limits).commands.size(), 1u);
  EXPECT_EQ(feed_whole("*" + std::string(15, '9') + "\r\n", limits).error,
            "Protocol error: invalid multibulk length");
  EXPECT_EQ(feed_whole("*" + std::string(16, '9') + "\r\n", limits).error,
            "Protocol error: too big mbulk count string");
}

}  // namespace
}  // namespace resp
