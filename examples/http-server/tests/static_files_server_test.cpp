// Integration tests of http-server --root: files of 0 B to 64 MiB fetched with curl byte-exact,
// HEAD, If-Modified-Since (304), 404, 403 for every way out of the root, pipelined requests for
// several files on one connection (bodies sent with send_file, in order with the heads), many
// pipelined large files paced by back-pressure, HTTP/1.0 (close after the body).
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "http_server_fixture.hpp"
#include "process_memory.hpp"
#include "temp_tree.hpp"

namespace http_test {
namespace {

struct Sized {
  const char* name;
  std::size_t size;
};
constexpr Sized kFiles[] = {{"empty.txt", 0},
                            {"one.bin", 1},
                            {"four-k.html", 4096},
                            {"one-m.bin", 1 << 20},
                            {"sixty-four-m.bin", 64 << 20}};

// One response read off a keep-alive connection.
struct Response {
  std::string head;  // status line and headers, through the empty line
  std::string body;
  bool ok = false;  // a whole response arrived
};

// Reads one response; `head_only` for the answer to HEAD (no body follows). `pending` holds
// what was read past the previous response (pipelined responses arrive together).
Response read_response(int fd, std::string& pending, bool head_only = false) {
  Response r;
  if (pending.find("\r\n\r\n") == std::string::npos) {
    pending += read_until_count(fd, "\r\n\r\n", 1, kTimeout);
  }
  const std::size_t end = pending.find("\r\n\r\n");
  if (end == std::string::npos) return r;
  r.head = pending.substr(0, end + 4);
  pending.erase(0, end + 4);
  std::size_t length = 0;
  if (const std::size_t at = r.head.find("Content-Length: "); at != std::string::npos) {
    length = std::stoull(r.head.substr(at + 16));
  }
  if (head_only || r.head.rfind("HTTP/1.1 304", 0) == 0) length = 0;
  if (pending.size() < length) pending += read_exactly(fd, length - pending.size(), kTimeout);
  r.ok = pending.size() >= length;
  r.body = pending.substr(0, length);
  pending.erase(0, length);
  return r;
}

std::string read_file(const std::string& path) {
  std::string bytes;
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[65536];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) bytes.append(buf, n);
    std::fclose(f);
  }
  return bytes;
}

int open_fds(pid_t pid) {
  int n = 0;
  if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}

class HttpFiles : public HttpServer {
 protected:
  static void SetUpTestSuite() {
    outside_ = new TempTree;
    root_ = new TempTree;
    unsigned seed = 1;
    for (const Sized& f : kFiles) root_->file(f.name, pattern_bytes(f.size, seed++));
    root_->dir("sub");
    root_->file("sub/index.html", "<p>index</p>\n");
    root_->file("sub/data.json", "{}\n");
    outside_->file("secret", "secret\n");
    root_->link("out", outside_->at("secret"));
    root_->link("in", root_->at("one.bin"));
    root_->link("outdir", outside_->path());
    root_->fifo("fifo");
  }
  static void TearDownTestSuite() {
    delete root_;
    delete outside_;
  }

  void SetUp() override { start({"--root", root_->path()}); }

  // curl with `args`; its stdout and stderr.
  ProgramResult curl(std::vector<std::string> args) {
    std::vector<std::string> argv{"curl", "-sS"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_program(argv, milliseconds(60'000));
  }

  // A keep-alive exchange of one request on `fd`.
  Response get(int fd, const std::string& target, const std::string& method = "GET") {
    EXPECT_TRUE(send_all(fd, method + " " + target + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::string pending;
    Response r = read_response(fd, pending, method == "HEAD");
    EXPECT_EQ(pending, "") << "bytes after the response to " << method << " " << target;
    return r;
  }

  static TempTree* outside_;
  static TempTree* root_;
};

TempTree* HttpFiles::outside_ = nullptr;
TempTree* HttpFiles::root_ = nullptr;

TEST_F(HttpFiles, CurlGetsEveryFileByteExactWithItsHeaders) {
  if (!have_program("curl")) GTEST_SKIP() << "curl is not installed";
  TempTree got;
  for (const Sized& f : kFiles) {
    const std::string out = got.at(f.name);
    const ProgramResult r =
        curl({"-o", out, "-D", out + ".head", "-w", "%{http_code}", url() + "/" + f.name});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output, "200") << f.name;
    const std::string head = read_file(out + ".head");
    EXPECT_NE(head.find("Content-Length: " + std::to_string(f.size) + "\r\n"), std::string::npos)
        << head;
    EXPECT_NE(head.find("Last-Modified: "), std::string::npos) << head;
    EXPECT_NE(head.find(std::string(f.size == 4096 ? "Content-Type: text/html; charset=utf-8"
                                    : f.size == 0  ? "Content-Type: text/plain; charset=utf-8"
                                                   : "Content-Type: application/octet-stream")),
              std::string::npos)
        << head;
    // Byte-exact (compared whole; a sha256 would say the same less directly).
    EXPECT_TRUE(read_file(out) == read_file(root_->at(f.name))) << f.name;
  }
  const ProgramResult r = curl({"-D", "-", url() + "/sub/"});
  EXPECT_NE(r.output.find("Content-Type: text/html; charset=utf-8"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("<p>index</p>"), std::string::npos) << r.output;
}

TEST_F(HttpFiles, Http10GetsTheLargestFileWholeThenAClose) {
  if (!have_program("curl")) GTEST_SKIP() << "curl is not installed";
  TempTree got;
  const ProgramResult r =
      curl({"--http1.0", "-o", got.at("f"), "-w", "%{http_code}", url() + "/sixty-four-m.bin"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "200");
  EXPECT_TRUE(read_file(got.at("f")) == read_file(root_->at("sixty-four-m.bin")));
}

TEST_F(HttpFiles, HeadSendsTheHeadOnlyAndTheConnectionGoesOn) {
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  const Response head = get(fd, "/sixty-four-m.bin", "HEAD");
  ASSERT_TRUE(head.ok);
  EXPECT_EQ(head.head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head.head;
  EXPECT_NE(head.head.find("Content-Length: 67108864\r\n"), std::string::npos) << head.head;
  EXPECT_EQ(head.body, "");
  const Response next = get(fd, "/one.bin");  // no stray body bytes before this answer
  ASSERT_TRUE(next.ok) << next.head;
  EXPECT_EQ(next.head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << next.head;
  EXPECT_EQ(next.body, read_file(root_->at("one.bin")));
  ::close(fd);
}

TEST_F(HttpFiles, IfModifiedSinceTheLastModificationGets304) {
  if (!have_program("curl")) GTEST_SKIP() << "curl is not installed";
  const ProgramResult first = curl({"-D", "-", "-o", "/dev/null", url() + "/four-k.html"});
  const std::size_t at = first.output.find("Last-Modified: ");
  ASSERT_NE(at, std::string::npos) << first.output;
  const std::string modified = first.output.substr(at + 15, 29);
  ProgramResult r = curl({"-o", "/dev/null", "-w", "%{http_code} %{size_download}", "-H",
                          "If-Modified-Since: " + modified, url() + "/four-k.html"});
  EXPECT_EQ(r.output, "304 0");
  r = curl({"-o", "/dev/null", "-w", "%{http_code} %{size_download}", "-H",
            "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT", url() + "/four-k.html"});
  EXPECT_EQ(r.output, "200 4096");
  r = curl({"-o", "/dev/null", "-w", "%{http_code}", "-H", "If-Modified-Since: yesterday",
            url() + "/four-k.html"});
  EXPECT_EQ(r.output, "200");  // an invalid date is ignored
}

TEST_F(HttpFiles, MissingFilesGet404) {
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  for (const char* target : {"/nope", "/sub/nope", "/nope/x", "/one.bin/x"}) {
    const Response r = get(fd, target);
    ASSERT_TRUE(r.ok) << target;
    EXPECT_EQ(r.head.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << target << "\n" << r.head;
  }
  ::close(fd);
}

TEST_F(HttpFiles, ADirectoryWithoutItsSlashGets301ToThePathWithIt) {
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  const struct {
    const char* target;
    const char* location;
  } cases[] = {{"/sub", "/sub/"},
               {"/sub?a=1&b=%20", "/sub/?a=1&b=%20"},
               {"/%73ub", "/%73ub/"},
               {"http://example.com/sub?q", "/sub/?q"}};
  for (const auto& c : cases) {
    const Response r = get(fd, c.target);
    ASSERT_TRUE(r.ok) << c.target;
    EXPECT_EQ(r.head.rfind("HTTP/1.1 301 Moved Permanently\r\n", 0), 0u) << c.target << "\n"
                                                                         << r.head;
    EXPECT_NE(r.head.find("\r\nLocation: " + std::string(c.location) + "\r\n"), std::string::npos)
        << c.target << "\n"
        << r.head;
    EXPECT_EQ(r.body, "moved permanently\n") << c.target;
  }
  // Following it serves the index; HEAD gets the 301 without a body.
  const Response index = get(fd, "/sub/");
  EXPECT_EQ(index.head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << index.head;
  EXPECT_EQ(index.body, "<p>index</p>\n");
  const Response head = get(fd, "/sub", "HEAD");
  EXPECT_EQ(head.head.rfind("HTTP/1.1 301 Moved Permanently\r\n", 0), 0u) << head.head;
  EXPECT_NE(head.head.find("\r\nLocation: /sub/\r\n"), std::string::npos) << head.head;
  ::close(fd);
}

TEST_F(HttpFiles, AFileWithATrailingSlashGets404) {
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  for (const char* target : {"/four-k.html/", "/sub/index.html/", "/one.bin/?x", "/one.bin/."}) {
    const Response r = get(fd, target);
    ASSERT_TRUE(r.ok) << target;
    EXPECT_EQ(r.head.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << target << "\n" << r.head;
    EXPECT_EQ(r.body, "not found\n") << target;
  }
  ::close(fd);
}

TEST_F(HttpFiles, AbsoluteFormTargetsAreServedByTheirPath) {
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  for (const char* target : {"http://localhost/four-k.html", "HTTP://127.0.0.1:1/four-k.html?x",
                             "https://x/sub/../four-k.html"}) {
    const Response r = get(fd, target);
    ASSERT_TRUE(r.ok) << target;
    EXPECT_EQ(r.head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << target << "\n" << r.head;
    EXPECT_TRUE(r.body == read_file(root_->at("four-k.html"))) << target;
  }
  const Response index = get(fd, "http://localhost/sub/");
  EXPECT_EQ(index.head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << index.head;
  EXPECT_EQ(index.body, "<p>index</p>\n");
  const Response missing = get(fd, "http://localhost/nope");
  EXPECT_EQ(missing.head.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << missing.head;
  const Response other = get(fd, "ftp://localhost/four-k.html");
  EXPECT_EQ(other.head.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << other.head;
  ::close(fd);
}

TEST_F(HttpFiles, EveryWayOutOfTheRootGets403) {
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  for (const char* target :
       {"/../secret", "/sub/../../secret", "/%2e%2e/secret", "/%2E%2E/secret", "/.%2e/secret",
        "/sub/%2e%2e/%2e%2e/secret", "/..%2fsecret", "/sub%2f..%2f..%2fsecret", "/%00",
        "/one.bin%00.html", "/out", "/in", "/outdir/secret", "/fifo",
        "/..%2f..%2f..%2f..%2fetc%2fpasswd", "/../../../../etc/passwd"}) {
    const Response r = get(fd, target);
    ASSERT_TRUE(r.ok) << target;
    EXPECT_EQ(r.head.rfind("HTTP/1.1 403 Forbidden\r\n", 0), 0u) << target << "\n" << r.head;
    EXPECT_EQ(r.body.find("secret"), std::string::npos);
  }
  // Dots that stay inside are fine.
  const Response inside = get(fd, "/sub/../one.bin");
  EXPECT_EQ(inside.head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << inside.head;
  ::close(fd);
}

TEST_F(HttpFiles, PipelinedRequestsForSeveralFilesAreAnsweredInOrder) {
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  struct Ask {
    std::string method, target;
  };
  const std::vector<Ask> asks = {{"GET", "/four-k.html"},   {"HEAD", "/one-m.bin"},
                                 {"GET", "/one-m.bin"},     {"GET", "/nope"},
                                 {"GET", "/one.bin"},       {"GET", "/empty.txt"},
                                 {"GET", "/sub/data.json"}, {"GET", "/four-k.html"}};
  std::string batch;
  for (const Ask& a : asks) batch += a.method + " " + a.target + " HTTP/1.1\r\nHost: x\r\n\r\n";
  batch += "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";  // the root: no index
  ASSERT_TRUE(send_all(fd, batch));
  std::string pending;
  for (const Ask& a : asks) {
    const Response r = read_response(fd, pending, a.method == "HEAD");
    ASSERT_TRUE(r.ok) << a.target;
    if (a.target == "/nope") {
      EXPECT_EQ(r.head.rfind("HTTP/1.1 404", 0), 0u) << r.head;
    } else {
      EXPECT_EQ(r.head.rfind("HTTP/1.1 200", 0), 0u) << r.head;
      EXPECT_TRUE(r.body == (a.method == "HEAD" ? "" : read_file(root_->at(a.target.substr(1)))))
          << a.method << " " << a.target;
    }
  }
  const Response last = read_response(fd, pending);
  EXPECT_EQ(last.head.rfind("HTTP/1.1 403", 0), 0u) << last.head;
  EXPECT_NE(last.head.find("Connection: close\r\n"), std::string::npos) << last.head;
  bool closed = false;
  EXPECT_EQ(pending + read_until_close(fd, kTimeout, closed), "");
  EXPECT_TRUE(closed);
  ::close(fd);
}

// A "Connection: close" request that waited behind paced responses: once answered, the server
// shuts its side and must read on to see the client's FIN. It used to leave reading paused, so
// the connection (an fd) stayed until the keep-alive timeout (75 s; with 0, for ever).
TEST_F(HttpFiles, AConnectionCloseThatWaitedBehindLargeResponsesEndsWhenTheClientCloses) {
  const int fds_before = open_fds(child_->pid());
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  std::string batch;
  for (int i = 0; i < 4; ++i) batch += "GET /one-m.bin HTTP/1.1\r\nHost: x\r\n\r\n";
  batch += "GET /one.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_TRUE(send_all(fd, batch));
  std::string pending;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(read_response(fd, pending).ok) << "response " << i;
  bool closed = false;
  EXPECT_EQ(pending + read_until_close(fd, kTimeout, closed), "");
  ASSERT_TRUE(closed) << "no FIN after the last response";
  ::close(fd);
  const auto deadline = std::chrono::steady_clock::now() + kTimeout;
  while (open_fds(child_->pid()) != fds_before && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));  // polls a count: there is no event to wait on
  }
  EXPECT_EQ(open_fds(child_->pid()), fds_before) << "the server still holds the connection";
}

// 200 pipelined GETs of a 1 MiB file (50 under a sanitizer), not read at first: the server answers
// only until the output passes the high-water mark (a file range counts, without memory), so it
// holds a couple of file descriptors, not 200; then every body arrives in order.
TEST_F(HttpFiles, ManyPipelinedLargeFilesArePacedAndAllArrive) {
  const int kRequests = kSanitized ? 50 : 200;
  const int fds_before = open_fds(child_->pid());
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  std::string batch;
  for (int i = 0; i < kRequests; ++i) batch += "GET /one-m.bin HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(send_all(fd, batch));
  const std::string want = read_file(root_->at("one-m.bin"));
  std::string pending;
  Response r = read_response(fd, pending);
  const int fds_held = open_fds(child_->pid());
  ASSERT_TRUE(r.ok && r.body == want);
  int whole = 1;
  for (int i = 1; i < kRequests; ++i, ++whole) {
    r = read_response(fd, pending);
    if (!r.ok || r.body != want) break;
  }
  ::close(fd);
  std::printf("%d pipelined GETs of 1 MiB: %d whole; server fds %d before, %d after the first\n",
              kRequests, whole, fds_before, fds_held);
  EXPECT_EQ(whole, kRequests);
  EXPECT_LE(fds_held, fds_before + 1 + 4);  // the connection and a few file ranges
}

// Clients that go away in the middle of file bodies, with a reset or a FIN and unread data: the
// server must not die of SIGPIPE (sendfile() has no MSG_NOSIGNAL; before the fix the second of
// these connections killed it) and goes on serving.
TEST_F(HttpFiles, ClientsThatLeaveDuringAFileBodyDoNotStopTheServer) {
  std::string four_gets;
  for (int k = 0; k < 4; ++k) four_gets += "GET /one-m.bin HTTP/1.1\r\nHost: x\r\n\r\n";
  for (int i = 0; i < 100; ++i) {
    const int fd = connect_loopback(port_);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, four_gets));
    read_exactly(fd, 1000, kTimeout);
    if (i % 2 == 1) {
      const linger reset{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    }
    ::close(fd);
  }
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  const Response r = get(fd, "/one.bin");
  EXPECT_TRUE(r.ok && r.body == read_file(root_->at("one.bin")));
  ::close(fd);
}

TEST(HttpServerFilesFlags, RootIsDocumentedAndMustBeADirectory) {
  ProgramResult r = run_program({HTTP_SERVER_BIN, "--help"}, kTimeout);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("--root DIR"), std::string::npos) << r.output;
  r = run_program({HTTP_SERVER_BIN, "--root", "/nonexistent-evloop-dir"}, kTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("/nonexistent-evloop-dir"), std::string::npos) << r.output;
  r = run_program({HTTP_SERVER_BIN, "--root", "/etc/hostname"}, kTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
}  // namespace http_test
