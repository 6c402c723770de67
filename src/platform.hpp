// Internal. The few socket differences between Linux, the BSDs and macOS, in one place. Poller and
// waker differences live in src/linux/ and src/bsd/; nothing else in the core tests the platform.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#if defined(__linux__)
#include <sys/sendfile.h>
#endif

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace evloop::detail::platform {

// Flags for send/sendmsg. Linux and FreeBSD have MSG_NOSIGNAL; macOS has SO_NOSIGPIPE instead,
// set once per socket (see set_no_sigpipe in socket.cpp).
#ifdef MSG_NOSIGNAL
inline constexpr int kSendFlags = MSG_NOSIGNAL;
#else
inline constexpr int kSendFlags = 0;
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
// macOS).
inline int socket_nonblocking(int family) noexcept {
#if defined(__APPLE__)
  int fd = ::socket(family, SOCK_STREAM, 0);
  if (fd >= 0) {
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return fd;
#else
  return ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
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

}  // namespace evloop::detail::platform
