// Public. N event loops, one thread each, without a server: for clients, load generators and
// programs that only dial out or adopt sockets. A Server is a LoopGroup plus listeners.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "evloop/error.hpp"
#include "evloop/loop.hpp"
#include "evloop/stats.hpp"

namespace evloop {

namespace detail {
class LoopGroupCore;
}

/// The kernel interface a loop uses for its events.
enum class Backend {
  automatic,  ///< EVLOOP_BACKEND from the environment if set, else the platform's default
              ///< (epoll on Linux, kqueue on the BSDs and macOS).
  epoll,      ///< Linux: readiness with epoll.
  io_uring,   ///< Linux 6.0+: completions with io_uring (batched receives and sends); falls
              ///< back to epoll, with a note in ServingInfo / LoopGroup::backend_note(), where
              ///< the kernel refuses it (ENOSYS, EPERM from kernel.io_uring_disabled or seccomp,
              ///< a missing feature, ENOMEM). All loops fall back together: should the kernel
              ///< refuse it to one loop only (out of locked memory or address space), every
              ///< loop uses epoll.
};

/// Settings of the loops themselves (a Server takes them from its Options).
struct LoopOptions {
  /// Number of event loops (threads), at most 4096 (more fails start() with errc::bad_option).
  /// kAutoLoops means one per hardware thread.
  unsigned loops = 1;
  /// Value of `loops` meaning "one loop per hardware thread".
  static constexpr unsigned kAutoLoops = 0;
  /// Size of each loop's read buffer: the most one read takes from a connection on epoll and
  /// kqueue (on io_uring a receive fills one provided buffer instead, 16 or 64 KiB: see
  /// uring_buffers). 1 byte to kMaxReadBufferSize.
  std::size_t read_buffer_size = 64 * 1024;
  /// The largest read_buffer_size (1 GiB).
  static constexpr std::size_t kMaxReadBufferSize = std::size_t{1} << 30;
  /// On stop(), how long loops keep sending pending output before resetting the connections
  /// that still have some (errc::shutdown_timeout); also how long wait() waits for a host-name
  /// lookup still in progress. Must not be negative.
  std::chrono::milliseconds shutdown_grace{2'000};
  /// The event backend (see Backend). The environment variable EVLOOP_BACKEND (auto, epoll or
  /// io_uring) overrides `automatic`, so a program and a test suite run on io_uring unchanged.
  /// A value that is none of the enumerators fails start() with errc::bad_option.
  Backend backend = Backend::automatic;
  /// io_uring only: provided receive buffers per loop, small ones (16 KiB each); the loop also
  /// gets uring_buffers / 8 large ones (64 KiB each, at least 1). 0 means the default, 512 (so
  /// 8 MiB + 4 MiB per loop); otherwise a power of two up to kMaxUringBuffers. Fewer save memory;
  /// when more connections receive at once than there are buffers, the receives that find none
  /// are asked again after the loop's next wait (LoopStats::receive_buffer_waits counts them):
  /// slower, never lost or reordered.
  unsigned uring_buffers = 0;
  /// The largest uring_buffers.
  static constexpr unsigned kMaxUringBuffers = 32768;
};

/// Hooks run on each loop's own thread. Every one is optional and must not throw.
struct LoopHooks {
  /// On each loop thread as it starts, before it handles any connection or task: per-loop
  /// set-up (thread-local state, a timer with Loop::run_every).
  std::function<void(Loop&)> loop_started;
  /// On each loop thread as it stops, after its listeners closed and every one of its
  /// connections has closed (`closed` fired), before the thread exits: per-loop tear-down.
  /// A dial, adoption or UDP socket asked for here cannot start (an empty ref, no handler).
  std::function<void(Loop&)> loop_stopping;
  /// Runs on every loop right after loop_started, then again after the delay it returns; a
  /// negative delay stops that loop's ticks, and none runs once the loop is stopping. A delay of
  /// zero runs it again at the next iteration, whose wait then does not block (a loop ticking
  /// with 0 never sleeps). (A per-loop repeating timer: Loop::run_every does the same with a
  /// fixed interval.)
  std::function<std::chrono::milliseconds(Loop&)> tick;
};

/// N loops without listeners. start() then stop() and wait(), or run() to block until stop().
/// The destructor stops and joins. stop() is thread-safe and async-signal-safe.
class LoopGroup {
 public:
  /// Creates the group; no thread starts until start().
  explicit LoopGroup(LoopOptions options = {}, LoopHooks hooks = {});
  /// Stops the loops, if running, and waits for them. Not on one of the group's loop threads (from
  /// a handler, hook or task): it would join itself, so it aborts with a message, in every build
  /// type; call stop() there and destroy the group from another thread.
  ~LoopGroup();
  LoopGroup(const LoopGroup&) = delete;
  LoopGroup& operator=(const LoopGroup&) = delete;

  /// Creates the loops and starts their threads; on failure returns why (errc::bad_option naming
  /// the field, or a system error) having started nothing. A LoopGroup runs once: start() after
  /// stop() fails with errc::already_started, also when stop() came before any start() (then
  /// running() stays false); make a new LoopGroup to run again.
  Status start();
  /// start(), then wait() until stop().
  Status run();
  /// Asks every loop to stop: their connections close (pending output flushed for up to
  /// LoopOptions::shutdown_grace), dials in progress fail with errc::server_stopped. Returns at
  /// once. Callable from any thread, any handler and a signal handler; again does nothing. Tasks
  /// posted before it run first, on open connections (see Loop::post).
  void stop() noexcept;
  /// Blocks until every loop thread has finished (after stop()). Called on one of its own loop
  /// threads (it would join itself) it aborts with a message, in every build type. Returns
  /// an error if a loop had to stop on a failure of its poller (with the loop's index and why).
  /// A host-name lookup still in progress then is waited for up to shutdown_grace, then left to
  /// end by itself (its answer dropped).
  Status wait();
  /// True between a successful start() and the end of wait().
  bool running() const noexcept;

  /// Number of loops (valid after a successful start()).
  std::size_t loop_count() const noexcept;
  /// Loop `i` (valid after a successful start(), while the group lives). An `i` of loop_count()
  /// or more (any `i` before start()) aborts with a message, in every build type.
  Loop& loop(std::size_t i) const;
  /// Counters of every loop, indexed by loop.
  std::vector<LoopStats> stats() const;
  /// The backend the loops use ("epoll", "io_uring", "kqueue"), valid after a successful start().
  /// Every loop of a group uses the same one (see Backend::io_uring), so this is each loop's.
  const char* backend() const noexcept;
  /// Why the backend is not the one asked for (empty when it is), e.g. "io_uring unavailable
  /// (Operation not permitted): using epoll", or, when only a later loop was refused, "loop 3:
  /// io_uring unavailable (Cannot allocate memory): using epoll on every loop".
  const std::string& backend_note() const noexcept;

 private:
  std::unique_ptr<detail::LoopGroupCore> core_;
};

}  // namespace evloop
