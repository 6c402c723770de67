// kqueue waker: EVFILT_USER, or a pipe where the system has no EVFILT_USER. Contract:
// src/poller.hpp.
#include <sys/types.h>  // before <sys/event.h> on older BSDs

#include <fcntl.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "kevent_change.hpp"
#include "poller.hpp"

namespace evloop::detail {
namespace {

std::error_code last_error() { return {errno, std::system_category()}; }

}  // namespace

Waker::~Waker() {
  // EVFILT_USER: the event goes away with the kqueue. Pipe: a BSD kernel drops the filter on close.
  for (int fd : pipe_) {
    if (fd >= 0) ::close(fd);
  }
}

#ifdef EVFILT_USER

// The one user event of this kqueue (EVFILT_USER idents are their own namespace).
constexpr std::uintptr_t kWakeIdent = 0;

std::error_code Waker::open(Poller& poller, void* token) {
  kq_ = poller.fd();
  token_ = token;
  // Registered at once, not queued in the poller: notify() may run before the loop's first wait.
  // EV_CLEAR: the kernel resets the triggered state when it reports the event, so any number of
  // triggers before the loop wakes up are reported once, and never again until the next trigger.
  const struct kevent kev = make_kevent(kWakeIdent, EVFILT_USER, EV_ADD | EV_CLEAR, 0, token);
  const timespec zero{0, 0};
  return ::kevent(kq_, &kev, 1, nullptr, 0, &zero) < 0 ? last_error() : std::error_code{};
}

void Waker::notify() noexcept {
  // A separate change from the EV_ADD above (libkqueue: both in one entry never fires). The token
  // goes along because every change replaces the event's udata (BSD and libkqueue alike).
  // On a BSD this is one system call, async-signal-safe. libkqueue's kevent() takes a mutex: safe
  // from any thread, but a signal handler that interrupts this loop's own kevent() call could
  // deadlock, so there signals should be handled off the loop threads.
  const struct kevent kev = make_kevent(kWakeIdent, EVFILT_USER, 0, NOTE_TRIGGER, token_);
  const timespec zero{0, 0};
  ::kevent(kq_, &kev, 1, nullptr, 0, &zero);
}

void Waker::drain() noexcept {
  // Nothing to read back: EV_CLEAR already reset the event when kevent() returned it. A trigger
  // that lands after that call is a new wake and will be reported by the next wait.
}

#else  // no EVFILT_USER: self-pipe

std::error_code Waker::open(Poller& poller, void* token) {
  kq_ = poller.fd();
  token_ = token;
  if (::pipe(pipe_) < 0) return last_error();
  for (int fd : pipe_) {
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return poller.add(pipe_[0], kRead, token);
}

void Waker::notify() noexcept {
  // write() is async-signal-safe. EAGAIN: the pipe is full, so a wake is pending anyway.
  const char one = 1;
  [[maybe_unused]] ssize_t n = ::write(pipe_[1], &one, 1);
}

void Waker::drain() noexcept {
  // Empty the pipe, or the level-triggered read filter would keep reporting it and spin the loop.
  char buf[256];
  while (::read(pipe_[0], buf, sizeof buf) > 0) {
  }
}

#endif

}  // namespace evloop::detail
