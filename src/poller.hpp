// Internal. The backend contract: what src/linux/ (epoll, eventfd) and src/bsd/ (kqueue,
// EVFILT_USER) each implement in their own "backend.hpp". CMake puts exactly one of those folders
// on the include path, so the core calls the backend directly: no virtual call per event.
//
//   class Poller {                                   // one per loop, used only by its thread
//     std::error_code open();                        // create the kernel object
//     std::error_code add(int fd, unsigned interest, void* token);
//     std::error_code modify(int fd, unsigned from, unsigned to, void* token);
//     void remove(int fd, unsigned interest);        // call before close(fd)
//     int wait(PollEvent* out, int capacity, int timeout_ms);   // -1 = no timeout
//     int fd() const;
//   };
//   class Waker {                                    // one per loop
//     std::error_code open(Poller&, void* token);    // registers itself; its events carry token
//     void notify() noexcept;                        // any thread, async-signal-safe
//     void drain() noexcept;                         // loop thread, when its event fired
//   };
//
// Rules every backend keeps:
// - interest is a mask of kRead | kWrite; kNone keeps the fd registered but quiet (errors and
//   hang-ups may still be reported). `from` is the mask currently registered, so a backend can
//   send only the difference. Level-triggered: an fd stays ready until read/written.
// - wait() returns the number of events written to `out` (0 on timeout or EINTR), or -errno.
//   A waker's event has its token and readable set; the core then calls drain().
// - remove() must be called before close(fd): libkqueue keeps stale entries otherwise.
// - A backend that reads SO_ERROR itself (libkqueue does, for kqueue's fflags) passes the value
//   in error_code, since reading SO_ERROR clears it.
#pragma once

#include <system_error>

namespace evloop::detail {

/// Interest bits for Poller::add/modify.
enum Interest : unsigned { kNone = 0, kRead = 1, kWrite = 2 };

/// One readiness report from Poller::wait.
struct PollEvent {
  void* token = nullptr;  ///< The token given to add/modify (or Waker::open).
  bool readable = false;  ///< Data (or end of stream) to read; for the waker: it fired.
  bool writable = false;  ///< Room to write.
  bool error = false;     ///< An error is pending on the socket (SO_ERROR tells which).
  bool hangup = false;    ///< The peer closed (both directions, or reset).
  int error_code = 0;     ///< The error, when the backend already read (and so cleared) it.
};

}  // namespace evloop::detail

#include "backend.hpp"
