// baseline_udp: the two plain UDP echo servers evloop's udp-echo is measured against. Libc only,
// one thread, one blocking socket, no event loop:
//
//   --mode single   one datagram per syscall: recvfrom, then sendto (what most UDP code does)
//   --mode mmsg     batches: recvmmsg (MSG_WAITFORONE: as many as are queued, up to --batch,
//                   waiting only for the first), then one sendmmsg of all the replies
//
//   baseline_udp [--listen udp://127.0.0.1:PORT] [--mode single|mmsg] [--batch N] [--rcvbuf B]
//                [--work-ns N]
//   --work-ns spins N ns of user CPU per datagram (either mode): how much a server's own code per
//   datagram moves its CPU per datagram, for the comparison with evloop (bench/README.md, UDP).
//   prints "listening on udp4://127.0.0.1:PORT"; SIGTERM ends it.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace {

constexpr std::size_t kMaxDatagram = 65536;

// Spins `ns` nanoseconds of user CPU (0: nothing).
void spin_for(std::chrono::nanoseconds ns) {
  if (ns.count() <= 0) return;
  const auto until = std::chrono::steady_clock::now() + ns;
  while (std::chrono::steady_clock::now() < until) {
  }
}

[[noreturn]] void serve_single(int fd, std::chrono::nanoseconds work) {
  std::vector<char> buf(kMaxDatagram);
  for (;;) {
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    const ssize_t n =
        recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&peer), &len);
    if (n < 0) continue;  // EINTR, or an error of a datagram: next
    spin_for(work);
    sendto(fd, buf.data(), static_cast<std::size_t>(n), 0, reinterpret_cast<sockaddr*>(&peer), len);
  }
}

[[noreturn]] void serve_batches(int fd, unsigned batch, std::chrono::nanoseconds work) {
  std::vector<char> buf(std::size_t{batch} * kMaxDatagram);
  std::vector<sockaddr_in> peers(batch);
  std::vector<iovec> in_iov(batch), out_iov(batch);
  std::vector<mmsghdr> in(batch), out(batch);
  for (;;) {
    for (unsigned i = 0; i < batch; ++i) {
      in_iov[i] = {buf.data() + std::size_t{i} * kMaxDatagram, kMaxDatagram};
      in[i].msg_hdr = msghdr{};
      in[i].msg_hdr.msg_name = &peers[i];
      in[i].msg_hdr.msg_namelen = sizeof peers[i];
      in[i].msg_hdr.msg_iov = &in_iov[i];
      in[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = recvmmsg(fd, in.data(), batch, MSG_WAITFORONE, nullptr);
    if (n <= 0) continue;
    for (int i = 0; i < n; ++i) {
      spin_for(work);
      out_iov[i] = {in_iov[i].iov_base, in[i].msg_len};
      out[i].msg_hdr = msghdr{};
      out[i].msg_hdr.msg_name = &peers[i];
      out[i].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
      out[i].msg_hdr.msg_iov = &out_iov[i];
      out[i].msg_hdr.msg_iovlen = 1;
    }
    for (int sent = 0; sent < n;) {
      const int r = sendmmsg(fd, out.data() + sent, static_cast<unsigned>(n - sent), 0);
      if (r > 0) {
        sent += r;
      } else if (errno != EINTR) {
        ++sent;  // that datagram cannot go: the next
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = "udp://127.0.0.1:0";
  std::string mode = "single";
  unsigned batch = 32;
  int rcvbuf = 0;
  long work_ns = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--listen" && i + 1 < argc) {
      address = argv[++i];
    } else if (a == "--mode" && i + 1 < argc) {
      mode = argv[++i];
    } else if (a == "--rcvbuf" && i + 1 < argc) {
      rcvbuf = std::atoi(argv[++i]);
    } else if (a == "--batch" && i + 1 < argc) {
      batch = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    } else if (a == "--work-ns" && i + 1 < argc) {
      work_ns = std::atol(argv[++i]);
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: baseline_udp [--listen udp://127.0.0.1:PORT] [--mode single|mmsg] [--batch N]\n"
          "                    [--rcvbuf BYTES] [--work-ns N]\n"
          "A plain one-thread UDP echo server: single = recvfrom/sendto per datagram,\n"
          "mmsg = recvmmsg/sendmmsg batches of up to N (default 32). --work-ns: spin N ns of\n"
          "user CPU per datagram, to see what a server's own work costs.\n");
      return 0;
    } else {
      std::fprintf(stderr, "baseline_udp: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  const auto sa = bench::parse_udp4(address);
  if (!sa || (mode != "single" && mode != "mmsg") || batch == 0 || batch > 1024 || work_ns < 0 ||
      work_ns > 1000000) {
    std::fprintf(stderr, "baseline_udp: bad address, mode, batch or work (0..1000000 ns)\n");
    return 2;
  }
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (fd < 0 || bind(fd, reinterpret_cast<const sockaddr*>(&*sa), sizeof *sa) != 0) {
    std::fprintf(stderr, "baseline_udp: %s: %s\n", address.c_str(), std::strerror(errno));
    return 1;
  }
  bench::print_listening(fd, "udp4");
  const std::chrono::nanoseconds work(work_ns);
  if (mode == "single") serve_single(fd, work);
  serve_batches(fd, batch, work);
}
