#include "listener.hpp"

#include <cerrno>

#include "event_loop.hpp"
#include "loop_group_core.hpp"

namespace evloop::detail {
namespace {

// Connections accepted per readiness report, so a connect storm cannot starve established
// connections on the same loop.
constexpr int kAcceptBatch = 64;
// How long a listener stays paused after the process ran out of fds. Closing any connection on
// the loop resumes it sooner.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(50);

bool out_of_resources(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

void pause_accepting(EventLoop& loop, Listener& listener) {
  if (listener.paused) return;
  loop.poller().modify(listener.fd.get(), kRead, kNone, &listener);
  bump(loop.counters().poller_changes);
  listener.paused = true;
  listener.resume_timer = loop.run_after(kAcceptBackoff, [&loop, &listener] {
    listener.resume_timer = 0;
    resume_accepting(loop, listener);
  });
}

}  // namespace

void resume_accepting(EventLoop& loop, Listener& listener) {
  if (!listener.paused) return;
  if (listener.resume_timer != 0) loop.cancel(listener.resume_timer);
  listener.resume_timer = 0;
  listener.paused = false;
  loop.poller().modify(listener.fd.get(), kNone, kRead, &listener);
  bump(loop.counters().poller_changes);
}

void accept_batch(EventLoop& loop, Listener& listener) {
  for (int i = 0; i < kAcceptBatch && !listener.paused; ++i) {
    SocketAddress peer;
    const int fd = accept_connection(listener.fd.get(), peer);
    if (fd < 0) {
      const int err = -fd;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      // The peer gave up before we accepted, or a signal: try the next one.
      if (err == ECONNABORTED || err == EINTR || err == EPROTO) continue;
      bump(loop.counters().accept_errors);
      if (out_of_resources(err)) pause_accepting(loop, listener);
      return;
    }
    bump(loop.counters().accepts);
    EventLoop& target = listener.spreads ? loop.group().pick_loop(listener.balance, peer) : loop;
    target.load.fetch_add(1, std::memory_order_relaxed);
    if (&target == &loop) {
      loop.open_accepted(fd, peer, listener.profile);
    } else {
      target.hand_off(fd, peer, listener.profile);
    }
  }
}

}  // namespace evloop::detail
