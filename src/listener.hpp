// Internal. A listening socket owned by one loop, and its accept path.
#pragma once

#include "evloop/loop.hpp"
#include "evloop/options.hpp"
#include "pollable.hpp"
#include "profile.hpp"
#include "socket.hpp"

namespace evloop::detail {

class EventLoop;

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
  bool paused = false;     // accepting paused after EMFILE/ENFILE
  TimerId resume_timer = 0;
};

/// Accepts up to a bounded batch of connections from `listener` (loop thread). Out of fds
/// (EMFILE/ENFILE/ENOBUFS/ENOMEM), it pauses this listener for a short back-off instead of
/// spinning on a level-triggered readiness that cannot be cleared; the pending connections stay
/// in the kernel's backlog and are accepted when fds are free again.
void accept_batch(EventLoop& loop, Listener& listener);

/// Re-arms a listener paused by accept_batch (loop thread).
void resume_accepting(EventLoop& loop, Listener& listener);

}  // namespace evloop::detail
