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
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
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
      {"", std::string("\x16\x03\x01\x02\x00", 5)},  // a TLS ClientHello
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

// --- Chunked request bodies (RFC 9112 7.1) ---------------------------------------------------

const std::string kChunkedHead =
    "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

// `body` as a chunked body of chunks of `size` bytes (the last one shorter), with the last-chunk
// and the final CRLF.
std::string chunk_body(const std::string& body, std::size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t at = 0; at < body.size(); at += size) {
    const std::size_t n = std::min(size, body.size() - at);
    std::string hex;
    for (std::size_t v = n; v != 0; v >>= 4) hex.insert(hex.begin(), kHex[v & 15]);
    out += hex + "\r\n" + body.substr(at, n) + "\r\n";
  }
  return out + "0\r\n\r\n";
}

TEST(HttpParserChunked, DecodesTheBody) {
  Outcome o = feed_whole(kChunkedHead + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  ASSERT_EQ(o.error, 0);
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "hello world");
  EXPECT_TRUE(o.requests[0].keep_alive);
  EXPECT_EQ(o.tail, 0u);
  // Hex digits in either case, leading zeros, the coding's name in any case.
  o = feed_whole(
      "PUT /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n"
      "A\r\n0123456789\r\n000b\r\nabcdefghijk\r\n000\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "0123456789abcdefghijk");
  // An empty chunked body.
  o = feed_whole(kChunkedHead + "0\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "");
}

TEST(HttpParserChunked, EverySplitPointGivesTheSameRequests) {
  const std::string pipeline =
      kChunkedHead + "5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Sum: 1\r\n\r\n" +
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + kChunkedHead + chunk_body("one byte at a time", 1) +
      "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nplain" + kChunkedHead +
      chunk_body(std::string(40, 'z'), 16);
  const Outcome whole = feed_whole(pipeline);
  ASSERT_EQ(whole.error, 0);
  ASSERT_EQ(whole.requests.size(), 5u);
  EXPECT_EQ(whole.requests[0].body, "hello world");
  EXPECT_EQ(whole.requests[2].body, "one byte at a time");
  EXPECT_EQ(whole.requests[3].body, "plain");
  EXPECT_EQ(whole.requests[4].body, std::string(40, 'z'));
  expect_same_for_every_split(pipeline);
  // A chunked request cut anywhere leaves the same tail.
  expect_same_for_every_split("GET / HTTP/1.1\r\nHost: a\r\n\r\n" + kChunkedHead + "5\r\nhel");
}

TEST(HttpParserChunked, TheBodyIsAParserOwnedCopyOnlyForChunked) {
  RequestParser p;
  const std::string plain = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok";
  ASSERT_EQ(p.parse(plain).status, ParseStatus::complete);
  EXPECT_EQ(p.request().body.data(), plain.data() + plain.size() - 2);  // a view: zero-copy
  const std::string chunked = kChunkedHead + "2\r\nok\r\n0\r\n\r\n";
  ASSERT_EQ(p.parse(chunked).status, ParseStatus::complete);
  EXPECT_EQ(p.request().body, "ok");
  const char* body = p.request().body.data();
  EXPECT_TRUE(body < chunked.data() || body >= chunked.data() + chunked.size());
}

TEST(HttpParserChunked, ExtensionsAreIgnored) {
  const std::string body =
      "5;name=value;flag\r\nhello\r\n"
      "1 ; q = \"a \\\"quoted\\\" ;=\" ; x=y\r\n!\r\n"
      "0;last=1\r\n\r\n";
  Outcome o = feed_whole(kChunkedHead + body);
  ASSERT_EQ(o.error, 0);
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "hello!");
  expect_same_for_every_split(kChunkedHead + body);
}

TEST(HttpParserChunked, AChunkSizeLineIsBoundedTo1KiB) {
  const Limits limits;
  ASSERT_EQ(limits.max_chunk_line_bytes, 1024u);
  // "1;x=aaa...\r\n" of exactly `size` bytes, CRLF included.
  auto line_of = [](std::size_t size) { return "1;x=" + std::string(size - 6, 'a') + "\r\n"; };
  Outcome o = feed_whole(kChunkedHead + line_of(1024) + "!\r\n0\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "!");
  EXPECT_EQ(feed_whole(kChunkedHead + line_of(1025) + "!\r\n0\r\n\r\n").error, 400);
  // Refused once 1024 bytes are here without the line's end, not when it ends.
  const std::string endless = kChunkedHead + "1;x=" + std::string(2000, 'a');
  EXPECT_EQ(error_after_bytes(endless), kChunkedHead.size() + 1024);
  const Limits small{8192, 100, 1024, 16};
  expect_same_for_every_split(kChunkedHead + "1;x=" + std::string(20, 'a') + "\r\n!\r\n", small);
}

TEST(HttpParserChunked, TrailerFieldsAreReadAndDropped) {
  Outcome o = feed_whole(kChunkedHead + "2\r\nok\r\n0\r\nX-Checksum: 1\r\nX-Other:two\r\n\r\n" +
                         "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(o.error, 0);
  ASSERT_EQ(o.requests.size(), 2u);
  EXPECT_EQ(o.requests[0].body, "ok");
  EXPECT_EQ(o.requests[0].headers.size(), 2u);  // the head's fields only
  EXPECT_EQ(o.requests[1].method, "GET");
}

TEST(HttpParserChunked, TheTrailerSectionHasTheHeadLimits) {
  const Limits limits;
  std::string fields;
  for (std::size_t i = 0; i < limits.max_headers; ++i) fields += "T: v\r\n";
  EXPECT_EQ(feed_whole(kChunkedHead + "0\r\n" + fields + "\r\n").requests.size(), 1u);
  EXPECT_EQ(feed_whole(kChunkedHead + "0\r\n" + fields + "T: v\r\n\r\n").error, 431);
  // Bytes: the trailer section (its final CRLF included) may take max_head_bytes.
  auto trailer_of = [](std::size_t size) {
    return "T: " + std::string(size - 7, 'v') + "\r\n\r\n";
  };
  EXPECT_EQ(feed_whole(kChunkedHead + "0\r\n" + trailer_of(8192)).requests.size(), 1u);
  EXPECT_EQ(feed_whole(kChunkedHead + "0\r\n" + trailer_of(8193)).error, 431);
  const std::string endless = kChunkedHead + "0\r\nT: " + std::string(9000, 'v');
  EXPECT_EQ(error_after_bytes(endless), kChunkedHead.size() + 3 + 8192);
  const Limits small{64, 100, 1024};
  expect_same_for_every_split(kChunkedHead + "0\r\nT: " + std::string(80, 'v') + "\r\n\r\n", small);
}

TEST(HttpParserChunked, MalformedChunkedBodiesGet400) {
  const std::string bodies[] = {
      "10000000000000000\r\n",           // 2^64: the size overflows
      "fffffffffffffffffff\r\n",         // so does this
      "x\r\nhello\r\n0\r\n\r\n",         // not hex
      "0x5\r\nhello\r\n0\r\n\r\n",       // no prefix
      "-1\r\n",                          // no sign
      "+5\r\nhello\r\n0\r\n\r\n",        //
      "\r\n",                            // no size
      ";x=1\r\n",                        // extension without a size
      "5 \r\nhello\r\n0\r\n\r\n",        // whitespace that no ';' follows
      "5;\r\nhello\r\n0\r\n\r\n",        // ';' without a name
      "5;a b\r\nhello\r\n0\r\n\r\n",     // two tokens
      "5;a=\r\nhello\r\n0\r\n\r\n",      // '=' without a value
      "5;a=\"b\r\nhello\r\n0\r\n\r\n",   // unterminated quoted string
      "5;a=\x01\r\nhello\r\n0\r\n\r\n",  // control character
      "5\nhello\r\n0\r\n\r\n",           // bare LF after the size
      "5\r\r\nhello\r\n0\r\n\r\n",       // CR inside the line
      "5\r\nhelloX\r\n0\r\n\r\n",        // no CRLF after the data (too much data)
      "5\r\nhell\r\n0\r\n\r\n",          // too little data: "\r\n" is data, then "0\r"
      "5\r\nhello\n0\r\n\r\n",           // bare LF after the data
      "5\r\nhello\r\n0\r\n\n",           // bare LF at the end
      "5\r\nhello\r\n0\r\nT: v\n\r\n",   // bare LF after a trailer field
      "0\r\nT : v\r\n\r\n",              // space before a trailer's colon
      "0\r\nNoColon\r\n\r\n",            //
      "0\r\nT: v\r\n folded\r\n\r\n",    // obs-fold in the trailers
      "0\r\nT: a\x7f\r\n\r\n",           // DEL in a trailer value
  };
  for (const std::string& body : bodies) {
    const std::string input = kChunkedHead + body;
    EXPECT_EQ(feed_whole(input).error, 400) << body;
    expect_same_for_every_split(input);
  }
}

TEST(HttpParserChunked, TransferEncodingRules) {
  auto status_of = [](const std::string& fields, const std::string& version = "1.1") {
    return feed_whole("POST / HTTP/" + version + "\r\nHost: a\r\n" + fields + "\r\n0\r\n\r\n")
        .error;
  };
  EXPECT_EQ(status_of("Transfer-Encoding: chunked\r\n"), 0);
  EXPECT_EQ(status_of("Transfer-Encoding:  CHUNKED \r\n"), 0);
  EXPECT_EQ(status_of("Transfer-Encoding: , chunked,\r\n"), 0);  // empty list elements
  // Chunked not the last coding: the body's length cannot be known, 400 (RFC 9112 6.3).
  EXPECT_EQ(status_of("Transfer-Encoding: gzip\r\n"), 400);
  EXPECT_EQ(status_of("Transfer-Encoding: identity\r\n"), 400);
  EXPECT_EQ(status_of("Transfer-Encoding: chunked, gzip\r\n"), 400);
  EXPECT_EQ(status_of("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), 400);
  EXPECT_EQ(status_of("Transfer-Encoding: chunked;q=1\r\n"), 400);
  // Another coding before a final chunked: 501 (only chunked is implemented, RFC 9112 6.1).
  EXPECT_EQ(status_of("Transfer-Encoding: gzip, chunked\r\n"), 501);
  EXPECT_EQ(status_of("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), 501);
  // Chunked twice, or an empty field: 400.
  EXPECT_EQ(status_of("Transfer-Encoding: chunked, chunked\r\n"), 400);
  EXPECT_EQ(status_of("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400);
  EXPECT_EQ(status_of("Transfer-Encoding:\r\n"), 400);
  // With Content-Length, in either order: request smuggling (RFC 9112 6.1), 400.
  EXPECT_EQ(status_of("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400);
  EXPECT_EQ(status_of("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400);
  EXPECT_EQ(status_of("Content-Length: 5\r\nTransfer-Encoding: gzip\r\n"), 400);
  // In HTTP/1.0, which has no Transfer-Encoding (RFC 9112 6.1): 400.
  EXPECT_EQ(status_of("Transfer-Encoding: chunked\r\n", "1.0"), 400);
  EXPECT_EQ(status_of("Transfer-Encoding: gzip\r\n", "1.0"), 400);
}

TEST(HttpParserChunked, ABodyAtTheLimitPassesAndOneByteMoreGets413BeforeItsChunk) {
  Limits limits;
  limits.max_body_bytes = 10;
  Outcome o = feed_whole(kChunkedHead + "4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n", limits);
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "abcdefghij");
  const std::string over = kChunkedHead + "4\r\nabcd\r\n7\r\nefghijk\r\n0\r\n\r\n";
  EXPECT_EQ(feed_whole(over, limits).error, 413);
  // At the end of the chunk-size line that shows it, before any byte of that chunk.
  EXPECT_EQ(error_after_bytes(over, limits), kChunkedHead.size() + 12);
  expect_same_for_every_split(over, limits);
  // A size that fits in 64 bits but not in the limit is 413; one that does not fit, 400.
  EXPECT_EQ(feed_whole(kChunkedHead + "ffffffffffffffff\r\n").error, 413);
  EXPECT_EQ(feed_whole(kChunkedHead + "10000000000000000\r\n").error, 400);
}

TEST(HttpParserChunked, ContinueIsAskedForOnceWhenTheBodyIsPending) {
  const std::string head =
      "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n";
  Outcome o = feed({head, "3\r\nab", "c\r\n0\r\n\r\n"});
  EXPECT_EQ(o.continues, 1);
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "abc");
  EXPECT_EQ(feed({head + "3\r\nabc\r\n0\r\n\r\n"}).continues, 0);  // the body is already here
}

// Framing (size lines, extensions, CRLFs, trailers) may take chunk_framing_budget() bytes per
// body: 1-byte chunks (5 bytes of framing each) fit up to it, one more is refused, so a peer
// cannot make the server hold unbounded raw bytes for a small body.
TEST(HttpParserChunked, OneByteChunksAreParsedAndTheirFramingIsBounded) {
  const Limits limits;
  const std::size_t budget = limits.chunk_framing_budget();
  EXPECT_EQ(budget, limits.max_head_bytes + limits.max_body_bytes / 8);
  const std::size_t fit = (budget - 5) / 5;  // each chunk "1\r\nx\r\n"; the end "0\r\n\r\n"
  std::string body(fit, 'x');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
  Outcome o = feed_whole(kChunkedHead + chunk_body(body, 1), limits);
  ASSERT_EQ(o.error, 0);
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, body);
  EXPECT_EQ(feed_whole(kChunkedHead + chunk_body(body + "y", 1), limits).error, 413);
  // Small bodies with small chunks, split anywhere.
  const Limits small{8192, 100, 40};  // budget 8192 + 5
  expect_same_for_every_split(kChunkedHead + chunk_body(std::string(40, 'q'), 1), small);
}

TEST(HttpParserChunked, ABodyOfMaxBodyInReasonableChunksFitsTheRawBound) {
  const Limits limits;  // 1 MiB
  std::string body(limits.max_body_bytes, 'b');
  for (const std::size_t chunk : {std::size_t{48}, std::size_t{1024}, std::size_t{65536}}) {
    const std::string request = kChunkedHead + chunk_body(body, chunk);
    EXPECT_LE(request.size(), limits.max_request_bytes()) << chunk;
    Outcome o = feed_whole(request, limits);
    ASSERT_EQ(o.error, 0) << chunk;
    ASSERT_EQ(o.requests.size(), 1u);
    EXPECT_EQ(o.requests[0].body.size(), body.size());
  }
  EXPECT_EQ(feed_whole(kChunkedHead + chunk_body(body, 32), limits).error, 413);
}

// Progress is kept as offsets: a body that trickles in one byte per call costs linear time (a
// re-scan or re-decode from the body's start at each call, 10^6 calls over up to 10^6 bytes,
// would take tens of seconds here, against the test's 60 s timeout).
TEST(HttpParserChunked, ABodyTricklingInOneByteAtATimeIsLinear) {
  const Limits limits;
  std::string body(limits.max_body_bytes, '\0');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 7);
  const std::string input = kChunkedHead + chunk_body(body, 1000);
  RequestParser parser(limits);
  std::string tail;
  tail.reserve(input.size());
  ParseResult r;
  for (char c : input) {
    ASSERT_NE(r.status, ParseStatus::complete);
    tail += c;
    r = parser.parse(tail);
    ASSERT_NE(r.status, ParseStatus::error) << r.error_reason;
  }
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.consumed, input.size());
  EXPECT_TRUE(parser.request().body == body);
}
}  // namespace
}  // namespace httpd
