// A UDP socket on its loop: opening, batched receive (with GRO splitting), the bounded send queue
// flushed in batches (with GSO), and the transitions out.
#include "udp_socket.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <utility>

#include "event_loop.hpp"
#include "loop_group_core.hpp"
#include "platform.hpp"
#include "posted_sends.hpp"
#include "receive_batch.hpp"
#include "sys_error.hpp"

namespace evloop::detail {
namespace {

constexpr std::size_t kMaxGroReceive = 65536;  // a GRO receive holds up to 64 KiB
// The longest UDP payload (65,535 bytes less the UDP header; IPv6's limit, IPv4's 65,507 is the
// kernel's to enforce): anything longer the kernel refuses (EMSGSIZE) whatever the socket.
constexpr std::size_t kMaxUdpPayload = 65535 - 8;

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

// The wildcard address of a bind with no host: 0.0.0.0, or [::] for udp6.
SocketAddress any_address(const ListenAddress& target) {
  ListenAddress any = target;
  any.host = ip_family(target.transport) == AF_INET6 ? "::" : "0.0.0.0";
  SocketAddress out;
  numeric_address(any, out);
  return out;
}

}  // namespace

UdpSocket::UdpSocket(EventLoop& loop, std::uint64_t id, UdpProfilePtr profile,
                     std::shared_ptr<PostedSends> posted)
    : Pollable(Kind::udp),
      loop_(loop),
      profile_(std::move(profile)),
      id_(id),
      queue_(profile_->options.send_queue_bytes, profile_->options.send_queue_datagrams),
      posted_(posted ? std::move(posted) : std::make_shared<PostedSends>(profile_->options)) {}

UdpSocket::~UdpSocket() = default;

// --- ways in -----------------------------------------------------------------------------------

std::error_code UdpSocket::open_bound(UniqueFd fd, std::size_t endpoint) {
  fd_ = std::move(fd);
  endpoint_ = endpoint;
  configure();
  if (std::error_code ec = register_for_reading()) return ec;
  ready_ = true;
  schedule();
  return {};
}

void UdpSocket::open(std::string_view address, bool connect, const std::string& source_address) {
  connect_ = connect;
  const char* what = connect ? "connect_udp" : "bind_udp";
  if (Status s = validate(options(), what); !s) return fail(s.code());
  ListenAddress target;
  if (Status s =
          connect ? parse_connect_address(address, target) : parse_listen_address(address, target);
      !s) {
    return fail(s.code());
  }
  if (!is_udp(target.transport)) return fail(make_error_code(errc::unknown_scheme));
  reuseport_ = target.reuseport.value_or(false);
  ipv6_only_ = ip_family(target.transport) == AF_INET6;  // as a listen address's udp6:// is
  if (!source_address.empty() && !parse_source_address(source_address, source_)) {
    return fail(make_error_code(errc::bad_address));
  }
  SocketAddress numeric;
  if (!connect && target.host.empty()) return open_first({any_address(target)});
  if (numeric_address(target, numeric)) return open_first({numeric});
  // A host name: resolved off the loop; the answer comes back as a task that finds this socket
  // by id (it may have been closed or stopped meanwhile).
  EventLoop* loop = &loop_;
  const std::uint64_t id = id_;
  auto answer = [loop, id](Resolver::Result r) {
    loop->post([loop, id, r = std::move(r)]() mutable {
      if (UdpSocket* s = loop->find_udp(id, true)) s->on_resolved(std::move(r.addresses), r.error);
    });
  };
  lookup_ = loop_.group().resolver().resolve(target.host, target.port, ip_family(target.transport),
                                             std::move(answer));
  if (lookup_ == 0) fail(make_error_code(errc::server_stopped));
}

void UdpSocket::on_resolved(std::vector<SocketAddress> addresses, std::error_code error) {
  if (state_ != State::opening || open_failed_) return;
  if (error) return fail(error);
  open_first(addresses);
}

void UdpSocket::open_first(const std::vector<SocketAddress>& candidates) {
  std::error_code last = make_error_code(errc::resolve_failed);
  for (const SocketAddress& address : candidates) {
    const int fd = open_datagram_socket(address.family());
    if (fd < 0) {
      last = sys_error(-fd);
      continue;
    }
    fd_ = UniqueFd(fd);
    if (ipv6_only_ && address.family() == AF_INET6) set_ipv6_only(fd);
    if (std::error_code ec = bind_or_connect(fd, address)) {
      last = ec;
      fd_.reset();
      continue;
    }
    if (connect_) peer_ = address;
    configure();
    ready_ = true;
    return schedule();
  }
  fail(last);
}

std::error_code UdpSocket::bind_or_connect(int fd, const SocketAddress& address) {
  if (!connect_) {
    if (reuseport_) set_reuseport(fd);
    const int rc = bind_to(fd, address);
    return rc < 0 ? sys_error(-rc) : std::error_code{};
  }
  if (source_.family() != 0) {
    if (const int rc = bind_to(fd, source_); rc < 0) return sys_error(-rc);
  }
  const int rc = start_connect(fd, address);  // a UDP connect completes at once
  return rc < 0 ? sys_error(-rc) : std::error_code{};
}

void UdpSocket::configure() {
  const UdpOptions& o = options();
  set_buffer_sizes(fd_.get(), o.socket_send_buffer, o.socket_receive_buffer);
  gso_ = o.gso && platform::probe_udp_gso(fd_.get());
  gro_ = o.gro && platform::enable_udp_gro(fd_.get());
  receive_size_ = gro_ ? kMaxGroReceive : o.max_datagram_size;
  local_ = local_address(fd_.get());
}

// --- transitions -------------------------------------------------------------------------------

void UdpSocket::enter_open() {
  // opening -> open: registered for reading; the receive arrays are there before any event.
  if (std::error_code ec = register_for_reading()) return fail_open(ec);
  state_ = State::open;
  loop_.receive_batch().reserve(options().batch, receive_size_);
  send_batch_ = std::make_unique<SendBatch>(options().batch);
  adjust(loop_.counters().udp_sockets, 0, 1);
  if (handlers().opened) handlers().opened(handle_);
  // What other threads asked of the socket while it was opening, in their order; what comes
  // after a close (in `opened` or one of these) is dropped, as for a closed socket.
  std::vector<Deferred> deferred = std::exchange(after_open_, {});
  auto next = deferred.begin();
  for (; next != deferred.end() && state_ == State::open; ++next) {
    next->fn(handle_);
    if (next->datagram_size) posted_->release(*next->datagram_size);
  }
  after_open_.assign(std::make_move_iterator(next), std::make_move_iterator(deferred.end()));
  drop_deferred();
}

std::error_code UdpSocket::register_for_reading() {
  if (registered_) return {};
  if (std::error_code ec = loop_.poller().add(fd_.get(), kRead, this)) return ec;
  registered_ = true;
  interest_ = kRead;
  return {};
}

void UdpSocket::unregister() {
  if (!registered_) return;
  loop_.poller().remove(fd_.get(), interest_);
  registered_ = false;
  interest_ = kNone;
}

void UdpSocket::run_when_open(std::function<void(Udp&)> fn,
                              std::optional<std::size_t> datagram_size) {
  if (state_ == State::open) {
    fn(handle_);
    if (datagram_size) posted_->release(*datagram_size);
    return;
  }
  // Sends held until the socket opens (a host name can take seconds to resolve) stay reserved
  // in posted_, so they are bounded as those still posted are.
  if (state_ == State::opening && !open_failed_) {
    after_open_.push_back({std::move(fn), datagram_size});
  } else if (datagram_size) {
    posted_->release(*datagram_size);
    bump(loop_.counters().datagram_drops);
  }
}

void UdpSocket::drop_deferred() {
  for (const Deferred& d : after_open_) {
    if (!d.datagram_size) continue;
    posted_->release(*d.datagram_size);
    bump(loop_.counters().datagram_drops);
  }
  after_open_.clear();
}

void UdpSocket::fail_open(std::error_code error) {
  // opening -> closed: `open_failed`, never `closed`. (A server's socket is registered while
  // it opens: a stop can come before its first settle().)
  state_ = State::closed;
  unregister();
  fd_.reset();
  drop_deferred();
  loop_.group().resolver().cancel(lookup_);
  if (handlers().open_failed) handlers().open_failed(handle_, error);
  context_.reset();
  loop_.retire(*this);
}

void UdpSocket::finish(std::error_code error) {
  // open or closing -> closed: the one place that closes the fd and fires `closed`.
  if (state_ == State::closed) return;
  state_ = State::closed;
  bump(loop_.counters().datagram_drops, queue_.datagrams());
  queue_.clear();
  unregister();
  stop_polling();
  adjust(loop_.counters().udp_sockets, 1, 0);
  if (handlers().closed) handlers().closed(handle_, error);
  fd_.reset();  // after the handler, so native_handle() still works there
  context_.reset();
  loop_.retire(*this);
}

void UdpSocket::fail(std::error_code error) {
  if (state_ != State::opening || open_failed_) return;
  open_failed_ = true;
  reason_ = error;
  schedule();
}

// --- after handlers ----------------------------------------------------------------------------

void UdpSocket::schedule() {
  if (scheduled_ || state_ == State::closed) return;
  scheduled_ = true;
  loop_.schedule(*this);
}

void UdpSocket::settle() {
  scheduled_ = false;
  if (state_ == State::opening) {
    if (open_failed_) return fail_open(reason_);
    if (!ready_) return;
    enter_open();
  }
  if (state_ == State::closed) return;
  for (; oversized_ > 0 && state_ != State::closed; --oversized_) {
    report(sys_error(EMSGSIZE));
  }
  for (std::size_t i = 0; i < deferred_errors_.size() && state_ != State::closed; ++i) {
    report(deferred_errors_[i]);
  }
  deferred_errors_.clear();
  if (state_ == State::closed) return;
  if (!queue_.empty()) flush();
  if (state_ == State::closing && (queue_.empty() || !drain_on_close_)) return finish(reason_);
  update_interest();
}

void UdpSocket::begin_shutdown() {
  if (state_ == State::opening) return fail(make_error_code(errc::server_stopped));
  if (state_ != State::open) return;
  state_ = State::closing;
  drain_on_close_ = true;
  reason_ = make_error_code(errc::server_stopped);
  schedule();
}

void UdpSocket::end_shutdown() {
  if (state_ == State::opening) return fail_open(make_error_code(errc::server_stopped));
  finish(make_error_code(errc::server_stopped));
}

void UdpSocket::set_handed_over(bool handed_over) {
  handed_over_ = handed_over;
  schedule();  // settle() changes the poller's interest (or leaves the busy list)
}

void UdpSocket::update_interest() {
  const unsigned want = (reading() ? kRead : kNone) | (queue_.empty() ? kNone : kWrite);
  if (polled_) {
    if (want == kRead) return;  // the loop reads it every iteration, out of the poller
    stop_polling();             // it needs the poller again (to write), or no more reading
  }
  if (want == kNone) {
    // Nothing to wait for (handed over: a successor reads the socket now): out of the poller.
    // A registration without interest is a watch on kqueue, which each datagram the successor
    // receives would wake (and the queue another process drains has no bound).
    if (registered_) bump(loop_.counters().poller_changes);
    return unregister();
  }
  if (want == interest_ && registered_) return;  // the common case
  if ((want & kWrite) && !(interest_ & kWrite)) bump(loop_.counters().write_arms);
  bump(loop_.counters().poller_changes);
  if (std::error_code ec = registered_ ? loop_.poller().modify(fd_.get(), interest_, want, this)
                                       : loop_.poller().add(fd_.get(), want, this)) {
    return finish(ec);
  }
  registered_ = true;
  interest_ = static_cast<unsigned char>(want);
}

// --- busy sockets, read out of the poller ------------------------------------------------------
//
// Under load a socket has datagrams waiting every time the loop comes back to it, and the loop's
// wait (epoll_wait: a syscall that returns at once, reporting that socket again) is one of the
// three syscalls a window-1 echo makes per iteration, beside recvmmsg and sendmmsg. So a socket
// that shows it is busy leaves the poller for a *busy spell*: the loop reads it every iteration,
// asks the poller only now and then (EventLoop::iterate), and it registers again at the first read
// that finds nothing. While out of the poller it is also off its wait queue, which spares each
// datagram it sends a wake-up walk when the kernel frees it.
//
// A spell begins when one readiness brings at least `busy_entry_` messages (2 at first: one
// flow's ping-pong never does; with GRO a message may hold several datagrams), or fills every
// batch. A spell costs two poller calls and the empty read that ends it, which a spell of a few
// reads pays back; one of fewer than kPaidSpell reads (the empty one included) was a bad guess,
// and the next needs twice as many messages to begin (at most: every batch full); a longer one
// lowers it back to 2.

void UdpSocket::start_polling() {
  if (polled_ || !registered_ || interest_ != kRead) return;
  unregister();
  bump(loop_.counters().poller_changes);
  polled_ = true;
  spell_reads_ = 0;
  loop_.poll_each_iteration(*this);
}

void UdpSocket::stop_polling() {
  if (!polled_) return;
  polled_ = false;
  loop_.stop_polling(*this);
}

bool UdpSocket::starts_spell(std::size_t messages) const noexcept {
  // On io_uring the loop's wait runs every iteration anyway (it submits the loop's requests), and
  // the socket's one-shot poll is already off its wait queue once it fires: a spell saves only
  // the poll's re-arm, which pays for the spell's own poller calls when batches are full.
  // (busy_entry_ never passes max_per_event(): full batches always begin one.)
  return messages >= (loop_.poller().completions() ? max_per_event() : busy_entry_);
}

void UdpSocket::end_spell() {
  if (spell_reads_ < kPaidSpell) {
    busy_entry_ = static_cast<unsigned>(std::min<std::size_t>(busy_entry_ * 2, max_per_event()));
  } else {
    busy_entry_ = kBusyEntry;
  }
  stop_polling();
  schedule();  // settle() registers it again, or carries out its end
}

void UdpSocket::on_polled() {
  if (reading()) {
    ++spell_reads_;
    if (receive() > 0 && reading()) return;  // still busy
  }
  end_spell();
}

// --- receiving ---------------------------------------------------------------------------------

void UdpSocket::on_event(const PollEvent& event) {
  if (state_ != State::open && state_ != State::closing) return;
  // kqueue: the poller refused the socket's registration, so no event would ever come again.
  if (event.refused) {
    return finish(event.result < 0 ? sys_error(-event.result)
                                   : std::make_error_code(std::errc::io_error));
  }
  // An ICMP error on a connected socket (Linux: EPOLLERR). The socket holds it (SO_ERROR); with
  // IP_RECVERR it is also queued, and the queue, drained here, is what holds EPOLLERR up.
  if (event.error) {
    std::error_code ec = socket_error(fd_.get());
    if (const int queued = platform::drain_error_queue(fd_.get()); !ec && queued != 0) {
      ec = sys_error(queued);
    }
    if (!ec && event.result < 0) ec = sys_error(-event.result);  // kqueue: libkqueue read it
    if (ec) report(ec);
  }
  if (event.readable && (interest_ & kRead) && reading()) {
    if (starts_spell(receive()) && reading()) start_polling();
  }
  // Writable: send what waits, or, when the reads above already sent it all (the flush between
  // two full batches), let settle() drop write interest; a UDP socket is nearly always
  // writable, and a registration left asking would wake every wait at once.
  if (event.writable) schedule();
}

std::size_t UdpSocket::receive() {
  ReceiveBatch& batch = loop_.receive_batch();
  const unsigned count = options().batch;
  std::size_t received = 0;
  for (int round = 0; round < kBatchesPerEvent; ++round) {
    unsigned calls = 0;
    const int n = batch.receive(fd_.get(), count, receive_size_, gro_, calls);
    bump(loop_.counters().datagram_receive_calls, calls);
    if (n < 0) {
      // The BSDs report an ICMP error on a connected socket here (Linux too, when a batch
      // ended early on it).
      if (!would_block(-n)) report(sys_error(-n));
      return received;
    }
    received += static_cast<std::size_t>(n);
    const int error_after = batch.error_after();  // macOS, the BSDs: an ICMP error ended it
    deliver(batch, n);
    if (error_after != 0) {
      report(sys_error(error_after));
      return received;
    }
    if (!reading() || static_cast<unsigned>(n) < count) return received;  // or drained
    if (!queue_.empty()) flush();  // this batch's replies go before the next batch is read
    if (!reading()) return received;
  }
  return received;  // every batch was full: more may be waiting
}

void UdpSocket::deliver(const ReceiveBatch& batch, int count) {
  unsigned i = 0;
  for (; i < static_cast<unsigned>(count) && state_ == State::open; ++i) {
    const SocketAddress& peer = batch.peer(i);
    const char* bytes = batch.data(i);
    const std::size_t size = batch.size(i);
    if (batch.truncated(i)) {
      bump(loop_.counters().datagram_truncations);
      bump(loop_.counters().datagrams_in);
      // The head the handler is promised: with GRO the receive may be longer than that.
      if (handlers().truncated) {
        handlers().truncated(handle_, peer, {bytes, std::min(size, options().max_datagram_size)});
      }
      continue;
    }
    const std::size_t segment = gro_ ? batch.segment_size(i) : 0;
    if (segment == 0 || segment >= size) {
      deliver_one(peer, bytes, size);
      continue;
    }
    // GRO: several datagrams of one flow back to back, all `segment` bytes but the last.
    bump(loop_.counters().gro_receives);
    std::size_t at = 0;
    for (; at < size && state_ == State::open; at += segment) {
      deliver_one(peer, bytes + at, std::min(segment, size - at));
    }
    if (at < size) drop_received((size - at + segment - 1) / segment);
  }
  // A handler closed the socket: the rest of the batch was received, and is dropped.
  for (; i < static_cast<unsigned>(count); ++i) {
    const std::size_t segment = gro_ && !batch.truncated(i) ? batch.segment_size(i) : 0;
    const std::size_t size = batch.size(i);
    drop_received(segment == 0 || segment >= size ? 1 : (size + segment - 1) / segment);
  }
}

void UdpSocket::drop_received(std::size_t datagrams) {
  bump(loop_.counters().datagrams_in, datagrams);
  bump(loop_.counters().datagram_drops, datagrams);
}

void UdpSocket::deliver_one(const SocketAddress& peer, const char* bytes, std::size_t size) {
  AtomicLoopStats& stats = loop_.counters();
  bump(stats.datagrams_in);
  if (size > options().max_datagram_size) {  // only with GRO: the kernel cut the others
    bump(stats.datagram_truncations);
    if (handlers().truncated)
      handlers().truncated(handle_, peer, {bytes, options().max_datagram_size});
    return;
  }
  bump(stats.bytes_in, size);
  if (handlers().datagram) handlers().datagram(handle_, peer, {bytes, size});
}

void UdpSocket::report(std::error_code error) {
  if (defer_reports_) {
    deferred_errors_.push_back(error);  // rare: the kernel refused a datagram
    schedule();
    return;
  }
  if (handlers().error) handlers().error(handle_, error);
}

// --- sending -----------------------------------------------------------------------------------

bool UdpSocket::send_to(const SocketAddress* peer, const void* bytes, std::size_t size) {
  if (state_ != State::open) return false;
  // Every datagram refused here is counted: a UdpRef's sender never sees the `false`.
  const auto drop = [this] {
    bump(loop_.counters().datagram_drops);
    return false;
  };
  if (peer == nullptr && !connect_) return drop();
  std::size_t peer_size = 0;
  if (peer != nullptr) {
    // Only the address's own bytes are kept: a SocketAddress made from a whole sockaddr_storage
    // is as good as one made to measure. An IPv6 peer on an IPv4 socket would fail in the
    // kernel (EAFNOSUPPORT) once sent: refused here. (An IPv4 peer on an IPv6 socket is for
    // the kernel to judge: a dual-stack socket reaches it.)
    peer_size = ip_sockaddr_size(peer->family());
    if (peer_size == 0 || peer->size() < peer_size) return drop();
    if (peer->family() == AF_INET6 && local_.family() == AF_INET) return drop();
  }
  if (size > kMaxUdpPayload) {
    // Not a full queue: it could never be sent. Counted and reported as the kernel's refusals
    // are (EMSGSIZE), after the handler, whatever the queue's bounds, and never copied.
    bump(loop_.counters().datagram_send_errors);
    ++oversized_;
    schedule();
    return false;
  }
  const void* to = peer ? peer->data() : nullptr;
  if (!queue_.push(to, peer_size, bytes, size)) {
    // The queue is full of datagrams sent in this handler (or batch of tasks) that the kernel
    // was not asked for yet: ask it now. Only a kernel that said EAGAIN makes the bound drop.
    if (kernel_full_) return drop();
    flush_early();
    if (!queue_.push(to, peer_size, bytes, size)) return drop();
  }
  schedule();
  return true;
}

void UdpSocket::flush_early() {
  // Called from inside a handler: what the kernel refuses is reported after it, as usual.
  defer_reports_ = true;
  flush();
  defer_reports_ = false;
}

void UdpSocket::flush() {
  AtomicLoopStats& stats = loop_.counters();
  SendBatch& batch = *send_batch_;
  // The error that failed the first message once, or 0. A socket can hold an asynchronous error
  // (an ICMP error on a connected socket: ECONNREFUSED, EHOSTUNREACH); the next send returns it
  // and clears it without trying its message. So a refused first message is tried once more:
  // sent, the error was the socket's; refused again, the message is.
  int refused_once = 0;
  kernel_full_ = false;
  while (!queue_.empty() && state_ != State::closed) {
    const unsigned built = queue_.build(batch, gso_);
    unsigned calls = 0;
    const int sent = platform::send_many(fd_.get(), batch.messages.data(), built, calls);
    bump(stats.datagram_send_calls, calls);
    if (sent < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {  // the kernel is full: wait to write
        kernel_full_ = true;
        if (refused_once != 0) report(sys_error(refused_once));  // the socket's, cleared
        return;
      }
      if (refused_once == 0) {
        refused_once = err;
        continue;
      }
      // A segmented message refused twice: the kernel cannot segment here (the first refusal
      // alone may have been the socket's pending error, EMSGSIZE from a path MTU). From now on
      // one by one; a first error that differed was the socket's.
      if (batch.datagrams[0] > 1 && (err == EIO || err == EINVAL || err == EMSGSIZE)) {
        gso_ = false;
        if (refused_once != err) report(sys_error(refused_once));
        refused_once = 0;
        continue;
      }
      // Refused twice: the first message is (and with it its datagrams). Report, and go on.
      if (refused_once != err) report(sys_error(refused_once));
      refused_once = 0;
      bump(stats.datagram_send_errors, batch.datagrams[0]);
      queue_.pop(batch.datagrams[0]);
      report(sys_error(err));
      continue;
    }
    std::size_t datagrams = 0, bytes = 0, segmented = 0;
    for (int m = 0; m < sent; ++m) {
      datagrams += batch.datagrams[static_cast<std::size_t>(m)];
      bytes += batch.iov[static_cast<std::size_t>(m)].iov_len;
      segmented += batch.datagrams[static_cast<std::size_t>(m)] > 1 ? 1 : 0;
    }
    queue_.pop(datagrams);
    bump(stats.datagrams_out, datagrams);
    bump(stats.bytes_out, bytes);
    if (segmented > 0) bump(stats.gso_sends, segmented);
    // Sent on the second try: the error was the socket's, reported once.
    if (refused_once != 0) report(sys_error(std::exchange(refused_once, 0)));
    // Fewer than built: the next message failed or would block; the next call says which.
  }
}

void UdpSocket::close() {
  if (state_ == State::opening) return fail(make_error_code(errc::cancelled));
  if (state_ != State::open) return;
  state_ = State::closing;
  reason_ = {};
  schedule();
}

}  // namespace evloop::detail
