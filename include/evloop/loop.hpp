// Public. A handle to one event loop (one thread): tasks, timers, the connections it dials or
// adopts, and the UDP sockets it opens.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <utility>

#include "evloop/conn.hpp"
#include "evloop/conn_options.hpp"
#include "evloop/handlers.hpp"
#include "evloop/stats.hpp"
#include "evloop/udp.hpp"

namespace evloop {

namespace detail {
class EventLoop;

/// `d` in nanoseconds, saturating at nanoseconds' range instead of overflowing (a timer of
/// milliseconds::max(), written for "never", would otherwise wrap into the past and fire at once).
template <class Rep, class Period>
constexpr std::chrono::nanoseconds saturating_nanoseconds(std::chrono::duration<Rep, Period> d) {
  using D = std::chrono::duration<Rep, Period>;
  using std::chrono::nanoseconds;
  if (d >= std::chrono::duration_cast<D>(nanoseconds::max())) return nanoseconds::max();
  if (d <= std::chrono::duration_cast<D>(nanoseconds::min())) return nanoseconds::min();
  return std::chrono::duration_cast<nanoseconds>(d);
}
}  // namespace detail

/// Identifies a timer for Loop::cancel(). 0 only when asked for from another thread after the
/// loop stopped (no timer was made).
using TimerId = std::uint64_t;

/// One event loop: a thread with its own poller, waker, timers and connections.
///
/// Every method is thread-safe. Called on the loop's own thread (from a handler, a hook, a timer
/// or a posted task), timers and dials take effect at once; called from another thread, they are
/// posted to the loop and take effect there shortly after. A Loop lives as long as its Server or
/// LoopGroup.
class Loop {
 public:
  /// A task run on the loop thread.
  using Task = std::function<void()>;

  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  /// This loop's index, 0..loop_count()-1 of its Server or LoopGroup.
  std::size_t index() const noexcept;
  /// True when called on this loop's thread.
  bool in_loop_thread() const noexcept;

  /// Runs `task` on the loop thread, after the current batch of I/O. Tasks run in the order they
  /// were posted (ConnRef's operations are tasks on the connection's loop too, in the same
  /// order), so what one thread posts to a loop is carried out in order. Posts that arrive while a
  /// wake is already pending cost no extra syscall. Returns false (and drops the task) when the
  /// loop has stopped; a task accepted (true) always runs, once. A task posted before stop()
  /// runs before the loop begins to stop, on open connections: what it writes is sent before
  /// the FIN (within shutdown_grace), so a goodbye is posted, then stop() called. One posted
  /// while the loop stops runs after its connections have closed, before
  /// LoopHooks::loop_stopping. An empty `task` is misuse: aborts with a message, in every build
  /// type (as do run_after and run_every).
  bool post(Task task) const;
  /// Wakes the loop from its wait without a task (async-signal-safe).
  void wake() const noexcept;

  /// Runs `fn` once after `delay` on this loop. A delay over about a century (max() of any
  /// duration type, for "never") waits for ever. Timers do not outlive the loop: one still
  /// waiting when the loop stops never runs; from another thread after the stop, returns 0.
  TimerId run_after(std::chrono::nanoseconds delay, Task fn) const;
  /// run_after() with a delay in another unit, converted without overflow.
  template <class Rep, class Period>
  TimerId run_after(std::chrono::duration<Rep, Period> delay, Task fn) const {
    return run_after(detail::saturating_nanoseconds(delay), std::move(fn));
  }
  /// Runs `fn` every `interval` (first after one interval) until cancelled. An interval of zero
  /// or less is misuse (it would spin the loop): aborts with a message, in every build type.
  TimerId run_every(std::chrono::nanoseconds interval, Task fn) const;
  /// run_every() with an interval in another unit, converted without overflow.
  template <class Rep, class Period>
  TimerId run_every(std::chrono::duration<Rep, Period> interval, Task fn) const {
    return run_every(detail::saturating_nanoseconds(interval), std::move(fn));
  }
  /// Cancels a timer. On the loop thread, returns false if it already ran (one-shot) or was
  /// cancelled; a timer may cancel itself from its own callback; a timer asked for from another
  /// thread can be cancelled as soon as its id is returned. From another thread the cancel
  /// is posted and the result is true if it could be queued (the timer may still run meanwhile).
  bool cancel(TimerId id) const;

  /// Dials `address` (`tcp://host:port`, `tcp4://`, `tcp6://[::1]:port`, `unix:///path`) from
  /// this loop: the connection lives here, with `handlers` and `options`. Non-blocking: returns
  /// at once with a reference; later exactly one of `opened` or `connect_failed` fires. Numeric
  /// hosts connect at once; host names are resolved on the group's resolver threads (never on
  /// a loop thread; up to 4 lookups at once), and the addresses are tried in turn within
  /// ConnectOptions::connect_timeout. A Unix socket whose listener's backlog is full is asked
  /// again (1, 2, 4... up to 100 ms apart) until it has room, within the timeout, as a blocking
  /// connect would wait (a non-blocking one says EAGAIN). A connection that turns out to be
  /// connected to itself fails (errc::self_connect). A `udp://`, `udp4://` or `udp6://` address
  /// fails with errc::unknown_scheme: use connect_udp. A dial the loop accepted always reports
  /// (errc::server_stopped at the latest, when the loop stops first). It returns an empty ConnRef
  /// and no handler runs once the loop has stopped, and also on the loop's own thread once the
  /// loop is stopping (in a handler the stop runs, or the loop_stopping hook): there the dial
  /// could only fail, and a `connect_failed` that dials again would keep the stop from ending.
  /// Called from another thread, the dial starts on the loop ahead of tasks posted in the same
  /// batch (no order is promised between dials and posts).
  ConnRef connect(std::string_view address, Handlers handlers, ConnectOptions options = {}) const;

  /// Opens a connection on `fd`, an already-connected stream socket (from another library, a
  /// parent process, a DetachedConn), with `handlers` and `options`. Takes ownership of `fd`
  /// (closed on failure). evloop makes it non-blocking and close-on-exec. `opened` fires on this
  /// loop, then `data` with options.input if any; or `connect_failed` (EBADF, ENOTSOCK, ENOTCONN,
  /// errc::bad_option, ...). Once the loop has stopped, or on its own thread once it is
  /// stopping (as connect), closes `fd` and returns an empty ConnRef.
  ConnRef adopt(int fd, Handlers handlers, AdoptOptions options = {}) const;

  /// Opens a UDP socket on this loop bound to `address` (`udp://host:port`, `udp4://`,
  /// `udp6://[::1]:port`; port 0 picks a free port; `?reuseport=1` lets other sockets bind the
  /// same port), with `handlers` and `options`: an unconnected socket that receives from anyone
  /// and sends anywhere. Non-blocking: returns at once; later `opened` or `open_failed` fires on
  /// this loop. Once the loop has stopped, or on its own thread once it is stopping (as
  /// connect), returns an empty UdpRef and no handler runs.
  UdpRef bind_udp(std::string_view address, DatagramHandlers handlers,
                  UdpOptions options = {}) const;
  /// Opens a UDP socket on this loop connected to `address` (`udp://host:port`, `udp4://`,
  /// `udp6://[host]:port`; a host name is resolved off the loop): it sends to and receives from
  /// that peer only, and the kernel's ICMP errors about the peer (ECONNREFUSED when nothing
  /// listens there) reach `error`. Otherwise as bind_udp.
  UdpRef connect_udp(std::string_view address, DatagramHandlers handlers,
                     UdpConnectOptions options = {}) const;

  /// A snapshot of this loop's counters.
  LoopStats stats() const noexcept;

 private:
  friend class detail::EventLoop;
  explicit Loop(detail::EventLoop& core) noexcept : core_(&core) {}
  detail::EventLoop* core_;
};

}  // namespace evloop
