// Internal. One event loop: a thread that waits on its poller, dispatches I/O, runs posted tasks
// and due timers, then settles the sockets that have work left (output to send, a close to carry
// out): connections and UDP sockets. It knows sockets and listeners, not servers: a loop group
// owns the loops, and a server adds listeners and UDP sockets to them. Methods are for the loop
// thread unless marked thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "connection.hpp"
#include "evloop/loop.hpp"
#include "loop_stats.hpp"
#include "output_buffer.hpp"
#include "pollable.hpp"
#include "poller.hpp"
#include "profile.hpp"
#include "send_slots.hpp"
#include "socket.hpp"
#include "timer_queue.hpp"

namespace evloop::detail {

class LoopGroupCore;
class ReceiveBatch;
class PostedSends;
class UdpSocket;
struct Listener;

class EventLoop {
 public:
  using Clock = TimerQueue::Clock;

  EventLoop(LoopGroupCore& group, std::size_t index);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  /// Creates the poller (the backend `wanted`, or the fallback: `note` says why) and the waker,
  /// before the thread starts.
  Status open(Backend wanted, std::string& note);
  /// The backend in use ("epoll", "io_uring", "kqueue").
  const char* backend() const noexcept { return poller_.name(); }
  /// Registers a listener with this loop's poller (before the thread starts).
  Status add_listener(std::unique_ptr<Listener> listener);
  /// Takes a bound UDP socket of a server and registers it with this loop's poller (before the
  /// thread starts); it opens (`opened`) on the loop thread before any event is handled. On
  /// failure the socket is closed and the Status says why.
  Status add_udp_socket(UniqueFd fd, UdpProfilePtr profile, std::size_t endpoint);
  /// A start() failed: gives up the fds of inherited listeners without closing them (they still
  /// belong to the caller), and the Unix socket files of the sockets a live upgrade's
  /// predecessor handed over (it still serves them).
  void release_borrowed_listeners();
  /// The thread body: hooks, then serves until the group stops, then shuts this loop down.
  void run();

  // --- thread-safe ---
  /// Queues a task; false if the loop has finished.
  bool post(Loop::Task task);
  /// Queues an accepted fd to be opened on this loop; closes it if the loop has finished.
  void hand_off(int fd, const SocketAddress& peer, ProfilePtr profile);
  /// Dials `address` on this loop (Loop::connect).
  ConnRef connect(std::string_view address, ProfilePtr profile, std::chrono::milliseconds timeout,
                  std::string source_address);
  /// Opens a connection on a connected fd on this loop (Loop::adopt); with `moved`, one a live
  /// upgrade moved here.
  ConnRef adopt(int fd, ProfilePtr profile, std::string input, std::string output,
                std::optional<MovedState> moved = std::nullopt);
  /// Opens a UDP socket on this loop: bound (Loop::bind_udp) or connected (Loop::connect_udp).
  UdpRef open_udp(std::string_view address, UdpProfilePtr profile, bool connect,
                  std::string source_address);
  /// Timers: at once on the loop thread, posted from elsewhere. A delay past a century waits
  /// for ever (capped: timeouts.hpp).
  TimerId run_after(Clock::duration delay, Loop::Task fn);
  TimerId run_every(Clock::duration interval, Loop::Task fn);
  /// The same with a delay in another unit (an option's milliseconds), converted without
  /// overflow: milliseconds::max() for "never" waits for ever too.
  template <class Rep, class Period>
  TimerId run_after(std::chrono::duration<Rep, Period> delay, Loop::Task fn) {
    return run_after(Clock::duration(saturating_nanoseconds(delay)), std::move(fn));
  }
  bool cancel(TimerId id);
  /// Interrupts the wait (async-signal-safe).
  void notify() noexcept { waker_.notify(); }
  LoopStats stats() const noexcept { return stats_.snapshot(); }
  bool in_loop_thread() const noexcept {
    return thread_id_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }
  std::size_t index() const noexcept { return index_; }
  Loop& handle() noexcept { return handle_; }
  LoopGroupCore& group() const noexcept { return group_; }
  /// Connections open on, or on their way to, this loop (Balance::least_connections).
  std::atomic<long> load{0};

  // --- loop thread ---
  /// Opens a connection on this loop for an accepted fd.
  void open_accepted(int fd, const SocketAddress& peer, ProfilePtr profile);
  /// The connection with this id, unless it has closed (or never existed here).
  Connection* find(std::uint64_t id);
  /// The UDP socket with this id while it is open (or, with `opening`, also before it opened).
  UdpSocket* find_udp(std::uint64_t id, bool opening = false);
  /// Queues a connection or a UDP socket for settle() after the current handler or batch.
  void schedule(Pollable& socket) { scheduled_.push_back(&socket); }
  /// A closed connection: destroyed at the end of this iteration (events later in the same batch
  /// may still point at it; find() no longer returns it).
  void retire(Connection& conn);
  /// The same for a closed UDP socket.
  void retire(UdpSocket& socket);
  /// The receive arrays the loop's UDP sockets share (created by the first).
  ReceiveBatch& receive_batch();
  /// A busy UDP socket left the poller: read it every iteration (the wait does not block then)
  /// until stop_polling().
  void poll_each_iteration(UdpSocket& socket) { polled_udp_.push_back(&socket); }
  void stop_polling(UdpSocket& socket);
  /// Time at the start of this iteration (cheap; good enough for timeouts).
  Clock::time_point now() const noexcept { return now_; }

  /// Runs what handlers and tasks scheduled: sends output, carries out closes and detaches.
  void settle_scheduled();

  // --- live upgrade (loop thread) ---
  /// This loop's listeners (a live upgrade sends duplicates of their fds to the successor).
  const std::vector<std::unique_ptr<Listener>>& listeners() const noexcept { return listeners_; }
  /// The server's UDP sockets on this loop (those of its listen addresses), which a live upgrade
  /// hands over like listeners.
  std::vector<UdpSocket*> server_udp_sockets();
  /// Stops accepting: every listener leaves the poller but stays open until this loop ends (a
  /// successor shares the socket; its last close would drop the connections queued on it), and
  /// its Unix socket file is then left in place. The server's UDP sockets stop receiving (the
  /// successor reads them) and still send what is queued.
  void stop_accepting();
  /// Undoes stop_accepting() (the successor was lost during the handover).
  void accept_again();
  /// The connections that are open (not connecting, closing or closed).
  std::vector<Connection*> open_connections();
  /// From now on, tell the group once this loop has no connection left (a live upgrade's drain).
  void begin_drain();

  Poller& poller() noexcept { return poller_; }
  ChunkPool& chunks() noexcept { return chunks_; }
  SendSlots& send_slots() noexcept { return send_slots_; }
  char* read_buffer() noexcept { return read_buffer_.get(); }
  std::size_t read_buffer_size() const noexcept { return read_buffer_size_; }
  AtomicLoopStats& counters() noexcept { return stats_; }

 private:
  struct HandOff {
    int fd;
    SocketAddress peer;
    ProfilePtr profile;
  };

  Connection& create(std::uint64_t id, ProfilePtr profile);
  UdpSocket& create_udp(std::uint64_t id, UdpProfilePtr profile,
                        std::shared_ptr<PostedSends> posted = nullptr);
  /// Runs `open` on the loop thread: at once there, else queued apart from ordinary tasks, so a
  /// dial or adoption accepted before a stop still runs (and fails with server_stopped) then.
  /// False, and `open` not run, on the loop thread once it is stopping, or once it has stopped.
  bool run_opening(Loop::Task open);
  /// From another thread: a timer id now, the timer added by a posted task; 0 once stopped.
  TimerId add_timer_later(Clock::time_point when, Clock::duration interval, Loop::Task fn);
  void iterate(int max_timeout_ms);
  void dispatch(const PollEvent& event);
  void request_wake();
  void run_tasks();
  bool take_tasks();
  void run_taken_tasks();
  void poll_busy_sockets();
  bool skips_wait();  // this iteration reads busy UDP sockets without asking the poller
  void resume_listeners();
  void tick();
  void check_drained();
  void shutdown();
  template <typename Fn>
  void for_each_socket(Fn fn);
  void close_listeners();
  void close_listener(std::unique_ptr<Listener> listener);
  void stop_taking_tasks();
  void destroy_retired();

  LoopGroupCore& group_;
  const std::size_t index_;
  const std::size_t read_buffer_size_;
  Loop handle_;
  Poller poller_;
  Waker waker_;
  Pollable waker_token_{Pollable::Kind::waker};
  TimerQueue timers_;
  ChunkPool chunks_;
  SendSlots send_slots_;
  std::unique_ptr<char[]> read_buffer_;
  std::vector<PollEvent> events_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<Listener>> stopped_listeners_;  // shared with a successor
  std::vector<std::unique_ptr<Listener>> closing_listeners_;  // closed, their accept not yet ended
  // Connections live in the map's nodes (one allocation each, no pointer to chase). A closed
  // one is erased at the end of the iteration: events later in the same batch may point at it.
  std::unordered_map<std::uint64_t, Connection> connections_;
  std::vector<std::uint64_t> retired_;
  std::unordered_map<std::uint64_t, std::unique_ptr<UdpSocket>> udp_sockets_;
  std::vector<std::unique_ptr<UdpSocket>> retired_udp_;  // destroyed with retired_
  std::unique_ptr<ReceiveBatch> receive_batch_;
  std::vector<Pollable*> scheduled_;    // connections and UDP sockets
  std::vector<UdpSocket*> polled_udp_;  // busy UDP sockets, out of the poller
  // While there are some, the poller is asked every kPollEvery iterations (see skips_wait()).
  static constexpr unsigned kPollEvery = 8;
  static constexpr auto kPollInterval = std::chrono::microseconds(200);
  unsigned iterations_unpolled_ = 0;
  Clock::time_point last_wait_{};
  std::atomic<std::uint64_t> next_id_;  // connection ids: thread-safe, so a dial's ref is at once
  Clock::time_point now_{};
  bool shutting_down_ = false;
  bool poller_failed_ = false;
  bool draining_ = false;  // a live upgrade's drain: report when no connection is left
  bool drained_reported_ = false;

  // Cross-thread queue. wake_pending_ is set by the first post after the loop last found the
  // queue empty; only that post writes the waker, so a burst of posts costs one wakeup.
  std::mutex mutex_;
  // A dial, adoption or UDP open from another thread, and how many tasks had been posted before
  // it (counted since the loop began): a task posted after it may act on what it opens (a
  // ConnRef::write straight after connect()), so it never runs first.
  struct Opening {
    Loop::Task open;
    std::uint64_t tasks_before;
  };
  std::vector<Loop::Task> tasks_;   // guarded by mutex_
  std::vector<HandOff> hand_offs_;  // guarded by mutex_
  std::vector<Opening> openings_;   // guarded by mutex_
  std::uint64_t tasks_taken_ = 0;   // guarded by mutex_: tasks moved out of tasks_ so far
  bool accepting_tasks_ = true;     // guarded by mutex_
  std::vector<Loop::Task> running_tasks_;
  std::vector<HandOff> running_hand_offs_;
  std::vector<Opening> running_openings_;
  std::atomic<bool> wake_pending_{false};
  std::atomic<std::thread::id> thread_id_{};

  AtomicLoopStats stats_;
};

}  // namespace evloop::detail
