#include "socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include "platform.hpp"
#include "sys_error.hpp"

namespace evloop::detail {
namespace {

Status listen_error(const ListenAddress& addr, const char* step, int e) {
  return {sys_error(e), "listen " + addr.text + ": " + step + ": " + sys_error(e).message()};
}

// Binds, listens (stream sockets) and records the bound address. `fd` is already a socket of the
// right family and type.
Status bind_and_listen(const ListenAddress& addr, UniqueFd fd, const sockaddr* sa, socklen_t len,
                       OpenedListener& out) {
  if (::bind(fd.get(), sa, len) < 0) return listen_error(addr, "bind", errno);
  if (!is_udp(addr.transport) && ::listen(fd.get(), addr.backlog) < 0) {
    return listen_error(addr, "listen", errno);
  }
  out.bound = local_address(fd.get());
  out.fd = std::move(fd);
  return {};
}

// A TCP listener or a bound UDP socket on `addr` (a host name is resolved here: this runs before
// the loops start).
Status open_ip_socket(const ListenAddress& addr, bool reuseport, std::uint16_t port,
                      OpenedListener& out) {
  const int type = is_udp(addr.transport) ? SOCK_DGRAM : SOCK_STREAM;
  addrinfo hints{};
  hints.ai_socktype = type;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  hints.ai_family = ip_family(addr.transport);
  if (hints.ai_family == AF_UNSPEC && addr.host.empty()) hints.ai_family = AF_INET;
  const std::string service = std::to_string(port != 0 ? port : addr.port);
  addrinfo* list = nullptr;
  if (int rc = ::getaddrinfo(addr.host.empty() ? nullptr : addr.host.c_str(), service.c_str(),
                             &hints, &list);
      rc != 0) {
    return {make_error_code(errc::bad_address), "listen " + addr.text + ": cannot resolve host '" +
                                                    addr.host + "': " + ::gai_strerror(rc)};
  }
  Status result = listen_error(addr, "resolve", EADDRNOTAVAIL);
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(platform::socket_nonblocking(ai->ai_family, type));
    if (fd.get() < 0) {
      result = listen_error(addr, "socket", errno);
      continue;
    }
    const int on = 1;
    // TCP: rebinding a port with connections in TIME_WAIT. Not for UDP, where it would let a
    // second socket bind the same address and port silently (Linux) instead of EADDRINUSE.
    if (type == SOCK_STREAM) ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (reuseport &&
        ::setsockopt(fd.get(), SOL_SOCKET, platform::kReuseportOption, &on, sizeof on) < 0) {
      result = listen_error(addr, "setsockopt(reuseport)", errno);
      continue;
    }
    if (ai->ai_family == AF_INET6 && ip_family(addr.transport) == AF_INET6) {
      set_ipv6_only(fd.get());
    }
    result = bind_and_listen(addr, std::move(fd), ai->ai_addr, ai->ai_addrlen, out);
    if (result) break;
  }
  ::freeaddrinfo(list);
  return result;
}

// Removes a leftover socket file at `path` from a server that is gone. Refuses (EADDRINUSE) when
// the path is not a socket, or when a server still accepts on it.
Status clear_stale_unix_path(const ListenAddress& addr, const sockaddr_un& sun) {
  struct stat st {};
  if (::lstat(addr.path.c_str(), &st) < 0) {
    return errno == ENOENT ? Status{} : listen_error(addr, "stat", errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return {sys_error(EADDRINUSE), "listen " + addr.text + ": " + addr.path +
                                       " exists and is not a socket; not removing it"};
  }
  // A live listener accepts (or, with a full backlog, says EAGAIN); a stale file refuses.
  UniqueFd probe(platform::socket_nonblocking(AF_UNIX));
  const bool live =
      probe.get() >= 0 &&
      (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&sun), sizeof sun) == 0 ||
       errno == EAGAIN || errno == EINPROGRESS);
  if (live) {
    return {sys_error(EADDRINUSE),
            "listen " + addr.text + ": a server is already listening on " + addr.path};
  }
  if (::unlink(addr.path.c_str()) < 0 && errno != ENOENT)
    return listen_error(addr, "unlink", errno);
  return {};
}

Status open_unix_listener(const ListenAddress& addr, OpenedListener& out) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, addr.path.data(), addr.path.size());  // length checked by the parser
  if (Status s = clear_stale_unix_path(addr, sun); !s) return s;
  UniqueFd fd(platform::socket_nonblocking(AF_UNIX));
  if (fd.get() < 0) return listen_error(addr, "socket", errno);
  if (Status s = bind_and_listen(addr, std::move(fd), reinterpret_cast<const sockaddr*>(&sun),
                                 sizeof sun, out);
      !s) {
    return s;
  }
  out.unix_path = UnixPathOwner::of(out.bound);
  return {};
}

}  // namespace

static_assert(sizeof(sockaddr_in6) <= 28 && sizeof(sockaddr) <= 28);

PeerAddress::PeerAddress(const SocketAddress& address) noexcept {
  if (is_tcp_family(address.family()) && address.size() <= sizeof bytes_) {
    std::memcpy(bytes_, address.data(), address.size());
  } else if (address.family() == AF_UNIX) {
    sockaddr family_only{};
    family_only.sa_family = AF_UNIX;
    std::memcpy(bytes_, &family_only, sizeof family_only);
  }
}

int PeerAddress::family() const noexcept {
  sockaddr head{};
  std::memcpy(&head, bytes_, sizeof head);
  return head.sa_family;
}

SocketAddress PeerAddress::get(int fd) const {
  const int family = this->family();
  if (const std::size_t size = ip_sockaddr_size(family)) return SocketAddress(bytes_, size);
  if (family == AF_UNIX && fd >= 0) {
    SocketAddress named = peer_address(fd);
    if (named.family() == AF_UNIX) return named;
  }
  if (family == AF_UNIX) {
    const sa_family_t unnamed = AF_UNIX;
    return SocketAddress(&unnamed, sizeof unnamed);  // an unnamed Unix peer
  }
  return {};
}

void UniqueFd::reset() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

UnixPathOwner UnixPathOwner::of(const SocketAddress& bound) {
  if (bound.family() != AF_UNIX) return {};
  const auto* un = static_cast<const sockaddr_un*>(bound.data());
  const std::size_t offset = offsetof(sockaddr_un, sun_path);
  if (bound.size() <= offset || un->sun_path[0] == '\0') return {};  // unnamed or abstract
  std::string path(un->sun_path, strnlen(un->sun_path, bound.size() - offset));
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return UnixPathOwner(std::move(path), st.st_dev, st.st_ino);
}

UnixPathOwner::~UnixPathOwner() {
  if (path_.empty()) return;
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev_ &&
      st.st_ino == ino_) {
    ::unlink(path_.c_str());
  }
}

Status open_listener(const ListenAddress& addr, bool reuseport, std::uint16_t port,
                     OpenedListener& out) {
  if (addr.transport == Transport::unix_socket) return open_unix_listener(addr, out);
  return open_ip_socket(addr, reuseport, port, out);
}

int ip_family(Transport transport) noexcept {
  switch (transport) {
    case Transport::tcp4:
    case Transport::udp4:
      return AF_INET;
    case Transport::tcp6:
    case Transport::udp6:
      return AF_INET6;
    default:
      return AF_UNSPEC;
  }
}

int accept_connection(int listen_fd, SocketAddress& peer) noexcept {
  socklen_t len = static_cast<socklen_t>(SocketAddress::capacity());
  const int fd = platform::accept_nonblocking(listen_fd, static_cast<sockaddr*>(peer.data()), &len);
  if (fd < 0) return -errno;
  peer.set_size(len);
  return fd;
}

bool numeric_address(const ListenAddress& target, SocketAddress& out) {
  if (target.transport == Transport::unix_socket) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, target.path.data(), target.path.size());  // length checked
    out = SocketAddress(&sun, sizeof sun);
    return true;
  }
  const int family = ip_family(target.transport);
  if (family != AF_INET6) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(target.port);
    if (::inet_pton(AF_INET, target.host.c_str(), &sin.sin_addr) == 1) {
      out = SocketAddress(&sin, sizeof sin);
      return true;
    }
  }
  if (family != AF_INET) {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(target.port);
    if (::inet_pton(AF_INET6, target.host.c_str(), &sin6.sin6_addr) == 1) {
      out = SocketAddress(&sin6, sizeof sin6);
      return true;
    }
  }
  return false;
}

bool parse_source_address(const std::string& text, SocketAddress& out) {
  // The listen grammar below would accept (and the bind then ignore) `?reuseport=1` and the like:
  // a source address is a bare host and port, so a query is refused rather than dropped.
  if (text.find('?') != std::string::npos) return false;
  // HOST:PORT and [V6]:PORT have the listen grammar; HOST, [V6] and a bare V6 mean port 0.
  const auto colons = std::count(text.begin(), text.end(), ':');
  std::string host_port = text;
  if (text.starts_with('[')) {
    if (text.ends_with(']')) host_port += ":0";
  } else if (colons == 0) {
    host_port += ":0";
  } else if (colons > 1) {
    host_port = "[" + text + "]:0";
  }
  ListenAddress parsed;
  if (!parse_listen_address("tcp://" + host_port, parsed) || parsed.host.empty()) return false;
  return numeric_address(parsed, out);
}

int open_stream_socket(int family) noexcept {
  const int fd = platform::socket_nonblocking(family);
  return fd < 0 ? -errno : fd;
}

int open_datagram_socket(int family) noexcept {
  const int fd = platform::socket_nonblocking(family, SOCK_DGRAM);
  return fd < 0 ? -errno : fd;
}

int bind_to(int fd, const SocketAddress& addr) noexcept {
  return ::bind(fd, static_cast<const sockaddr*>(addr.data()),
                static_cast<socklen_t>(addr.size())) < 0
             ? -errno
             : 0;
}

int start_connect(int fd, const SocketAddress& addr) noexcept {
  int rc;
  do {
    rc = ::connect(fd, static_cast<const sockaddr*>(addr.data()),
                   static_cast<socklen_t>(addr.size()));
  } while (rc < 0 && errno == EINTR);
  return rc < 0 ? -errno : 0;
}

bool connected_to_itself(int fd) noexcept {
  const SocketAddress local = local_address(fd);
  const SocketAddress peer = peer_address(fd);
  return is_tcp_family(local.family()) && local.size() == peer.size() &&
         std::memcmp(local.data(), peer.data(), local.size()) == 0;
}

std::error_code prepare_adopted(int fd, SocketAddress& peer) noexcept {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return sys_error(errno);
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) return sys_error(errno);
  if (type != SOCK_STREAM) return sys_error(EPROTOTYPE);
  peer = peer_address(fd);
  if (peer.family() == 0) return sys_error(ENOTCONN);
  if (::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || ::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
    return sys_error(errno);
  }
  return {};
}

bool is_tcp_family(int family) noexcept { return family == AF_INET || family == AF_INET6; }

std::size_t ip_sockaddr_size(int family) noexcept {
  return family == AF_INET ? sizeof(sockaddr_in) : family == AF_INET6 ? sizeof(sockaddr_in6) : 0;
}

void configure_connection(int fd, bool is_tcp, const ConnOptions& options) noexcept {
  const int on = 1;
  if constexpr (platform::kHasNoSigpipeOption) {
    ::setsockopt(fd, SOL_SOCKET, platform::kNoSigpipeOption, &on, sizeof on);
  }
  set_buffer_sizes(fd, options.socket_send_buffer, options.socket_receive_buffer);
  if (!is_tcp) return;
  if (options.tcp_nodelay) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  if (options.keepalive.count() > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    platform::set_keepalive_idle(fd, static_cast<int>(options.keepalive.count()));
  }
}

void set_buffer_sizes(int fd, int send_buffer, int receive_buffer) noexcept {
  if (send_buffer > 0) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer);
  if (receive_buffer > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  }
}

void set_reuseport(int fd) noexcept {
  const int on = 1;
  ::setsockopt(fd, SOL_SOCKET, platform::kReuseportOption, &on, sizeof on);
}

void set_ipv6_only(int fd) noexcept {
  const int on = 1;
  ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
}

long send_pieces(int fd, const iovec* iov, int count, bool more) noexcept {
  const int flags = platform::kSendFlags | (more ? platform::kMoreFlag : 0);
  if (count == 1) {  // the common case: send() skips sendmsg's msghdr and iovec copies
    const ssize_t n = ::send(fd, iov[0].iov_base, iov[0].iov_len, flags);
    return n < 0 ? -errno : static_cast<long>(n);
  }
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<decltype(msg.msg_iovlen)>(count);
  const ssize_t n = ::sendmsg(fd, &msg, flags);
  return n < 0 ? -errno : static_cast<long>(n);
}

long receive(int fd, void* buffer, std::size_t size) noexcept {
  const ssize_t n = ::recv(fd, buffer, size, 0);
  return n < 0 ? -errno : static_cast<long>(n);
}

Drained discard_input(int fd, std::size_t budget, int& error) noexcept {
  char sink[16 * 1024];
  for (std::size_t taken = 0; taken < budget;) {
    const ssize_t n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n > 0) {
      taken += static_cast<std::size_t>(n);
    } else if (n == 0) {
      return Drained::ended;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return Drained::empty;
    } else if (errno != EINTR) {
      error = errno;
      return Drained::failed;
    }
  }
  return Drained::more;
}

int shutdown_output(int fd) noexcept { return ::shutdown(fd, SHUT_WR) < 0 ? -errno : 0; }

void set_reset_on_close(int fd) noexcept {
  const linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

std::error_code socket_error(int fd) noexcept {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  return err != 0 ? sys_error(err) : std::error_code{};
}

SocketAddress local_address(int fd) {
  SocketAddress addr;
  socklen_t len = static_cast<socklen_t>(SocketAddress::capacity());
  if (::getsockname(fd, static_cast<sockaddr*>(addr.data()), &len) == 0) addr.set_size(len);
  return addr;
}

SocketAddress peer_address(int fd) {
  SocketAddress addr;
  socklen_t len = static_cast<socklen_t>(SocketAddress::capacity());
  if (::getpeername(fd, static_cast<sockaddr*>(addr.data()), &len) == 0) addr.set_size(len);
  return addr;
}

}  // namespace evloop::detail
