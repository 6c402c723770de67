// Internal. The thin syscall layer for sockets: listening, accepting, options, send and receive.
// Everything returns -errno or an error code instead of throwing, and nothing here keeps state.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <utility>

#include "evloop/address.hpp"
#include "evloop/error.hpp"

namespace evloop::detail {

/// Owns a file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset() noexcept;

 private:
  int fd_ = -1;
};

/// A Unix socket file this process bound; removed on destruction only if the path still names
/// that same socket (same device and inode), so a file put there meanwhile is never deleted.
class UnixPathOwner {
 public:
  UnixPathOwner() = default;
  UnixPathOwner(std::string path, dev_t dev, ino_t ino)
      : path_(std::move(path)), dev_(dev), ino_(ino) {}
  ~UnixPathOwner();
  UnixPathOwner(UnixPathOwner&& other) noexcept
      : path_(std::exchange(other.path_, {})), dev_(other.dev_), ino_(other.ino_) {}
  UnixPathOwner& operator=(UnixPathOwner&& other) noexcept {
    std::swap(path_, other.path_);
    std::swap(dev_, other.dev_);
    std::swap(ino_, other.ino_);
    return *this;
  }

 private:
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

/// A bound, listening, non-blocking socket.
struct OpenedListener {
  UniqueFd fd;
  SocketAddress bound;
  UnixPathOwner unix_path;
};

/// Binds and listens on `addr`. With `reuseport`, sets the balancing reuse-port option so other
/// listeners can bind the same address. A nonzero `port` replaces addr.port (so every loop's
/// listener binds the port the first one got for port 0). Unix paths: a stale socket file is
/// removed; a live one (something accepts on it) or a non-socket file gives EADDRINUSE.
Status open_listener(const ListenAddress& addr, bool reuseport, std::uint16_t port,
                     OpenedListener& out);

/// accept() for a non-blocking listener: a non-blocking, close-on-exec fd, or -errno.
int accept_connection(int listen_fd, SocketAddress& peer) noexcept;

/// Per-connection socket options taken from Options.
struct ConnectionSocketOptions {
  bool nodelay = true;
  std::chrono::seconds keepalive{0};
  int send_buffer = 0;
  int receive_buffer = 0;
};

/// Applies no-SIGPIPE (where that is a socket option), buffer sizes, TCP_NODELAY, keep-alive.
void configure_connection(int fd, bool is_tcp, const ConnectionSocketOptions& options) noexcept;

/// sendmsg without SIGPIPE: bytes sent, or -errno.
long send_pieces(int fd, const iovec* iov, int count) noexcept;

/// recv: bytes received (0 at end of stream), or -errno.
long receive(int fd, void* buffer, std::size_t size) noexcept;

/// The socket's pending error (SO_ERROR), cleared by reading it.
std::error_code socket_error(int fd) noexcept;

/// The local address of a socket.
SocketAddress local_address(int fd);

}  // namespace evloop::detail
