// kqueue poller (level-triggered). Contract: src/poller.hpp. Where libkqueue (the kqueue used on
// Linux) differs from a BSD kernel, the code says so; README.md here lists those differences.
//
// Interest is kept as filters that exist or not: kRead = an EVFILT_READ filter, kWrite = an
// EVFILT_WRITE filter, each added (EV_ADD) or deleted (EV_DELETE) as the mask changes. No EV_CLEAR
// on them: the core expects level-triggered readiness, and libkqueue applies EV_CLEAR to the whole
// fd, not per filter. No EV_DISABLE either, which libkqueue mishandles when combined with EV_ADD.
//
// kNone is a *watch*: an EVFILT_READ filter with EV_CLEAR, the fd's only filter. The contract
// wants an fd without interest to still report errors, as epoll does for an fd registered with no
// events; a kqueue fd without filters reports nothing, so a connection that neither reads (paused,
// or kept open after the peer's FIN) nor writes would never learn of a peer's reset. A level
// filter would report unread bytes or a FIN at every wait; with EV_CLEAR the watch reports each
// change once (bytes arriving, bounded by the receive buffer, or the FIN), and wait() passes on
// only what ends the connection: EV_EOF with a socket error (a reset).
//
// Changes are queued and passed as the changelist of the kevent() call that waits, so arming and
// disarming write interest costs no syscall of its own. remove() is the exception, see there.
#include <sys/types.h>  // before <sys/event.h> on older BSDs

#include <fcntl.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <ctime>

#include "kevent_change.hpp"
#include "poller.hpp"

namespace evloop::detail {
namespace {

std::error_code last_error() { return {errno, std::system_category()}; }

struct kevent make_change(int fd, int filter, unsigned flags, void* token) {
  return make_kevent(static_cast<std::uintptr_t>(fd), filter, flags, 0, token);
}

// The read filter an interest mask stands for: none, level-triggered, or the watch (see the top).
enum class ReadFilter { none, level, watch };

ReadFilter read_filter(unsigned interest) {
  if (interest & kRead) return ReadFilter::level;
  return interest == kNone ? ReadFilter::watch : ReadFilter::none;
}

unsigned add_flags(ReadFilter filter) {
  return filter == ReadFilter::watch ? EV_ADD | EV_CLEAR : EV_ADD;
}

// One kevent from the kernel to one PollEvent. EV_EOF on the read filter means the peer will
// send nothing more (FIN or reset), but bytes that arrived before it may still be queued:
// readable stays set so the core reads them before it sees end of stream. fflags then holds
// the socket error, if any (ECONNRESET after a reset).
void to_poll_event(const struct kevent& kev, PollEvent& out) {
  out = PollEvent{};
  out.token = kev.udata;
  const bool eof = (kev.flags & EV_EOF) != 0;
  if (kev.filter == EVFILT_WRITE) {
    out.writable = true;  // a write now fails fast (EPIPE) if the peer is gone: the core learns why
  } else {
    out.readable = true;  // EVFILT_READ, or the waker (EVFILT_USER, or its pipe)
    out.hangup = eof;
  }
  out.error = eof && kev.fflags != 0;
  // The socket's error travels in fflags: libkqueue has read (and so cleared) SO_ERROR by then.
  if (out.error) out.result = -static_cast<int>(kev.fflags);
}

#ifdef LIBKQUEUE
// libkqueue (Linux) frees a closed kqueue's fds later, on a helper thread that notices the close,
// and stops its two helper threads when the last kqueue is gone: fd and thread counts would move
// after the server has stopped, unlike on a BSD, where a kqueue is one fd released by close().
// So the first poller opens one kqueue that lives as long as the process (the helper threads
// with it), and each poller, once closed, asks libkqueue to finish the free before returning.
// libkqueue_drain_pending_close is exported by libkqueue 2.7 but not declared in its header;
// the weak reference leaves it null with a libkqueue that lacks it.
extern "C" [[gnu::weak]] void libkqueue_drain_pending_close(void);

void keep_libkqueue_running() { [[maybe_unused]] static const int keeper = ::kqueue(); }

void finish_close() {
  if (libkqueue_drain_pending_close) libkqueue_drain_pending_close();
}
#else
void keep_libkqueue_running() {}
void finish_close() {}
#endif

// A change for `token` that failed with `error` (an errno; libkqueue may say 0).
void refused(void* token, int error, PollEvent& out) {
  out = PollEvent{};
  out.token = token;
  out.error = true;
  out.refused = true;
  out.result = -error;
}

}  // namespace

Poller::Poller() = default;

std::error_code Poller::open(const PollerSetup& setup, std::string& note) {
  const Backend wanted = setup.wanted;
  if (wanted == Backend::epoll || wanted == Backend::io_uring) {
    note = std::string(wanted == Backend::epoll ? "epoll" : "io_uring") +
           " is Linux-only: using kqueue";
  }
  return open();
}

Poller::~Poller() {
  if (kq_ < 0) return;
  ::close(kq_);
  finish_close();
}

std::error_code Poller::open() {
  keep_libkqueue_running();
  kq_ = ::kqueue();
  if (kq_ < 0) return last_error();
  // A BSD kqueue is not inherited by fork() anyway; libkqueue's descriptor is a plain fd.
  ::fcntl(kq_, F_SETFD, FD_CLOEXEC);
  changes_.reserve(kBatch);
  return {};
}

void Poller::queue(int fd, int filter, unsigned flags, void* token) {
  changes_.push_back(make_change(fd, filter, flags, token));
}

std::error_code Poller::add(int fd, unsigned interest, void* token) {
  // Errors come back from wait() as an error event carrying this token.
  if (interest & kWrite) queue(fd, EVFILT_WRITE, EV_ADD, token);
  const ReadFilter read = read_filter(interest);
  if (read != ReadFilter::none) queue(fd, EVFILT_READ, add_flags(read), token);
  return {};
}

std::error_code Poller::modify(int fd, unsigned from, unsigned to, void* token) {
  // Only the difference is sent: EV_ADD on a filter that already exists would fail on libkqueue
  // (it rejects re-adding a socket's read filter without EV_CLEAR), and a BSD kernel would keep
  // the filter's EV_CLEAR as it was. So a read filter that changes kind (level <-> watch) is
  // deleted and added again. Deletes go first, so the watch's EV_CLEAR, which libkqueue applies
  // to the whole fd, is gone before a write filter is added. They carry no token: a failed
  // delete is not the connection's error.
  const ReadFilter read_from = read_filter(from);
  const ReadFilter read_to = read_filter(to);
  const bool read_changes = read_from != read_to;
  if (read_changes && read_from != ReadFilter::none) queue(fd, EVFILT_READ, EV_DELETE, nullptr);
  if ((from & kWrite) && !(to & kWrite)) queue(fd, EVFILT_WRITE, EV_DELETE, nullptr);
  if (!(from & kWrite) && (to & kWrite)) queue(fd, EVFILT_WRITE, EV_ADD, token);
  if (read_changes && read_to != ReadFilter::none)
    queue(fd, EVFILT_READ, add_flags(read_to), token);
  return {};
}

// Why remove() does not queue its EV_DELETE like modify() does:
// - The caller closes fd right after this call, and the number can be reused at once: by this loop
//   (an accepted or handed-off connection, whose EV_ADD would be queued behind) or another thread.
//   libkqueue does not drop an fd's filters on close(): without the delete, a later
//   EV_ADD for the new file with that number "succeeds" and nothing is ever delivered. Deleting
//   now, while fd still names the file being closed, leaves nothing behind whatever comes next.
// - Queued, it would not save the syscall: on a BSD, close() has already dropped the filters, the
//   delete fails with ENOENT, and FreeBSD's kevent() returns at once when a change fails, so the
//   loop would wake for nothing. One immediate kevent() per closed fd is what epoll pays too.
// - Changes still queued for fd are dropped first: they name a file about to be closed and carry
//   a token (the connection) the core may free as soon as this returns. A dropped EV_ADD means
//   the kernel never saw that filter; deleting it anyway just answers ENOENT, ignored.
// EV_RECEIPT makes kevent() answer each change in the given array (here the changes' own storage)
// and return without collecting any pending event, so nothing is taken from the next wait().
void Poller::remove(int fd, unsigned interest) {
  const auto stale = std::remove_if(
      changes_.begin(), changes_.end(),
      [fd](const struct kevent& kev) { return kev.ident == static_cast<std::uintptr_t>(fd); });
  const bool had_queued = stale != changes_.end();
  changes_.erase(stale, changes_.end());
  struct kevent dels[2];
  int n = 0;
  // With nothing queued the kernel holds exactly the filters of `interest` (kNone: the watch, a
  // read filter); otherwise they may differ, so try both.
  if (read_filter(interest) != ReadFilter::none || had_queued)
    dels[n++] = make_change(fd, EVFILT_READ, EV_DELETE | EV_RECEIPT, nullptr);
  if ((interest & kWrite) || had_queued)
    dels[n++] = make_change(fd, EVFILT_WRITE, EV_DELETE | EV_RECEIPT, nullptr);
  const timespec zero{0, 0};
  ::kevent(kq_, dels, n, dels, n, &zero);
}

// Applies all but the last `keep` queued changes now, with EV_RECEIPT, so that what is left fits
// in wait()'s event array. That matters: a change that fails needs a free slot for its EV_ERROR
// entry, else kevent() returns -1 and silently skips the changes after it. Failures found here
// are kept in failed_ and reported by the next wait() (except one that libkqueue reports with
// data 0, indistinguishable from a receipt: the cost of a path taken only past kBatch changes).
void Poller::flush_excess(std::size_t keep) {
  struct kevent receipts[kBatch];
  while (changes_.size() > keep) {
    const std::size_t n = std::min<std::size_t>(kBatch, changes_.size() - keep);
    for (std::size_t i = 0; i < n; ++i) changes_[i].flags |= EV_RECEIPT;
    const timespec zero{0, 0};
    const int count = static_cast<int>(n);
    const int got = ::kevent(kq_, changes_.data(), count, receipts, count, &zero);
    for (int i = 0; i < got; ++i) {
      if ((receipts[i].flags & EV_ERROR) && receipts[i].data != 0 && receipts[i].udata) {
        failed_.push_back({receipts[i].udata, static_cast<int>(receipts[i].data)});
      }
    }
    changes_.erase(changes_.begin(), changes_.begin() + count);
  }
}

int Poller::wait(PollEvent* out, int capacity, int timeout_ms) {
  struct kevent events[kBatch];
  const int room = std::min(capacity, kBatch);
  if (room <= 0) return -EINVAL;
  flush_excess(static_cast<std::size_t>(room));
  if (!failed_.empty()) {  // rare (ENOMEM...): report before anything else, without waiting
    const int n = std::min(room, static_cast<int>(failed_.size()));
    for (int i = 0; i < n; ++i) {
      const FailedChange& failed = failed_[static_cast<std::size_t>(i)];
      refused(failed.token, failed.error, out[i]);
    }
    failed_.erase(failed_.begin(), failed_.begin() + n);
    return n;
  }

  const int nchanges = static_cast<int>(changes_.size());  // <= room, after flush_excess
  for (int i = 0; i < nchanges; ++i) events[i].flags = 0;
  timespec ts{timeout_ms / 1000, static_cast<long>(timeout_ms % 1000) * 1000000L};
  int n = ::kevent(kq_, changes_.data(), nchanges, events, room, timeout_ms < 0 ? nullptr : &ts);
  // The changes were applied before the wait began, even when it then fails with EINTR.
  changes_.clear();
  if (n < 0) return errno == EINTR ? 0 : -errno;
  // libkqueue 2.7 writes the EV_ERROR entries of failed changes first, then still waits (a BSD
  // returns them at once), and returns 0 if the wait times out with no event, losing them. A BSD
  // kernel writes nothing when it returns 0, and the flags were cleared above, so this finds
  // entries only where libkqueue left them.
  if (n == 0) {
    while (n < nchanges && (events[n].flags & EV_ERROR)) ++n;
  }

  int count = 0;
  for (int i = 0; i < n; ++i) {
    const struct kevent& kev = events[i];
    if (kev.flags & EV_ERROR) {
      // A change that failed (libkqueue mixes these with real events; its data, the errno, may
      // even be 0). No udata means a delete, whose failure changes nothing.
      if (kev.udata == nullptr) continue;
      refused(kev.udata, static_cast<int>(kev.data), out[count++]);
      continue;
    }
    // A watch (the only filter with EV_CLEAR; a kernel, and libkqueue, return a filter's flags
    // with its events) reports what changed on an fd without interest: only an error is news to
    // the core (see the top).
    const bool watch = kev.filter == EVFILT_READ && (kev.flags & EV_CLEAR) != 0;
    if (watch && !((kev.flags & EV_EOF) && kev.fflags != 0)) continue;
    to_poll_event(kev, out[count++]);
  }
  return count;
}

}  // namespace evloop::detail
