// Starts an echo server that asks for io_uring, proves it serves, stops it, and prints what it
// found, one fact per line, for backend_fallback_test.cpp (which runs it under without_io_uring):
//   backend NAME
//   note TEXT          (the fallback's note; "note " alone when there is none)
//   echo ok            (a message came back whole over a plain loopback socket)
//   fds ok             (as many fds open after the stop as before the start)
// Exit 0 when it served and stopped cleanly, 1 otherwise (with the reason on stderr).
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <string_view>

#include "evloop/server.hpp"

namespace {

int open_fds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n - 1;  // the directory's own fd
}

bool echo_once(const evloop::SocketAddress& address) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval limit{10, 0};  // bounded: a server that never answers fails the probe
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  const std::string_view message = "ping over the fallback";
  bool ok = connect(fd, static_cast<const sockaddr*>(address.data()),
                    static_cast<socklen_t>(address.size())) == 0 &&
            send(fd, message.data(), message.size(), MSG_NOSIGNAL) ==
                static_cast<ssize_t>(message.size());
  std::string got;
  char buf[64];
  while (ok && got.size() < message.size()) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return ok && got == message;
}

}  // namespace

int main() {
  const int fds_before = open_fds();
  int status = 0;
  {
    evloop::Options options;
    options.listen = {"tcp4://127.0.0.1:0"};
    options.backend = evloop::Backend::io_uring;
    evloop::ServingInfo info;
    evloop::Callbacks callbacks;
    callbacks.serving = [&](const evloop::ServingInfo& serving) { info = serving; };
    callbacks.data = [](evloop::Conn& conn, std::string_view bytes) {
      conn.write(bytes);
      return bytes.size();
    };
    evloop::Server server(options, callbacks);
    if (evloop::Status s = server.start(); !s) {
      std::fprintf(stderr, "backend_probe: start: %s\n", s.message().c_str());
      return 1;
    }
    std::printf("backend %s\nnote %s\n", info.backend.c_str(), info.backend_note.c_str());
    if (echo_once(info.addresses.at(0))) {
      std::printf("echo ok\n");
    } else {
      std::fprintf(stderr, "backend_probe: the echo did not come back\n");
      status = 1;
    }
    server.stop();
    if (evloop::Status s = server.wait(); !s) {
      std::fprintf(stderr, "backend_probe: wait: %s\n", s.message().c_str());
      status = 1;
    }
  }
  const int fds_after = open_fds();
  if (fds_after == fds_before) {
    std::printf("fds ok\n");
  } else {
    std::fprintf(stderr, "backend_probe: %d fds before the start, %d after the stop\n", fds_before,
                 fds_after);
    status = 1;
  }
  return status;
}
