#include "connection.hpp"

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>

#include "event_loop.hpp"

namespace evloop::detail {
namespace {

// Pieces per sendmsg: 64 chunks = ~1 MiB, well under IOV_MAX (1024 on Linux and the BSDs).
constexpr int kMaxIov = 64;
// Unconsumed-input capacity kept after the tail is consumed; more is given back.
constexpr std::size_t kKeepInputCapacity = 64 * 1024;

bool would_block(long err) { return err == -EAGAIN || err == -EWOULDBLOCK || err == -EINTR; }

std::error_code sys_error(long negative_errno) {
  return {static_cast<int>(-negative_errno), std::system_category()};
}

}  // namespace

Connection::Connection(EventLoop& loop, UniqueFd fd, std::uint64_t id, const SocketAddress& peer)
    : Pollable(Kind::connection),
      loop_(loop),
      fd_(std::move(fd)),
      id_(id),
      peer_(peer),
      out_(loop.chunks()) {}

Connection::~Connection() = default;

void Connection::start() {
  if (loop_.poller().add(fd_.get(), kRead, this)) {
    closed_ = true;  // never opened: no `closed` owed
    loop_.retire(*this);
    return;
  }
  interest_ = kRead;
  opened_ = true;
  bump(loop_.counters().opened);
  if (loop_.options().idle_timeout.count() > 0) {
    last_progress_ = loop_.now();
    arm_idle_timer(loop_.options().idle_timeout);
  }
  if (const auto& opened = loop_.callbacks().opened) opened(handle_);
}

void Connection::on_event(const PollEvent& event) {
  if (closed_) return;  // closed earlier in this batch
  if (event.error) {
    std::error_code ec = socket_error(fd_.get());
    finalize(ec ? ec : std::make_error_code(std::errc::connection_reset));
    return;
  }
  if ((event.readable || event.hangup) && (interest_ & kRead)) read_once();
  if (closed_) return;
  // On a hang-up while not reading, the flush in service() reports why the peer is gone.
  if (event.writable || event.hangup) schedule();
}

void Connection::read_once() {
  // One read per readiness (level-triggered): a busy connection cannot starve the others.
  const std::size_t capacity = loop_.options().read_buffer_size;
  const long n = receive(fd_.get(), loop_.read_buffer(), capacity);
  bump(loop_.counters().reads);
  if (n > 0) {
    bump(loop_.counters().bytes_in, static_cast<std::uint64_t>(n));
    deliver(loop_.read_buffer(), static_cast<std::size_t>(n));
  } else if (n == 0) {
    on_peer_eof();
  } else if (!would_block(n)) {
    finalize(sys_error(n));
  }
}

void Connection::on_peer_eof() {
  // The peer's FIN. Stop reading either way (a level-triggered EOF stays readable forever).
  peer_eof_ = true;
  if (const auto& eof = loop_.callbacks().eof) {
    eof(handle_);  // the user replies, now or later, and closes
  } else {
    closing_ = true;  // send what is pending, then close
  }
  schedule();
}

void Connection::deliver(const char* bytes, std::size_t size) {
  const std::size_t input_before = in_.size();
  std::string_view view(bytes, size);
  if (!in_.empty()) {
    in_.append(bytes, size);
    view = in_;
  }
  const auto& data = loop_.callbacks().data;
  // The callback cannot close us here: every close it can request is deferred to service().
  const std::size_t consumed = std::min(data ? data(handle_, view) : view.size(), view.size());
  if (consumed > 0) last_progress_ = loop_.now();
  if (in_.empty()) {
    if (consumed < size) in_.assign(bytes + consumed, size - consumed);
  } else {
    in_.erase(0, consumed);
    if (in_.empty() && in_.capacity() > kKeepInputCapacity) std::string().swap(in_);
  }
  adjust(loop_.counters().input_buffered, input_before, in_.size());
  if (in_.size() > loop_.options().input_limit && !pending_error_) {
    pending_error_ = make_error_code(errc::input_limit);
    schedule();
  }
}

void Connection::write(const void* bytes, std::size_t size) {
  if (closing_ || closed_ || size == 0) return;
  if (out_.size() + size > loop_.options().output_limit) {
    pending_error_ = make_error_code(errc::output_limit);
    closing_ = true;
    discard_output();
    schedule();
    return;
  }
  out_.append(bytes, size);
  bump(loop_.counters().output_buffered, size);
  // Pause as soon as output passes the mark, not only if it is still there after the send: a
  // producer that stops at the mark then always gets `drained`, even when the kernel takes it
  // all at once, and the peer's EOF is not read (closing the connection) while it is behind.
  if (!paused_ && out_.size() > loop_.options().output_high_water) {
    paused_ = true;
    bump(loop_.counters().read_pauses);
  }
  schedule();
}

void Connection::discard_output() {
  adjust(loop_.counters().output_buffered, out_.size(), 0);
  out_.clear();
}

void Connection::close() {
  if (closing_ || closed_) return;
  closing_ = true;
  schedule();
}

void Connection::abort() {
  if (closed_) return;
  closing_ = true;
  aborted_ = true;
  discard_output();
  schedule();
}

void Connection::begin_shutdown() {
  if (closed_) return;
  if (!closing_) close_reason_ = make_error_code(errc::server_stopped);
  closing_ = true;
  schedule();
}

void Connection::schedule() {
  if (scheduled_ || closed_) return;
  scheduled_ = true;
  loop_.schedule(*this);
}

void Connection::service() {
  scheduled_ = false;
  if (closed_) return;
  if (pending_error_) return finalize(pending_error_);
  if (aborted_) return finalize({});
  if (!out_.empty()) flush();
  if (closed_) return;
  if (closing_ && out_.empty()) return finalize(close_reason_);
  if (closing_ && close_timer_ == 0) {
    // Output is pending but the peer may never read it: bound the wait.
    close_timer_ = loop_.run_after(loop_.options().close_timeout, [this] {
      close_timer_ = 0;
      finalize(make_error_code(errc::close_timeout));
    });
  }
  update_backpressure();
  if (!closed_) update_interest();
}

void Connection::flush() {
  iovec iov[kMaxIov];
  while (!out_.empty()) {
    const int count = out_.gather(iov, kMaxIov);
    std::size_t total = 0;
    for (int i = 0; i < count; ++i) total += iov[i].iov_len;
    const long n = send_pieces(fd_.get(), iov, count);
    bump(loop_.counters().writes);
    if (n < 0) {
      if (n == -EINTR) continue;
      if (would_block(n)) return;
      return finalize(sys_error(n));
    }
    bump(loop_.counters().bytes_out, static_cast<std::uint64_t>(n));
    adjust(loop_.counters().output_buffered, static_cast<std::size_t>(n), 0);
    out_.consume(static_cast<std::size_t>(n));
    last_progress_ = loop_.now();
    // A short write means the socket buffer is full: wait for writability rather than spend a
    // syscall on the EAGAIN we already know is coming.
    if (static_cast<std::size_t>(n) < total) return;
  }
}

void Connection::update_backpressure() {
  // Hysteresis: reading paused (in write) above the high-water mark resumes at the low-water mark.
  if (paused_ && out_.size() <= loop_.options().output_low_water) {
    paused_ = false;
    if (const auto& drained = loop_.callbacks().drained; drained && !closing_) drained(handle_);
  }
}

void Connection::update_interest() {
  const unsigned want =
      (closing_ || paused_ || peer_eof_ ? kNone : kRead) | (out_.empty() ? kNone : kWrite);
  if (want == interest_) return;  // the common case: no poller call per message
  if ((want & kWrite) && !(interest_ & kWrite)) bump(loop_.counters().write_arms);
  bump(loop_.counters().poller_changes);
  if (std::error_code ec = loop_.poller().modify(fd_.get(), interest_, want, this)) {
    return finalize(ec);
  }
  interest_ = want;
}

void Connection::arm_idle_timer(std::chrono::steady_clock::duration after) {
  idle_timer_ = loop_.run_after(after, [this] { check_idle(); });
}

void Connection::check_idle() {
  // One timer per connection, re-armed for the remaining time only when it fires: activity
  // costs a timestamp store, not a timer operation.
  idle_timer_ = 0;
  const auto idle = loop_.options().idle_timeout;
  const auto quiet = std::chrono::steady_clock::now() - last_progress_;
  if (quiet >= idle) return finalize(make_error_code(errc::idle_timeout));
  arm_idle_timer(idle - quiet);
}

void Connection::finalize(std::error_code error) {
  if (closed_) return;
  closed_ = true;
  closing_ = true;
  if (close_timer_ != 0) loop_.cancel(close_timer_);
  if (idle_timer_ != 0) loop_.cancel(idle_timer_);
  loop_.poller().remove(fd_.get(), interest_);
  discard_output();
  adjust(loop_.counters().input_buffered, in_.size(), 0);
  in_.clear();
  bump(loop_.counters().closed);
  if (const auto& closed = loop_.callbacks().closed; closed && opened_) closed(handle_, error);
  fd_.reset();  // after the callback, so local_address() still works there
  context_.reset();
  loop_.retire(*this);
}

}  // namespace evloop::detail
