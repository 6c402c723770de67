// Unit tests of the static files of --root: path splitting and decoding, what a lookup refuses
// (traversal, encoded separators and NULs, symbolic links in and out, FIFOs, directories without
// an index), Content-Type, HTTP dates, and the responses (HEAD, 304) without a server.
#include "static_files.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "http_handler.hpp"
#include "temp_tree.hpp"

namespace httpd {
namespace {

using http_test::TempTree;

std::vector<std::string> split(std::string_view target, Lookup expect = Lookup::found) {
  std::vector<std::string> segments;
  EXPECT_EQ(split_path(target, segments), expect) << target;
  return segments;
}

TEST(StaticFiles, SplitPathDecodesAndResolvesDots) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split("/"), V{});
  EXPECT_EQ(split("/a/b.txt?x=1#f"), (V{"a", "b.txt"}));
  EXPECT_EQ(split("//a///./b/"), (V{"a", "b"}));
  EXPECT_EQ(split("/a/../b"), V{"b"});
  EXPECT_EQ(split("/a/%2e%2e/b"), V{"b"});
  EXPECT_EQ(split("/sp%20ace/%41%62"), (V{"sp ace", "Ab"}));
  EXPECT_EQ(split("/a/.../b"), (V{"a", "...", "b"}));  // not a dot segment
}

TEST(StaticFiles, SplitPathRefusesWhatWouldLeaveTheRoot) {
  for (const char* target :
       {"/..", "/../x", "/a/../../x", "/%2e%2e/x", "/%2E%2E/x", "/.%2e/x", "/a/%2e%2e/%2e%2e/x",
        "/..%2fx", "/a%2f..%2f..%2fx", "/a%2Fb", "/%00", "/x.txt%00.html"}) {
    split(target, Lookup::forbidden);
  }
  for (const char* target : {"", "x", "*", "http://host/x", "/%", "/%2", "/%zz", "/%2g"}) {
    split(target, Lookup::bad_request);
  }
}

TEST(StaticFiles, ContentTypeFromTheExtension) {
  EXPECT_EQ(content_type_for("index.html"), "text/html; charset=utf-8");
  EXPECT_EQ(content_type_for("A.PNG"), "image/png");
  EXPECT_EQ(content_type_for("x.tar.gz"), "application/gzip");
  EXPECT_EQ(content_type_for("notes.txt"), "text/plain; charset=utf-8");
  EXPECT_EQ(content_type_for("data.bin"), "application/octet-stream");
  EXPECT_EQ(content_type_for("README"), "application/octet-stream");
  EXPECT_EQ(content_type_for(".html"), "text/html; charset=utf-8");
}

TEST(StaticFiles, HttpDatesRoundTrip) {
  std::string text;
  append_http_date(784111777, text);
  EXPECT_EQ(text, "Sun, 06 Nov 1994 08:49:37 GMT");
  std::time_t t = 0;
  ASSERT_TRUE(parse_http_date(text, t));
  EXPECT_EQ(t, 784111777);
  for (const char* bad : {"", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
                          "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Xyz 1994 08:49:37 GMT",
                          "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:49:37 GMT"}) {
    EXPECT_FALSE(parse_http_date(bad, t)) << bad;
  }
}

class StaticFilesLookup : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(outside_.path().empty());
    ASSERT_FALSE(tree_.path().empty());
    ASSERT_TRUE(outside_.file("secret", "secret"));
    ASSERT_TRUE(tree_.file("a.txt", "hello"));
    ASSERT_TRUE(tree_.dir("sub"));
    ASSERT_TRUE(tree_.file("sub/index.html", "<p>index</p>"));
    ASSERT_TRUE(tree_.dir("empty"));
    ASSERT_TRUE(tree_.link("out", outside_.at("secret")));
    ASSERT_TRUE(tree_.link("in", tree_.at("a.txt")));
    ASSERT_TRUE(tree_.link("outdir", outside_.path()));
    ASSERT_TRUE(tree_.link("subdir", tree_.at("sub")));
    ASSERT_TRUE(tree_.fifo("fifo"));
    std::string error;
    ASSERT_TRUE(files_.open(tree_.path(), error)) << error;
  }

  Lookup lookup(std::string_view target, std::string* type = nullptr) {
    File file;
    const Lookup result = files_.lookup(target, file);
    if (result == Lookup::found) {
      EXPECT_GE(file.fd, 0);
      if (type != nullptr) *type = file.type;
      ::close(file.fd);
    }
    return result;
  }

  TempTree outside_;
  TempTree tree_;
  StaticFiles files_;
};

TEST_F(StaticFilesLookup, FindsFilesAndDirectoryIndexes) {
  std::string type;
  EXPECT_EQ(lookup("/a.txt", &type), Lookup::found);
  EXPECT_EQ(type, "text/plain; charset=utf-8");
  EXPECT_EQ(lookup("/sub/", &type), Lookup::found);
  EXPECT_EQ(type, "text/html; charset=utf-8");
  EXPECT_EQ(lookup("/sub/."), Lookup::found);
  EXPECT_EQ(lookup("/sub/../a.txt"), Lookup::found);
  EXPECT_EQ(lookup("/nope"), Lookup::not_found);
  EXPECT_EQ(lookup("/a.txt/x"), Lookup::not_found);  // a file where a directory should be
  EXPECT_EQ(lookup("/nope/x"), Lookup::not_found);
}

TEST_F(StaticFilesLookup, ADirectoryWithoutItsSlashMovesAndAFileWithOneIsNotFound) {
  EXPECT_EQ(lookup("/sub"), Lookup::moved);
  EXPECT_EQ(lookup("/sub?x=1"), Lookup::moved);
  EXPECT_EQ(lookup("/a.txt/"), Lookup::not_found);
  EXPECT_EQ(lookup("/a.txt/."), Lookup::not_found);
  EXPECT_EQ(lookup("/a.txt/?x"), Lookup::not_found);

  Request req;
  req.method = Method::get;
  req.target = "/sub?x=1&y";
  std::string out;
  EXPECT_EQ(files_.respond(req, out).fd, -1);
  EXPECT_EQ(out.rfind("HTTP/1.1 301 Moved Permanently\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("\r\nLocation: /sub/?x=1&y\r\n"), std::string::npos) << out;
  // Leading slashes made one: "//host/" would send the client to another host.
  req.target = "//sub";
  out.clear();
  EXPECT_EQ(files_.respond(req, out).fd, -1);
  EXPECT_NE(out.find("\r\nLocation: /sub/\r\n"), std::string::npos) << out;
}

TEST_F(StaticFilesLookup, AbsoluteFormTargetsAreServedByTheirPath) {
  std::string type;
  EXPECT_EQ(lookup("http://example.com/a.txt", &type), Lookup::found);
  EXPECT_EQ(type, "text/plain; charset=utf-8");
  EXPECT_EQ(lookup("HTTP://example.com:8080/sub/?q"), Lookup::found);
  EXPECT_EQ(lookup("https://[::1]:8443/a.txt"), Lookup::found);
  EXPECT_EQ(lookup("http://example.com/sub"), Lookup::moved);
  EXPECT_EQ(lookup("http://example.com/nope"), Lookup::not_found);
  EXPECT_EQ(lookup("http://example.com/../secret"), Lookup::forbidden);
  for (const char* target : {"ftp://example.com/a.txt", "http://", "http:///a.txt", "*",
                             "example.com:80", "http:/a.txt"}) {
    EXPECT_EQ(lookup(target), Lookup::bad_request) << target;
  }

  std::string storage;
  EXPECT_EQ(origin_form("/a?b", storage), "/a?b");
  EXPECT_EQ(origin_form("http://h/a?b", storage), "/a?b");
  EXPECT_EQ(origin_form("http://h", storage), "/");
  EXPECT_EQ(origin_form("http://h?b", storage), "/?b");
  EXPECT_EQ(origin_form("mailto:x", storage), "");
}

TEST_F(StaticFilesLookup, RefusesLinksFifosAndDirectoriesWithoutAnIndex) {
  for (const char* target : {"/out", "/in", "/outdir/secret", "/subdir/index.html", "/subdir/",
                             "/fifo", "/empty/", "/", "/../secret", "/%2e%2e/secret"}) {
    EXPECT_EQ(lookup(target), Lookup::forbidden) << target;
  }
}

TEST_F(StaticFilesLookup, RespondsWithHeadOnlyForHeadAnd304WhenNotModified) {
  Request req;
  req.method = Method::head;
  req.target = "/a.txt";
  std::string out;
  File file = files_.respond(req, out);
  EXPECT_EQ(file.fd, -1);  // HEAD: no body to send
  EXPECT_NE(out.find("HTTP/1.1 200 OK\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Content-Length: 5\r\n"), std::string::npos) << out;
  const std::size_t lm = out.find("Last-Modified: ");
  ASSERT_NE(lm, std::string::npos) << out;
  const std::string modified = out.substr(lm + 15, 29);

  req.method = Method::get;
  out.clear();
  file = files_.respond(req, out);
  ASSERT_GE(file.fd, 0);
  EXPECT_EQ(file.size, 5u);
  ::close(file.fd);

  req.headers = {{"If-Modified-Since", modified}};
  out.clear();
  file = files_.respond(req, out);
  EXPECT_EQ(file.fd, -1);
  EXPECT_EQ(out.rfind("HTTP/1.1 304 Not Modified\r\n", 0), 0u) << out;
  EXPECT_EQ(out.find("Content-Length"), std::string::npos) << out;

  req.headers = {{"If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"}};
  out.clear();
  file = files_.respond(req, out);
  EXPECT_GE(file.fd, 0);  // modified since then
  ::close(file.fd);
}

}  // namespace
}  // namespace httpd
