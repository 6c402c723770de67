// Starts an echo server on a free port, sends one message through it, stops. Exit 0 on success.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>
#include <evloop/evloop.hpp>

#include <cstdio>
#include <string>

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
  const evloop::SocketAddress& addr = server.addresses().at(0);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, static_cast<const sockaddr*>(addr.data()),
                static_cast<socklen_t>(addr.size())) != 0)
    return 1;
  const std::string msg = "hello from a downstream project";
  if (::send(fd, msg.data(), msg.size(), 0) != static_cast<ssize_t>(msg.size())) return 1;
  std::string got(msg.size(), '\0');
  if (::recv(fd, got.data(), got.size(), MSG_WAITALL) != static_cast<ssize_t>(msg.size())) return 1;
  ::close(fd);
  server.stop();
  server.wait();
  std::printf("downstream: echoed '%s' through evloop %s at %s\n", got.c_str(), "package",
              addr.to_url().c_str());
  return got == msg ? 0 : 1;
}
