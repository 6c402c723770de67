// Internal. The backend contract: what src/linux/ (epoll or io_uring, eventfd) and src/bsd/
// (kqueue, EVFILT_USER) each implement in their own "backend.hpp". CMake puts exactly one of those
// folders on the include path, so the core calls the backend directly: no virtual call per event.
// Linux chooses between epoll and io_uring when a loop opens (a branch per call, never a
// virtual call).
//
//   class Poller {                                   // one per loop, used only by its thread
//     std::error_code open(const PollerSetup&, std::string& note);
//                                                    // the kernel object; `note` says why
//                                                    // another backend was used
//     const char* name() const;                      // "epoll", "io_uring", "kqueue"
//     std::error_code add(int fd, unsigned interest, void* token);
//     std::error_code modify(int fd, unsigned from, unsigned to, void* token);
//     void remove(int fd, unsigned interest);        // call before close(fd)
//     int wait(PollEvent* out, int capacity, int timeout_ms);   // -1 = no timeout
//     // Completion-based I/O, on backends where completions() is true (io_uring):
//     bool completions() const;
//     void receive(int fd, void* token, bool large); // one receive into a provided buffer,
//                                                    // a large one if `large`
//     void send(int fd, const msghdr* msg, void* token);  // msg valid until its completion
//     void accept(int fd, void* token);              // a multishot accept on listener fd
//     void cancel(void* token, Op op);               // ends the token's `op` request
//     std::error_code watch_write_space(int fd, void* token);  // like add(fd, kWrite), but
//                                                    // reports each wake-up once (see below)
//     bool polls_ending() const;                     // a removed poll still holds its file
//   };
//   class Waker {                                    // one per loop
//     std::error_code open(Poller&, void* token);    // registers itself; its events carry token
//     void notify() noexcept;                        // any thread, async-signal-safe
//     void drain() noexcept;                         // loop thread, when its event fired
//   };
//
// Rules every backend keeps:
// - interest is a mask of kRead | kWrite; kNone keeps the fd registered but quiet: an error (a
//   peer's reset) is still reported, a hang-up may be (both until the core acts on it: it closes,
//   or leaves the poller), unread bytes and a FIN are not (a paused connection must not spin the
//   loop). It is for a socket only its owner reads (a connection): kqueue's watch may wake once
//   per arrival until the receive buffer fills, which a socket drained elsewhere (a UDP socket
//   handed to an upgrade's successor) never does, so such a socket leaves the poller instead.
//   `from` is the mask currently registered, so a backend can send only the difference.
//   Level-triggered: an fd stays ready until read/written.
// - wait() returns the number of events written to `out` (0 on timeout or EINTR), or -errno.
//   A waker's event has its token and readable set; the core then calls drain().
// - A completion event (op != readiness) reports one finished request of the token: `result` is
//   its byte count (accepted: the new fd, non-blocking and close-on-exec) or -errno; received
//   bytes are in `data` until the next wait(); `more` says a multishot request is still armed.
//   Every request reports exactly once when it ends (its last event has more == false), also when
//   cancelled (-ECANCELED), so its token must stay valid until then.
// - remove() must be called before close(fd): libkqueue keeps stale entries otherwise.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <system_error>

#include "evloop/loop_group.hpp"

namespace evloop::detail {

/// What a loop asks of its poller when it opens it.
struct PollerSetup {
  Backend wanted = Backend::automatic;
  unsigned uring_buffers = 0;  ///< LoopOptions::uring_buffers (io_uring only)
  /// Bumped once for each submission the kernel refused (io_uring only): the loop's own
  /// LoopStats counter, so stats read from other threads see it without the loop copying it.
  std::atomic<std::uint64_t>* submit_refusals = nullptr;
};

/// Interest bits for Poller::add/modify.
enum Interest : unsigned { kNone = 0, kRead = 1, kWrite = 2 };

/// One readiness report from Poller::wait.
struct PollEvent {
  /// What the event reports: readiness, or the end of a completion-based request.
  enum class Op : std::uint8_t { readiness, received, sent, accepted };
  void* token = nullptr;  ///< The token given to add/modify/receive/send (or Waker::open).
  Op op = Op::readiness;
  bool readable = false;  ///< Data (or end of stream) to read; for the waker: it fired.
  bool writable = false;  ///< Room to write.
  bool error = false;     ///< An error is pending on the socket (SO_ERROR tells which).
  bool hangup = false;    ///< The peer closed (both directions, or reset).
  bool more = false;      ///< received/accepted: the multishot request is still armed.
  bool large = false;     ///< received: at least a small buffer's worth: ask for a large one next.
  int result = 0;  ///< received/sent: bytes (0 = end of stream); accepted: the fd; or -errno.
  const char* data = nullptr;  ///< received: the bytes, valid until the next wait().
  /// kqueue: a change to this fd's registration failed (`result`: -errno, 0 when the backend
  /// did not say); the fd gets no events until it is registered again. Implies `error`.
  bool refused = false;
};

}  // namespace evloop::detail

#include "backend.hpp"
