// The open connection: reading, writing, back-pressure, half-close, and the transitions out.
// Dialling lives in connection_dial.cpp.
#include "connection.hpp"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <limits>

#include "event_loop.hpp"
#include "loop_group_core.hpp"
#include "platform.hpp"

namespace evloop::detail {
namespace {

// Pieces per sendmsg: 64 chunks = ~1 MiB, well under IOV_MAX (1024 on Linux and the BSDs).
constexpr int kMaxIov = 64;
// Unconsumed-input capacity kept after the tail is consumed; more is given back.
constexpr std::size_t kKeepInputCapacity = 64 * 1024;
// The most of a file range one connection sends per loop iteration.
constexpr std::size_t kFileSlice = 1024 * 1024;
// Bytes sent before file ranges of at most this much in all go with MSG_MORE, to leave in one
// segment with the file's first bytes (a small response's head and body). Not before larger
// ranges: measured with the http-server example against nginx, MSG_MORE before a 1 MiB file
// cost 2.4x the server CPU per request (before a 4 KiB file it saved 20%).
constexpr std::uint64_t kCorkedFileMax = 64 * 1024;

bool would_block(long err) { return err == -EAGAIN || err == -EWOULDBLOCK || err == -EINTR; }

std::error_code sys_error(long negative_errno) {
  return {static_cast<int>(-negative_errno), std::system_category()};
}

}  // namespace

Connection::Connection(EventLoop& loop, std::uint64_t id, ProfilePtr profile)
    : Pollable(Kind::connection),
      loop_(loop),
      profile_(std::move(profile)),
      id_(id),
      out_(loop.chunks()) {}

Connection::~Connection() = default;

Connection::Rare& Connection::rare() {
  if (!rare_) rare_ = std::make_unique<Rare>();
  return *rare_;
}

// --- ways in -----------------------------------------------------------------------------------

void Connection::open_accepted(UniqueFd fd, const SocketAddress& peer) {
  fd_ = std::move(fd);
  peer_ = PeerAddress(peer);
  configure_connection(fd_.get(), is_tcp_family(peer.family()), options());
  ready_ = true;
  schedule();
}

void Connection::open_adopted(int fd, std::string input, std::string output,
                              std::optional<MovedState> moved) {
  fd_ = UniqueFd(fd);
  bump(loop_.counters().adoptions);
  if (Status s = validate(options(), "adopt"); !s) return fail(s.code(), false);
  SocketAddress peer;
  if (moved) {
    // An evloop connection of the predecessor: a connected stream socket, non-blocking (a flag
    // of the socket, which both processes share), received close-on-exec. Nothing to check or
    // ask the kernel: five syscalls fewer per connection while an upgrade moves thousands.
    peer = moved->peer;
    rare().moved_state = std::move(moved->state);
  } else if (std::error_code ec = prepare_adopted(fd, peer)) {
    return fail(ec, false);
  }
  peer_ = PeerAddress(peer);
  configure_connection(fd, is_tcp_family(peer.family()), options());
  adjust(loop_.counters().input_buffered, 0, input.size());
  in_.assign(std::move(input));
  append_output(output.data(), output.size());
  ready_ = true;
  schedule();
}

// --- transitions -------------------------------------------------------------------------------

void Connection::enter_open() {
  // connecting -> open. A dialled socket is registered for writability; the rest not at all. With
  // completions, an open connection needs no readiness: settle() arms its receive.
  if (loop_.poller().completions()) {
    forget_poller();
  } else {
    const std::error_code ec = registered_
                                   ? loop_.poller().modify(fd_.get(), interest_, kRead, this)
                                   : loop_.poller().add(fd_.get(), kRead, this);
    if (ec) return fail_open(ec);
    registered_ = true;
    interest_ = kRead;
  }
  state_ = ConnState::open;
  if (timer_ != 0) loop_.cancel(timer_);  // the connect timeout
  timer_ = 0;
  dialling_ = false;
  const std::optional<std::string> moved = rare_ ? std::move(rare_->moved_state) : std::nullopt;
  rare_.reset();
  bump(loop_.counters().opened);
  last_receive_ = last_send_ = loop_.now();
  // The clocks start now, so nothing is due: the first check comes after the shortest timeout.
  // Not a check here: against the iteration's clock (read before this iteration's handlers and
  // tasks ran, perhaps long ago) output queued before the open (an adoption's, or written while
  // dialling) looked stuck, and a send_timeout ended the connection before `opened` fired.
  const std::chrono::milliseconds idle = options().idle_timeout, send = options().send_timeout;
  if (idle.count() > 0 || send.count() > 0) {
    arm_timeout_timer(idle.count() > 0 && send.count() > 0 ? std::min(idle, send)
                      : idle.count() > 0                   ? idle
                                                           : send);
  }
  if (moved && handlers().adopted) {
    handlers().adopted(*this, *moved);  // instead of `opened`: the peer is mid-stream
  } else if (handlers().opened) {
    handlers().opened(*this);
  }
  if (!in_.empty() && state_ == ConnState::open) deliver(nullptr, 0);  // an adopted stream's input
}

void Connection::fail_open(std::error_code error) {
  // connecting -> closed: `connect_failed`, never `closed`.
  state_ = ConnState::closed;
  cancel_timers();
  forget_poller();
  fd_.reset();
  discard_output();
  adjust(loop_.counters().input_buffered, in_.size(), 0);
  in_.clear();
  dialling_ = false;
  bump(loop_.counters().dial_failures);
  if (handlers().connect_failed) handlers().connect_failed(*this, error);
  context_.reset();
  if (rare_) loop_.group().resolver().cancel(rare_->dial.lookup);
  rare_.reset();
  loop_.retire(*this);
}

void Connection::begin_closing(std::error_code reason) {
  // open -> closing: no more reading; finish() once the output is sent. An end already decided
  // (abort(), an error) stands, with its reason.
  if (state_ != ConnState::open || end_wanted_) return;
  state_ = ConnState::closing;
  reason_ = reason;
  if (timer_ != 0) loop_.cancel(timer_);
  timer_ = 0;
  schedule();
}

void Connection::linger(int reported_errno) {
  // A TCP close with the peer's bytes unread, or with bytes arriving before the peer has
  // acknowledged all it was sent, makes the kernel reset the connection and drop what it still
  // holds (RFC 1122 4.2.2.13; Linux does): a client that pipelines a request behind a response
  // would lose the response's end. So the FIN goes now, what the peer sends is read and dropped,
  // and the fd closes once the peer has acknowledged everything or ended its side. Checked at
  // growing intervals (no event says "acknowledged"), for at most close_timeout without the
  // peer acknowledging more: a slow peer's download is not cut short, a silent one is.
  if (timer_ != 0) {
    if (lingering_) return;  // settled meanwhile: the next check is already due
    loop_.cancel(timer_);    // close_timeout's wait for the output, which has gone
    timer_ = 0;
  }
  // Once the peer has acknowledged everything, a reset (ours, closing with its bytes unread, or
  // its own) can lose it nothing. The input is read first all the same, so that a peer that has
  // stopped sending sees a FIN, not a reset.
  int error = 0;
  Drained input = discard_input(fd_.get(), kLingerReadBudget, error);
  if (input != Drained::failed && reported_errno != 0) {
    // The poller saw the reset, and the socket no longer says so (its error was read): a read
    // finds only the end of the stream.
    input = Drained::failed;
    error = reported_errno;
  }
  const std::size_t unacknowledged = platform::tcp_output_unacknowledged(fd_.get());
  // The peer reset before it had everything: the rest is lost, and `closed` says so (as it does
  // when a send fails).
  if (input == Drained::failed && unacknowledged != 0) return finish(sys_error(-error), false);
  if (input == Drained::ended || input == Drained::failed || unacknowledged == 0) {
    // With the peer's bytes still unread (more than one check reads), the kernel resets the
    // connection at close; it loses the peer nothing now, and `resets` counts it.
    return finish(reason_, input == Drained::more);
  }
  Rare& r = rare();
  if (!lingering_) {
    lingering_ = true;
    output_shut_ = true;
    (void)shutdown_output(fd_.get());
    r.linger_until = loop_.now() + options().close_timeout;
    r.linger_unacknowledged = unacknowledged;
  } else if (unacknowledged < r.linger_unacknowledged) {
    r.linger_until = loop_.now() + options().close_timeout;  // progress
    r.linger_unacknowledged = unacknowledged;
  }
  if (loop_.now() >= r.linger_until) return finish(make_error_code(errc::close_timeout), true);
  timer_ = loop_.run_after(r.linger_step, [this] {
    timer_ = 0;
    linger();
  });
  r.linger_step = std::min(r.linger_step * 2, kLingerStepLimit);
}

void Connection::finish(std::error_code error, bool reset) {
  // open or closing -> closed: the one place that closes the fd and fires `closed`. A close that
  // discards output resets, so the peer cannot take a truncated stream for a complete one.
  if (ended()) return;
  if (state_ == ConnState::connecting) return fail_open(error);
  state_ = ConnState::closed;
  cancel_timers();
  forget_poller();
  quiesce();  // completions: what the kernel still holds ends with ECANCELED
  if (reset || !out_.empty()) {
    set_reset_on_close(fd_.get());
    bump(loop_.counters().resets);
  }
  if (sending_) {
    // The kernel is reading the output now: it is freed when the send completes (on_sent).
    adjust(loop_.counters().output_buffered, out_.size(), 0);
  } else {
    discard_output();
  }
  adjust(loop_.counters().input_buffered, in_.size(), 0);
  in_.clear();
  bump(loop_.counters().closed);
  if (handlers().closed) handlers().closed(*this, error);
  // After the handler, so local_address() still works there. While the kernel holds a request
  // on the fd (completions), the destructor closes it once that request has ended: the fd number
  // cannot be reused under a request still queued.
  if (!busy()) fd_.reset();
  context_.reset();
  loop_.retire(*this);
}

void Connection::detach_now() {
  // open -> detached: the fd and the stream's state go to the receiver; evloop lets go.
  state_ = ConnState::detached;
  cancel_timers();
  forget_poller();
  std::string unsent;
  unsent.reserve(out_.size());
  out_.for_each_piece([&](const char* p, std::size_t n) { unsent.append(p, n); });
  discard_output();
  adjust(loop_.counters().input_buffered, in_.size(), 0);
  const SocketAddress peer = peer_.get(fd_.get());
  DetachedConn detached(fd_.release(), in_.take(), std::move(unsent), peer);
  const auto receiver = std::move(rare_->detach_to);
  rare_.reset();
  bump(loop_.counters().detaches);
  bump(loop_.counters().closed);
  if (handlers().closed) handlers().closed(*this, make_error_code(errc::detached));
  receiver(std::move(detached));
  context_.reset();
  loop_.retire(*this);
}

void Connection::fail(std::error_code error, bool reset) {
  // The first reason to end wins; settle() carries it out.
  if (ended() || end_wanted_) return;
  end_wanted_ = true;
  reason_ = error;
  reset_wanted_ = reset;
  schedule();
}

void Connection::forget_poller() {
  if (registered_) loop_.poller().remove(fd_.get(), interest_);
  registered_ = false;
  interest_ = kNone;
}

// --- after handlers ----------------------------------------------------------------------------

void Connection::schedule() {
  if (scheduled_ || ended()) return;
  scheduled_ = true;
  loop_.schedule(*this);
}

void Connection::settle() {
  scheduled_ = false;
  if (ended()) return;
  if (state_ == ConnState::connecting) {
    if (end_wanted_) return fail_open(reason_);
    if (!ready_) return;
    enter_open();
    if (state_ == ConnState::connecting || ended()) return;
  }
  if (detaching_) {
    // A failure since detach() (a write past output_limit): the stream the receiver would get
    // is not whole, so the connection ends with it instead.
    if (end_wanted_) return finish(reason_, reset_wanted_);
    // With completions, the kernel's receive and send end first: what they moved is then in the
    // input and output handed over.
    if (quiesce()) detach_now();
    return;
  }
  if (end_wanted_) return finish(reason_, reset_wanted_);
  if (stashed_ && wants_to_read()) {
    // Completions: bytes (and an EOF) that came in while reading was paused, delivered now.
    stashed_ = false;
    if (!in_.empty()) deliver(nullptr, 0);
    if (ended()) return;
    if (stashed_eof_) {
      // Not while the bytes just delivered paused reading again: on epoll the EOF would not be
      // read yet either (and a handler that is behind must not see its connection close).
      stashed_ = !wants_to_read();
      if (!stashed_) on_input_end();
      if (ended()) return;
    }
  }
  if (!out_.empty()) {
    if (loop_.poller().completions()) {
      flush_async();
    } else {
      flush();
    }
    if (ended()) return;
  }
  if (out_.empty() && state_ == ConnState::closing) {
    // Lingering goes on below: the poller is told that the connection neither reads nor
    // writes any more (the input is drained by linger()'s checks, not handed to `data`).
    linger();
    if (ended()) return;
  } else if (out_.empty()) {
    if (shutdown_wanted_ && !output_shut_) {
      output_shut_ = true;
      if (const int rc = shutdown_output(fd_.get()); rc < 0 && rc != -ENOTCONN) {
        return finish(sys_error(rc), false);
      }
    }
    if (output_shut_ && input_ended_) return finish({}, false);  // both directions ended
  } else if (state_ == ConnState::closing && timer_ == 0) {
    // Output is pending but the peer may never read it: bound the time it goes without
    // progress. From here on last_send_ (the send_timeout clock while open) is when the drain
    // began or last made progress.
    last_send_ = loop_.now();
    timer_ = loop_.run_after(options().close_timeout, [this] { check_drain(); });
  }
  update_backpressure();
  // The idle clock stood still while the connection did not read: it starts again now. (Here,
  // not at the poller: on io_uring a receive stays in flight through a pause.)
  const bool reading = wants_to_read();
  if (reading && !was_reading_) last_receive_ = loop_.now();
  was_reading_ = reading;
  if (loop_.poller().completions()) {
    update_receiving();
    update_watch();
  } else {
    update_interest();
  }
  if (state_ != ConnState::open) return;
  // Handlers last: whatever they ask for schedules this connection again.
  if (low_water_owed_) {
    low_water_owed_ = false;
    if (handlers().low_water) handlers().low_water(*this);
  }
  if (all_sent_owed_ && out_.empty() && state_ == ConnState::open) {
    all_sent_owed_ = false;
    if (handlers().all_sent) handlers().all_sent(*this);
  }
}

void Connection::begin_shutdown() {
  if (ended()) return;
  if (state_ == ConnState::connecting) return fail(make_error_code(errc::server_stopped), false);
  begin_closing(make_error_code(errc::server_stopped));
}

void Connection::end_shutdown() { finish(make_error_code(errc::shutdown_timeout), true); }

// --- reading -----------------------------------------------------------------------------------

void Connection::on_event(const PollEvent& event) {
  if (event.op == PollEvent::Op::received) return on_received(event);
  if (event.op == PollEvent::Op::sent) return on_sent(event);
  if (ended()) return;  // closed earlier in this batch
  if (state_ == ConnState::connecting) return on_connect_ready(event);
  if (lingering_) {
    // It asked for no events: an error or a hang-up (a reset, the peer's FIN), checked now. If
    // that does not end it, the timed checks go on out of the poller, which would report the
    // same condition again at every wait.
    cancel_timers();
    linger(event.error && event.result < 0 ? static_cast<int>(-event.result) : 0);
    if (!ended()) park();
    return;
  }
  if (event.error) {
    std::error_code ec = socket_error(fd_.get());
    if (!ec && event.result < 0) ec = sys_error(event.result);
    return finish(ec ? ec : std::make_error_code(std::errc::connection_reset), false);
  }
  if ((event.readable || event.hangup) && (interest_ & kRead)) read_once();
  if (ended()) return;
  if (event.writable) {
    send_blocked_ = false;  // completions: the room a blocked send waited for
    schedule();
  } else if (event.hangup && !(interest_ & kRead)) {
    // The peer is gone while we do not read. With output pending, the send says why; without,
    // nothing can change until reading resumes, and a level-triggered hang-up would be
    // reported again at every wait: leave the poller until then.
    if (!out_.empty()) return schedule();
    park();
  }
}

void Connection::park() {
  forget_poller();
  parked_ = true;
}

void Connection::read_once() {
  // One read per readiness (level-triggered): a busy connection cannot starve the others.
  const long n = receive(fd_.get(), loop_.read_buffer(), loop_.read_buffer_size());
  bump(loop_.counters().reads);
  if (n > 0) {
    on_bytes(loop_.read_buffer(), static_cast<std::size_t>(n));
  } else if (n == 0) {
    on_input_end();
  } else if (!would_block(n)) {
    finish(sys_error(n), false);
  }
}

void Connection::on_bytes(const char* bytes, std::size_t size) {
  bump(loop_.counters().bytes_in, size);
  last_receive_ = loop_.now();
  deliver(bytes, size);
}

void Connection::on_input_end() {
  // The peer's FIN: no more reading either way (a level-triggered EOF stays readable forever).
  input_ended_ = true;
  if (handlers().eof) {
    handlers().eof(*this);  // the user replies, now or later, and closes or shuts down
  } else {
    begin_closing({});  // send what is pending, then close
  }
  schedule();
}

void Connection::deliver(const char* bytes, std::size_t size) {
  const std::size_t input_before = in_.size();
  std::string_view view(bytes, size);
  if (input_before > 0) {
    in_.append(bytes, size);
    view = in_.view();
  }
  const auto& data = handlers().data;
  // The handler cannot end us here: every end it can ask for is carried out by settle().
  const std::size_t consumed = std::min(data ? data(*this, view) : view.size(), view.size());
  if (input_before == 0) {
    in_.append(bytes + consumed, size - consumed);  // a partial frame: kept for next time
  } else {
    in_.consume(consumed, kKeepInputCapacity);
  }
  adjust(loop_.counters().input_buffered, input_before, in_.size());
  if (in_.size() > options().input_limit) fail(make_error_code(errc::input_limit), true);
}

// --- writing -----------------------------------------------------------------------------------

void Connection::write(const void* bytes, std::size_t size) {
  if (!accepts_output() || size == 0) return;
  // A large write with the connection open goes to the kernel now, from the caller's memory
  // (with whatever is pending, in one sendmsg); only what the kernel refuses is copied. Small
  // writes are copied and leave together after the handler. With completions, only while no
  // send of ours is in the kernel: a direct send would overtake it.
  if (size >= options().write_through && state_ == ConnState::open && !out_.has_file() &&
      !sending_) {
    const std::size_t taken = send_now(bytes, size);
    if (end_wanted_) return;  // the send failed: the connection ends
    bytes = static_cast<const char*>(bytes) + taken;
    size -= taken;
  }
  all_sent_owed_ = true;
  if (size > 0) {
    if (!fits_output_limit(size)) return;
    append_output(bytes, size);
  }
  schedule();
}

void Connection::write_shared(const SharedBuffer& buffer) {
  if (!accepts_output() || buffer.empty() ||
      !fits_output_limit(buffer.size() + OutputBuffer::kSharedRecord)) {
    return;
  }
  const bool was_empty = out_.empty();
  out_.append_shared(buffer.bytes_, 0, buffer.size());  // a reference: never a copy
  queued(buffer.size(), was_empty);
}

void Connection::send_file(int fd, std::uint64_t offset, std::uint64_t length) {
  if (!accepts_output() || length == 0) {
    ::close(fd);
    return;
  }
  // No file holds more than off_t's maximum, so a range that would take the pending output past
  // it can never be sent whole; refused at once, it also keeps output_pending() from wrapping.
  constexpr std::uint64_t kMaxPending = std::numeric_limits<std::int64_t>::max();
  if (length > kMaxPending - std::min<std::uint64_t>(out_.size(), kMaxPending)) {
    ::close(fd);
    return fail(std::make_error_code(std::errc::value_too_large), true);
  }
  if (detaching_ || length <= kCopiedFileMax || out_.files() >= kHeldFilesMax) {
    return read_file_into_output(UniqueFd(fd), offset, length);
  }
  const bool was_empty = out_.empty();
  out_.append_file(fd, offset, length);  // counts as pending output, holds no memory
  queued(static_cast<std::size_t>(length), was_empty);
}

void Connection::read_file_into_output(UniqueFd file, std::uint64_t offset, std::uint64_t length) {
  // Read now, within output_limit: a small range, one past the file ranges a connection may hold,
  // or any range after a detach (the output is handed over as bytes).
  if (length > options().output_limit) return fail(make_error_code(errc::output_limit), true);
  if (!fits_output_limit(static_cast<std::size_t>(length))) return;
  char chunk[64 * 1024];
  while (length > 0) {
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(sizeof chunk, length));
    const ssize_t n = ::pread(file.get(), chunk, want, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(std::error_code(errno, std::system_category()), true);
    if (n == 0) return fail(make_error_code(errc::file_truncated), true);
    append_output(chunk, static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
    length -= static_cast<std::uint64_t>(n);
  }
}

void Connection::send_file_copy(int fd, std::uint64_t offset, std::uint64_t length) {
  // An ignored call makes no duplicate (a bad fd is then no error either).
  if (!accepts_output() || length == 0) return;
  const int own = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);  // ours to close, whatever the caller does
  if (own < 0) return fail(std::error_code(errno, std::system_category()), true);
  send_file(own, offset, length);
}

bool Connection::fits_output_limit(std::size_t more) {
  if (out_.held_memory() + more <= options().output_limit) return true;
  fail(make_error_code(errc::output_limit), true);  // finish() discards the output
  return false;
}

void Connection::append_output(const void* bytes, std::size_t size) {
  if (size == 0) return;
  const bool was_empty = out_.empty();
  out_.append(bytes, size);
  bump(loop_.counters().bytes_copied, size);
  queued(size, was_empty);
}

void Connection::queued(std::size_t size, bool was_empty) {
  if (was_empty) last_send_ = loop_.now();  // the send_timeout clock starts
  bump(loop_.counters().output_buffered, size);
  all_sent_owed_ = true;
  // Pause as soon as output passes the mark, not only if it is still there after the send: a
  // producer that stops at the mark then always gets `low_water`, even when the kernel takes it
  // all at once, and the peer's EOF is not read (closing the connection) while it is behind.
  if (!pressure_paused_ && out_.size() > options().output_high_water) {
    pressure_paused_ = true;
    bump(loop_.counters().read_pauses);
  }
  schedule();
}

std::size_t Connection::send_now(const void* bytes, std::size_t size) {
  iovec iov[kMaxIov];
  const int count = out_.gather(iov, kMaxIov - 1);
  std::size_t pending = 0;
  for (int i = 0; i < count; ++i) pending += iov[i].iov_len;
  if (pending < out_.memory_size()) return 0;  // more pieces than one sendmsg takes: queue
  iov[count].iov_base = const_cast<void*>(bytes);
  iov[count].iov_len = size;
  const long n = send_pieces(fd_.get(), iov, count + 1);
  bump(loop_.counters().writes);
  if (n < 0) {
    if (!would_block(n)) fail(sys_error(n), false);
    return 0;
  }
  const auto sent = static_cast<std::size_t>(n);
  bump(loop_.counters().bytes_out, sent);
  last_send_ = loop_.now();
  const std::size_t of_pending = std::min(sent, pending);
  if (of_pending > 0) {
    adjust(loop_.counters().output_buffered, of_pending, 0);
    out_.consume(of_pending);
  }
  return sent - of_pending;
}

void Connection::discard_output() {
  // Never while a send is in flight (completions): the kernel reads these pieces until it ends,
  // and freed chunks go straight to the next writer of this loop.
  adjust(loop_.counters().output_buffered, out_.size(), 0);
  out_.clear();
}

void Connection::flush() {
  iovec iov[kMaxIov];
  std::size_t file_budget = kFileSlice;
  while (!out_.empty()) {
    std::size_t asked = 0;
    long n;
    if (FilePiece* file = out_.file_at_head()) {
      // A slice per iteration: a large file cannot hold the loop; writability brings the rest.
      if (file_budget == 0) return;
      n = send_file_piece(*file, std::min<std::uint64_t>(file->remaining, file_budget), asked);
      if (n == 0) return finish(make_error_code(errc::file_truncated), true);
      if (n > 0) file_budget -= static_cast<std::size_t>(n);
    } else {
      const int count = out_.gather(iov, kMaxIov);
      for (int i = 0; i < count; ++i) asked += iov[i].iov_len;
      // Bytes before a small file range (a response's head): MSG_MORE joins them to its first
      // segment.
      const bool more =
          asked < out_.size() && out_.has_file() && out_.file_bytes() <= kCorkedFileMax;
      n = send_pieces(fd_.get(), iov, count, more);
    }
    bump(loop_.counters().writes);
    if (n < 0) {
      if (n == -EINTR) continue;
      if (would_block(n)) return;
      return finish(sys_error(n), false);
    }
    bump(loop_.counters().bytes_out, static_cast<std::uint64_t>(n));
    adjust(loop_.counters().output_buffered, static_cast<std::size_t>(n), 0);
    out_.consume(static_cast<std::size_t>(n));
    last_send_ = loop_.now();
    // A short write means the socket buffer is full: wait for writability rather than spend a
    // syscall on the EAGAIN we already know is coming.
    if (static_cast<std::size_t>(n) < asked) return;
  }
}

long Connection::send_file_piece(FilePiece& file, std::size_t want, std::size_t& asked) {
  if (!file.use_pread) {
    asked = want;
    const long n = platform::send_file(fd_.get(), file.fd, file.offset, want);
    if (n == -EPIPE) platform::discard_pending_sigpipe();  // raised anyway; blocked on loops
    if (n != -EINVAL && n != -ENOSYS && n != -EOPNOTSUPP) return n;
    file.use_pread = true;  // not a file sendfile() takes: read it through the loop's buffer
  }
  ssize_t got;
  do {
    got = ::pread(file.fd, loop_.read_buffer(), std::min(want, loop_.read_buffer_size()),
                  static_cast<off_t>(file.offset));
  } while (got < 0 && errno == EINTR);
  if (got <= 0) return got < 0 ? -errno : 0;
  asked = static_cast<std::size_t>(got);
  const iovec piece{loop_.read_buffer(), asked};
  return send_pieces(fd_.get(), &piece, 1);  // what it does not take is read again next time
}

void Connection::update_backpressure() {
  // Hysteresis: reading paused (in append_output) above the high-water mark resumes at the low
  // mark, and `low_water` tells the producer.
  if (pressure_paused_ && out_.size() <= options().output_low_water) {
    pressure_paused_ = false;
    low_water_owed_ = true;
  }
}

void Connection::update_interest() {
  const unsigned want = (wants_to_read() ? kRead : kNone) | (out_.empty() ? kNone : kWrite);
  if (parked_) {
    if (want == kNone) return;
    parked_ = false;
  } else if (want == interest_) {
    return;  // the common case: no poller call per message
  }
  if ((want & kWrite) && !(interest_ & kWrite)) bump(loop_.counters().write_arms);
  bump(loop_.counters().poller_changes);
  const std::error_code ec = registered_ ? loop_.poller().modify(fd_.get(), interest_, want, this)
                                         : loop_.poller().add(fd_.get(), want, this);
  if (ec) return finish(ec, false);
  registered_ = true;
  interest_ = static_cast<std::uint8_t>(want);
}

// --- completions (io_uring) ---------------------------------------------------------------------

void Connection::update_receiving() {
  // One receive in flight while reading is wanted, re-armed after each completion. When reading
  // pauses, the receive in flight is left to complete (at most one buffer, stashed by
  // on_received for the resume) rather than cancelled: a cancel would cost as much.
  if (!wants_to_read() || receiving_ || input_ended_) return;
  if (stashed_) return schedule();  // reading resumed: the next settle() delivers the stash
  loop_.poller().receive(fd_.get(), this, large_receives_);
  receiving_ = true;
}

void Connection::update_watch() {
  // With no receive in the kernel (reading paused, or the input ended), nothing would tell a
  // connection that neither reads nor writes of a peer's reset until it did one or the other. A
  // poll without interest does (errors and hang-ups only), as the epoll registration does. It is
  // added when the last receive ends and removed when reading resumes: per pause, not per
  // message. Not after a hang-up (park()): there is nothing more to learn until reading resumes.
  // A blocked send (on_sent) waits for write space in the same poll.
  if (receiving_) parked_ = false;
  const bool watch = send_blocked_ || (state_ == ConnState::open && !receiving_ && !parked_);
  const unsigned want = send_blocked_ ? kWrite : kNone;
  if (watch == registered_ && (!watch || want == interest_)) return;
  bump(loop_.counters().poller_changes);
  forget_poller();
  if (!watch) return;
  const std::error_code ec = send_blocked_ ? loop_.poller().watch_write_space(fd_.get(), this)
                                           : loop_.poller().add(fd_.get(), kNone, this);
  if (ec) return finish(ec, false);
  registered_ = true;
  interest_ = static_cast<std::uint8_t>(want);
}

void Connection::on_received(const PollEvent& event) {
  if (!event.more) receiving_ = cancelling_ = false;
  if (ended() || state_ == ConnState::connecting) return;  // a zombie waits for this, nothing more
  // A receive of a small buffer's worth or more asks for a large one next time (a stream of large
  // messages then arrives in one completion each); a smaller one, or one that found no buffer,
  // for a small one.
  if (event.result > 0 || event.result == -ENOBUFS) large_receives_ = event.large;
  const bool deliver_now = wants_to_read() && !stashed_ && !detaching_;
  if (event.result > 0) {
    bump(loop_.counters().reads);
    const auto size = static_cast<std::size_t>(event.result);
    if (deliver_now) {
      on_bytes(event.data, size);
    } else {  // arrived while paused, closing or detaching: kept in order for later
      bump(loop_.counters().bytes_in, size);
      adjust(loop_.counters().input_buffered, in_.size(), in_.size() + size);
      in_.append(event.data, size);
      stashed_ = true;
    }
  } else if (event.result == 0) {
    bump(loop_.counters().reads);
    if (deliver_now) {
      on_input_end();
    } else {
      stashed_ = stashed_eof_ = true;
    }
  } else if (event.result == -ENOBUFS) {
    // Every provided buffer was in use: asked again (schedule()) with the next wait, which first
    // gives the kernel back the buffers this iteration's completions used.
    bump(loop_.counters().receive_buffer_waits);
  } else if (event.result != -ECANCELED && event.result != -EINTR) {  // EINTR: re-armed too
    return finish(sys_error(event.result), false);
  }
  schedule();
}

void Connection::on_sent(const PollEvent& event) {
  sending_ = false;
  std::size_t asked = 0;
  for (std::size_t i = 0; i < send_slot_->msg.msg_iovlen; ++i) asked += send_slot_->iov[i].iov_len;
  loop_.send_slots().release(send_slot_);
  send_slot_ = nullptr;
  if (ended()) {
    // finish() left the output to the kernel until now (and already counted it gone); what
    // the send took still went on the wire.
    if (event.result > 0) bump(loop_.counters().bytes_out, static_cast<std::size_t>(event.result));
    out_.clear();
    return;
  }
  if (event.result < 0) {
    if (event.result == -EINTR) return schedule();
    if (event.result == -EAGAIN) {
      // The kernel's own wait for room ended without room: the peer's FIN (which every io_uring
      // poll reports) woke it. Sent again at once, it would fail again at every iteration, so
      // the next send waits for write space (update_watch()).
      send_blocked_ = true;
      return schedule();
    }
    // Cancelled by a detach (quiesce()): it sent nothing, and its bytes go to the receiver.
    if (event.result == -ECANCELED && detaching_) return schedule();
    return finish(sys_error(event.result), false);
  }
  const auto n = static_cast<std::size_t>(event.result);
  bump(loop_.counters().bytes_out, n);
  adjust(loop_.counters().output_buffered, n, 0);
  out_.consume(n);
  last_send_ = loop_.now();
  if (n < asked) bump(loop_.counters().write_arms);  // the socket was full: output waits
  schedule();  // more to send, or all_sent, a close, a shutdown_write
}

void Connection::flush_async() {
  // One send in flight per connection; its pieces stay queued (and alive) until it completes.
  if (sending_ || send_blocked_ || out_.empty()) return;
  if (out_.file_at_head() != nullptr) {
    // No sendfile here: the next part of the file is read into memory and sent from there.
    const long got = out_.load_file_head();
    if (got == 0) return finish(make_error_code(errc::file_truncated), true);
    if (got < 0) return finish(sys_error(got), true);
  }
  send_slot_ = loop_.send_slots().acquire();
  const int count = out_.gather(send_slot_->iov, SendSlot::kMaxIov);
  send_slot_->msg.msg_iov = send_slot_->iov;
  send_slot_->msg.msg_iovlen = static_cast<decltype(send_slot_->msg.msg_iovlen)>(count);
  loop_.poller().send(fd_.get(), &send_slot_->msg, this);
  sending_ = true;
  bump(loop_.counters().writes);
}

bool Connection::quiesce() {
  // Completions: asks the kernel to end this connection's requests; true once none is left.
  if (receiving_ && !cancelling_) {
    loop_.poller().cancel(this, PollEvent::Op::received);
    cancelling_ = true;
  }
  if (sending_ && (ended() || detaching_)) loop_.poller().cancel(this, PollEvent::Op::sent);
  return !busy();
}

// --- the Conn API ------------------------------------------------------------------------------

// Once detach() has said yes the connection is its receiver's: a close, an abort or a half-close
// asked for after that is ignored (an abort would discard output that the receiver is owed).

void Connection::close() {
  if (detaching_) return;
  if (state_ == ConnState::connecting) return fail(make_error_code(errc::cancelled), false);
  begin_closing({});
}

void Connection::abort() {
  if (ended() || detaching_) return;
  if (state_ == ConnState::connecting) return fail(make_error_code(errc::cancelled), false);
  fail({}, true);  // finish() discards the output (after a send in flight, see there)
}

void Connection::shutdown_write() {
  if (state_ > ConnState::open || shutdown_wanted_ || detaching_) return;
  shutdown_wanted_ = true;
  schedule();
}

void Connection::pause_reading() {
  user_paused_ = true;
  schedule();
}

void Connection::resume_reading() {
  user_paused_ = false;
  schedule();
}

bool Connection::detach(std::function<void(DetachedConn)> receiver) {
  // After shutdown_write() the FIN is owed after the output, and DetachedConn cannot carry that
  // promise to a new owner: such a connection stays (it would lose its FIN).
  if (state_ != ConnState::open || end_wanted_ || detaching_ || out_.has_file() ||
      shutdown_wanted_) {
    return false;
  }
  rare().detach_to = std::move(receiver);
  detaching_ = true;
  schedule();
  return true;
}

// --- timers ------------------------------------------------------------------------------------

void Connection::arm_timeout_timer(std::chrono::steady_clock::duration after) {
  timer_ = loop_.run_after(after, [this] { check_timeouts(); });
}

void Connection::check_timeouts() {
  // One timer per connection for both timeouts, re-armed for the time left only when it fires:
  // a received or sent byte costs a timestamp store, not a timer operation.
  timer_ = 0;
  if (state_ != ConnState::open) return;
  using Duration = std::chrono::steady_clock::duration;
  const auto now = std::chrono::steady_clock::now();
  Duration next = Duration::max();
  if (const Duration idle = options().idle_timeout; idle.count() > 0) {
    const auto last_activity =
        options().idle_counts_sends ? std::max(last_receive_, last_send_) : last_receive_;
    if (!wants_to_read() || !was_reading_) {
      // Not reading: the clock stands still. Or reading resumed since the last settle(), which
      // starts the clock again: a timer that runs before it must not count the pause.
      next = idle;
    } else if (now - last_activity >= idle) {
      return finish(make_error_code(errc::idle_timeout), false);
    } else {
      next = idle - (now - last_activity);
    }
  }
  if (const Duration send = options().send_timeout; send.count() > 0) {
    if (out_.empty()) {
      next = std::min(next, send);
    } else if (now - last_send_ >= send) {
      return finish(make_error_code(errc::send_timeout), true);
    } else {
      next = std::min(next, send - (now - last_send_));
    }
  }
  arm_timeout_timer(next);
}

void Connection::check_drain() {
  // One timer for the drain, re-armed for the time left when it fires: a send that makes
  // progress costs a timestamp store (last_send_), not a timer operation.
  timer_ = 0;
  const auto quiet = loop_.now() - last_send_;
  if (quiet >= options().close_timeout) return finish(make_error_code(errc::close_timeout), true);
  timer_ = loop_.run_after(options().close_timeout - quiet, [this] { check_drain(); });
}

void Connection::cancel_timers() {
  if (timer_ != 0) loop_.cancel(timer_);
  timer_ = 0;
  if (rare_ && rare_->dial.retry_timer != 0) {
    loop_.cancel(rare_->dial.retry_timer);  // a dial waiting for room on a Unix socket
    rare_->dial.retry_timer = 0;
  }
}

}  // namespace evloop::detail
