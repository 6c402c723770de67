// Public. Server configuration.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace evloop {

/// How a connection accepted without reuse-port is handed to a loop.
enum class Balance {
  round_robin,        ///< Loops in turn.
  least_connections,  ///< The loop with the fewest open connections.
  source_hash,        ///< A hash of the peer's IP address, so one client sticks to one loop.
};

/// Server configuration. Every field has a usable default; Server::start() checks the values and
/// fails with errc::bad_option (naming the field) when they are inconsistent.
struct Options {
  /// Addresses to serve, e.g. "tcp://127.0.0.1:0", "tcp6://[::1]:8080", "unix:///tmp/a.sock".
  /// See ListenAddress for the grammar.
  std::vector<std::string> listen;

  /// Number of event loops (threads). kAutoLoops means one per hardware thread.
  unsigned loops = 1;
  /// Value of `loops` meaning "one loop per hardware thread".
  static constexpr unsigned kAutoLoops = 0;

  /// Give every loop its own SO_REUSEPORT listener per TCP address, so the kernel spreads
  /// connections. Off (or for Unix sockets): loop 0 accepts and hands connections out by `balance`.
  bool reuseport = false;
  /// Policy for handing out connections when one loop accepts.
  Balance balance = Balance::round_robin;

  /// TCP_NODELAY on accepted TCP connections.
  bool tcp_nodelay = true;
  /// SO_KEEPALIVE with this idle time before the first probe; zero = keep-alive off.
  std::chrono::seconds keepalive{0};

  /// SO_SNDBUF for accepted connections in bytes; 0 = the kernel's default (auto-tuned).
  int socket_send_buffer = 0;
  /// SO_RCVBUF for accepted connections in bytes; 0 = the kernel's default (auto-tuned).
  int socket_receive_buffer = 0;

  /// Size of each loop's read buffer: the most one read() takes from a connection.
  std::size_t read_buffer_size = 64 * 1024;
  /// A write that takes pending output above this pauses reading from the connection...
  std::size_t output_high_water = 1024 * 1024;
  /// ...until it drains to this; then reading resumes and the `drained` callback runs.
  std::size_t output_low_water = 256 * 1024;
  /// Pending output above this closes the connection with errc::output_limit.
  std::size_t output_limit = 64 * 1024 * 1024;
  /// Unconsumed input (the `data` callback's unconsumed tail) above this closes the connection
  /// with errc::input_limit.
  std::size_t input_limit = 1024 * 1024;

  /// Longest a close() waits for pending output to drain before closing anyway
  /// (errc::close_timeout).
  std::chrono::milliseconds close_timeout{10'000};
  /// On stop(), how long loops keep sending pending output before closing connections.
  std::chrono::milliseconds shutdown_grace{2'000};
  /// Close connections that receive nothing for this long (errc::idle_timeout); zero = never.
  std::chrono::milliseconds idle_timeout{0};
};

}  // namespace evloop
