#include "listener.hpp"

#include <cerrno>

#include "event_loop.hpp"
#include "loop_group_core.hpp"
#include "poller.hpp"

namespace evloop::detail {
namespace {

// Connections accepted per readiness report, so a connect storm cannot starve established
// connections on the same loop. (A multishot accept takes the backlog as it comes, fds and all;
// the loop handles its completions with its other events, a bounded number per wait.)
constexpr int kAcceptBatch = 64;
// How long a listener stays paused after a failed accept (the process ran out of fds, say).
// Closing any connection on the loop resumes it sooner.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(50);

// The peer gave up before we accepted, a signal, or a network error pending on the new
// connection, which Linux's accept() reports as its own (accept(2): retry as for EAGAIN; EPERM
// is a firewall's refusal): nothing to report, take the next one.
bool transient(int err) {
  switch (err) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case ECONNABORTED:
    case EINTR:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
#ifdef ENONET
    case ENONET:
#endif
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case EPERM:
      return true;
    default:
      return false;
  }
}

// Resumes `listener` after the back-off (or sooner, when a connection of its loop closes).
void resume_later(EventLoop& loop, Listener& listener) {
  listener.paused = true;
  listener.resume_timer = loop.run_after(kAcceptBackoff, [&loop, &listener] {
    listener.resume_timer = 0;
    resume_accepting(loop, listener);
  });
}

void pause_accepting(EventLoop& loop, Listener& listener) {
  if (listener.paused || !listener.accepting) return;  // a stopped listener stays stopped
  end_accepting(loop, listener);
  resume_later(loop, listener);
}

// An accept that failed for a reason other than a transient one: counted, and the listener pauses
// for the back-off, so a failure that repeats (out of fds, a socket that no longer listens) can
// make the loop neither spin on a readiness nor re-arm a failing accept at once.
void accept_failed(EventLoop& loop, Listener& listener) {
  bump(loop.counters().accept_errors);
  pause_accepting(loop, listener);
}

// Opens accepted `fd` on this loop, or on the loop the balance picks for a listener that spreads.
void take(EventLoop& loop, Listener& listener, int fd, const SocketAddress& peer) {
  bump(loop.counters().accepts);
  EventLoop& target = listener.spreads ? loop.group().pick_loop(listener.balance, peer) : loop;
  target.load.fetch_add(1, std::memory_order_relaxed);
  if (&target == &loop) {
    loop.open_accepted(fd, peer, listener.profile);
  } else {
    target.hand_off(fd, peer, listener.profile);
  }
}

// Takes connections from the backlog, at most a batch, until it is empty; with `while_accepting`,
// only while the listener still accepts (a handler may stop it mid-batch). Returns the error that
// ended it when that was neither an empty backlog nor a transient failure, else 0.
int take_backlog(EventLoop& loop, Listener& listener, bool while_accepting) {
  for (int i = 0; i < kAcceptBatch && (listener.accepting || !while_accepting); ++i) {
    SocketAddress peer;
    const int fd = accept_connection(listener.fd.get(), peer);
    if (fd >= 0) {
      take(loop, listener, fd, peer);
      continue;
    }
    const int err = -fd;
    if (err == EAGAIN || err == EWOULDBLOCK) return 0;
    if (!transient(err)) return err;
  }
  return 0;
}

// Whether `listener` takes connections by readiness (the poller) or by a multishot accept.
bool by_readiness(EventLoop& loop, const Listener& listener) {
  return !loop.poller().completions() || listener.shared;
}

void arm_accept(EventLoop& loop, Listener& listener) {
  loop.poller().accept(listener.fd.get(), &listener);
  listener.accept_in_kernel = true;
}

// After a cancelled accept has ended on a socket that stays open (shared with a live upgrade's
// successor): takes what it left in the backlog. The kernel wakes one accept per arriving
// connection (io_uring's accept waits exclusively, unlike a poll), so a connection whose wake-up
// went to our accept just before the cancel stays queued with no other waiter told of it; the
// successor would see it only when another connection arrives. Taken here, it is served here.
// At most a batch: with more arriving, the successor is being woken anyway. A failure is only
// counted: the listener is not accepting, so there is nothing to pause.
void accept_left_behind(EventLoop& loop, Listener& listener) {
  if (take_backlog(loop, listener, /*while_accepting=*/false) != 0) {
    bump(loop.counters().accept_errors);
  }
}

// Completion: one connection accepted (or the multishot accept's end, with an error or not).
void on_accepted(EventLoop& loop, Listener& listener, const PollEvent& event) {
  const bool cancelled = !listener.accepting;  // end_accepting asked for its end
  if (!event.more) listener.accept_in_kernel = false;
  if (event.result >= 0) {
    // The multishot accept has no room for the peer's address: ask for it. A peer that reset
    // already has none (ENOTCONN): the connection opens with an empty address and its handlers
    // see the reset, as they do after accept4 on a readiness backend.
    take(loop, listener, event.result, peer_address(event.result));
  } else if (event.result != -ECANCELED && !transient(-event.result)) {
    if (cancelled) {
      bump(loop.counters().accept_errors);  // no pause: it is not accepting any more
    } else {
      accept_failed(loop, listener);
    }
  }
  // Ended (an error, a cancel, or the kernel's choice): re-armed while still wanted that way.
  if (!listener.accept_in_kernel && listener.accepting && !listener.polled) {
    arm_accept(loop, listener);
  }
  if (!listener.accept_in_kernel && cancelled && !listener.closing) {
    accept_left_behind(loop, listener);
  }
}

}  // namespace

std::error_code begin_accepting(EventLoop& loop, Listener& listener) {
  if (listener.accepting) return {};
  if (!by_readiness(loop, listener)) {
    listener.accepting = true;
    // One still in the kernel (its cancel not yet done) is re-armed when it reports its end.
    if (!listener.accept_in_kernel) arm_accept(loop, listener);
    return {};
  }
  // (A multishot accept of before the socket was shared may still be ending: what it brings is
  // taken, and it is not re-armed.)
  if (std::error_code ec = loop.poller().add(listener.fd.get(), kRead, &listener)) return ec;
  bump(loop.counters().poller_changes);
  listener.polled = true;
  listener.accepting = true;
  return {};
}

void end_accepting(EventLoop& loop, Listener& listener) {
  if (!listener.accepting) return;
  listener.accepting = false;
  if (listener.accept_in_kernel) loop.poller().cancel(&listener, PollEvent::Op::accepted);
  if (listener.polled) {
    loop.poller().remove(listener.fd.get(), kRead);
    bump(loop.counters().poller_changes);
    listener.polled = false;
  }
}

void resume_accepting(EventLoop& loop, Listener& listener) {
  if (!listener.paused) return;
  if (listener.resume_timer != 0) loop.cancel(listener.resume_timer);
  listener.resume_timer = 0;
  listener.paused = false;
  // Registering again can fail (ENOMEM, max_user_watches), likely under the fd pressure that
  // paused it: count it and try again after another back-off, never go quiet for good.
  if (begin_accepting(loop, listener)) {
    bump(loop.counters().accept_errors);
    resume_later(loop, listener);
  }
}

void accept_again(EventLoop& loop, Listener& listener) {
  if (!begin_accepting(loop, listener)) return;
  bump(loop.counters().accept_errors);
  resume_later(loop, listener);
}

void on_listener_event(EventLoop& loop, Listener& listener, const PollEvent& event) {
  if (event.op == PollEvent::Op::accepted) return on_accepted(loop, listener, event);
  // Readiness: the backlog has connections.
  if (take_backlog(loop, listener, /*while_accepting=*/true) != 0) accept_failed(loop, listener);
}

}  // namespace evloop::detail
