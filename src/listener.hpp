// Internal. A listening socket owned by one loop, and its accept path.
#pragma once

#include "evloop/loop.hpp"
#include "evloop/options.hpp"
#include "pollable.hpp"
#include "profile.hpp"
#include "socket.hpp"

namespace evloop::detail {

class EventLoop;
struct PollEvent;

/// A listening socket in exactly one loop's poller (never in several: no thundering herd).
struct Listener final : Pollable {
  Listener(OpenedListener opened, ProfilePtr connection_profile)
      : Pollable(Kind::listener),
        fd(std::move(opened.fd)),
        bound(opened.bound),
        unix_path(std::move(opened.unix_path)),
        profile(std::move(connection_profile)) {}

  UniqueFd fd;
  SocketAddress bound;
  UnixPathOwner unix_path;  // removes the socket file when the listener goes away
  ProfilePtr profile;       // the handlers and options of the connections it accepts
  /// When set, one loop accepts for all: each fd goes to the loop `balance` picks (no
  /// reuse-port, a Unix socket, an inherited fd). Otherwise its own loop opens what it accepts.
  bool spreads = false;
  Balance balance = Balance::round_robin;
  std::size_t endpoint = 0;  // which of the server's listen addresses it serves
  bool inherited = false;    // an fd:// or systemd socket: not ours until start() succeeds
  bool handed_over = false;  // a live upgrade's predecessor's: its Unix file is not ours until then
  /// Another process may hold this socket too (inherited, or handed to a live upgrade's
  /// successor): accepted from by readiness on every backend (see below).
  bool shared = false;
  bool accepting = false;  // wants connections: in the poller, or its multishot accept re-armed
  bool paused = false;     // accepting paused after a failed accept (EMFILE...)
  bool polled = false;     // in the poller for readiness
  bool accept_in_kernel = false;  // completion backends: a multishot accept not yet ended
  bool closing = false;  // closed by its loop: kept (fd open) only until its accept has ended
  TimerId resume_timer = 0;
};

// How a loop accepts. On a readiness backend (epoll, kqueue) the listener is in the poller and
// each readiness accepts a bounded batch; on a completion backend (io_uring) a multishot accept
// hands over one connection per completion, re-armed whenever the kernel ends it, and cancelled
// to stop. Except on a shared socket: the kernel wakes io_uring's accepts exclusively, one per
// arriving connection, the first in line, so another process's accept ahead of ours (a frozen
// process's, a killed one's until the kernel has torn its ring down, which happens after the
// reap) would take the wake-up alone and leave the connection in the backlog, untold. A poll is
// woken with every other waiter, as epoll is: a shared listener takes readiness on io_uring too.
// Either way, after an accept fails (out of fds: EMFILE/ENFILE/ENOBUFS/ENOMEM; or
// anything else but the peer giving up or a network error pending on the new connection) the
// listener pauses for a short back-off instead of spinning on a backlog it cannot take from; the
// pending connections stay in the kernel's backlog and are accepted when fds are free again.

/// Starts accepting on `listener` (loop thread, or before the loop's thread starts).
std::error_code begin_accepting(EventLoop& loop, Listener& listener);

/// Stops accepting; the socket stays open. On a completion backend the accept ends with the
/// loop's next wait: the listener (its token) must live until accept_in_kernel is false.
void end_accepting(EventLoop& loop, Listener& listener);

/// What the poller reported for `listener`: readiness, or a multishot accept's completion.
void on_listener_event(EventLoop& loop, Listener& listener, const PollEvent& event);

/// Re-arms a listener paused after a failed accept (loop thread).
void resume_accepting(EventLoop& loop, Listener& listener);

/// Accepting again after a live upgrade failed (loop thread). Should the poller refuse the
/// listener now (ENOMEM, fs.epoll.max_user_watches), it is paused as after a failed accept and
/// tries again after the back-off: it stays its loop's listener, never quiet for good.
void accept_again(EventLoop& loop, Listener& listener);

}  // namespace evloop::detail
