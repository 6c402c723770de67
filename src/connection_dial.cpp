// Dialling: a connection in the `connecting` state. Numeric addresses are tried at once; host
// names go to the group's resolver threads and come back as a posted task. Each address is tried
// in turn (a non-blocking connect, then writability, then SO_ERROR); the first that connects
// opens the connection, and when none does, the dial fails with the last error. One timer bounds
// the whole dial. A Unix socket whose listener's backlog is full is asked again until it has room
// (a non-blocking connect says EAGAIN where a blocking one waits, as TCP's SYN is retried).
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "connection.hpp"
#include "event_loop.hpp"
#include "loop_group_core.hpp"

namespace evloop::detail {

void Connection::dial(std::string_view address, std::chrono::milliseconds timeout,
                      const std::string& source_address) {
  bump(loop_.counters().dials);
  Dial& dial = rare().dial;
  dialling_ = true;
  ListenAddress target;
  if (Status s = validate(options(), "connect"); !s) return fail(s.code(), false);
  if (Status s = parse_connect_address(address, target); !s) return fail(s.code(), false);
  // The target grammar is shared with connect_udp: without this, a udp:// target would be
  // dialled over TCP.
  if (is_udp(target.transport)) return fail(make_error_code(errc::unknown_scheme), false);
  if (timeout.count() < 0) return fail(make_error_code(errc::bad_option), false);
  if (!source_address.empty() && !parse_source_address(source_address, dial.source)) {
    return fail(make_error_code(errc::bad_address), false);
  }
  if (timeout.count() > 0) {
    timer_ = loop_.run_after(timeout, [this] {
      timer_ = 0;
      fail_open(make_error_code(errc::connect_timeout));
    });
  }
  SocketAddress numeric;
  if (numeric_address(target, numeric)) {
    dial.candidates.push_back(numeric);
    return try_next_address();
  }
  start_resolve(target);
}

void Connection::start_resolve(const ListenAddress& target) {
  const int family = target.transport == Transport::tcp4   ? AF_INET
                     : target.transport == Transport::tcp6 ? AF_INET6
                                                           : AF_UNSPEC;
  EventLoop* loop = &loop_;
  const std::uint64_t id = id_;
  // The answer comes back to this loop as a task, and finds the connection by id: it may have
  // been cancelled, timed out or stopped meanwhile.
  rare_->dial.lookup = loop_.group().resolver().resolve(
      target.host, target.port, family, [loop, id](Resolver::Result result) {
        loop->post([loop, id, result = std::move(result)]() mutable {
          if (Connection* conn = loop->find(id)) {
            conn->on_resolved(std::move(result.addresses), result.error);
          }
        });
      });
  if (rare_->dial.lookup == 0) fail(make_error_code(errc::server_stopped), false);
}

void Connection::on_resolved(std::vector<SocketAddress> addresses, std::error_code error) {
  if (state_ != ConnState::connecting || end_wanted_ || !dialling_) return;
  if (error) return fail(error, false);
  rare_->dial.candidates = std::move(addresses);
  try_next_address();
}

void Connection::try_next_address() {
  Dial& dial = rare_->dial;
  while (dial.next < dial.candidates.size()) {
    const SocketAddress& addr = dial.candidates[dial.next++];
    forget_poller();
    fd_.reset();
    peer_ = PeerAddress(addr);
    const int fd = open_stream_socket(addr.family());
    if (fd < 0) {
      dial.last_error = {-fd, std::system_category()};
      continue;
    }
    fd_ = UniqueFd(fd);
    configure_connection(fd, is_tcp_family(addr.family()), options());
    if (dial.source.family() != 0) {
      if (const int rc = bind_to(fd, dial.source); rc < 0) {
        dial.last_error = {-rc, std::system_category()};
        continue;
      }
    }
    const int rc = start_connect(fd, addr);
    if (rc == -EAGAIN && addr.family() == AF_UNIX) {
      --dial.next;  // the same address, once the listener may have taken some of its queue
      return retry_address_later();
    }
    if (rc < 0 && rc != -EINPROGRESS) {
      dial.last_error = {-rc, std::system_category()};
      continue;
    }
    // Connected at once (a Unix socket) or in progress: either way writability reports it, so
    // `opened` never fires inside the call that dialled.
    if (std::error_code ec = loop_.poller().add(fd, kWrite, this)) {
      dial.last_error = ec;
      continue;
    }
    registered_ = true;
    interest_ = kWrite;
    return;
  }
  fail(dial.last_error ? dial.last_error : make_error_code(errc::resolve_failed), false);
}

void Connection::retry_address_later() {
  // Nothing tells an unconnected Unix socket that a listener's queue has room (it polls writable
  // at once), so the connect is asked again after 1, 2, 4... up to 100 ms, within the connect
  // timeout; a close, a stop or the timeout ends the wait (cancel_timers()).
  fd_.reset();
  Dial& dial = rare_->dial;
  dial.retry_timer = loop_.run_after(dial.retry_step, [this] {
    rare_->dial.retry_timer = 0;
    if (state_ == ConnState::connecting && !end_wanted_) try_next_address();
  });
  dial.retry_step = std::min(dial.retry_step * 2, kDialRetryStepLimit);
}

void Connection::on_connect_ready(const PollEvent& event) {
  if (!registered_ || ready_ || end_wanted_) return;
  std::error_code ec = socket_error(fd_.get());
  // kqueue (libkqueue) reports a refused connect in the event and has cleared SO_ERROR.
  if (!ec && event.result < 0) ec = {-event.result, std::system_category()};
  if (!ec && (event.error || event.hangup) && peer_address(fd_.get()).family() == 0) {
    ec = std::make_error_code(std::errc::connection_refused);
  }
  // Connecting to a free local port in the ephemeral range can connect a socket to itself (TCP
  // simultaneous open): nobody listens there, so it counts as a failure of that address.
  if (!ec && connected_to_itself(fd_.get())) ec = make_error_code(errc::self_connect);
  if (ec) {
    rare_->dial.last_error = ec;
    return try_next_address();
  }
  ready_ = true;
  schedule();  // settle() opens it
}

}  // namespace evloop::detail
