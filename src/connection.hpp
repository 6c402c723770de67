// Internal. One connection's state machine, whatever way it came in (accepted, dialled,
// adopted) and whatever way it leaves (closed, detached). Loop thread only. Handlers never see
// this class, only its Conn handle.
//
// Lifecycle (ConnState), every transition in one function:
//
//   connecting --enter_open()--> open --close()--> closing --finish()--> closed
//        |                        |                                  ^
//        +--fail_open()--> closed  +--finish() (error, abort, EOF) ---+
//                                 +--detach_now()--> detached
//
// A TCP connection leaves `closing` through linger(): with its output in the kernel, it sends the
// FIN and waits, reading and dropping input, until the peer has acknowledged everything.
//
// Beside the lifecycle, each direction has its own small state: reading can be paused by the user
// and by back-pressure, and ends at the peer's EOF; writing can be shut down (FIN) by the user
// once pending output is sent. A connection whose both directions have ended closes by itself.
//
// Nothing that ends a connection happens inside a handler: close(), abort(), detach(), a limit
// or a failed dial only record what is wanted and schedule the connection; settle(), run by the
// loop after the handler returns, carries it out. settle() is also where pending output is sent.
#pragma once

#include <any>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "evloop/conn.hpp"
#include "input_tail.hpp"
#include "output_buffer.hpp"
#include "pollable.hpp"
#include "poller.hpp"
#include "profile.hpp"
#include "send_slots.hpp"
#include "socket.hpp"

namespace evloop::detail {

class EventLoop;

/// What a live upgrade moves with a connection besides its fd and bytes: its peer, and the state
/// its `handover` handler gave (for the `adopted` handler).
struct MovedState {
  SocketAddress peer;
  std::string state;
};

class Connection final : public Pollable, public Conn {
 public:
  Connection(EventLoop& loop, std::uint64_t id, ProfilePtr profile);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // --- ways in (each ends in enter_open() or fail_open(), from settle()) ---
  /// An accepted fd: configures it; opens at the next settle().
  void open_accepted(UniqueFd fd, const SocketAddress& peer);
  /// An fd the user hands in (Loop::adopt), with the stream's unread input and unsent output;
  /// with `moved`, a connection a live upgrade moved here.
  void open_adopted(int fd, std::string input, std::string output, std::optional<MovedState> moved);
  /// Dials `address` (connection_dial.cpp).
  void dial(std::string_view address, std::chrono::milliseconds timeout,
            const std::string& source_address);

  // --- the loop's calls ---
  /// Handles one readiness report.
  void on_event(const PollEvent& event);
  /// After handlers: opens, sends pending output, applies back-pressure and half-close, and
  /// carries out a requested close, failure or detach.
  void settle();
  /// True while the kernel still holds a request of this connection (completion backends): it
  /// must not be destroyed before those complete.
  bool busy() const noexcept { return receiving_ || sending_; }
  /// The loop is stopping: stop reading; close once pending output is sent
  /// (errc::server_stopped); a dial in progress fails.
  void begin_shutdown();
  /// The shutdown grace ran out: reset now (errc::shutdown_timeout).
  void end_shutdown();

  // --- the Conn API ---
  void write(const void* bytes, std::size_t size);
  void write_shared(const SharedBuffer& buffer);
  /// Queues a file range; takes `fd` (closed once sent, or now if the output is closed).
  void send_file(int fd, std::uint64_t offset, std::uint64_t length);
  /// send_file() of a duplicate of `fd` (the caller keeps theirs); none is made for a call
  /// that is ignored. A duplicate that cannot be made resets the connection with the errno.
  void send_file_copy(int fd, std::uint64_t offset, std::uint64_t length);
  void close();
  void abort();
  void shutdown_write();
  void pause_reading();
  void resume_reading();
  bool detach(std::function<void(DetachedConn)> receiver);
  // As the user sees it: an open connection whose end is decided (abort(), an error), carried out
  // at the next settle(), is closing already.
  ConnState state() const noexcept {
    return state_ == ConnState::open && end_wanted_ ? ConnState::closing : state_;
  }
  bool closing() const noexcept { return state() >= ConnState::closing; }
  bool reading_paused() const noexcept { return user_paused_ || pressure_paused_; }
  std::size_t output_pending() const noexcept { return out_.size(); }
  std::any& context() noexcept { return context_; }
  SocketAddress peer() const { return peer_.get(fd_.get()); }
  int fd() const noexcept { return fd_.get(); }
  std::uint64_t id() const noexcept { return id_; }
  EventLoop& loop() const noexcept { return loop_; }
  const ProfilePtr& profile() const noexcept { return profile_; }

 private:
  // A dial to a Unix socket whose listener's backlog is full: the longest wait between tries.
  static constexpr std::chrono::milliseconds kDialRetryStepLimit{100};
  // linger(): the bytes one check reads and drops at most, and the longest wait between checks.
  static constexpr std::size_t kLingerReadBudget = 256 * 1024;
  static constexpr std::chrono::milliseconds kLingerStepLimit{100};
  // send_file(): a range this small is read into the output at once (as cheap as sending it
  // later, and it holds no fd); past this many file ranges pending, so is any range (within
  // output_limit). A peer that pipelines requests for files and never reads cannot make a
  // connection hold one fd per request.
  static constexpr std::uint64_t kCopiedFileMax = 16 * 1024;
  static constexpr std::size_t kHeldFilesMax = 64;

  // A dial in progress: the addresses to try and the last error seen (connection_dial.cpp).
  struct Dial {
    std::vector<SocketAddress> candidates;
    std::size_t next = 0;
    SocketAddress source;  // empty: the kernel picks
    std::error_code last_error;
    std::uint64_t lookup = 0;  // the host name's Resolver::Ticket: cancelled if the dial ends first
    // A Unix listener's full backlog: the connect is asked again after this (doubling).
    std::uint64_t retry_timer = 0;
    std::chrono::milliseconds retry_step{1};
  };
  // What only some connections need, allocated only for them: a dial in progress, a detach
  // under way, the state of a connection a live upgrade moved here. Keeps an idle connection
  // small.
  struct Rare {
    Dial dial;
    std::function<void(DetachedConn)> detach_to;
    std::optional<std::string> moved_state;
    std::chrono::steady_clock::time_point linger_until{};  // closing: the close_timeout of linger()
    std::size_t linger_unacknowledged = 0;                 // what its last check found unacked
    std::chrono::milliseconds linger_step{1};              // the wait before its next check
  };
  Rare& rare();

  const Handlers& handlers() const noexcept { return profile_->handlers; }
  const ConnOptions& options() const noexcept { return profile_->options; }
  bool ended() const noexcept { return state_ >= ConnState::closed; }
  bool wants_to_read() const noexcept {
    return state_ == ConnState::open && !user_paused_ && !pressure_paused_ && !input_ended_;
  }

  // Transitions.
  void enter_open();
  void fail_open(std::error_code error);
  void finish(std::error_code error, bool reset);
  void detach_now();
  void begin_closing(std::error_code reason);
  // closing, all output with the kernel: finish() once the peer has it. `reported_errno`: an
  // error the poller reported for the socket (and may have taken from it: libkqueue reads
  // SO_ERROR), 0 if none.
  void linger(int reported_errno = 0);
  void fail(std::error_code error, bool reset);  // records an end for settle()
  void forget_poller();

  // I/O, as results the settle/transition code consumes.
  void read_once();
  void on_bytes(const char* bytes, std::size_t size);
  void on_input_end();
  void deliver(const char* bytes, std::size_t size);
  bool accepts_output() const noexcept {
    return state_ <= ConnState::open && !end_wanted_ && !shutdown_wanted_;
  }
  bool fits_output_limit(std::size_t more);
  void append_output(const void* bytes, std::size_t size);
  // send_file() of a small range, of one past kHeldFilesMax, or while detaching.
  void read_file_into_output(UniqueFd file, std::uint64_t offset, std::uint64_t length);
  void queued(std::size_t size, bool was_empty);
  std::size_t send_now(const void* bytes, std::size_t size);
  void discard_output();
  void flush();
  long send_file_piece(FilePiece& file, std::size_t want, std::size_t& asked);
  void update_backpressure();
  void update_interest();
  void park();
  // Completion backends (io_uring): receives and sends as requests that complete later.
  void on_received(const PollEvent& event);
  void on_sent(const PollEvent& event);
  void update_receiving();
  void update_watch();
  void flush_async();
  bool quiesce();
  void schedule();

  // Dialling (connection_dial.cpp).
  void start_resolve(const ListenAddress& target);
  void on_resolved(std::vector<SocketAddress> addresses, std::error_code error);
  void try_next_address();
  void retry_address_later();
  void on_connect_ready(const PollEvent& event);

  // Timers.
  void arm_timeout_timer(std::chrono::steady_clock::duration after);
  void check_timeouts();
  // closing, output pending: resets once the output has gone close_timeout without progress.
  void check_drain();
  void cancel_timers();

  EventLoop& loop_;
  const ProfilePtr profile_;
  const std::uint64_t id_;
  UniqueFd fd_;
  ConnState state_ = ConnState::connecting;
  std::uint8_t interest_ = kNone;     // what the poller has registered
  bool registered_ : 1 = false;       // in the poller (not while resolving, or parked)
  bool scheduled_ : 1 = false;        // in the loop's scheduled list
  bool ready_ : 1 = false;            // connecting: the socket is connected, open at settle()
  bool user_paused_ : 1 = false;      // pause_reading()
  bool pressure_paused_ : 1 = false;  // output passed the high-water mark; until the low mark
  bool low_water_owed_ : 1 = false;   // the pressure pause ended: `low_water` at settle()
  bool all_sent_owed_ : 1 = false;    // written since output last emptied: `all_sent` then
  bool input_ended_ : 1 = false;      // the peer's EOF was seen
  bool shutdown_wanted_ : 1 = false;  // shutdown_write() was called
  bool output_shut_ : 1 = false;      // our FIN was sent
  bool end_wanted_ : 1 = false;       // end at the next settle(), with reason_
  bool reset_wanted_ : 1 = false;     // ...by a reset
  bool parked_ : 1 = false;           // out of the poller after a hang-up while not reading
  bool detaching_ : 1 = false;        // detach() was called: rare_->detach_to takes the fd
  bool dialling_ : 1 = false;         // rare_->dial is in use
  bool receiving_ : 1 = false;        // completions: a receive is in the kernel
  bool cancelling_ : 1 = false;       // ...and its cancel has been asked for (closing, detaching)
  bool sending_ : 1 = false;          // completions: a send is in the kernel (send_slot_)
  bool send_blocked_ : 1 = false;     // completions: a send found no room; waits for write space
  bool stashed_ : 1 = false;          // completions: bytes (in in_) came while not reading
  bool stashed_eof_ : 1 = false;      // ...and the peer's EOF
  bool large_receives_ : 1 = false;   // completions: the last receive took 16 KiB or more
  bool was_reading_ : 1 = false;      // wants_to_read() at the last settle(): the idle clock
  bool lingering_ : 1 = false;        // closing: linger() has sent the FIN and waits
  PeerAddress peer_;
  OutputBuffer out_;
  InputTail in_;  // unconsumed input
  std::any context_;
  std::error_code reason_;  // why it ends: reported by `closed` / `connect_failed`
  // The one timer the state needs (0: none): the connect timeout while connecting, idle_timeout
  // and send_timeout while open, close_timeout while closing.
  std::uint64_t timer_ = 0;
  std::chrono::steady_clock::time_point last_receive_{};  // or when reading (re)started
  std::chrono::steady_clock::time_point last_send_{};     // or when output became pending
  std::unique_ptr<Rare> rare_;
  SendSlot* send_slot_ = nullptr;  // completions: the msghdr of the send in flight
};

}  // namespace evloop::detail
