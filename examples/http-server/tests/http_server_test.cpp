// Integration tests of the http-server binary: started as a child process on a free loopback
// port, driven by curl (skipped when curl is not installed) and by raw sockets, then stopped
// with SIGTERM, which must end it with exit code 0. Chunked request bodies: curl's streaming
// upload, pipelined with plain requests, trickled, with 100-continue, at the size limit, errors.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <thread>

#include "http_server_fixture.hpp"
#include "temp_tree.hpp"

namespace http_test {
namespace {

TEST_F(HttpServer, CurlGetsHelloWorld) {
  if (!have_program("curl")) GTEST_SKIP() << "curl is not installed";
  ProgramResult r = run_program({"curl", "-sS", "-i", url() + "/"}, kTimeout);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("Content-Length: 13\r\n"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.substr(r.output.size() - 17), "\r\n\r\nHello, World!") << r.output;
}

TEST_F(HttpServer, CurlReusesTheConnection) {
  if (!have_program("curl")) GTEST_SKIP() << "curl is not installed";
  ProgramResult r = run_program({"curl", "-sS", "-o", "/dev/null", "-o", "/dev/null", "-w",
                                 "%{num_connects} ", url() + "/", url() + "/"},
                                kTimeout);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "1 0 ");  // The second transfer made no new connection.
}

TEST_F(HttpServer, CurlHttp10AndHead) {
  if (!have_program("curl")) GTEST_SKIP() << "curl is not installed";
  ProgramResult r = run_program({"curl", "-sS", "-i", "--http1.0", url() + "/"}, kTimeout);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Connection: close\r\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Hello, World!"), std::string::npos) << r.output;
  ProgramResult h = run_program({"curl", "-sS", "-I", url() + "/"}, kTimeout);
  ASSERT_EQ(h.exit_code, 0) << h.output;
  EXPECT_NE(h.output.find("Content-Length: 13"), std::string::npos) << h.output;
  EXPECT_EQ(h.output.find("Hello"), std::string::npos) << h.output;
}

TEST_F(HttpServer, CurlPostEchoesTheBodyAndGets413BeyondTheLimit) {
  if (!have_program("curl")) GTEST_SKIP() << "curl is not installed";
  ProgramResult r =
      run_program({"curl", "-sS", "--data-binary", "@-", url() + "/echo"}, kTimeout, "ping pong");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "ping pong");
  ProgramResult big = run_program({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                   "--data-binary", "@-", url() + "/echo"},
                                  kTimeout, std::string(1001, 'x'));
  EXPECT_EQ(big.output, "413") << big.output;
}

TEST_F(HttpServer, CurlGets404And405) {
  if (!have_program("curl")) GTEST_SKIP() << "curl is not installed";
  ProgramResult r = run_program(
      {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url() + "/nope"}, kTimeout);
  EXPECT_EQ(r.output, "404");
  r = run_program(
      {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", url() + "/"},
      kTimeout);
  EXPECT_EQ(r.output, "405");
}

// A response to HEAD has no body, an error too (RFC 9110 9.3.2): the 405 of HEAD /echo carried
// "method not allowed\n", which a keep-alive client took for the start of the next response.
TEST_F(HttpServer, HeadGetsNoBodyAlsoInAnError) {
  int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd,
                       "HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n"
                       "HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  bool closed = false;
  const std::string got = read_until_close(fd, kTimeout, closed);
  ::close(fd);
  EXPECT_TRUE(closed);
  const std::size_t not_allowed = got.find("HTTP/1.1 405 Method Not Allowed\r\n");
  const std::size_t not_found = got.find("HTTP/1.1 404 Not Found\r\n");
  const std::size_t hello = got.find("HTTP/1.1 200 OK\r\n");
  ASSERT_EQ(not_allowed, 0u) << got;
  ASSERT_NE(not_found, std::string::npos) << got;
  ASSERT_NE(hello, std::string::npos) << got;
  // Each head ends where the next response begins: no body bytes between them.
  EXPECT_EQ(got.find("\r\n\r\n", not_allowed) + 4, not_found) << got;
  EXPECT_EQ(got.find("\r\n\r\n", not_found) + 4, hello) << got;
  EXPECT_EQ(got.find("method not allowed"), std::string::npos) << got;
}

// The cached "GET /" response carries the current Date. It used to be rebuilt only when it was
// the first response of a new second: after a 404 went first, it kept an old Date for good.
TEST_F(HttpServer, TheHelloResponseDateFollowsTheClockAfterOtherResponses) {
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  // The Date of the response to a keep-alive GET of `target` (its body read and dropped).
  const auto date_of = [fd](const std::string& target) {
    if (!send_all(fd, "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")) return std::string();
    const std::string got = read_until_count(fd, "\r\n\r\n", 1, kTimeout);
    const std::size_t end = got.find("\r\n\r\n");
    const std::size_t length = got.find("Content-Length: ");
    if (end == std::string::npos || length == std::string::npos) return std::string();
    const std::string head = got.substr(0, end + 4);
    const std::size_t body = std::stoul(head.substr(length + 16)), have = got.size() - head.size();
    if (have < body) read_exactly(fd, body - have, kTimeout);  // the rest of the body, dropped
    const std::size_t date = head.find("Date: ");
    return date == std::string::npos ? std::string() : head.substr(date + 6, 29);
  };
  const std::string first = date_of("/");
  ASSERT_EQ(first.size(), 29u);
  // The clock is the event here: two seconds on, the cached Date is stale.
  const std::time_t then = std::time(nullptr);
  while (std::time(nullptr) < then + 2) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::string not_found = date_of("/nope");  // formats the new second's Date first
  const std::string hello = date_of("/");
  ::close(fd);
  EXPECT_NE(not_found, first);
  EXPECT_NE(hello, first) << "GET / still says " << first << " after a 404 said " << not_found;
}

TEST_F(HttpServer, PipelinedRequestsAreAnsweredInOrder) {
  int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  std::string batch;
  for (int i = 0; i < 50; ++i) batch += "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  batch += "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nlast";
  batch += "GET /?q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_TRUE(send_all(fd, batch));
  bool closed = false;
  std::string got = read_until_close(fd, kTimeout, closed);
  ::close(fd);
  EXPECT_TRUE(closed);
  EXPECT_EQ(count_of(got, "HTTP/1.1 200 OK\r\n"), 52);
  EXPECT_EQ(count_of(got, "Hello, World!"), 51);
  // The echo answer sits between the 50th and the 51st hello, and the last one says close.
  std::size_t echo = got.find("\r\n\r\nlast");
  ASSERT_NE(echo, std::string::npos);
  EXPECT_EQ(count_of(got.substr(0, echo), "Hello, World!"), 50);
  EXPECT_NE(got.rfind("Connection: close\r\n"), std::string::npos);
}

TEST_F(HttpServer, RequestSplitIntoSingleBytesIsParsed) {
  int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  std::string request = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nsplit";
  for (char c : request) ASSERT_TRUE(send_all(fd, std::string_view(&c, 1)));
  std::string got = read_until_count(fd, "split", 1, kTimeout);
  EXPECT_EQ(got.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << got;
  // The connection stays open for the next request.
  ASSERT_TRUE(send_all(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(count_of(read_until_count(fd, "Hello, World!", 1, kTimeout), "Hello, World!"), 1);
  ::close(fd);
}

TEST_F(HttpServer, ExpectContinueGetsAnInterimResponse) {
  int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd,
                       "PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                       "Content-Length: 4\r\n\r\n"));
  EXPECT_EQ(read_until_count(fd, "\r\n\r\n", 1, kTimeout), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(send_all(fd, "body"));
  std::string got = read_until_count(fd, "body", 1, kTimeout);
  EXPECT_EQ(got.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << got;
  ::close(fd);
}

TEST_F(HttpServer, Http10ClosesUnlessKeepAlive) {
  bool closed = false;
  std::string got = exchange_until_close("GET / HTTP/1.0\r\n\r\n", closed);
  EXPECT_TRUE(closed);
  EXPECT_NE(got.find("Hello, World!"), std::string::npos);
  int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  std::string first = read_until_count(fd, "Hello, World!", 1, kTimeout);
  EXPECT_NE(first.find("Connection: keep-alive\r\n"), std::string::npos) << first;
  ASSERT_TRUE(send_all(fd, "GET / HTTP/1.0\r\n\r\n"));
  got = read_until_close(fd, kTimeout, closed);
  EXPECT_TRUE(closed);
  EXPECT_NE(got.find("Hello, World!"), std::string::npos);
  ::close(fd);
}

TEST_F(HttpServer, ConnectionCloseIsHonouredAndLaterRequestsIgnored) {
  bool closed = false;
  std::string got = exchange_until_close(
      "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
      closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(count_of(got, "HTTP/1.1 200"), 1);
}

struct BadRequest {
  std::string request;
  std::string status_line;
};

TEST_F(HttpServer, BadRequestsGetTheirStatusAndAClose) {
  const BadRequest cases[] = {
      {"GARBAGE\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"},
      {"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\nHost: x\n\n",
       "HTTP/1.1 400 Bad Request\r\n"},
      {"GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(9000, 'a') + "\r\n\r\n",
       "HTTP/1.1 431 Request Header Fields Too Large\r\n"},
      {"GET /" + std::string(9000, 'a'), "HTTP/1.1 414 URI Too Long\r\n"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n",
       "HTTP/1.1 413 Content Too Large\r\n"},
      {"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 501 Not Implemented\r\n"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
       "HTTP/1.1 501 Not Implemented\r\n"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
       "HTTP/1.1 400 Bad Request\r\n"},
      {"GET / HTTP/2.0\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported\r\n"},
  };
  for (const BadRequest& c : cases) {
    bool closed = false;
    std::string got = exchange_until_close(c.request, closed);
    EXPECT_TRUE(closed) << c.request.substr(0, 60);
    EXPECT_NE(got.find(c.status_line), std::string::npos) << c.request.substr(0, 60) << "\n" << got;
    EXPECT_NE(got.find("Connection: close\r\n"), std::string::npos);
  }
}

// --- Chunked request bodies --------------------------------------------------------------------

// `body` as a chunked body of chunks of `size` bytes, the last-chunk and the final CRLF.
std::string chunked(std::string_view body, std::size_t size) {
  std::string out;
  char hex[32];
  for (std::size_t at = 0; at < body.size(); at += size) {
    const std::size_t n = std::min(size, body.size() - at);
    std::snprintf(hex, sizeof hex, "%zx\r\n", n);
    out.append(hex).append(body.substr(at, n)).append("\r\n");
  }
  return out + "0\r\n\r\n";
}

std::string file_contents(const std::string& path) {
  std::string out;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return out;
  char buffer[64 * 1024];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, f)) > 0;) out.append(buffer, n);
  std::fclose(f);
  return out;
}

// curl's streaming upload: `-H 'Transfer-Encoding: chunked' --data-binary @file`, a few hundred
// KiB, echoed back byte for byte (decoded, with Content-Length). Before, it got 501.
TEST_F(HttpServer, CurlChunkedUploadIsEchoedByteExact) {
  if (!have_program("curl")) GTEST_SKIP() << "curl is not installed";
  stop();
  start({"--max-body", "1048576"});
  const TempTree tree;
  const std::string body = pattern_bytes(300 * 1024 + 7, 1);
  ASSERT_TRUE(tree.file("body", body));
  const ProgramResult r = run_program(
      {"curl", "-sS", "-v", "-H", "Transfer-Encoding: chunked", "--data-binary",
       "@" + tree.at("body"), "-o", tree.at("echoed"), "-w", "%{http_code}", url() + "/echo"},
      kTimeout);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("> Transfer-Encoding: chunked"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("< Content-Length: " + std::to_string(body.size())), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.substr(r.output.size() - 3), "200") << r.output;
  EXPECT_TRUE(file_contents(tree.at("echoed")) == body) << "the echoed body differs";
}

TEST_F(HttpServer, CurlChunkedUploadWithExpectContinueGets100Continue) {
  if (!have_program("curl")) GTEST_SKIP() << "curl is not installed";
  stop();
  start({"--max-body", "1048576"});
  const TempTree tree;
  const std::string body = pattern_bytes(200 * 1024, 2);
  ASSERT_TRUE(tree.file("body", body));
  const ProgramResult r =
      run_program({"curl", "-sS", "-v", "-H", "Transfer-Encoding: chunked", "-H",
                   "Expect: 100-continue", "--data-binary", "@" + tree.at("body"), "-o",
                   tree.at("echoed"), "-w", "%{http_code}", url() + "/echo"},
                  kTimeout);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("< HTTP/1.1 100 Continue"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.substr(r.output.size() - 3), "200") << r.output;
  EXPECT_TRUE(file_contents(tree.at("echoed")) == body) << "the echoed body differs";
}

TEST_F(HttpServer, PipelinedChunkedAndPlainRequestsAreAnsweredInOrder) {
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  const std::string chunked_head =
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string batch =
      chunked_head + "4;ext=\"a b\"\r\nfirs\r\n1\r\nt\r\n0\r\nX-Trailer: 1\r\n\r\n" +
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n" +
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond" + chunked_head +
      chunked("third", 1) + "PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" +
      "Connection: close\r\n\r\n" + chunked("fourth", 4);
  ASSERT_TRUE(send_all(fd, batch));
  bool closed = false;
  const std::string got = read_until_close(fd, kTimeout, closed);
  ::close(fd);
  EXPECT_TRUE(closed);
  EXPECT_EQ(count_of(got, "HTTP/1.1 200 OK\r\n"), 5) << got;
  const std::size_t first = got.find("Content-Length: 5\r\n\r\nfirst");
  const std::size_t hello = got.find("Hello, World!");
  const std::size_t second = got.find("Content-Length: 6\r\n\r\nsecond");
  const std::size_t third = got.find("Content-Length: 5\r\n\r\nthird");
  const std::size_t fourth = got.find("Connection: close\r\n\r\nfourth");
  ASSERT_NE(fourth, std::string::npos) << got;
  EXPECT_LT(first, hello) << got;
  EXPECT_LT(hello, second) << got;
  EXPECT_LT(second, third) << got;
  EXPECT_LT(third, fourth) << got;
  EXPECT_EQ(got.substr(got.size() - 6), "fourth");
}

TEST_F(HttpServer, AChunkedRequestSplitIntoSingleBytesIsEchoed) {
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  const std::string request =
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
      chunked("trickled", 3);
  for (char c : request) ASSERT_TRUE(send_all(fd, std::string_view(&c, 1)));
  const std::string got = read_until_count(fd, "trickled", 1, kTimeout);
  EXPECT_EQ(got.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << got;
  ASSERT_TRUE(send_all(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));  // still open
  EXPECT_EQ(count_of(read_until_count(fd, "Hello, World!", 1, kTimeout), "Hello, World!"), 1);
  ::close(fd);
}

TEST_F(HttpServer, ExpectContinueGetsAnInterimResponseForAChunkedBody) {
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd,
                       "PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n"));
  EXPECT_EQ(read_until_count(fd, "\r\n\r\n", 1, kTimeout), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(send_all(fd, chunked("body", 2)));
  const std::string got = read_until_count(fd, "body", 1, kTimeout);
  EXPECT_EQ(got.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << got;
  EXPECT_NE(got.find("Content-Length: 4\r\n"), std::string::npos) << got;
  ::close(fd);
}

// A body of --max-body in 64-byte chunks (1 MiB + 96 KiB on the wire) fits evloop's input_limit,
// which is the parser's max_request_bytes() (it was head + body: such a request was reset).
TEST_F(HttpServer, AChunkedBodyOfMaxBodyInSmallChunksIsEchoed) {
  stop();
  start({"--max-body", "1048576"});
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  const std::string body = pattern_bytes(1048576, 3);
  ASSERT_TRUE(send_all(fd,
                       "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       "Connection: close\r\n\r\n" +
                           chunked(body, 64)));
  bool closed = false;
  const std::string got = read_until_close(fd, kTimeout, closed);
  ::close(fd);
  EXPECT_TRUE(closed);
  ASSERT_EQ(got.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << got.substr(0, 200);
  EXPECT_NE(got.find("Content-Length: 1048576\r\n"), std::string::npos) << got.substr(0, 200);
  ASSERT_GE(got.size(), body.size());
  EXPECT_TRUE(got.substr(got.size() - body.size()) == body) << "the echoed body differs";
}

TEST_F(HttpServer, ChunkedBodyErrorsGetTheirStatusAndAClose) {
  const std::string head = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  // Each request ends where the server finds its error, so that no unread byte turns the close
  // into a reset that could overtake the response.
  const BadRequest cases[] = {
      {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
       "HTTP/1.1 501 Not Implemented\r\n"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
       "HTTP/1.1 400 Bad Request\r\n"},
      {"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
       "HTTP/1.1 400 Bad Request\r\n"},
      {head + "3e9\r\n", "HTTP/1.1 413 Content Too Large\r\n"},   // 1001 bytes, --max-body 1000
      {head + "200\r\n" + std::string(512, 'a') + "\r\n1e9\r\n",  // 512 + 489
       "HTTP/1.1 413 Content Too Large\r\n"},
      {head + "zz\r\n", "HTTP/1.1 400 Bad Request\r\n"},
      {head + "1;x=" + std::string(1020, 'e'), "HTTP/1.1 400 Bad Request\r\n"},  // 1 KiB, no LF
      {head + "3\r\nabcX", "HTTP/1.1 400 Bad Request\r\n"},
  };
  for (const BadRequest& c : cases) {
    bool closed = false;
    const std::string got = exchange_until_close(c.request, closed);
    EXPECT_TRUE(closed) << c.request.substr(0, 80);
    EXPECT_EQ(got.rfind(c.status_line, 0), 0u) << c.request.substr(0, 80) << "\n" << got;
    EXPECT_NE(got.find("Connection: close\r\n"), std::string::npos) << got;
  }
}

TEST_F(HttpServer, ManyConnectionsOnSeveralLoops) {
  stop();
  start({"--loops", "4", "--reuseport"});
  std::vector<int> fds;
  for (int i = 0; i < 64; ++i) {
    int fd = connect_loopback(port_);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
  }
  for (int fd : fds) ASSERT_TRUE(send_all(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  for (int fd : fds) {
    EXPECT_EQ(count_of(read_until_count(fd, "Hello, World!", 1, kTimeout), "Hello, World!"), 1);
    ::close(fd);
  }
}

// SIGUSR2: a keep-alive connection between requests moves to the successor; one in the middle of
// a request finishes it in the old process, whose response says "Connection: close", and the
// old process exits 0 once that connection closed.
TEST_F(HttpServer, Sigusr2MovesIdleKeepAliveConnectionsAndLetsBusyOnesFinish) {
  if (!become_subreaper()) GTEST_SKIP() << "needs a subreaper (Linux) to see the successor exit";
  const std::string get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  const int idle = connect_loopback(port_);
  ASSERT_TRUE(send_all(idle, get));
  ASSERT_EQ(count_of(read_until_count(idle, "Hello, World!", 1, kTimeout), "Hello, World!"), 1);
  const int busy = connect_loopback(port_);
  ASSERT_TRUE(send_all(busy, get));
  ASSERT_EQ(count_of(read_until_count(busy, "Hello, World!", 1, kTimeout), "Hello, World!"), 1);
  ASSERT_TRUE(send_all(busy, "GET / HTTP/1.1\r\nHost: x\r\n"));  // a head not finished yet
  // The partial head must have been read before the signal: a request for a third connection,
  // answered, shows the server has gone through its reads (one loop).
  bool closed = false;
  exchange_until_close("GET / HTTP/1.0\r\n\r\n", closed);

  const Upgraded u = upgrade_example(*child_, kTimeout);
  ASSERT_NE(u.pid, 0) << u.line;
  EXPECT_EQ(u.moved, 1) << u.line;
  EXPECT_EQ(u.draining, 1) << u.line;
  const pid_t old = child_->pid();
  // The moved connection goes on (served by the successor), still keep-alive.
  ASSERT_TRUE(send_all(idle, get + get));
  EXPECT_EQ(count_of(read_until_count(idle, "Hello, World!", 2, kTimeout), "Hello, World!"), 2);
  // The busy one finishes its request in the old process and is closed after the response.
  ASSERT_TRUE(send_all(busy, "\r\n"));
  const std::string last = read_until_close(busy, kTimeout, closed);
  EXPECT_TRUE(closed);
  EXPECT_NE(last.find("Connection: close\r\n"), std::string::npos) << last;
  EXPECT_NE(last.find("Hello, World!"), std::string::npos) << last;
  ::close(
      busy);  // the server ended its side with a FIN (shutdown_write); the client closes its own
  EXPECT_EQ(child_->wait_process(kTimeout), 0) << "pid " << old << " exits once drained";
  ASSERT_TRUE(send_all(idle, get));
  EXPECT_EQ(count_of(read_until_count(idle, "Hello, World!", 1, kTimeout), "Hello, World!"), 1);
  ::close(idle);
  ::kill(u.pid, SIGTERM);
  EXPECT_EQ(wait_for_exit(u.pid, kTimeout), 0);
}

TEST(HttpServerFlags, ServesSystemdSockets) {
  const int listener = listen_loopback();
  ChildSetup setup;
  setup.fds = {listener};
  setup.env = {"LISTEN_FDS=1", "LISTEN_FDNAMES=http"};
  setup.listen_pid = "self";
  std::unique_ptr<Child> child;
  const std::uint16_t port = start_server(child, HTTP_SERVER_BIN, {}, "systemd://http", setup);
  EXPECT_EQ(port, bound_port(listener));
  const int fd = connect_loopback(port);
  ASSERT_TRUE(send_all(fd, "GET / HTTP/1.0\r\n\r\n"));
  bool closed = false;
  EXPECT_NE(read_until_close(fd, kTimeout, closed).find("Hello, World!"), std::string::npos);
  ::close(fd);
  ::close(listener);
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait_exit(kTimeout), 0);
}

TEST(HttpServerFlags, BadFlagsExitWithCode2AndStartFailureWith1) {
  ProgramResult r = run_program({HTTP_SERVER_BIN, "--loops", "zero"}, kTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--loops"), std::string::npos) << r.output;
  r = run_program({HTTP_SERVER_BIN, "--bogus"}, kTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_program({HTTP_SERVER_BIN, "--help"}, kTimeout);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("Usage: http-server"), std::string::npos);
  // A --listen address that does not parse, or a UDP one, is a bad flag too.
  r = run_program({HTTP_SERVER_BIN, "--listen", "bogus://x"}, kTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("bogus://x"), std::string::npos) << r.output;
  r = run_program({HTTP_SERVER_BIN, "--listen", "tcp://127.0.0.1:99999"}, kTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("port must be 0..65535"), std::string::npos) << r.output;
  r = run_program({HTTP_SERVER_BIN, "--listen", "udp://127.0.0.1:0"}, kTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("not UDP"), std::string::npos) << r.output;

  // A port really in use is a start-up failure: 1.
  std::unique_ptr<Child> first;
  const std::uint16_t port = start_server(first, HTTP_SERVER_BIN);
  ASSERT_NE(port, 0);
  r = run_program({HTTP_SERVER_BIN, "--listen", "tcp4://127.0.0.1:" + std::to_string(port)},
                  kTimeout);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("Address already in use"), std::string::npos) << r.output;
  first->signal(SIGTERM);
  EXPECT_EQ(first->wait_exit(kTimeout), 0);
}

}  // namespace
}  // namespace http_test
