// Test-only and libc-only: client sockets that behave the same on Linux, the BSDs and macOS.
// Header-only, so the example servers' test helper (examples/common/testing) uses it too without
// linking evloop.
#pragma once

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

namespace evloop::test {

/// A socket of `family` and `type`, close-on-exec, non-blocking if asked, that never raises
/// SIGPIPE; -1 on error. The socket() flags where they exist; fcntl() and SO_NOSIGPIPE on macOS,
/// which has neither SOCK_CLOEXEC nor MSG_NOSIGNAL. Send on it with kSendFlags.
inline int open_socket(int family, int type, bool nonblocking = false) {
#if defined(SOCK_CLOEXEC) && defined(SOCK_NONBLOCK)
  const int fd = ::socket(family, type | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
#else
  const int fd = ::socket(family, type, 0);
  if (fd >= 0) {
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (nonblocking) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
#endif
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
  const int one = 1;
  if (fd >= 0) ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
  return fd;
}

/// open_socket() of a stream socket.
inline int open_stream_socket(int family, bool nonblocking = false) {
  return open_socket(family, SOCK_STREAM, nonblocking);
}

#ifdef MSG_NOSIGNAL
inline constexpr int kSendFlags = MSG_NOSIGNAL;
#else
inline constexpr int kSendFlags = 0;  // open_stream_socket set SO_NOSIGPIPE
#endif

/// Bytes sent on stream socket `fd` that the peer has not acknowledged yet (with any not sent
/// yet): 0 once the peer's kernel holds everything sent. -1 on error.
inline int unacknowledged_bytes(int fd) {
  int n = -1;
#ifdef FIONWRITE  // the BSDs and macOS: bytes in the send queue
  if (::ioctl(fd, FIONWRITE, &n) != 0) return -1;
#else  // Linux: SIOCOUTQ
  if (::ioctl(fd, TIOCOUTQ, &n) != 0) return -1;
#endif
  return n;
}

}  // namespace evloop::test
