// Public. Listen-address strings and socket addresses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "evloop/error.hpp"

namespace evloop {

/// The transport a listen address names.
enum class Transport {
  tcp,   ///< `tcp://host:port`: IPv4 or IPv6, whatever the host resolves to (IPv4 when empty).
  tcp4,  ///< `tcp4://host:port`: IPv4 only.
  tcp6,  ///< `tcp6://[host]:port`: IPv6 only.
  unix_socket,   ///< `unix://path`: a Unix-domain stream socket.
  inherited_fd,  ///< `fd://N`: a listening socket this process already has (inherited, passed in).
  udp,           ///< `udp://host:port`: UDP, IPv4 or IPv6 as the host resolves (IPv4 when empty).
  udp4,          ///< `udp4://host:port`: UDP over IPv4 only.
  udp6,          ///< `udp6://[host]:port`: UDP over IPv6 only.
  systemd,       ///< `systemd://` or `systemd://NAME`: sockets passed by systemd socket activation.
};

/// True for the UDP transports (udp, udp4, udp6).
constexpr bool is_udp(Transport t) noexcept {
  return t == Transport::udp || t == Transport::udp4 || t == Transport::udp6;
}

/// A parsed address, e.g. `tcp://127.0.0.1:8080?reuseport=1`, `udp6://[::1]:5353`,
/// `unix:///tmp/app.sock`, `fd://3`, `systemd://web`.
///
/// Grammar: `[scheme://]host:port[?opt=val[&opt=val]...]` for tcp, tcp4, tcp6, udp, udp4 and udp6
/// (the scheme defaults to tcp), with IPv6 hosts in brackets (`[fe80::1%eth0]` takes a zone)
/// and IPv4 literals as dotted quads (inet_aton's shorthands such as `127.1`, `0x7f.0.0.1` or
/// `010.0.0.1` are refused: a typo would name another host), `unix://path[?...]` for Unix
/// sockets, `fd://N` for a listening socket the process already holds (fd N; evloop takes it
/// over and closes it when it stops), and `systemd://` (every socket systemd passed) or
/// `systemd://NAME` (those whose FileDescriptorName= is NAME): see the README's "Zero-downtime
/// restart". Port 0 asks the kernel for a free port. Options (listen addresses only):
/// `reuseport=0|1` (overrides Options::reuseport for this address) and, for stream sockets,
/// `backlog=N` (listen backlog, 1..65535, default 1024).
struct ListenAddress {
  Transport transport = Transport::tcp;  ///< Which transport.
  std::string host;               ///< TCP or UDP host (name or literal, no brackets); may be empty.
  std::uint16_t port = 0;         ///< TCP or UDP port; 0 = any free port.
  std::string path;               ///< Unix socket path.
  std::optional<bool> reuseport;  ///< Per-address reuse-port setting, if given.
  int backlog = 1024;             ///< listen() backlog.
  int fd = -1;                    ///< The socket of an `fd://N` address.
  std::string name;               ///< The name of a `systemd://NAME` address (empty: all).
  std::string text;               ///< The original string, for messages.
};

/// Parses `text` into `out`. On failure returns errc::bad_address, errc::unknown_scheme or
/// errc::bad_option with a message that quotes the input; `out` is then unspecified.
Status parse_listen_address(std::string_view text, ListenAddress& out);

/// Parses a dial target: `tcp://host:port`, `tcp4://`, `tcp6://[host]:port` or `unix://path` for
/// Loop::connect, `udp://host:port`, `udp4://`, `udp6://[host]:port` for Loop::connect_udp; no
/// `?options`; a host must be given and the port must not be 0. Failures as for
/// parse_listen_address.
Status parse_connect_address(std::string_view text, ListenAddress& out);

/// A socket address (IPv4, IPv6 or Unix), stored by value. Holds the bytes of a `sockaddr_storage`
/// without exposing platform headers: `data()`/`size()` can be passed to connect() or bind().
class SocketAddress {
 public:
  /// An empty address (family() == 0).
  SocketAddress() = default;
  /// Copies `len` bytes of a sockaddr; longer input is truncated to capacity().
  SocketAddress(const void* sockaddr, std::size_t len) noexcept;

  /// The address family (AF_INET, AF_INET6, AF_UNIX) or 0 when empty.
  int family() const noexcept;
  /// The TCP or UDP port in host byte order; 0 for Unix sockets.
  std::uint16_t port() const noexcept;
  /// "127.0.0.1:8080", "[::1]:8080", "unix:/path" ("unix:" alone for an unnamed Unix peer;
  /// "(none)" for an empty address).
  std::string to_string() const;
  /// The same address as a listen-address URL: "tcp4://127.0.0.1:8080", "tcp6://[::1]:8080",
  /// "unix:///path". Useful to print bound addresses in a form that can be served again. An
  /// unnamed Unix peer (a client that did not bind) gives "unix://", which names nothing to
  /// serve or dial: the parsers refuse it. "(none)" for an empty address.
  std::string to_url() const;
  /// The same as a UDP URL: "udp4://127.0.0.1:53", "udp6://[::1]:53" ("(none)" for a Unix or
  /// empty address).
  std::string to_udp_url() const;
  /// Raw sockaddr bytes, for connect()/bind().
  const void* data() const noexcept { return storage_; }
  /// Raw sockaddr bytes, for accept()/getsockname().
  void* data() noexcept { return storage_; }
  /// Length of the valid bytes.
  std::size_t size() const noexcept { return len_; }
  /// Sets the length after the kernel filled data().
  void set_size(std::size_t len) noexcept { len_ = len < capacity() ? len : capacity(); }
  /// Bytes available in data() (the size of sockaddr_storage).
  static constexpr std::size_t capacity() noexcept { return sizeof(storage_); }

 private:
  alignas(8) unsigned char storage_[128] = {};
  std::size_t len_ = 0;
};

}  // namespace evloop
