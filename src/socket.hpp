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
#include "evloop/conn_options.hpp"
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
  /// The socket file of `bound` (a Unix socket's bound address), as it is now; empty for an
  /// address without a path.
  static UnixPathOwner of(const SocketAddress& bound);
  /// True when there is a file to remove.
  bool owns() const noexcept { return !path_.empty(); }
  /// Gives the file up without removing it (another process serves it now).
  void release() noexcept { path_.clear(); }

 private:
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

/// A connection's peer address in 28 bytes (a SocketAddress takes 136; every byte of a
/// Connection counts at 10,000 idle ones): an IPv4 or IPv6 address is kept whole, its size
/// following from its family; of a Unix peer only the family, its name (if it has one) being
/// asked of the kernel when wanted.
class PeerAddress {
 public:
  PeerAddress() = default;
  explicit PeerAddress(const SocketAddress& address) noexcept;
  /// The whole address; a Unix peer's name comes from getpeername(fd) while `fd` is open.
  SocketAddress get(int fd) const;
  int family() const noexcept;

 private:
  alignas(4) unsigned char bytes_[28] = {};  // a sockaddr_in or sockaddr_in6, or a bare family
};

/// A bound, non-blocking socket: listening (stream) or ready to receive (UDP).
struct OpenedListener {
  UniqueFd fd;
  SocketAddress bound;
  UnixPathOwner unix_path;
};

/// Binds and listens on `addr` (for a udp:// address: binds a UDP socket). With `reuseport`, sets
/// the balancing reuse-port option so other sockets can bind the same address. A nonzero `port`
/// replaces addr.port (so every loop's socket binds the port the first one got for port 0). Unix
/// paths: a stale socket file is removed; a live one (something accepts on it) or a non-socket
/// file gives EADDRINUSE.
Status open_listener(const ListenAddress& addr, bool reuseport, std::uint16_t port,
                     OpenedListener& out);

/// accept() for a non-blocking listener: a non-blocking, close-on-exec fd, or -errno.
int accept_connection(int listen_fd, SocketAddress& peer) noexcept;

/// A numeric socket address for `host` (an IPv4 or IPv6 literal, no brackets) and `port`, or of
/// `path` for a Unix socket; false when `host` is not a literal of a family `transport` allows
/// (then it needs a name lookup).
bool numeric_address(const ListenAddress& target, SocketAddress& out);
/// "127.0.0.2", "127.0.0.2:0", "[::1]:4000" as a bind address; false if it is not numeric.
bool parse_source_address(const std::string& text, SocketAddress& out);

/// AF_INET for tcp4/udp4, AF_INET6 for tcp6/udp6, AF_UNSPEC for the others.
int ip_family(Transport transport) noexcept;

/// A non-blocking, close-on-exec stream socket of `family`, or -errno.
int open_stream_socket(int family) noexcept;
/// A non-blocking, close-on-exec UDP socket of `family`, or -errno.
int open_datagram_socket(int family) noexcept;
/// bind(): 0 or -errno.
int bind_to(int fd, const SocketAddress& addr) noexcept;
/// Starts a non-blocking connect(): 0 when already connected, -EINPROGRESS while in progress,
/// or another -errno.
int start_connect(int fd, const SocketAddress& addr) noexcept;
/// True when a connected TCP socket is connected to itself (same local and peer address).
bool connected_to_itself(int fd) noexcept;

/// Checks that `fd` is a connected stream socket and makes it non-blocking and close-on-exec;
/// fills `peer`. EBADF, ENOTSOCK, EPROTOTYPE (not a stream socket), ENOTCONN, ...
std::error_code prepare_adopted(int fd, SocketAddress& peer) noexcept;

/// True for AF_INET and AF_INET6.
bool is_tcp_family(int family) noexcept;
/// sizeof(sockaddr_in) or sizeof(sockaddr_in6) for AF_INET or AF_INET6; 0 for other families.
std::size_t ip_sockaddr_size(int family) noexcept;

/// Applies no-SIGPIPE (where that is a socket option), buffer sizes, and for TCP, TCP_NODELAY and
/// keep-alive, as `options` say.
void configure_connection(int fd, bool is_tcp, const ConnOptions& options) noexcept;

/// SO_SNDBUF and SO_RCVBUF, each when positive.
void set_buffer_sizes(int fd, int send_buffer, int receive_buffer) noexcept;
/// The balancing reuse-port option (SO_REUSEPORT, SO_REUSEPORT_LB on FreeBSD).
void set_reuseport(int fd) noexcept;
/// IPV6_V6ONLY: an IPv6 socket that neither takes nor reaches IPv4 peers (tcp6://, udp6://).
void set_ipv6_only(int fd) noexcept;

/// sendmsg without SIGPIPE: bytes sent, or -errno.
/// With `more`, tells the kernel more data follows at once (MSG_MORE where there is one): a
/// header then a file range leave in one segment.
long send_pieces(int fd, const iovec* iov, int count, bool more = false) noexcept;

/// recv: bytes received (0 at end of stream), or -errno.
long receive(int fd, void* buffer, std::size_t size) noexcept;

/// What discard_input() found.
enum class Drained { empty, more, ended, failed };
/// Reads and drops what the peer has sent, up to `budget` bytes: `empty` once nothing is left for
/// now, `more` when the budget ran out first, `ended` at the end of the peer's stream, `failed`
/// at an error (a reset: `error` is its errno). Nothing more comes after the last two.
Drained discard_input(int fd, std::size_t budget, int& error) noexcept;

/// shutdown(SHUT_WR): 0 or -errno.
int shutdown_output(int fd) noexcept;
/// SO_LINGER {on, 0}: the next close() sends a reset (RST) instead of a FIN.
void set_reset_on_close(int fd) noexcept;

/// The socket's pending error (SO_ERROR), cleared by reading it.
std::error_code socket_error(int fd) noexcept;

/// The local address of a socket.
SocketAddress local_address(int fd);
/// The peer address of a connected socket (empty when not connected).
SocketAddress peer_address(int fd);

}  // namespace evloop::detail
