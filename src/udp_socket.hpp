// Internal. One UDP socket owned by one loop: a server's per-loop socket, or one from
// Loop::bind_udp / Loop::connect_udp. Loop thread only; handlers see its Udp handle.
//
// Lifecycle, every transition in one function:
//
//   opening --enter_open()--> open --close() / stop--> closing --finish()--> closed
//      |                                                          ^
//      +--fail_open()--> closed (`open_failed`)                   +-- end_shutdown()
//
// Receiving: a readiness report reads at most kBatchesPerEvent batches (recvmmsg) and hands each
// datagram to `datagram` in order; between two batches, what the handlers queued is sent. A
// socket that shows it is busy leaves the poller and is read every iteration until a read finds
// nothing (a "busy spell": see "busy sockets" in udp_socket.cpp).
// Sending: send_to() appends to a bounded DatagramQueue and schedules the socket; settle(), run by
// the loop after the handlers return, sends the queue in batches (sendmmsg). What the kernel does
// not take (EAGAIN) waits, with write interest armed, up to the queue's bounds; beyond them
// send_to() drops and counts. Like a connection, nothing ends inside a handler: close() and a
// failed open only record what is wanted; settle() carries it out.
#pragma once

#include <any>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "datagram_queue.hpp"
#include "evloop/udp.hpp"
#include "pollable.hpp"
#include "poller.hpp"
#include "profile.hpp"
#include "socket.hpp"

namespace evloop::detail {

class EventLoop;
class PostedSends;
class ReceiveBatch;

class UdpSocket final : public Pollable {
 public:
  /// Receive batches per readiness report, so one busy socket cannot starve its loop.
  static constexpr int kBatchesPerEvent = 4;
  /// Messages (datagrams; a GRO receive counts once) one readiness must bring for a busy spell to
  /// begin, at first and after a long one.
  static constexpr unsigned kBusyEntry = 2;
  /// Reads a busy spell must last to pay for itself (two poller calls and the empty read).
  static constexpr unsigned kPaidSpell = 4;

  /// `posted`: the state its UdpRefs share (made here when null).
  UdpSocket(EventLoop& loop, std::uint64_t id, UdpProfilePtr profile,
            std::shared_ptr<PostedSends> posted = nullptr);
  ~UdpSocket();
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;

  // --- ways in (each ends in enter_open() or fail_open(), from settle()) ---
  /// A socket of the server's listen address number `endpoint`, bound before the loops started
  /// (or handed over by a live upgrade's predecessor). Registered with the poller at once, so
  /// that Server::start() fails when it cannot be (the error; the socket is then unusable).
  std::error_code open_bound(UniqueFd fd, std::size_t endpoint);
  /// Loop::bind_udp (`connect` false) or Loop::connect_udp: a numeric host at once, a host name
  /// through the group's resolver.
  void open(std::string_view address, bool connect, const std::string& source_address);

  // --- the loop's calls ---
  void on_event(const PollEvent& event);
  /// A busy socket, out of the poller: reads as for a readiness; registers again once drained.
  void on_polled();
  /// After handlers: opens, sends the queue, carries out a close or a failure.
  void settle();
  /// The loop is stopping: no more receiving; closes once the queue is sent
  /// (errc::server_stopped). An open in progress fails.
  void begin_shutdown();
  /// The shutdown grace ran out: drops what is still queued and closes.
  void end_shutdown();

  // --- the Udp API ---
  /// Queues a datagram to `peer` (nullptr: the connected peer); false when dropped.
  bool send_to(const SocketAddress* peer, const void* bytes, std::size_t size);
  /// Closes an open socket after the current handler; an opening one fails to open
  /// (errc::cancelled).
  void close();
  /// A UdpRef's task: runs `fn` now on an open socket; on one still opening, right after
  /// `opened` (in the order they came), or never if it fails to open; on a closing one, never.
  /// A UdpRef send (`datagram_size`: its payload's size, reserved in posted()) is released from
  /// posted() once it has run, and counted in datagram_drops if it never does.
  void run_when_open(std::function<void(Udp&)> fn, std::optional<std::size_t> datagram_size);
  /// The UdpRef sends on their way to this socket (shared with its UdpRefs).
  const std::shared_ptr<PostedSends>& posted() const noexcept { return posted_; }
  std::size_t queued_datagrams() const noexcept { return queue_.datagrams(); }
  std::size_t queued_bytes() const noexcept { return queue_.bytes(); }
  bool connected() const noexcept { return connect_; }
  bool gso() const noexcept { return gso_; }
  bool gro() const noexcept { return gro_; }
  bool is_open() const noexcept { return state_ == State::open; }
  /// The server's listen address this socket serves (ServerCore's endpoint index), or
  /// kNoEndpoint for a socket from Loop::bind_udp / Loop::connect_udp.
  static constexpr std::size_t kNoEndpoint = static_cast<std::size_t>(-1);
  std::size_t endpoint() const noexcept { return endpoint_; }
  /// A live upgrade: a successor reads this socket now (through its own duplicate), so this one
  /// stops receiving (`true`) and only sends what is queued or still sent; `false` when the
  /// upgrade failed: it reads again.
  void set_handed_over(bool handed_over);
  const SocketAddress& local() const noexcept { return local_; }
  const SocketAddress& peer() const noexcept { return peer_; }
  int fd() const noexcept { return fd_.get(); }
  std::any& context() noexcept { return context_; }
  std::uint64_t id() const noexcept { return id_; }
  EventLoop& loop() const noexcept { return loop_; }
  Udp& udp() noexcept { return handle_; }

 private:
  enum class State : std::uint8_t { opening, open, closing, closed };

  const DatagramHandlers& handlers() const noexcept { return profile_->handlers; }
  const UdpOptions& options() const noexcept { return profile_->options; }

  // Transitions.
  void enter_open();
  // Poller registration for reading: once (open_bound() registers a server's socket before
  // enter_open() would), and its removal (at the end, or for a busy spell).
  std::error_code register_for_reading();
  void unregister();
  void fail_open(std::error_code error);
  void finish(std::error_code error);
  void fail(std::error_code error);  // records a failed open for settle()
  void drop_deferred();  // the UdpRef tasks that will never run (sends counted and released)

  // Opening.
  void on_resolved(std::vector<SocketAddress> addresses, std::error_code error);
  void open_first(const std::vector<SocketAddress>& candidates);
  std::error_code bind_or_connect(int fd, const SocketAddress& address);
  void configure();

  // I/O.
  bool reading() const noexcept { return state_ == State::open && !handed_over_; }
  // Reads up to kBatchesPerEvent batches; returns the messages read (max_per_event(): every batch
  // came back full, more may wait).
  std::size_t receive();
  std::size_t max_per_event() const noexcept {
    return std::size_t{options().batch} * kBatchesPerEvent;
  }
  bool starts_spell(std::size_t messages) const noexcept;
  void end_spell();
  void deliver(const ReceiveBatch& batch, int count);
  void deliver_one(const SocketAddress& peer, const char* bytes, std::size_t size);
  void flush();
  // send_to() found the queue full before the kernel was asked: flush, reports deferred.
  void flush_early();
  // Hands `error` to the `error` handler; held for settle() while defer_reports_ (in a handler).
  void report(std::error_code error);
  /// Counts received datagrams no handler gets (the socket closed mid-batch) as in and dropped.
  void drop_received(std::size_t datagrams);
  void update_interest();
  void start_polling();
  void stop_polling();
  void schedule();

  EventLoop& loop_;
  const UdpProfilePtr profile_;
  const std::uint64_t id_;
  std::size_t endpoint_ = kNoEndpoint;
  UniqueFd fd_;
  State state_ = State::opening;
  unsigned char interest_ = kNone;  // what the poller has registered
  bool registered_ = false;
  bool polled_ = false;               // busy: out of the poller, read by the loop every iteration
  unsigned busy_entry_ = kBusyEntry;  // messages a readiness must bring to start a busy spell
  unsigned spell_reads_ = 0;          // reads in the current busy spell
  bool scheduled_ = false;
  bool ready_ = false;            // opening: bound (and connected); opens at settle()
  bool open_failed_ = false;      // opening: fails at settle() with reason_
  bool drain_on_close_ = false;   // closing for a stop: wait for the queue to be sent
  bool connect_ = false;          // from connect_udp
  bool handed_over_ = false;      // set_handed_over(): another process reads the socket
  bool reuseport_ = false;        // bind_udp with ?reuseport=1
  bool ipv6_only_ = false;        // bind_udp/connect_udp with udp6://
  bool gso_ = false;              // segmented sends in use
  bool gro_ = false;              // receive offload on
  std::size_t receive_size_ = 0;  // bytes per received datagram (more with GRO)
  std::size_t oversized_ = 0;     // send_to()s refused as too long: EMSGSIZE for settle()
  bool kernel_full_ = false;      // the last flush ended on EAGAIN: the bounds hold, then drop
  bool defer_reports_ = false;    // flush_early(): errors wait in deferred_errors_ for settle()
  std::vector<std::error_code> deferred_errors_;
  SocketAddress local_;
  SocketAddress peer_;    // connected peer
  SocketAddress source_;  // connect_udp's source address
  DatagramQueue queue_;
  std::unique_ptr<SendBatch> send_batch_;
  std::any context_;
  struct Deferred {
    std::function<void(Udp&)> fn;
    std::optional<std::size_t> datagram_size;  // a UdpRef send: reserved in posted_
  };
  std::vector<Deferred> after_open_;  // UdpRef tasks that came while opening
  std::shared_ptr<PostedSends> posted_;
  std::uint64_t lookup_ = 0;  // the host name's Resolver::Ticket, cancelled by a failed open
  Udp handle_{*this};
  std::error_code reason_;  // why it ends: reported by `closed` / `open_failed`
};

}  // namespace evloop::detail
