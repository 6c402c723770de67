// Public. The server: listeners, loops and the user's callbacks.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>
#include <system_error>
#include <vector>

#include "evloop/address.hpp"
#include "evloop/conn.hpp"
#include "evloop/error.hpp"
#include "evloop/loop.hpp"
#include "evloop/options.hpp"
#include "evloop/stats.hpp"

namespace evloop {

namespace detail {
class ServerCore;
}

/// What `serving` is told once every loop listens.
struct ServingInfo {
  /// One bound address per listen address, in the order given (port 0 resolved).
  std::vector<SocketAddress> addresses;
  /// Number of loops.
  std::size_t loops = 0;
};

/// The user's hooks. Every one is optional. Connection callbacks run on the connection's loop
/// thread, never concurrently for one connection. Any callback may call Conn::close() or
/// Server::stop(); none may destroy the Server or call wait(). Callbacks must not throw: an
/// exception escaping a loop thread terminates the process.
struct Callbacks {
  /// Once, after every listener is bound and before any connection opens; runs on the thread
  /// that called start()/run().
  std::function<void(const ServingInfo&)> serving;
  /// A connection was accepted. It may write (e.g. a greeting) or close.
  std::function<void(Conn&)> opened;
  /// Bytes arrived. `bytes` is valid only during the call. Return how many bytes were consumed:
  /// an unconsumed tail (a partial frame) is kept and handed again, followed by new bytes, on the
  /// next call. Without this callback, input is discarded.
  std::function<std::size_t(Conn&, std::string_view bytes)> data;
  /// The peer ended its sending side (EOF, e.g. shutdown(SHUT_WR)). With this callback set, the
  /// connection stays open for writing: reply now or later (from a timer or a posted task), then
  /// close(). Without it, the connection closes as soon as pending output is sent, so a reply
  /// written after that is dropped.
  std::function<void(Conn&)> eof;
  /// The connection closed: exactly once per `opened`. `error` is empty for a clean close (by
  /// either side), an errno (e.g. ECONNRESET) for an I/O error, or an evloop::errc.
  std::function<void(Conn&, std::error_code error)> closed;
  /// Pending output went above output_high_water (which paused reading) and has fallen to
  /// output_low_water, possibly at once when the kernel took it all: a producer that stops
  /// writing when output_pending() passes the mark can continue. Reading has resumed.
  std::function<void(Conn&)> drained;
  /// Runs on loop 0 right after start and then again after the delay it returns; a negative
  /// delay stops the ticks.
  std::function<std::chrono::milliseconds(Loop&)> tick;
};

/// A server: N loops serving the configured addresses.
///
/// Use run() to serve on the calling thread until stop(), or start() then stop() and wait() to
/// embed it. stop() is thread-safe and async-signal-safe. The destructor stops and joins.
class Server {
 public:
  /// Creates a server; nothing is bound until start().
  Server(Options options, Callbacks callbacks);
  /// Stops the loops, if running, and waits for them.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Parses the addresses, binds every listener and creates every loop; on any error returns it
  /// (errc::bad_address, errc::unknown_scheme, errc::bad_option, errc::no_address, or a system
  /// error such as EADDRINUSE or EACCES, with a message naming the address) having started no
  /// thread and left no fd open. On success runs `serving` and starts the loop threads.
  Status start();
  /// start(), then wait() until stop().
  Status run();
  /// Asks every loop to stop: listeners close, pending output is flushed for up to
  /// Options::shutdown_grace, `closed` fires for every connection. Returns at once. Callable from
  /// any thread, any callback and a signal handler; calling it again does nothing.
  void stop() noexcept;
  /// Blocks until every loop thread has finished (after stop()). Not from a loop thread.
  void wait();
  /// True between a successful start() and the end of wait().
  bool running() const noexcept;

  /// The bound addresses (valid after a successful start()).
  const std::vector<SocketAddress>& addresses() const noexcept;
  /// Number of loops (valid after a successful start()).
  std::size_t loop_count() const noexcept;
  /// Loop `i` (valid after a successful start(), while the server lives).
  Loop& loop(std::size_t i) const;
  /// Counters of every loop, indexed by loop. Thread-safe.
  std::vector<LoopStats> stats() const;

 private:
  std::unique_ptr<detail::ServerCore> core_;
};

}  // namespace evloop
