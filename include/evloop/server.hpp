// Public. The server: listeners, loops and the user's callbacks.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "evloop/address.hpp"
#include "evloop/conn.hpp"
#include "evloop/error.hpp"
#include "evloop/handlers.hpp"
#include "evloop/loop.hpp"
#include "evloop/loop_group.hpp"
#include "evloop/options.hpp"
#include "evloop/stats.hpp"
#include "evloop/udp.hpp"
#include "evloop/upgrade.hpp"

namespace evloop {

namespace detail {
class ServerCore;
}

/// What `serving` is told once every loop listens.
struct ServingInfo {
  /// One bound address per listen address, in the order given (port 0 resolved): first
  /// Options::listen, then the addresses added with Server::listen(). A `systemd://` address
  /// gives one for each distinct address of the sockets it names.
  std::vector<SocketAddress> addresses;
  /// Number of loops (also with LoopOptions::kAutoLoops: size per-loop state, indexed by
  /// Loop::index(), here; no loop thread has started yet).
  std::size_t loops = 0;
  /// True in a process a live upgrade started: its listening sockets are its predecessor's, and
  /// the connections the predecessor hands over arrive once it has started.
  bool successor = false;
  /// The event backend the loops use: "epoll", "io_uring" or "kqueue" (the same for every loop).
  std::string backend;
  /// Why the backend is not the one asked for (LoopOptions::backend or EVLOOP_BACKEND), e.g.
  /// "io_uring unavailable (Operation not permitted): using epoll"; empty when it is.
  std::string backend_note;
  /// The same addresses as `addresses`, as URLs that name their transport too:
  /// "tcp4://127.0.0.1:7000", "udp6://[::1]:5353", "unix:///tmp/a.sock".
  std::vector<std::string> urls;
};

/// The server's hooks: the handlers of the connections its listeners accept (Handlers), the
/// per-loop hooks (LoopHooks), and `serving`. Every one is optional; see Handlers and LoopHooks
/// for the rules. Any of them may call Conn::close() or Server::stop(); none may destroy the
/// Server or call wait().
struct Callbacks : Handlers, LoopHooks {
  /// Once, after every listener is bound and before any connection opens; runs on the thread
  /// that called start()/run(), before the loop threads start (before any `loop_started`).
  std::function<void(const ServingInfo&)> serving;
};

/// A server: N loops (a LoopGroup) serving the configured addresses.
///
/// Use run() to serve on the calling thread until stop(), or start() then stop() and wait() to
/// embed it. stop() is thread-safe and async-signal-safe. The destructor stops and joins. A
/// Server runs once: create a new one to serve again. start() or run() after stop() fails with
/// errc::already_started, also when stop() came before any start().
class Server {
 public:
  /// Creates a server; nothing is bound until start(). `options` and `callbacks` are also the
  /// connection options and handlers of every connection accepted on Options::listen.
  Server(Options options, Callbacks callbacks);
  /// Stops the loops, if running, and waits for them. Not on one of the server's loop threads
  /// (from a callback): it would join itself, so it aborts with a message, in every build type.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Adds a listen address whose connections get `handlers` and `options` instead of the
  /// server's (a second protocol on another port, say). Before start() only: afterwards it
  /// returns errc::already_started. The address is checked by start().
  Status listen(std::string address, Handlers handlers, ConnOptions options);
  /// Adds a UDP address (`udp://host:port`, `udp4://`, `udp6://[host]:port`) served with
  /// `handlers` and `options`. With reuse-port (Options::reuseport or `?reuseport=1`, where the
  /// kernel balances) every loop gets its own socket bound to that port and the kernel spreads
  /// the peers (one flow stays on one loop); otherwise loop 0 serves it. No UDP socket is ever in
  /// two loops' pollers. Before start() only; the address is checked by start().
  Status listen_udp(std::string address, DatagramHandlers handlers, UdpOptions options = {});

  /// Parses the addresses, binds every listener and creates every loop; on any error returns it
  /// (errc::bad_address, errc::unknown_scheme, errc::bad_option naming the field,
  /// errc::no_address, or a system error such as EADDRINUSE or EACCES, with a message naming the
  /// address) having started no thread and left no fd open. On success runs `serving` and starts
  /// the loop threads. A second start() fails with errc::already_started.
  Status start();
  /// start(), then wait() until stop(); returns the first error of either.
  Status run();
  /// Asks every loop to stop: listeners close, pending output is flushed for up to
  /// Options::shutdown_grace, `closed` fires for every connection. Returns at once. Callable from
  /// any thread, any callback and a signal handler; calling it again does nothing. Tasks posted
  /// before it (Loop::post, ConnRef) still run first, on open connections: to say goodbye, post
  /// to each loop a task that writes it to that loop's connections, then call stop().
  void stop() noexcept;
  /// Blocks until every loop thread has finished (after stop()). Called on one of its own loop
  /// threads (it would join itself) it aborts with a message, in every build type. Returns
  /// an error if a loop stopped on a failure of its poller. A host-name lookup still in progress
  /// then is waited for up to Options::shutdown_grace, then left to end by itself.
  Status wait();
  /// True between a successful start() and the end of wait().
  bool running() const noexcept;

  /// Live upgrade: hands this running server over to a new process (typically the same program,
  /// its binary replaced), without refusing or resetting a connection. Starts `options.argv`
  /// with this server's listening sockets (per loop) and a control socket (EVLOOP_UPGRADE_FD); its
  /// Server's start() takes the sockets and reports ready. Then this server stops accepting
  /// (the sockets stay open: they are the successor's too), asks every open connection's
  /// `handover` handler, and sends each connection it lets go (fd, unconsumed input, unsent output,
  /// state) to the successor, whose `adopted` handler takes it on. Returns once that is done;
  /// the connections that stayed go on until they close, UpgradeOptions::drain_timeout at most;
  /// then the loops stop and run()/wait() return (for the program to exit, with code 0).
  ///
  /// Fails with errc::upgrade_failed, this server serving on as before, when the successor cannot
  /// start, exits or is not ready within UpgradeOptions::ready_timeout (it is killed), is lost
  /// during the handover (the connections not yet sent are taken back), or is stopped during the
  /// handover (it refuses the connections not yet taken, which are taken back). The same, at once,
  /// when this server is itself a successor whose predecessor has not finished handing over
  /// within ready_timeout (a stuck predecessor blocks no upgrade). errc::upgrade_in_progress
  /// while another upgrade runs, or after one succeeded; errc::bad_option for bad options;
  /// errc::upgrade_failed at once when the server is not running. Blocks; call it from a thread
  /// that is not one of the loops' (not from a handler: there it fails with errc::upgrade_failed,
  /// saying so). Fills `report` on success. See the README's "Zero-downtime restart".
  Status upgrade(const UpgradeOptions& options, UpgradeReport* report = nullptr);

  /// The bound addresses (valid after a successful start()), as in ServingInfo.
  const std::vector<SocketAddress>& addresses() const noexcept;
  /// Number of loops (valid after a successful start()).
  std::size_t loop_count() const noexcept;
  /// Loop `i` (valid after a successful start(), while the server lives). An `i` of loop_count()
  /// or more (any `i` before start()) aborts with a message, in every build type.
  Loop& loop(std::size_t i) const;
  /// Counters of every loop, indexed by loop.
  std::vector<LoopStats> stats() const;
  /// The event backend the loops use ("epoll", "io_uring", "kqueue"), after a successful start().
  /// Every loop uses the same one (see Backend::io_uring), so this is each loop's.
  const char* backend() const noexcept;

 private:
  std::unique_ptr<detail::ServerCore> core_;
};

}  // namespace evloop
