// baseline_threads: "plain sockets". Blocking sockets, one thread per connection, each reading and
// writing back until the peer closes. The baseline users would write without a library.
// Threads get 64 KiB stacks (instead of glibc's 8 MiB default reservation) so 10,000 idle
// connections fit; the RSS they really touch is what the idle scenario measures.
//
//   baseline_threads [--listen tcp://127.0.0.1:PORT]   prints "listening on tcp4://127.0.0.1:PORT"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "bench_util.hpp"

namespace {

void* serve(void* arg) {
  const int fd = static_cast<int>(reinterpret_cast<std::intptr_t>(arg));
  char buf[16 * 1024];
  for (;;) {
    const ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    ssize_t off = 0;
    while (off < r) {  // blocking send may still return short on a signal
      const ssize_t w = send(fd, buf + off, static_cast<std::size_t>(r - off), MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        off = -1;
        break;
      }
      off += w;
    }
    if (off < 0) break;
  }
  close(fd);
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = "tcp://127.0.0.1:0";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--listen" && i + 1 < argc) {
      address = argv[++i];
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: baseline_threads [--listen tcp://127.0.0.1:PORT]\n"
          "A blocking echo server with one thread per connection (plain sockets).\n");
      return 0;
    } else {
      std::fprintf(stderr, "baseline_threads: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  const auto sa = bench::parse_tcp4(address);
  if (!sa) {
    std::fprintf(stderr, "baseline_threads: bad address %s\n", address.c_str());
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  const int listener = bench::listen_tcp4(*sa);
  if (listener < 0) {
    std::fprintf(stderr, "baseline_threads: %s: %s\n", address.c_str(), std::strerror(errno));
    return 1;
  }
  bench::print_listening(listener);

  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  for (;;) {
    const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) usleep(1000);  // a plain server would just retry
      continue;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_t t;
    if (pthread_create(&t, &attr, serve, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd))) !=
        0) {
      std::fprintf(stderr, "baseline_threads: pthread_create: out of threads\n");
      close(fd);
    }
  }
}
