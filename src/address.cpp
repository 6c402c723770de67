// Listen-address parsing and SocketAddress formatting.
#include "evloop/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <charconv>
#include <cstring>

namespace evloop {
namespace {

Status fail(errc code, std::string_view text, std::string_view why,
            std::string_view kind = "listen address") {
  return {code, "bad " + std::string(kind) + " '" + std::string(text) + "': " + std::string(why)};
}

bool parse_uint(std::string_view s, unsigned long max, unsigned long& out) {
  if (s.empty() || s.size() > 10) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size() && out <= max;
}

bool parse_bool(std::string_view s, bool& out) {
  if (s == "1" || s == "true" || s == "yes" || s == "on") return out = true, true;
  if (s == "0" || s == "false" || s == "no" || s == "off") return out = false, true;
  return false;
}

Status parse_options(std::string_view text, std::string_view query, ListenAddress& out) {
  bool reuseport_given = false;
  bool backlog_given = false;
  // An option given twice: which was meant? Said, rather than letting the last one win.
  auto once = [&text](bool& given, std::string_view key) -> Status {
    if (given) return fail(errc::bad_option, text, std::string(key) + " is given twice");
    given = true;
    return {};
  };
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return fail(errc::bad_option, text, "option '" + std::string(item) + "' needs a value");
    }
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    if (key == "reuseport") {
      if (Status s = once(reuseport_given, key); !s) return s;
      bool on = false;
      if (!parse_bool(value, on)) return fail(errc::bad_option, text, "reuseport must be 0 or 1");
      out.reuseport = on;
    } else if (key == "backlog") {
      if (Status s = once(backlog_given, key); !s) return s;
      if (is_udp(out.transport)) {
        return fail(errc::bad_option, text, "backlog is for stream sockets, not udp");
      }
      unsigned long n = 0;
      if (!parse_uint(value, 65535, n) || n == 0) {
        return fail(errc::bad_option, text, "backlog must be 1..65535");
      }
      out.backlog = static_cast<int>(n);
    } else {
      return fail(errc::bad_option, text, "unknown option '" + std::string(key) + "'");
    }
  }
  return {};
}

// An IPv4 host must be a dotted quad. inet_aton, which getaddrinfo uses for numeric hosts, also
// reads "1.2.3" as 1.2.0.3, "127.1" as 127.0.0.1 and "0x7f.1" or "010.0.0.1" in hex and octal:
// a typo there would reach some other host, so a host that looks numeric must pass inet_pton.
Status check_numeric_ipv4(std::string_view text, const std::string& host) {
  const bool digits_and_dots = host.find_first_not_of("0123456789.") == std::string::npos;
  in_addr ignored{};
  if (!digits_and_dots && ::inet_aton(host.c_str(), &ignored) == 0) return {};  // a name
  if (::inet_pton(AF_INET, host.c_str(), &ignored) == 1) return {};
  return fail(errc::bad_address, text,
              "'" + host +
                  "' is not an IPv4 address in dotted-quad form (four numbers 0..255, "
                  "e.g. 127.0.0.1)");
}

// A bracketed host is an IPv6 address, with an optional zone after '%' (fe80::1%eth0).
Status check_ipv6(std::string_view text, std::string_view host) {
  const std::string address(host.substr(0, host.find('%')));
  in6_addr ignored{};
  if (::inet_pton(AF_INET6, address.c_str(), &ignored) == 1) return {};
  return fail(errc::bad_address, text,
              "'" + std::string(host) + "' in brackets is not an IPv6 address (e.g. [::1]:8080)");
}

Status parse_host_port(std::string_view text, std::string_view rest, ListenAddress& out) {
  std::string_view host;
  std::string_view port;
  const bool bracketed = !rest.empty() && rest.front() == '[';
  if (bracketed) {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return fail(errc::bad_address, text, "missing ']'");
    host = rest.substr(1, close - 1);
    if (close + 1 >= rest.size() || rest[close + 1] != ':') {
      return fail(errc::bad_address, text, "expected ':port' after ']'");
    }
    port = rest.substr(close + 2);
    if (out.transport == Transport::tcp4 || out.transport == Transport::udp4) {
      return fail(errc::bad_address, text, "tcp4 and udp4 cannot take an IPv6 host");
    }
  } else {
    const std::size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return fail(errc::bad_address, text, "missing ':port'");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return fail(errc::bad_address, text, "an IPv6 host must be in brackets, e.g. [::1]:8080");
    }
  }
  unsigned long n = 0;
  if (!parse_uint(port, 65535, n)) return fail(errc::bad_address, text, "port must be 0..65535");
  if (host.find_first_of(" /?#@") != std::string_view::npos) {
    return fail(errc::bad_address, text, "bad character in host");
  }
  out.host = std::string(host);
  out.port = static_cast<std::uint16_t>(n);
  if (bracketed) return check_ipv6(text, host);
  return out.host.empty() ? Status{} : check_numeric_ipv4(text, out.host);
}

}  // namespace

Status parse_listen_address(std::string_view text, ListenAddress& out) {
  out = ListenAddress{};
  out.text = std::string(text);
  std::string_view rest = text;
  const std::size_t sep = rest.find("://");
  if (sep != std::string_view::npos) {
    const std::string_view scheme = rest.substr(0, sep);
    rest = rest.substr(sep + 3);
    if (scheme == "tcp") {
      out.transport = Transport::tcp;
    } else if (scheme == "tcp4") {
      out.transport = Transport::tcp4;
    } else if (scheme == "tcp6") {
      out.transport = Transport::tcp6;
    } else if (scheme == "unix") {
      out.transport = Transport::unix_socket;
    } else if (scheme == "fd") {
      out.transport = Transport::inherited_fd;
    } else if (scheme == "udp") {
      out.transport = Transport::udp;
    } else if (scheme == "udp4") {
      out.transport = Transport::udp4;
    } else if (scheme == "udp6") {
      out.transport = Transport::udp6;
    } else if (scheme == "systemd") {
      out.transport = Transport::systemd;
    } else {
      return fail(errc::unknown_scheme, text,
                  "unknown scheme '" + std::string(scheme) +
                      "' (use tcp, tcp4, tcp6, udp, udp4, udp6, unix, fd or systemd)");
    }
  }
  std::string_view query;
  if (const std::size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (out.transport == Transport::unix_socket) {
    if (rest.empty()) return fail(errc::bad_address, text, "empty unix socket path");
    if (rest.size() >= sizeof(sockaddr_un{}.sun_path)) {
      return fail(errc::bad_address, text, "unix socket path too long");
    }
    if (rest.find('\0') != std::string_view::npos) {
      return fail(errc::bad_address, text, "NUL byte in unix socket path");
    }
    out.path = std::string(rest);
  } else if (out.transport == Transport::inherited_fd) {
    unsigned long fd = 0;
    if (!parse_uint(rest, 1u << 30, fd)) {
      return fail(errc::bad_address, text, "fd://N takes a file descriptor number");
    }
    out.fd = static_cast<int>(fd);
  } else if (out.transport == Transport::systemd) {
    // systemd allows names of up to 255 printable characters without ':'.
    if (rest.size() > 255 || rest.find_first_of(":/ \t") != std::string_view::npos) {
      return fail(errc::bad_address, text, "systemd://NAME takes a FileDescriptorName= value");
    }
    out.name = std::string(rest);
  } else if (Status s = parse_host_port(text, rest, out); !s) {
    return s;
  }
  if (out.transport == Transport::inherited_fd && !query.empty()) {
    return fail(errc::bad_option, text, "fd://N takes no ?options");
  }
  if (out.transport == Transport::systemd && !query.empty()) {
    return fail(errc::bad_option, text, "systemd:// takes no ?options (systemd set the socket up)");
  }
  return parse_options(text, query, out);
}

Status parse_connect_address(std::string_view text, ListenAddress& out) {
  constexpr std::string_view kKind = "connect address";
  Status s = parse_listen_address(text, out);
  if (!s) {
    // The same message, naming what the address was for.
    std::string message = s.message();
    if (message.starts_with("bad listen address")) message.replace(4, 14, kKind);
    return {s.code(), message};
  }
  if (out.transport == Transport::inherited_fd || out.transport == Transport::systemd) {
    return fail(errc::unknown_scheme, text,
                std::string(out.transport == Transport::systemd ? "systemd://" : "fd://") +
                    " names a listening socket, not a peer",
                kKind);
  }
  if (text.find('?') != std::string_view::npos) {
    return fail(errc::bad_option, text, "a connect address takes no ?options", kKind);
  }
  if (out.transport != Transport::unix_socket) {
    if (out.host.empty()) return fail(errc::bad_address, text, "no host to connect to", kKind);
    if (out.port == 0) return fail(errc::bad_address, text, "port 0 cannot be dialled", kKind);
  }
  return {};
}

SocketAddress::SocketAddress(const void* sockaddr, std::size_t len) noexcept {
  len_ = len < capacity() ? len : capacity();
  std::memcpy(storage_, sockaddr, len_);
}

int SocketAddress::family() const noexcept {
  if (len_ < sizeof(sa_family_t)) return 0;
  return reinterpret_cast<const sockaddr*>(storage_)->sa_family;
}

std::uint16_t SocketAddress::port() const noexcept {
  switch (family()) {
    case AF_INET:
      return ntohs(reinterpret_cast<const sockaddr_in*>(storage_)->sin_port);
    case AF_INET6:
      return ntohs(reinterpret_cast<const sockaddr_in6*>(storage_)->sin6_port);
    default:
      return 0;
  }
}

std::string SocketAddress::to_string() const {
  char host[INET6_ADDRSTRLEN] = {};
  switch (family()) {
    case AF_INET:
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(storage_)->sin_addr, host,
                  sizeof host);
      return std::string(host).append(":").append(std::to_string(port()));
    case AF_INET6: {
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(storage_)->sin6_addr, host,
                  sizeof host);
      // Appended piece by piece: GCC 12 at -O3 warns falsely (-Wrestrict) on "[" + string.
      std::string out = "[";
      out.append(host).append("]:").append(std::to_string(port()));
      return out;
    }
    case AF_UNIX: {
      const auto* un = reinterpret_cast<const sockaddr_un*>(storage_);
      const std::size_t offset = offsetof(sockaddr_un, sun_path);
      if (len_ <= offset || un->sun_path[0] == '\0') return "unix:";
      return "unix:" + std::string(un->sun_path, strnlen(un->sun_path, len_ - offset));
    }
    default:
      return "(none)";
  }
}

std::string SocketAddress::to_url() const {
  switch (family()) {
    case AF_INET:
      return "tcp4://" + to_string();
    case AF_INET6:
      return "tcp6://" + to_string();
    case AF_UNIX:
      return "unix://" + to_string().substr(5);
    default:
      return "(none)";
  }
}

std::string SocketAddress::to_udp_url() const {
  switch (family()) {
    case AF_INET:
      return "udp4://" + to_string();
    case AF_INET6:
      return "udp6://" + to_string();
    default:
      return "(none)";
  }
}

}  // namespace evloop
