// Adopt and detach: a connection leaves evloop with its fd, its unconsumed input and its unsent
// output, and continues elsewhere (another loop, plain POSIX code) with no byte lost or
// reordered; an fd from elsewhere becomes a connection; an inherited listening fd becomes a
// listener (fd://N).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace evloop::test {
namespace {

constexpr std::size_t kBlob = 4u << 20;

// Loop 0 serves lines: "big" writes a 4 MiB blob (pending: the client reads nothing yet),
// "move" detaches the connection, leaving whatever follows unconsumed. The receiver adopts it on
// loop 1 with an echo that prefixes "B:". The client then reads the whole blob, then the echo of
// the unconsumed tail and of everything it sends later: byte-exact, in order.
TEST(DetachTest, DetachedMidStreamAndAdoptedOnAnotherLoopLosesNothing) {
  const std::string blob = pattern(kBlob, 12);
  EventCounter detached_closed, adopted_opened;
  std::atomic<std::size_t> unconsumed_at_detach{0}, unsent_at_detach{0};
  std::atomic<bool> adopted_on_loop1{false};
  std::error_code first_close;
  Server* server = nullptr;

  Handlers echo_b;  // the connection's second life, on loop 1
  echo_b.opened = [&](Conn& c) {
    adopted_on_loop1 = c.loop().index() == 1 && c.loop().in_loop_thread();
    adopted_opened.add();
  };
  echo_b.data = [](Conn& c, std::string_view bytes) {
    c.write("B:");
    c.write(bytes);
    return bytes.size();
  };

  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    std::size_t used = 0;
    for (std::size_t end; (end = bytes.find('\n', used)) != std::string_view::npos;) {
      const std::string_view line = bytes.substr(used, end - used);
      used = end + 1;
      if (line == "big") c.write(blob);
      if (line == "move") {
        EXPECT_TRUE(c.detach([&](DetachedConn d) {
          unconsumed_at_detach = d.input.size();
          unsent_at_detach = d.output.size();
          AdoptOptions a;
          a.input = std::move(d.input);
          a.output = std::move(d.output);
          server->loop(1).adopt(d.release(), echo_b, std::move(a));
        }));
        EXPECT_FALSE(c.detach([](DetachedConn) {})) << "a second detach must be refused";
        return used;  // what follows stays unconsumed: it travels with the socket
      }
    }
    return used;
  };
  cb.closed = [&](Conn&, std::error_code ec) {
    if (!detached_closed.value()) first_close = ec;
    detached_closed.add();
  };
  Options o = loopback_options(2);
  o.output_limit = 2 * kBlob;
  o.output_high_water = 2 * kBlob;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  server = &s.server;
  Client client(s.address(), 4096);
  ASSERT_TRUE(client.send_all("big\nmove\ntail-before-move"));
  ASSERT_TRUE(detached_closed.wait_for(1));
  EXPECT_EQ(first_close, errc::detached);
  ASSERT_TRUE(adopted_opened.wait_for(1));
  EXPECT_TRUE(adopted_on_loop1.load());
  EXPECT_GT(unsent_at_detach.load(), 0u) << "the blob should still have been pending";
  ASSERT_TRUE(client.send_all("after"));

  const std::string tail = "tail-before-move";
  std::string expected = blob;
  // The tail was unconsumed input (or still in the kernel) at the detach: either way it reaches
  // the adopter, as one or two `data` calls, before "after".
  const std::string got = client.read_exactly(kBlob);
  ASSERT_EQ(got.size(), kBlob);
  EXPECT_TRUE(got == blob) << "the pending output was lost or reordered";
  std::string rest;
  while (rest.find("after") == std::string::npos) {
    const std::string more = client.read_exactly(1);
    ASSERT_EQ(more.size(), 1u) << "stream ended early; got '" << rest << "'";
    rest += more;
  }
  std::string stripped;  // the echo without the "B:" markers
  for (std::size_t i = 0; i < rest.size();) {
    if (rest.compare(i, 2, "B:") == 0) {
      i += 2;
    } else {
      stripped += rest[i++];
    }
  }
  EXPECT_EQ(stripped, tail + "after");
  EXPECT_LE(unconsumed_at_detach.load(), tail.size());
  ASSERT_TRUE(settle(s.server));
  EXPECT_EQ(total_stats(s.server).detaches, 1u);
  EXPECT_EQ(total_stats(s.server).adoptions, 1u);
}

// A detach while a send waits for a slow reader (on io_uring: a send in flight, which the detach
// cancels) hands over every unsent byte. Before, on io_uring the cancelled send was taken for an
// I/O error: the connection closed with ECANCELED, the peer got a reset, and the receiver never
// ran (a live upgrade reported its connections moved, 0 of them).
TEST(DetachTest, ADetachWhileASendWaitsForASlowReaderHandsOverEveryByte) {
  const std::string blob = pattern(kBlob, 13);
  EventCounter adopted_opened;
  ErrorLog closes;  // of the first life
  Server* server = nullptr;
  Handlers echo;  // the second life, on loop 1: sends the unsent output first
  echo.opened = [&](Conn&) { adopted_opened.add(); };
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    if (bytes == "big") c.write(blob);
    if (bytes == "move") {
      EXPECT_TRUE(c.detach([&](DetachedConn d) {
        AdoptOptions a;
        a.output = std::move(d.output);
        server->loop(1).adopt(d.release(), echo, std::move(a));
      }));
    }
    return bytes.size();
  };
  cb.closed = closes.recorder();
  Options o = loopback_options(2);
  o.output_limit = o.output_high_water = 2 * kBlob;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  server = &s.server;
  Client client(s.address(), 4096);
  ASSERT_TRUE(client.send_all("big"));
  ASSERT_TRUE(eventually([&] { return total_stats(s.server).writes > 0; }));  // sent or submitted
  // Two trips through loop 0: on io_uring the send went to the kernel in the wait between them
  // (and waits there: the client reads nothing); on epoll the rest waits for write readiness.
  for (int trip = 0; trip < 2; ++trip) {
    std::promise<void> done;
    s.server.loop(0).post([&] { done.set_value(); });
    ASSERT_EQ(done.get_future().wait_for(kWait), std::future_status::ready);
  }
  ASSERT_TRUE(client.send_all("move"));
  ASSERT_TRUE(adopted_opened.wait_for(1));
  EXPECT_TRUE(client.read_exactly(kBlob) == blob) << "the pending output was lost or reordered";
  ASSERT_EQ(closes.count(), 1);
  EXPECT_EQ(closes.first(), errc::detached) << closes.first().message();
}

// The detached socket continues in plain POSIX code: the receiver's thread sends the unsent
// output first, then speaks to the client directly.
TEST(DetachTest, PlainCodeContinuesADetachedStream) {
  std::promise<DetachedConn> handed;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write("pending-");
    c.detach([&](DetachedConn d) { handed.set_value(std::move(d)); });
    return bytes.size() - 3;  // the last 3 bytes stay unconsumed
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("hello123"));
  auto future = handed.get_future();
  ASSERT_EQ(future.wait_for(kWait), std::future_status::ready);
  DetachedConn d = future.get();
  ASSERT_GE(d.fd(), 0);
  EXPECT_EQ(d.input, "123");
  const std::string out = d.output + "plain";
  ASSERT_EQ(::send(d.fd(), out.data(), out.size(), kSendFlags), static_cast<ssize_t>(out.size()));
  EXPECT_EQ(client.read_exactly(13), "pending-plain");
  ASSERT_TRUE(client.send_all("back"));
  ::fcntl(d.fd(), F_SETFL, ::fcntl(d.fd(), F_GETFL) & ~O_NONBLOCK);
  char buf[4];
  ASSERT_EQ(::recv(d.fd(), buf, 4, MSG_WAITALL), 4);
  EXPECT_EQ(std::string(buf, 4), "back");
  // The server no longer has the connection.
  ASSERT_TRUE(settle(s.server));
  EXPECT_EQ(total_stats(s.server).open_connections, 0u);
}

// shutdown_write() owes the peer a FIN after the output, which a DetachedConn cannot carry: a
// detach after it is refused and the connection stays, so the peer gets every byte, then the
// FIN. (Before, detach() took the connection and the FIN was never sent.)
TEST(DetachTest, AConnectionThatShutItsWritingIsNotDetached) {
  std::atomic<int> detach_result{-1};
  EventCounter handled, handed;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write("bye");
    c.shutdown_write();
    detach_result = c.detach([&](DetachedConn) { handed.add(); }) ? 1 : 0;
    handled.add();
    return bytes.size();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("x"));
  ASSERT_TRUE(handled.wait_for(1));
  EXPECT_EQ(detach_result.load(), 0);
  bool eof = false;
  EXPECT_EQ(client.read_to_eof(&eof), "bye");
  EXPECT_TRUE(eof) << "no FIN after the output";
  EXPECT_EQ(handed.value(), 0);
}

// Once detach() has said yes, the connection is the receiver's: a close, an abort or a
// half-close asked for in the same handler is ignored, and the output written before goes to the
// receiver, not to the void (an abort used to discard it and hand over an empty output).
TEST(DetachTest, CloseAbortAndShutdownWriteAfterADetachAreIgnored) {
  std::promise<DetachedConn> handed;
  EventCounter closed;
  std::error_code close_error;
  Callbacks cb;
  cb.data = [&](Conn& c, std::string_view bytes) {
    c.write("owed-");
    EXPECT_TRUE(c.detach([&](DetachedConn d) { handed.set_value(std::move(d)); }));
    c.abort();
    c.close();
    c.shutdown_write();
    c.write("more");
    return bytes.size();
  };
  cb.closed = [&](Conn&, std::error_code ec) {
    close_error = ec;
    closed.add();
  };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  ASSERT_TRUE(client.send_all("x"));
  auto future = handed.get_future();
  ASSERT_EQ(future.wait_for(kWait), std::future_status::ready);
  DetachedConn d = future.get();
  ASSERT_TRUE(closed.wait_for(1));
  EXPECT_EQ(close_error, make_error_code(errc::detached));
  ASSERT_GE(d.fd(), 0);
  EXPECT_EQ(d.output, "owed-more");
  // The socket is alive: the peer got no reset, no FIN, and hears what the new owner sends.
  ASSERT_EQ(::send(d.fd(), d.output.data(), d.output.size(), kSendFlags),
            static_cast<ssize_t>(d.output.size()));
  EXPECT_EQ(client.read_exactly(9), "owed-more");
}

// A socket connected by other code (here a plain accept) is adopted with input and output given
// up front: `opened`, then `data` with the input; the output goes before anything written later.
TEST(DetachTest, AdoptAConnectedSocketWithInputAndOutput) {
  int listener = open_stream_socket(AF_INET);
  ASSERT_GE(listener, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len), 0);
  Client client(SocketAddress(&a, len));
  const int accepted = ::accept(listener, nullptr, nullptr);
  ::close(listener);
  ASSERT_GE(accepted, 0);

  LoopGroup group;
  ASSERT_TRUE(group.start());
  EventCounter opened, data_calls;
  std::string seen;  // loop thread only
  Handlers h;
  h.opened = [&](Conn& c) {
    EXPECT_TRUE(c.loop().in_loop_thread());
    c.write("+later");
    opened.add();
  };
  h.data = [&](Conn& c, std::string_view bytes) {
    seen.append(bytes);
    c.write(bytes);
    data_calls.add();
    return bytes.size();
  };
  AdoptOptions options;
  options.input = "early-input,";
  options.output = "first";
  const ConnRef ref = group.loop(0).adopt(accepted, h, std::move(options));
  ASSERT_TRUE(ref);
  ASSERT_TRUE(opened.wait_for(1));
  ASSERT_TRUE(data_calls.wait_for(1));
  EXPECT_EQ(client.read_exactly(5 + 6 + 12), "first+laterearly-input,");
  ASSERT_TRUE(client.send_all("more"));
  EXPECT_EQ(client.read_exactly(4), "more");
  group.stop();
  group.wait();
  EXPECT_EQ(seen, "early-input,more");
}

// What cannot be adopted fails with `connect_failed` (never `opened`/`closed`), and the fd is
// closed: a bad fd, something that is not a socket, a socket that is not connected.
TEST(DetachTest, AdoptingWhatIsNotAConnectedSocketFails) {
  LoopGroup group;
  ASSERT_TRUE(group.start());
  ErrorLog failed;
  EventCounter opened;
  Handlers h;
  h.opened = [&](Conn&) { opened.add(); };
  h.connect_failed = failed.recorder();
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  ::close(pipe_fds[1]);
  const int unconnected = open_stream_socket(AF_INET);
  const int closed_fd = ::dup(pipe_fds[0]);
  ::close(closed_fd);
  group.loop(0).adopt(pipe_fds[0], h);
  group.loop(0).adopt(unconnected, h);
  group.loop(0).adopt(closed_fd, h);
  ASSERT_TRUE(failed.wait_for(3));
  group.stop();
  group.wait();
  EXPECT_EQ(opened.value(), 0);
  const std::vector<std::error_code> errors = failed.errors();
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0], std::errc::not_a_socket);
  EXPECT_EQ(errors[1], std::errc::not_connected);
  EXPECT_EQ(errors[2], std::errc::bad_file_descriptor);
  EXPECT_EQ(::fcntl(pipe_fds[0], F_GETFD), -1) << "the adopted fd must be closed on failure";
}

// An inherited listening socket (fd://N) serves like any listener; a fd that is not a listening
// socket fails start() with a message, and is left open (it is still the caller's).
TEST(DetachTest, AnInheritedListeningFdBecomesAListener) {
  int fd = open_stream_socket(AF_INET);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);

  int not_listening = open_stream_socket(AF_INET);
  {
    Options o;
    o.listen = {"fd://" + std::to_string(not_listening)};
    Server bad(o, {});
    const Status st = bad.start();
    EXPECT_EQ(st.code(), errc::bad_address);
    EXPECT_NE(st.message().find("not a listening stream socket"), std::string::npos)
        << st.message();
  }
  EXPECT_EQ(::fcntl(not_listening, F_GETFD), FD_CLOEXEC) << "the caller's fd must stay open";
  ::close(not_listening);

  Options o;
  o.loops = 2;  // one socket, two loops: loop 0 accepts and hands off
  o.listen = {"fd://" + std::to_string(fd)};
  Callbacks cb;
  cb.data = [](Conn& c, std::string_view bytes) {
    c.write(bytes);
    return bytes.size();
  };
  {
    RunningServer s(o, cb);
    ASSERT_TRUE(s.status) << s.status.message();
    EXPECT_EQ(s.address().port(), ntohs(a.sin_port));
    std::vector<Client> clients;
    for (int i = 0; i < 4; ++i) {
      clients.emplace_back(s.address());
      ASSERT_TRUE(clients.back().send_all("ping" + std::to_string(i)));
      EXPECT_EQ(clients.back().read_exactly(5), "ping" + std::to_string(i));
    }
    ASSERT_TRUE(settle(s.server));
    EXPECT_EQ(s.server.stats().at(1).opened, 2u) << "hand-off should reach loop 1";
  }
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1) << "the server owns the inherited fd and closes it";
}

}  // namespace
}  // namespace evloop::test
