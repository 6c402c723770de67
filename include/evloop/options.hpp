// Public. Server configuration.
#pragma once

#include <string>
#include <vector>

#include "evloop/conn_options.hpp"
#include "evloop/loop_group.hpp"

namespace evloop {

/// How a connection accepted without reuse-port is handed to a loop.
enum class Balance {
  round_robin,        ///< Loops in turn.
  least_connections,  ///< The loop with the fewest open connections.
  source_hash,        ///< A hash of the peer's IP address, so one client sticks to one loop.
};

/// Server configuration: the listen addresses and how they are served, the loops (LoopOptions),
/// and the connection options (ConnOptions) every accepted connection gets unless its listener
/// was added with its own (Server::listen). Every field has a usable default; Server::start()
/// checks the values and fails with errc::bad_option, naming the field, when they are not valid.
struct Options : ConnOptions, LoopOptions {
  /// Addresses to serve, e.g. "tcp://127.0.0.1:0", "tcp6://[::1]:8080", "unix:///tmp/a.sock",
  /// "fd://3" (an inherited listening socket), "systemd://web" (socket activation). See
  /// ListenAddress for the grammar.
  std::vector<std::string> listen;

  /// Give every loop its own SO_REUSEPORT listener per TCP address (and socket per UDP address,
  /// Server::listen_udp), so the kernel spreads connections (and peers). Off (or for Unix
  /// sockets and a single inherited socket): loop 0 accepts and hands connections out by
  /// `balance` (and serves each UDP address alone). (Inherited sockets are used as they are:
  /// several of one address go one per loop, whatever this says.)
  bool reuseport = false;
  /// Policy for handing out connections when one loop accepts.
  Balance balance = Balance::round_robin;
};

}  // namespace evloop
