// Unit tests of the HTTP request parser: every split point, pipelining, keep-alive, errors,
// limits. The feed() helper plays evloop's part: it keeps the unconsumed tail and hands it back
// followed by the next chunk.
#include "http_parser.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace httpd {
namespace {

// A request copied out of the parser's views.
struct Owned {
  std::string method;
  std::string target;
  int minor = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool keep_alive = false;
  bool operator==(const Owned&) const = default;
};

struct Outcome {
  std::vector<Owned> requests;
  int error = 0;         // HTTP status of the error, 0 if none.
  int continues = 0;     // Times send_continue was set.
  std::size_t tail = 0;  // Unconsumed bytes at the end.
  bool operator==(const Outcome&) const = default;
};

Outcome feed(const std::vector<std::string>& chunks, Limits limits = {}) {
  RequestParser parser(limits);
  std::string tail;
  Outcome out;
  for (const std::string& chunk : chunks) {
    tail += chunk;
    std::size_t used = 0;
    for (;;) {
      ParseResult r = parser.parse(std::string_view(tail).substr(used));
      if (r.status == ParseStatus::error) {
        out.error = r.error_status;
        EXPECT_FALSE(r.error_reason.empty());
        return out;
      }
      if (r.status == ParseStatus::incomplete) {
        EXPECT_EQ(r.consumed, 0u);
        out.continues += r.send_continue ? 1 : 0;
        break;
      }
      EXPECT_GT(r.consumed, 0u);
      const Request& q = parser.request();
      Owned o{std::string(method_name(q.method)),
              std::string(q.target),
              q.version_minor,
              {},
              std::string(q.body),
              q.keep_alive};
      for (const Header& h : q.headers) o.headers.emplace_back(h.name, h.value);
      out.requests.push_back(std::move(o));
      used += r.consumed;
    }
    tail.erase(0, used);
  }
  out.tail = tail.size();
  return out;
}

Outcome feed_whole(const std::string& s, Limits limits = {}) { return feed({s}, limits); }

// Every split of `s` into [0,k) and [k,n) gives the same outcome as the whole.
void expect_same_for_every_split(const std::string& s, Limits limits = {}) {
  Outcome whole = feed_whole(s, limits);
  for (std::size_t k = 0; k <= s.size(); ++k) {
    Outcome split = feed({s.substr(0, k), s.substr(k)}, limits);
    ASSERT_EQ(split.requests, whole.requests) << "split at " << k;
    ASSERT_EQ(split.error, whole.error) << "split at " << k;
    ASSERT_EQ(split.tail, whole.tail) << "split at " << k;
  }
  std::vector<std::string> bytes;
  for (char c : s) bytes.emplace_back(1, c);
  Outcome trickle = feed(bytes, limits);
  EXPECT_EQ(trickle.requests, whole.requests);
  EXPECT_EQ(trickle.error, whole.error);
}

// Feeds `s` one byte at a time, as a trickling client would send it; returns how many bytes had
// arrived when the parser reported an error, or 0 if it did not.
std::size_t error_after_bytes(const std::string& s, Limits limits = {}) {
  RequestParser parser(limits);
  std::string tail;
  for (std::size_t i = 0; i < s.size(); ++i) {
    tail += s[i];
    for (;;) {
      ParseResult r = parser.parse(tail);
      if (r.status == ParseStatus::error) return i + 1;
      if (r.status == ParseStatus::incomplete) break;
      tail.erase(0, r.consumed);
    }
  }
  return 0;
}

const std::string kPipeline =
    "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n"
    "POST /echo?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    "\r\n"  // A stray CRLF between requests, as some clients send after a body.
    "HEAD /h HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    "DELETE /d HTTP/1.1\r\nHost:b\r\nConnection: close\r\n\r\n";

TEST(HttpParser, ParsesASimpleGet) {
  Outcome o = feed_whole("GET /index.html?q=1 HTTP/1.1\r\nHost: example\r\nAccept:  */* \r\n\r\n");
  ASSERT_EQ(o.error, 0);
  ASSERT_EQ(o.requests.size(), 1u);
  const Owned& r = o.requests[0];
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/index.html?q=1");
  EXPECT_EQ(r.minor, 1);
  ASSERT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(r.headers[0], std::make_pair(std::string("Host"), std::string("example")));
  EXPECT_EQ(r.headers[1], std::make_pair(std::string("Accept"), std::string("*/*")));
  EXPECT_TRUE(r.keep_alive);
  EXPECT_EQ(o.tail, 0u);
}

TEST(HttpParser, HeaderLookupIsCaseInsensitive) {
  RequestParser p;
  std::string s = "GET / HTTP/1.1\r\nhOsT: h\r\nX-Empty:\r\n\r\n";
  ASSERT_EQ(p.parse(s).status, ParseStatus::complete);
  EXPECT_EQ(p.request().header("host"), "h");
  EXPECT_EQ(p.request().header("x-empty"), "");
  EXPECT_EQ(p.request().header("missing").data(), nullptr);
}

TEST(HttpParser, PipelinedRequestsComeOutInOrder) {
  Outcome o = feed_whole(kPipeline);
  ASSERT_EQ(o.error, 0);
  ASSERT_EQ(o.requests.size(), 4u);
  EXPECT_EQ(o.requests[0].method, "GET");
  EXPECT_EQ(o.requests[1].method, "POST");
  EXPECT_EQ(o.requests[1].target, "/echo?x=1");
  EXPECT_EQ(o.requests[1].body, "hello");
  EXPECT_EQ(o.requests[2].method, "HEAD");
  EXPECT_EQ(o.requests[2].minor, 0);
  EXPECT_TRUE(o.requests[2].keep_alive);
  EXPECT_EQ(o.requests[3].method, "DELETE");
  EXPECT_FALSE(o.requests[3].keep_alive);
  EXPECT_EQ(o.tail, 0u);
}

TEST(HttpParser, EverySplitPointOfAPipelineGivesTheSameRequests) {
  expect_same_for_every_split(kPipeline);
}

TEST(HttpParser, EverySplitPointOfAPartialRequestLeavesTheSameTail) {
  expect_same_for_every_split(
      "GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\n"
      "Content-Length: 10\r\n\r\nabc");
}

TEST(HttpParser, EverySplitPointOfABadRequestGivesTheSameError) {
  expect_same_for_every_split(
      "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nBad Name: x\r\n\r\n");
  expect_same_for_every_split("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99\r\n\r\n",
                              Limits{8192, 100, 10});
}

TEST(HttpParser, KeepAliveRules) {
  auto keep = [](const std::string& s) {
    Outcome o = feed_whole(s);
    EXPECT_EQ(o.error, 0) << s;
    return !o.requests.empty() && o.requests[0].keep_alive;
  };
  EXPECT_TRUE(keep("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
  EXPECT_FALSE(keep("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
  EXPECT_FALSE(keep("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n"));
  EXPECT_FALSE(keep("GET / HTTP/1.0\r\n\r\n"));
  EXPECT_TRUE(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
  EXPECT_FALSE(keep("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
  EXPECT_TRUE(keep("GET / HTTP/1.9\r\nHost: a\r\n\r\n"));  // Later 1.x minors are treated as 1.1.
}

TEST(HttpParser, ContinueIsAskedForOnceWhenTheBodyIsPending) {
  std::string head =
      "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
  Outcome o = feed({head, "a", "bc"});
  EXPECT_EQ(o.continues, 1);
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "abc");
  // Not when the body is already there, nor for HTTP/1.0.
  EXPECT_EQ(feed({head + "abc"}).continues, 0);
  EXPECT_EQ(
      feed({"PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"}).continues, 0);
}

struct BadCase {
  std::string input;
  int status;
};

TEST(HttpParser, MalformedRequestsGetTheRightStatus) {
  const BadCase cases[] = {
      {"GET / HTTP/1.1\nHost: a\r\n\r\n", 400},     // bare LF
      {"\n", 400},                                  // bare LF alone
      {"GET /\r\n\r\n", 400},                       // HTTP/0.9 style
      {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},  // double space
      {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},  // trailing space
      {"GET / http/1.1\r\nHost: a\r\n\r\n", 400},   // lower-case version
      {"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400},
      {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},             // not a token
      {"GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400},        // control char in target
      {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},            // space before colon
      {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400},  // obs-fold
      {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n: empty-name\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", 400},         // DEL in value
      {"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400},  // CR in value
      {"GET / HTTP/1.1\r\n\r\n", 400},                        // no Host in 1.1
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},  // two Hosts
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
       400},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
      {"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", 501},
      {"get / HTTP/1.1\r\nHost: a\r\n\r\n", 501},  // methods are case-sensitive
      {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
  };
  for (const BadCase& c : cases) {
    Outcome o = feed_whole(c.input);
    EXPECT_EQ(o.error, c.status) << c.input;
    EXPECT_TRUE(o.requests.empty()) << c.input;
  }
}

// A stream that cannot be HTTP is refused at the byte that shows it, without a line end.
TEST(HttpParser, ImpossibleBytesAreRejectedWithoutWaitingForTheLineEnd) {
  struct Early {
    std::string valid;  // a prefix that can still become a request
    std::string bad;    // its first byte makes that impossible
  };
  const Early cases[] = {
      {"", "\x16\x03\x01\x02\x00"},  // a TLS ClientHello
      {"", std::string(1, '\0')},
      {"", " GET / HTTP/1.1"},
      {"", ":"},
      {"\r\n\r\n", "\x7f"},  // after the empty lines a client may send first
      {"\r", "GET"},
      {"G", "(T / HTTP/1.1"},
      {"GET", "\t/ HTTP/1.1"},
      {"GET ", " / HTTP/1.1"},
      {"GET /a", "\x7f HTTP/1.1"},
      {"GET /a", "\x80 HTTP/1.1"},
      {"GET /a ", "FTP/1.1"},
      {"GET / HTTP", "S/1.1"},
      {"GET / HTTP/", "x.1"},
      {"GET / HTTP/1", "1"},
      {"GET / HTTP/1.1", " "},
      {"GET / HTTP/1.1\r", "\r"},
      {"GET / HTTP/1.1\r\n", " Host: a"},  // obs-fold
      {"GET / HTTP/1.1\r\n", "\x01"},
      {"GET / HTTP/1.1\r\nHo", " st: a"},
      {"GET / HTTP/1.1\r\nHost", "\"a"},
      {"GET / HTTP/1.1\r\nHost: a", "\x01"},
      {"GET / HTTP/1.1\r\nHost: a", "\x7f"},
      {"GET / HTTP/1.1\r\nHost: a\r", "b"},
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nX", "@"},  // in the next request
  };
  for (const Early& c : cases) {
    const std::string input = c.valid + c.bad;
    EXPECT_EQ(error_after_bytes(input), c.valid.size() + 1) << input;
    EXPECT_EQ(feed_whole(input).error, 400) << input;
    expect_same_for_every_split(input);
  }
  // Field values may hold tabs, spaces and obs-text; targets any visible ASCII.
  EXPECT_EQ(feed_whole("GET /%7e!$&'()*+,;=:@?[] HTTP/1.1\r\nX: a\tb \xff\r\n").error, 0);
}

TEST(HttpParser, RandomBytesWithoutALineEndGet400Early) {
  std::mt19937 rng(16);
  std::size_t latest = 0;
  for (int round = 0; round < 1000; ++round) {
    std::string noise(1000, '\0');
    for (char& c : noise) {
      do {
        c = static_cast<char>(rng());
      } while (c == '\n');
    }
    const std::size_t at = error_after_bytes(noise);
    ASSERT_GT(at, 0u) << round;
    latest = std::max(latest, at);
    ASSERT_EQ(feed_whole(noise).error, 400) << round;
    if (round < 5) expect_same_for_every_split(noise);
  }
  EXPECT_LT(latest, 100u);  // Far from the 8 KiB a line could otherwise grow to.
}

TEST(HttpParser, DuplicateEqualContentLengthsAreAccepted) {
  Outcome o =
      feed_whole("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "ok");
}

TEST(HttpParser, AnErrorIsSticky) {
  RequestParser p;
  EXPECT_EQ(p.parse("BAD\r\n").status, ParseStatus::error);
  ParseResult again = p.parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(again.status, ParseStatus::error);
  EXPECT_EQ(again.error_status, 400);
  p.reset();
  EXPECT_EQ(p.parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n").status, ParseStatus::complete);
}

// A request whose head (request line + headers + final CRLF) is exactly `size` bytes.
std::string head_of_size(std::size_t size) {
  std::string start = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
  std::string end = "\r\n\r\n";
  return start + std::string(size - start.size() - end.size(), 'x') + end;
}

TEST(HttpParser, HeadLimitIsEightKiB) {
  EXPECT_EQ(feed_whole(head_of_size(8192)).requests.size(), 1u);
  EXPECT_EQ(feed_whole(head_of_size(8193)).error, 431);
  // Also when the end of the head never comes: refused as soon as 8192 bytes are here without it
  // (the LF that ends the head could then only come after the limit).
  EXPECT_EQ(feed_whole(head_of_size(9000).substr(0, 8191)).error, 0);
  EXPECT_EQ(feed_whole(head_of_size(9000).substr(0, 8192)).error, 431);
  EXPECT_EQ(error_after_bytes(head_of_size(9000)), 8192u);
}

TEST(HttpParser, AnOverlongRequestLineIs414AsSoonAsTheLimitIsPassed) {
  const std::string line = "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(feed_whole(line).error, 414);
  EXPECT_EQ(feed_whole(line.substr(0, 8191)).error, 0);
  EXPECT_EQ(feed_whole(line.substr(0, 8192)).error, 414);
  EXPECT_EQ(error_after_bytes(line), 8192u);
  // A bad byte within the limit is reported (400) before the limit, wherever the line ends; one
  // beyond the limit is never looked at.
  std::string bad = line;
  bad[100] = '\x01';
  EXPECT_EQ(feed_whole(bad).error, 400);
  EXPECT_EQ(error_after_bytes(bad), 101u);
  bad = line;
  bad[8500] = '\x01';
  EXPECT_EQ(feed_whole(bad).error, 414);
}

TEST(HttpParser, EverySplitPointAroundTheHeadLimitGivesTheSameError) {
  const Limits small{64, 100, 1024};
  const std::string long_text(80, 'a');
  const BadCase cases[] = {
      {"GET /" + long_text + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
      {"GET /" + long_text, 414},
      {"GET / HTTP/1.1\r\nHost: a\r\nX: " + long_text + "\r\n\r\n", 431},
      {"GET / HTTP/1.1\r\nHost: a\r\nX: " + long_text, 431},
      {"GET /" + long_text.substr(0, 40) + "\x01" + long_text, 400},
      {"GET /" + long_text + "\x01" + long_text + "\r\n", 414},
      {"GET / HTTP/1.1\r\n\r\n" + long_text, 400},  // no Host
  };
  for (const BadCase& c : cases) {
    EXPECT_EQ(feed_whole(c.input, small).error, c.status) << c.input;
    expect_same_for_every_split(c.input, small);
  }
}

TEST(HttpParser, TooManyHeadersIs431) {
  std::string s = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 99; ++i) s += "X: y\r\n";
  EXPECT_EQ(feed_whole(s + "\r\n").requests.size(), 1u);  // 100 fields
  EXPECT_EQ(feed_whole(s + "X: y\r\n\r\n").error, 431);   // 101 fields
}

TEST(HttpParser, BodyLimitIsConfigurable) {
  Limits limits;
  limits.max_body_bytes = 4;
  std::string ok = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd";
  std::string big = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
  EXPECT_EQ(feed_whole(ok, limits).requests.size(), 1u);
  EXPECT_EQ(feed_whole(big, limits).error, 413);  // refused before the body arrives
  EXPECT_EQ(
      feed_whole("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n")
          .error,
      413);
}

}  // namespace
}  // namespace httpd
