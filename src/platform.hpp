// Internal. The few socket differences between Linux, the BSDs and macOS, in one place. Poller and
// waker differences live in src/linux/ and src/bsd/; nothing else in the core tests the platform.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#if defined(__linux__)
#include <linux/errqueue.h>  // sock_extended_err (IP_RECVERR)
#include <linux/sockios.h>   // SIOCOUTQ
#include <netinet/udp.h>     // UDP_SEGMENT, UDP_GRO
#include <sys/sendfile.h>
#endif

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace evloop::detail::platform {

// Flags for send/sendmsg. Linux and FreeBSD have MSG_NOSIGNAL; macOS has SO_NOSIGPIPE instead,
// set once per socket (see set_no_sigpipe in socket.cpp).
#ifdef MSG_NOSIGNAL
inline constexpr int kSendFlags = MSG_NOSIGNAL;
#else
inline constexpr int kSendFlags = 0;
#endif

// MSG_MORE (Linux): more data follows (a file range after its header), so the kernel holds a
// partial segment back; elsewhere 0 (the header may leave in a segment of its own).
#ifdef MSG_MORE
inline constexpr int kMoreFlag = MSG_MORE;
#else
inline constexpr int kMoreFlag = 0;
#endif

#ifdef SO_NOSIGPIPE
inline constexpr bool kHasNoSigpipeOption = true;
inline constexpr int kNoSigpipeOption = SO_NOSIGPIPE;
#else
inline constexpr bool kHasNoSigpipeOption = false;
inline constexpr int kNoSigpipeOption = 0;
#endif

// The socket option that makes the kernel balance connections across listeners bound to the same
// address: SO_REUSEPORT on Linux (3.9+), SO_REUSEPORT_LB on FreeBSD (12+). macOS and the other
// BSDs accept SO_REUSEPORT but hand every connection to one socket, so there evloop does not rely
// on it and accepts on one loop instead (kReuseportBalances = false).
#if defined(SO_REUSEPORT_LB)
inline constexpr int kReuseportOption = SO_REUSEPORT_LB;
inline constexpr bool kReuseportBalances = true;
#elif defined(__linux__)
inline constexpr int kReuseportOption = SO_REUSEPORT;
inline constexpr bool kReuseportBalances = true;
#else
inline constexpr int kReuseportOption = SO_REUSEPORT;
inline constexpr bool kReuseportBalances = false;
#endif

// accept() returning a non-blocking, close-on-exec fd: accept4 does both atomically on Linux and
// FreeBSD; macOS lacks it, and a fork between accept and fcntl could leak the fd to a child there.
inline int accept_nonblocking(int listen_fd, sockaddr* addr, socklen_t* len) noexcept {
#if defined(__APPLE__)
  int fd = ::accept(listen_fd, addr, len);
  if (fd >= 0) {
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return fd;
#else
  return ::accept4(listen_fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#endif
}

// socket() returning a non-blocking, close-on-exec fd (SOCK_NONBLOCK/SOCK_CLOEXEC are not on
// macOS). `type` is SOCK_STREAM or SOCK_DGRAM.
inline int socket_nonblocking(int family, int type = SOCK_STREAM) noexcept {
#if defined(__APPLE__)
  int fd = ::socket(family, type, 0);
  if (fd >= 0) {
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return fd;
#else
  return ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#endif
}

// A connected pair of Unix stream sockets, non-blocking and close-on-exec (a live upgrade's
// control socket). SOCK_NONBLOCK/SOCK_CLOEXEC are not on macOS, nor MSG_NOSIGNAL (SO_NOSIGPIPE).
inline int socket_pair_nonblocking(int fds[2]) noexcept {
#if defined(__APPLE__)
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0) return -1;
  const int on = 1;
  for (int i = 0; i < 2; ++i) {
    ::fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    ::fcntl(fds[i], F_SETFL, ::fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    ::setsockopt(fds[i], SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
  }
  return 0;
#else
  return ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds);
#endif
}

// recvmsg() flag that makes fds received with SCM_RIGHTS close-on-exec as they arrive (Linux,
// FreeBSD, NetBSD, OpenBSD). macOS lacks it: there the receiver sets FD_CLOEXEC itself just after,
// and a fork() by another thread in between could leak the fd to that child.
#if defined(MSG_CMSG_CLOEXEC)
inline constexpr int kReceiveFdsFlags = MSG_CMSG_CLOEXEC;
inline constexpr bool kReceivedFdsAreCloexec = true;
#else
inline constexpr int kReceiveFdsFlags = 0;
inline constexpr bool kReceivedFdsAreCloexec = false;
#endif

// Idle time before the first keep-alive probe: TCP_KEEPIDLE (Linux, FreeBSD), TCP_KEEPALIVE
// (macOS).
inline void set_keepalive_idle(int fd, int seconds) noexcept {
#if defined(TCP_KEEPIDLE)
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &seconds, sizeof seconds);
#elif defined(TCP_KEEPALIVE)
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPALIVE, &seconds, sizeof seconds);
#endif
}

// How many bytes of a TCP socket's output (its FIN counting as one) the kernel still holds
// because the peer has not acknowledged them: 0 when none, for other sockets, and where the
// system does not tell.
inline std::size_t tcp_output_unacknowledged(int fd) noexcept {
  int queued = 0;
#if defined(__linux__)
  // Unacknowledged and unsent bytes (a Unix socket: bytes its peer has not read).
  if (::ioctl(fd, SIOCOUTQ, &queued) != 0 || queued <= 0) return 0;
  int protocol = 0;
  socklen_t len = sizeof protocol;
  if (::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) != 0 || protocol != IPPROTO_TCP) {
    return 0;
  }
#elif defined(FIONWRITE)  // FreeBSD: the send buffer keeps bytes until they are acknowledged
  if (::ioctl(fd, FIONWRITE, &queued) != 0) return 0;
#elif defined(SO_NWRITE)  // macOS
  socklen_t len = sizeof queued;
  if (::getsockopt(fd, SOL_SOCKET, SO_NWRITE, &queued, &len) != 0) return 0;
#else
  (void)fd;
#endif
  return queued > 0 ? static_cast<std::size_t>(queued) : 0;
}

// sendfile() has no MSG_NOSIGNAL: to a peer that reset, Linux raises SIGPIPE in the calling
// thread. Loop threads block SIGPIPE (their own mask, the process's disposition is untouched),
// and after a send that failed with EPIPE the pending signal is taken, so none lingers.
inline void block_sigpipe_in_this_thread() noexcept {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

inline void discard_pending_sigpipe() noexcept {
  sigset_t pending;
  if (sigpending(&pending) != 0 || !sigismember(&pending, SIGPIPE)) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  int taken = 0;
  sigwait(&set, &taken);  // returns at once: it is pending
}

// sendfile() from `file` at `offset` to a socket: bytes sent (> 0), 0 at the file's end, or
// -errno. Linux: sendfile(out, in, &offset, n). FreeBSD and DragonFly: sendfile(in, out, offset,
// n, NULL, &sent, 0), which reports progress made before an EAGAIN. macOS: sendfile(in, out,
// offset, &len, NULL, 0), likewise. Elsewhere -ENOSYS: the caller falls back to pread() + send().
inline long send_file(int socket, int file, std::uint64_t offset, std::size_t count) noexcept {
#if defined(__linux__)
  off_t off = static_cast<off_t>(offset);
  const ssize_t n = ::sendfile(socket, file, &off, count);
  return n < 0 ? -errno : static_cast<long>(n);
#elif defined(__FreeBSD__) || defined(__DragonFly__)
  off_t sent = 0;
  const int rc = ::sendfile(file, socket, static_cast<off_t>(offset), count, nullptr, &sent, 0);
  if (sent > 0) return static_cast<long>(sent);
  return rc < 0 ? -errno : 0;
#elif defined(__APPLE__)
  off_t len = static_cast<off_t>(count);
  const int rc = ::sendfile(file, socket, static_cast<off_t>(offset), &len, nullptr, 0);
  if (len > 0) return static_cast<long>(len);
  return rc < 0 ? -errno : 0;
#else
  (void)socket, (void)file, (void)offset, (void)count;
  return -ENOSYS;
#endif
}

// --- UDP ----------------------------------------------------------------------------------------

// Several datagrams per syscall: recvmmsg/sendmmsg on Linux (2.6.33 / 3.0). Elsewhere (macOS,
// the BSDs: FreeBSD's recvmmsg/sendmmsg are libc loops of the same kind) a loop of
// recvmsg/sendmsg over the same array keeps the same contract: the number of messages handled
// (stopping at the first EAGAIN or error), or -1 with errno when the first one fails. `calls` is
// the number of syscalls made (LoopStats). An error that ends a receive batch after its first
// message comes back in `error_after` (0 otherwise): Linux's recvmmsg leaves it on the socket for
// the next call, but a loop cannot put back what recvmsg took (an ICMP error, on the BSDs).
#if defined(__linux__)
using MultiMessage = ::mmsghdr;
#else
struct MultiMessage {
  msghdr msg_hdr;
  unsigned msg_len;
};
#endif

// The loops. Built everywhere, so that Linux runs their tests too.
inline int receive_each(int fd, MultiMessage* msgs, unsigned count, unsigned& calls,
                        int& error_after) noexcept {
  calls = 0;
  error_after = 0;
  for (unsigned i = 0; i < count; ++i) {
    ++calls;
    const ssize_t n = ::recvmsg(fd, &msgs[i].msg_hdr, 0);
    if (n < 0) {
      if (i == 0) return -1;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) error_after = errno;
      return static_cast<int>(i);
    }
    msgs[i].msg_len = static_cast<unsigned>(n);
  }
  return static_cast<int>(count);
}

inline int send_each(int fd, MultiMessage* msgs, unsigned count, unsigned& calls) noexcept {
  calls = 0;
  for (unsigned i = 0; i < count; ++i) {
    ++calls;
    const ssize_t n = ::sendmsg(fd, &msgs[i].msg_hdr, kSendFlags);
    if (n < 0) return i > 0 ? static_cast<int>(i) : -1;  // the next call meets the error again
    msgs[i].msg_len = static_cast<unsigned>(n);
  }
  return static_cast<int>(count);
}

#if defined(__linux__)
inline int receive_many(int fd, MultiMessage* msgs, unsigned count, unsigned& calls,
                        int& error_after) noexcept {
  calls = 1;
  error_after = 0;
  return static_cast<int>(::recvmmsg(fd, msgs, count, 0, nullptr));
}

inline int send_many(int fd, MultiMessage* msgs, unsigned count, unsigned& calls) noexcept {
  calls = 1;
  return static_cast<int>(::sendmmsg(fd, msgs, count, kSendFlags));
}
#else
inline int receive_many(int fd, MultiMessage* msgs, unsigned count, unsigned& calls,
                        int& error_after) noexcept {
  return receive_each(fd, msgs, count, calls, error_after);
}

inline int send_many(int fd, MultiMessage* msgs, unsigned count, unsigned& calls) noexcept {
  return send_each(fd, msgs, count, calls);
}
#endif

// UDP segmentation offload (Linux 4.18+: UDP_SEGMENT, one sendmsg carries up to 64 datagrams of
// one size, the last may be shorter) and receive offload (Linux 5.0+: UDP_GRO, one recvmsg
// returns several datagrams of one flow back to back, their size in a cmsg). Elsewhere both
// report "not available" and evloop sends and receives datagram by datagram.
inline constexpr unsigned kMaxGsoSegments = 64;  // UDP_MAX_SEGMENTS of every kernel that has GSO
#if defined(__linux__)
inline constexpr bool kHasUdpOffload = true;
// Control bytes of one sent message: a UDP_SEGMENT cmsg.
inline constexpr std::size_t kUdpSendControlSpace = CMSG_SPACE(sizeof(std::uint16_t));
// Control bytes of one received message with GRO on: its UDP_GRO cmsg comes after the
// socket-level ones a user may have asked for through native_handle() (timestamps, up to three
// timespecs; IP_PKTINFO, IP_TOS, IP_TTL...), so there is room for those too. Without room the
// kernel drops the UDP_GRO cmsg and the datagrams' boundaries with it.
inline constexpr std::size_t kUdpReceiveControlSpace = 256;

// Asks the kernel whether this socket can segment (the option exists); 0 = no default size.
inline bool probe_udp_gso(int fd) noexcept {
  int zero = 0;
  return ::setsockopt(fd, IPPROTO_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
}

inline bool enable_udp_gro(int fd) noexcept {
  int on = 1;
  return ::setsockopt(fd, IPPROTO_UDP, UDP_GRO, &on, sizeof on) == 0;
}

// Makes `msg` a segmented send of `segment_size`-byte datagrams; `control` has
// kUdpSendControlSpace bytes, aligned for a cmsghdr.
inline void set_gso_segment(msghdr& msg, void* control, std::uint16_t segment_size) noexcept {
  std::memset(control, 0, kUdpSendControlSpace);
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(std::uint16_t));
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = IPPROTO_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
  std::memcpy(CMSG_DATA(c), &segment_size, sizeof segment_size);
}

// The size of the datagrams a GRO receive coalesced (0 when it holds one datagram).
inline std::size_t gro_segment_size(const msghdr& msg) noexcept {
  if (msg.msg_controllen == 0) return 0;
  for (const cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(const_cast<msghdr*>(&msg), const_cast<cmsghdr*>(c))) {
    if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO) {
      int size = 0;
      std::memcpy(&size, CMSG_DATA(c), sizeof size);
      return size > 0 ? static_cast<std::size_t>(size) : 0;
    }
  }
  return 0;
}
#else
inline constexpr bool kHasUdpOffload = false;
inline constexpr std::size_t kUdpSendControlSpace = 0;
inline constexpr std::size_t kUdpReceiveControlSpace = 0;
inline bool probe_udp_gso(int) noexcept { return false; }
inline bool enable_udp_gro(int) noexcept { return false; }
inline void set_gso_segment(msghdr&, void*, std::uint16_t) noexcept {}
inline std::size_t gro_segment_size(const msghdr&) noexcept { return 0; }
#endif

// Empties a socket's error queue (Linux: what IP_RECVERR, IPV6_RECVERR or send timestamps,
// enabled by the application through native_handle(), put there) and returns the errno of its
// first ICMP or local error, 0 if none. A queue left with entries keeps EPOLLERR raised, so every
// wait would return at once; at most `max` entries per call (the rest raise the next wait).
// Elsewhere there is no such queue: 0.
inline int drain_error_queue(int fd, int max = 64) noexcept {
#if defined(__linux__)
  int first = 0;
  for (int i = 0; i < max; ++i) {
    char byte;
    iovec iov{&byte, 1};  // the datagram that drew the error is not needed (cut: MSG_TRUNC)
    alignas(cmsghdr) char control[256];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (::recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) break;  // EAGAIN: empty
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      const bool recverr = (c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
                           (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR);
      if (!recverr || c->cmsg_len < CMSG_LEN(sizeof(sock_extended_err))) continue;
      sock_extended_err err;
      std::memcpy(&err, CMSG_DATA(c), sizeof err);
      if (first == 0 && err.ee_origin != SO_EE_ORIGIN_TIMESTAMPING) {
        first = static_cast<int>(err.ee_errno);
      }
    }
  }
  return first;
#else
  (void)fd;
  (void)max;
  return 0;
#endif
}

}  // namespace evloop::detail::platform
