// Internal to bench/. Small helpers shared by the runner, the load generator and the two baseline
// servers: clocks, CPU time, numeric flags, the "tcp://127.0.0.1:PORT" address form and the
// "listening on" line. Header-only and libc-only, so the baselines and the load generator never
// need the library.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace bench {

/// Monotonic clock in nanoseconds.
inline std::uint64_t now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// User + system CPU time of this process, in seconds.
inline double self_cpu_seconds() noexcept {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

/// The value of a numeric command-line flag: the whole of `text` must be a number (a whole one
/// for an integer type, without a sign for an unsigned one) from `min` to `max`. Anything else is
/// a usage error: prints "PROGRAM: FLAG needs a whole number >= 1, got 'TEXT'" and exits with 2.
template <class T>
T flag_number(const char* program, std::string_view flag, const std::string& text, T min,
              T max = std::numeric_limits<T>::max()) {
  static_assert(std::is_arithmetic_v<T>);
  const char* s = text.c_str();
  char* end = nullptr;
  errno = 0;
  bool ok = !text.empty() && (s[0] == '-' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9'));
  T value{};
  if constexpr (std::is_floating_point_v<T>) {
    const double v = std::strtod(s, &end);
    ok = ok && v >= min && v <= max;  // false for NaN
    value = static_cast<T>(v);
  } else if constexpr (std::is_signed_v<T>) {
    const long long v = std::strtoll(s, &end, 10);
    ok = ok && v >= min && v <= max;
    value = static_cast<T>(v);
  } else {
    const unsigned long long v = std::strtoull(s, &end, 10);
    ok = ok && s[0] != '-' && v >= min && v <= max;
    value = static_cast<T>(v);
  }
  if (ok && errno == 0 && *end == '\0') return value;
  auto str = [](T x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", static_cast<double>(x));
    return std::string(buf);
  };
  const std::string range = max == std::numeric_limits<T>::max()
                                ? ">= " + str(min)
                                : "from " + str(min) + " to " + str(max);
  std::fprintf(stderr, "%s: %.*s needs %s %s, got '%s'\n", program, static_cast<int>(flag.size()),
               flag.data(), std::is_integral_v<T> ? "a whole number" : "a number", range.c_str(),
               s);
  std::exit(2);
}

/// Parses "tcp://A.B.C.D:PORT", "tcp4://A.B.C.D:PORT" or "A.B.C.D:PORT" (IPv4 only: the benchmark
/// runs on 127.0.0.1). Returns nothing on a malformed string.
inline std::optional<sockaddr_in> parse_tcp4(std::string_view text) {
  for (std::string_view scheme : {"tcp://", "tcp4://"}) {
    if (text.substr(0, scheme.size()) == scheme) {
      text.remove_prefix(scheme.size());
      break;
    }
  }
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string host(text.substr(0, colon));
  const std::string port(text.substr(colon + 1));
  char* end = nullptr;
  const unsigned long p = std::strtoul(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p > 65535) return std::nullopt;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(p));
  if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) return std::nullopt;
  return sa;
}

/// Prints "listening on tcp4://HOST:PORT" for a bound socket, flushed (the runner waits for it).
inline bool print_listening(int fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) return false;
  char host[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
  std::printf("listening on tcp4://%s:%u\n", host, ntohs(sa.sin_port));
  std::fflush(stdout);
  return true;
}

/// Creates, binds and listens on an IPv4 TCP socket (SO_REUSEADDR, large backlog); -1 on error,
/// with errno set.
inline int listen_tcp4(const sockaddr_in& sa, int flags = 0) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
  if (fd < 0) return -1;
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0 || listen(fd, 4096) != 0) {
    const int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

}  // namespace bench
