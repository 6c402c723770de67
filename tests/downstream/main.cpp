// Starts an echo server on a free port and talks to it twice: with a plain socket, then as the
// README's client does (a LoopGroup and a dial). Exit 0 on success.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>
#include <evloop/evloop.hpp>

#include <chrono>
#include <cstdio>
#include <string>

namespace {

bool echo_with_a_plain_socket(const evloop::SocketAddress& addr, const std::string& msg) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got(msg.size(), '\0');
  const bool ok =
      ::connect(fd, static_cast<const sockaddr*>(addr.data()),
                static_cast<socklen_t>(addr.size())) == 0 &&
      ::send(fd, msg.data(), msg.size(), 0) == static_cast<ssize_t>(msg.size()) &&
      ::recv(fd, got.data(), got.size(), MSG_WAITALL) == static_cast<ssize_t>(msg.size());
  ::close(fd);
  return ok && got == msg;
}

// The README's client example, against the echo server.
bool echo_with_a_dial(const evloop::SocketAddress& addr, const std::string& msg) {
  evloop::LoopGroup loops;
  if (!loops.start()) return false;
  std::string reply;
  evloop::Handlers h;
  h.opened = [&msg](evloop::Conn& c) { c.write(msg); };
  h.data = [&](evloop::Conn& c, std::string_view bytes) {
    reply.append(bytes);
    if (reply.size() >= msg.size()) {
      c.close();
      loops.stop();
    }
    return bytes.size();
  };
  h.connect_failed = [&loops](evloop::Conn&, std::error_code e) {
    std::fprintf(stderr, "downstream: connect: %s\n", e.message().c_str());
    loops.stop();
  };
  evloop::ConnectOptions co;
  co.connect_timeout = std::chrono::seconds(5);
  loops.loop(0).connect(addr.to_url(), h, co);
  const evloop::Status s = loops.wait();
  return s && reply == msg;
}

}  // namespace

int main() {
  evloop::Options options;
  options.listen = {"tcp4://127.0.0.1:0"};
  evloop::Callbacks callbacks;
  callbacks.data = [](evloop::Conn& conn, std::string_view bytes) {
    conn.write(bytes);
    return bytes.size();
  };
  evloop::Server server(options, callbacks);
  if (evloop::Status s = server.start(); !s) {
    std::fprintf(stderr, "downstream: %s\n", s.message().c_str());
    return 1;
  }
  const evloop::SocketAddress addr = server.addresses().at(0);
  const std::string msg = "hello from a downstream project";
  const bool plain = echo_with_a_plain_socket(addr, msg);
  const bool dialled = echo_with_a_dial(addr, msg);
  server.stop();
  server.wait();
  std::printf("downstream: echoed through evloop at %s: plain socket %s, dial %s\n",
              addr.to_url().c_str(), plain ? "ok" : "FAILED", dialled ? "ok" : "FAILED");
  return plain && dialled ? 0 : 1;
}
