// The write path without copies: a large write goes to the kernel from the caller's memory and
// only what the kernel refuses is copied; small writes from one handler still leave in one send;
// a shared buffer is queued by reference (a broadcast copies nothing); a file range is sent with
// sendfile, in order with the bytes around it, without holding its bytes in memory.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "test_support.hpp"

namespace evloop::test {
namespace {

// A temporary file with `bytes` in it, removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& bytes) {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir != nullptr ? dir : "/tmp") + "/evloop-file-XXXXXX";
    fd_ = ::mkstemp(path_.data());
    std::size_t done = 0;
    while (fd_ >= 0 && done < bytes.size()) {
      const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }

 private:
  std::string path_;
  int fd_ = -1;
};

LoopStats stats_of(Server& server) {
  EXPECT_TRUE(settle(server));
  return total_stats(server);
}

// A client that reads everything: a large write is taken whole by the kernel and copied nowhere.
TEST(WritePathTest, ALargeWriteTheKernelTakesWholeIsNeverCopied) {
  const std::string reply = pattern(256 * 1024, 40);
  EventCounter written;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write(reply);
    written.add();
    return bytes.size();
  };
  Options o = loopback_options();
  o.socket_send_buffer = 4 << 20;  // room for the whole reply
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4 << 20);
  ASSERT_TRUE(client.send_all("go"));
  EXPECT_TRUE(client.read_exactly(reply.size()) == reply);
  const LoopStats st = stats_of(s.server);
  EXPECT_EQ(st.bytes_copied, 0u);
  EXPECT_EQ(st.writes, 1u) << "one send, straight from the handler's memory";
}

// A client that reads nothing yet: the kernel takes what fits in the socket buffers, only the
// rest is copied, and everything arrives in order once the client reads.
TEST(WritePathTest, OnlyWhatTheKernelRefusesIsCopied) {
  const std::string reply = pattern(4u << 20, 41);
  std::atomic<std::size_t> refused{0};
  EventCounter written;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write(reply);
    refused = c.output_pending();  // what the kernel did not take at once
    written.add();
    return bytes.size();
  };
  Options o = loopback_options();
  o.output_high_water = o.output_limit;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  ASSERT_TRUE(client.send_all("go"));
  ASSERT_TRUE(written.wait_for(1));
  EXPECT_GT(refused.load(), 0u);
  EXPECT_LT(refused.load(), reply.size()) << "the kernel took nothing at once";
  EXPECT_TRUE(client.read_exactly(reply.size()) == reply);
  EXPECT_EQ(stats_of(s.server).bytes_copied, refused.load()) << "copied more than was refused";
}

// Several small writes from one handler leave together, in one send.
TEST(WritePathTest, SmallWritesFromOneHandlerLeaveInOneSend) {
  Callbacks cb;
  cb.data = [](Conn& c, std::string_view bytes) {
    c.write("HTTP/1.1 200 OK\r\n");
    c.write("Content-Length: 5\r\n\r\n");
    c.write("hello");
    return bytes.size();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("GET"));
  EXPECT_EQ(client.read_exactly(43), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(stats_of(s.server).writes, 1u);
}

// write_through = 1 (a proxy's setting): each small write goes to the kernel at once, so an echo
// of 64-byte messages copies nothing, one send per write.
TEST(WritePathTest, WriteThroughOfOneByteSendsEverySmallWriteUncopied) {
  Callbacks cb;
  cb.data = [](Conn& c, std::string_view bytes) {
    c.write(bytes);
    return bytes.size();
  };
  Options o = loopback_options();
  o.write_through = 1;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  for (int i = 0; i < 20; ++i) {
    const std::string msg = pattern(64, i);
    ASSERT_TRUE(client.send_all(msg));
    ASSERT_EQ(client.read_exactly(msg.size()), msg) << "message " << i;
  }
  const LoopStats st = stats_of(s.server);
  EXPECT_EQ(st.bytes_copied, 0u);
  EXPECT_EQ(st.writes, 20u);
  // io_uring counts the last send's bytes when its completion is handled, maybe after the read.
  EXPECT_TRUE(eventually([&] { return stats_of(s.server).bytes_out == 20u * 64; }))
      << stats_of(s.server).bytes_out;
}

// A small header then a large body: one sendmsg carries both; only the header was copied.
TEST(WritePathTest, AHeaderAndALargeBodyLeaveInOneSendmsg) {
  const std::string header(200, 'h');
  const std::string body = pattern(64 * 1024, 42);
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write(header);
    c.write(body);
    return bytes.size();
  };
  Options o = loopback_options();
  o.socket_send_buffer = 4 << 20;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4 << 20);
  ASSERT_TRUE(client.send_all("go"));
  EXPECT_TRUE(client.read_exactly(header.size() + body.size()) == header + body);
  const LoopStats st = stats_of(s.server);
  EXPECT_EQ(st.writes, 1u);
  EXPECT_EQ(st.bytes_copied, header.size());
}

// One SharedBuffer written to many connections, from another thread and from the loop thread:
// every client gets the bytes, and nothing is copied.
TEST(WritePathTest, ABroadcastOfASharedBufferCopiesNothing) {
  constexpr int kClients = kSanitized ? 100 : 500;
  const SharedBuffer greeting(pattern(1024, 43));
  const SharedBuffer news(pattern(1024, 44));
  std::mutex mutex;
  std::vector<ConnRef> refs;  // guarded by mutex
  EventCounter opened;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    c.write(greeting);  // on the loop thread
    std::lock_guard lock(mutex);
    refs.push_back(c.ref());
    opened.add();
  };
  Options o = loopback_options(2);
  o.reuseport = true;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  std::vector<Client> clients;
  for (int i = 0; i < kClients; ++i) clients.emplace_back(s.address());
  ASSERT_TRUE(opened.wait_for(kClients));
  {
    std::lock_guard lock(mutex);
    for (const ConnRef& ref : refs) ASSERT_TRUE(ref.write(news));  // from this thread
  }
  const std::string expected = std::string(greeting.view()) + std::string(news.view());
  for (auto& c : clients) ASSERT_TRUE(c.read_exactly(expected.size()) == expected);
  // io_uring counts a send's bytes when its completion is handled, which may come after the
  // client has read them: the count settles a moment later.
  const std::uint64_t total = static_cast<std::uint64_t>(kClients) * expected.size();
  EXPECT_TRUE(eventually([&] { return stats_of(s.server).bytes_out == total; }))
      << stats_of(s.server).bytes_out << " bytes out, " << total << " expected";
  EXPECT_EQ(stats_of(s.server).bytes_copied, 0u);
}

// A file range between two writes: the client gets HEAD, the range, TAIL, in order. The caller
// closes its fd at once (evloop keeps its own).
TEST(WritePathTest, SendFileSendsARangeInOrderWithTheBytesAround) {
  const std::string content = pattern(8u << 20, 45);
  TempFile file(content);
  ASSERT_GE(file.fd(), 0);
  constexpr std::size_t kOffset = 1000, kLength = 5u << 20;
  EventCounter all_sent;
  std::atomic<std::size_t> pending_after{0};
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write("HEAD");
    const int mine = ::dup(file.fd());
    c.send_file(mine, kOffset, kLength);
    ::close(mine);
    c.write("TAIL");
    pending_after = c.output_pending();
    return bytes.size();
  };
  cb.all_sent = [&](Conn&) { all_sent.add(); };
  Options o = loopback_options();
  o.output_limit = 1u << 20;  // a file range is not held in memory: it does not count here
  o.output_high_water = o.output_low_water = 512 * 1024;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("go"));
  const std::string got = client.read_exactly(4 + kLength + 4);
  ASSERT_EQ(got.size(), 4 + kLength + 4);
  EXPECT_EQ(got.substr(0, 4), "HEAD");
  EXPECT_TRUE(got.substr(4, kLength) == content.substr(kOffset, kLength));
  EXPECT_EQ(got.substr(4 + kLength), "TAIL");
  EXPECT_EQ(pending_after.load(), 4 + kLength + 4) << "the range counts as pending output";
  ASSERT_TRUE(all_sent.wait_for(1));
  const LoopStats st = stats_of(s.server);
  EXPECT_EQ(st.bytes_copied, 8u) << "only HEAD and TAIL were copied";
  EXPECT_EQ(st.output_buffered, 0u);
}

// A 64 MiB range goes out at most a slice (1 MiB) per loop iteration, even to a reader fast
// enough that sendfile() never has to wait: other connections on the loop get their turns.
TEST(WritePathTest, ALargeFileGoesOutASlicePerIteration) {
  const std::string content = pattern(64u << 20, 46);
  TempFile file(content);
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.send_file(file.fd(), 0, content.size());
    return bytes.size();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 8 << 20);
  const LoopStats before = stats_of(s.server);
  ASSERT_TRUE(client.send_all("go"));
  const std::string got = client.read_exactly(content.size());
  EXPECT_TRUE(got == content);
  const LoopStats after = stats_of(s.server);
  EXPECT_GE(after.waits - before.waits, content.size() / (1u << 20));
}

// The file shrinks under a pending range: the connection is reset with errc::file_truncated;
// the client got a prefix of the file, then a reset.
TEST(WritePathTest, AFileThatShrinksResetsTheConnection) {
  const std::string content = pattern(8u << 20, 47);
  TempFile file(content);
  EventCounter queued;
  ErrorLog closed;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.send_file(file.fd(), 0, content.size());
    queued.add();
    return bytes.size();
  };
  cb.closed = closed.recorder();
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  ASSERT_TRUE(client.send_all("go"));
  ASSERT_TRUE(queued.wait_for(1));
  ASSERT_EQ(::ftruncate(file.fd(), 1u << 20), 0);
  bool eof = true;
  errno = 0;
  const std::string got = client.read_to_eof(&eof);
  EXPECT_FALSE(eof);
  EXPECT_EQ(errno, ECONNRESET);
  // What left before the truncation may run past the new end (sent, or read ahead on io_uring):
  // a prefix of the file, never all of it, then the reset.
  EXPECT_LT(got.size(), content.size());
  EXPECT_TRUE(got == content.substr(0, got.size()));
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_EQ(closed.first(), errc::file_truncated) << closed.first().message();
}

// A file sendfile() refuses (a /proc file) is sent through pread() and send().
TEST(WritePathTest, AFileSendfileRefusesIsReadAndSent) {
  const int fd = ::open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
  if (fd < 0) GTEST_SKIP() << "no /proc/self/environ";
  std::string environ_bytes;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) {
    environ_bytes.append(buf, static_cast<std::size_t>(n));
  }
  if (environ_bytes.empty()) GTEST_SKIP() << "an empty environment";
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.send_file(fd, 0, environ_bytes.size());
    c.close();
    return bytes.size();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("go"));
  bool eof = false;
  EXPECT_EQ(client.read_to_eof(&eof), environ_bytes);
  EXPECT_TRUE(eof);
  ::close(fd);
}

// A peer that resets while a file range is being sent: sendfile() has no MSG_NOSIGNAL, and Linux
// raises SIGPIPE in the sending thread; the loops block it, so the process lives (the test has
// no handler: a SIGPIPE would kill it) and the connection ends with the error.
TEST(WritePathTest, APeerThatResetsDuringAFileRaisesNoSigpipe) {
  const std::string content = pattern(32u << 20, 49);
  TempFile file(content);
  EventCounter started;
  ErrorLog closed;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.send_file(file.fd(), 0, content.size());
    started.add();
    return bytes.size();
  };
  cb.closed = closed.recorder();
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  for (int i = 0; i < 5; ++i) {  // a few times: the reset must land while sendfile runs
    Client client(s.address(), 4096);
    ASSERT_TRUE(client.send_all("go"));
    ASSERT_TRUE(started.wait_for(i + 1));
    EXPECT_EQ(client.read_exactly(4096).size(), 4096u);
    client.reset();
    ASSERT_TRUE(closed.wait_for(i + 1));
    const std::error_code error = closed.last();
    EXPECT_TRUE(error == std::errc::broken_pipe || error == std::errc::connection_reset)
        << error.message();
  }
}

// send_file(TakeFd): evloop keeps the caller's fd itself and closes it once the range is sent.
TEST(WritePathTest, SendFileTakingTheFdClosesItWhenSent) {
  const std::string content = pattern(1u << 20, 50);
  TempFile file(content);
  std::atomic<int> given{-1};
  EventCounter all_sent;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    given = ::dup(file.fd());
    c.send_file(TakeFd{given}, 0, content.size());
    return bytes.size();
  };
  cb.all_sent = [&](Conn&) { all_sent.add(); };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("go"));
  EXPECT_TRUE(client.read_exactly(content.size()) == content);
  ASSERT_TRUE(all_sent.wait_for(1));
  ASSERT_TRUE(settle(s.server));
  EXPECT_EQ(::fcntl(given.load(), F_GETFD), -1) << "the taken fd was not closed";
}

// ConnRef::send_file(TakeFd) posts a file range from another thread (a file opened off the loop):
// it arrives in order with the writes posted around it, and the fd is closed on every path: sent,
// posted to a connection that has closed meanwhile, to a stopped server's loop, to an empty ref.
// (Before, a task of the user's own capturing the fd was the only way, and it leaked the fd on
// the last three.)
TEST(WritePathTest, SendFilePostedFromAnotherThreadClosesTheFdOnEveryPath) {
  const std::string content = pattern(1u << 20, 51);
  TempFile file(content);
  const auto closed_fd = [](int fd) { return ::fcntl(fd, F_GETFD) == -1 && errno == EBADF; };
  std::mutex mutex;
  ConnRef ref;
  EventCounter opened;
  ErrorLog closed;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    std::lock_guard lock(mutex);
    ref = c.ref();
    opened.add();
  };
  cb.closed = closed.recorder();
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(opened.wait_for(1));
  const ConnRef conn = [&] {
    std::lock_guard lock(mutex);
    return ref;
  }();
  const int sent = ::dup(file.fd());
  ASSERT_TRUE(conn.write("head:"));
  ASSERT_TRUE(conn.send_file(TakeFd{sent}, 0, content.size()));
  ASSERT_TRUE(conn.write(":tail"));
  ASSERT_TRUE(conn.close());
  expect_stream_then_fin(client, "head:" + content + ":tail");
  ASSERT_TRUE(closed.wait_for(1));
  ASSERT_TRUE(settle(s.server));
  EXPECT_TRUE(closed_fd(sent)) << "sent";

  const int after_close = ::dup(file.fd());
  EXPECT_TRUE(conn.send_file(TakeFd{after_close}, 0, content.size()));  // the loop runs it
  ASSERT_TRUE(settle(s.server));
  EXPECT_TRUE(closed_fd(after_close)) << "posted to a connection that has closed";

  const int to_nothing = ::dup(file.fd());
  EXPECT_FALSE(ConnRef().send_file(TakeFd{to_nothing}, 0, content.size()));
  EXPECT_TRUE(closed_fd(to_nothing)) << "an empty ref";

  s.server.stop();
  ASSERT_TRUE(s.server.wait());
  const int after_stop = ::dup(file.fd());
  EXPECT_FALSE(conn.send_file(TakeFd{after_stop}, 0, content.size()));
  EXPECT_TRUE(closed_fd(after_stop)) << "a stopped loop";
}

// A pending file range cannot travel with a detached connection: detach() refuses.
TEST(WritePathTest, DetachIsRefusedWhileAFileIsPending) {
  const std::string content = pattern(16u << 20, 48);
  TempFile file(content);
  std::atomic<int> detach_result{-1};
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.send_file(file.fd(), 0, content.size());
    detach_result = c.detach([](DetachedConn) {}) ? 1 : 0;
    return bytes.size();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address(), 4096);
  ASSERT_TRUE(client.send_all("go"));
  EXPECT_TRUE(client.read_exactly(content.size()) == content);
  EXPECT_EQ(detach_result.load(), 0);
}

// After a detach() that said yes, writes still go with the connection: a send_file() range is
// read into the output handed over (before the fix it was dropped: the receiver got the bytes
// around it, a stream spliced without an error).
TEST(WritePathTest, SendFileAfterADetachGoesWithTheConnection) {
  const std::string content = pattern(64 * 1024, 7);
  TempFile file(content);
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write("head:");
    EXPECT_TRUE(c.detach([](DetachedConn d) {
      // The receiver sends what it was handed, then ends the stream.
      EXPECT_EQ(::send(d.fd(), d.output.data(), d.output.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(d.output.size()));
      ::shutdown(d.fd(), SHUT_WR);
    }));
    c.send_file(file.fd(), 0, content.size());
    c.write(":tail");
    return bytes.size();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("go"));
  expect_stream_then_fin(client, "head:" + content + ":tail");
}

// A file range holds an fd while it waits: a peer that pipelines requests for files and never
// reads could make one connection hold an fd per request (a review measured 5,191 fds for one
// such client, enough to starve the process). Small ranges are read into memory at once, and
// past 64 held ranges so is any range: the fds held stay bounded, the bytes arrive in order.
TEST(WritePathTest, QueuedFileRangesHoldABoundedNumberOfFds) {
  struct Case {
    const char* name;
    std::size_t file_size;
    int ranges;
    int most_fds;  // held by the queued ranges at most
  };
  for (const Case& t :
       {Case{"small files", 100, 5000, 0}, Case{"large files", 20 * 1024, 200, 64}}) {
    SCOPED_TRACE(t.name);
    const std::string content = pattern(t.file_size, 49);
    TempFile file(content);
    std::atomic<int> fds_held{-1};
    Callbacks cb;
    cb.data = [&](Conn& c, std::string_view bytes) {
      const int before = count_open_fds();
      for (int i = 0; i < t.ranges; ++i) {
        c.write("#" + std::to_string(i) + ":");
        c.send_file(file.fd(), 0, content.size());
      }
      fds_held = count_open_fds() - before;
      c.close();
      return bytes.size();
    };
    Options o = loopback_options();
    o.socket_send_buffer = 4096;
    RunningServer s(o, cb);
    ASSERT_TRUE(s.status);
    Client client(s.address(), 4096);
    ASSERT_TRUE(client.send_all("go"));
    std::string expected;
    for (int i = 0; i < t.ranges; ++i) expected += "#" + std::to_string(i) + ":" + content;
    expect_stream_then_fin(client, expected);
    EXPECT_GE(fds_held.load(), 0);
    EXPECT_LE(fds_held.load(), t.most_fds);
  }
}

// A write past output_limit after a detach() that said yes: the stream cannot be handed over
// whole, so the connection is reset with that reason and the receiver never called (before, the
// refused write was dropped and the rest handed over).
TEST(WritePathTest, AWritePastTheOutputLimitAfterADetachResetsInsteadOfHandingOver) {
  std::atomic<int> received{0};
  ErrorLog closed;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write("head:");
    EXPECT_TRUE(c.detach([&](DetachedConn) { received.fetch_add(1); }));
    c.write(std::string(2048, 'x'));  // past the limit of 1024
    c.write(":tail");
    return bytes.size();
  };
  cb.closed = closed.recorder();
  Options o = loopback_options();
  o.output_limit = 1024;
  o.output_high_water = 512;
  o.output_low_water = 256;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("go"));
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_EQ(closed.errors().front(), make_error_code(errc::output_limit));
  bool eof = false;
  client.read_to_eof(&eof);
  EXPECT_FALSE(eof) << "a reset, not a FIN";
  EXPECT_EQ(received.load(), 0);
}

// send_file() after close() or shutdown_write() is ignored, as documented, even with an fd that
// cannot be duplicated: the output before it arrives whole, then a clean FIN (a bad fd used to
// reset the connection, losing that output).
TEST(WritePathTest, SendFileAfterTheOutputEndedIsIgnoredEvenWithABadFd) {
  ErrorLog closed;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write("hello");
    if (bytes == "close") c.close();
    if (bytes == "shutdown") c.shutdown_write();
    c.send_file(-1, 0, 10);
    c.send_file(TakeFd{-1}, 0, 10);
    return bytes.size();
  };
  cb.closed = closed.recorder();
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  int round = 0;
  for (const char* how : {"close", "shutdown"}) {
    Client client(s.address());
    ASSERT_TRUE(client.send_all(how));
    bool eof = false;
    EXPECT_EQ(client.read_to_eof(&eof), "hello") << how;
    EXPECT_TRUE(eof) << how << ": a clean FIN, not a reset";
    client.shutdown_write();  // ends the half-closed one
    ASSERT_TRUE(closed.wait_for(++round)) << how;
    EXPECT_FALSE(closed.last()) << how << ": " << closed.last().message();
  }
}

// An end decided in a handler (an fd send_file() cannot duplicate, a write past output_limit)
// keeps its reason when the same handler then calls close(): `closed` reports it, and the peer
// gets the reset (close() used to overwrite the reason with a clean one).
TEST(WritePathTest, CloseAfterAFailureKeepsTheFailuresReason) {
  ErrorLog closed;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    if (bytes == "badfd") c.send_file(-1, 0, 10);
    if (bytes == "limit") c.write(std::string(8192, 'x'));
    c.close();
    return bytes.size();
  };
  cb.closed = closed.recorder();
  Options o = loopback_options();
  o.output_limit = o.output_high_water = 4096;
  o.output_low_water = 1024;
  o.write_through = 1u << 20;  // the 8 KiB write is queued, so it meets the limit
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  int round = 0;
  for (const char* how : {"badfd", "limit"}) {
    Client client(s.address(), 4096);
    ASSERT_TRUE(client.send_all(how));
    ASSERT_TRUE(closed.wait_for(++round)) << how;
    bool eof = true;
    errno = 0;
    EXPECT_EQ(client.read_to_eof(&eof), "") << how;
    EXPECT_FALSE(eof) << how;
    EXPECT_EQ(errno, ECONNRESET) << how;
    if (std::string_view(how) == "badfd") {
      EXPECT_EQ(closed.last(), std::errc::bad_file_descriptor) << closed.last().message();
    } else {
      EXPECT_EQ(closed.last(), errc::output_limit) << closed.last().message();
    }
  }
}

// Ranges longer than any file (UINT64_MAX for "to the end", or two that add up past 2^64) would
// wrap output_pending(); a later write then took the file's place (a large one went straight to
// the kernel) and detach() handed over nothing. Refused at once: EOVERFLOW and a reset.
TEST(WritePathTest, ARangeLongerThanAnyFileIsRefused) {
  TempFile file("0123456789");
  ErrorLog closed;
  std::atomic<int> detached{-1};
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write("pre:");
    c.send_file(file.fd(), 0, UINT64_MAX);
    c.send_file(file.fd(), 0, 1);
    c.write(std::string(100000, 'w'));
    detached = c.detach([](DetachedConn) {}) ? 1 : 0;
    return bytes.size();
  };
  cb.closed = closed.recorder();
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("go"));
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_EQ(closed.first(), std::errc::value_too_large) << closed.first().message();
  EXPECT_EQ(detached.load(), 0);
  bool eof = true;
  const std::string got = client.read_to_eof(&eof);
  EXPECT_FALSE(eof) << "a reset";
  EXPECT_EQ(got.find('w'), std::string::npos) << "nothing after the refused range went out";
}

}  // namespace
}  // namespace evloop::test
