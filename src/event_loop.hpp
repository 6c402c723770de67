// Internal. One event loop: a thread that waits on its poller, dispatches I/O, runs posted tasks
// and due timers, then flushes connections that have output. Loop-thread-only methods are
// marked; the rest are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "evloop/loop.hpp"
#include "evloop/server.hpp"
#include "loop_stats.hpp"
#include "output_buffer.hpp"
#include "pollable.hpp"
#include "poller.hpp"
#include "socket.hpp"
#include "timer_queue.hpp"

namespace evloop::detail {

class Connection;
class ServerCore;
struct Listener;

class EventLoop {
 public:
  using Clock = TimerQueue::Clock;

  EventLoop(ServerCore& server, std::size_t index);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  /// Creates the poller and the waker (before the thread starts).
  Status open();
  /// Registers a listener with this loop's poller (before the thread starts).
  Status add_listener(std::unique_ptr<Listener> listener);
  /// The thread body: serves until the server stops, then shuts this loop down.
  void run();

  // --- any thread ---
  /// Queues a task; false if the loop has finished.
  bool post(Loop::Task task);
  /// Queues an accepted fd to be opened on this loop; closes it if the loop has finished.
  void hand_off(int fd, const SocketAddress& peer, bool is_tcp);
  /// Interrupts the wait (async-signal-safe).
  void notify() noexcept { waker_.notify(); }
  LoopStats stats() const noexcept { return stats_.snapshot(); }
  bool in_loop_thread() const noexcept {
    return thread_id_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }
  std::size_t index() const noexcept { return index_; }
  Loop& handle() noexcept { return handle_; }
  ServerCore& server() const noexcept { return server_; }
  /// Connections open on or handed to this loop (for Balance::least_connections).
  std::atomic<long> assigned{0};

  // --- loop thread ---
  TimerId run_after(Clock::duration delay, Loop::Task fn);
  TimerId run_every(Clock::duration interval, Loop::Task fn);
  bool cancel(TimerId id);
  /// Opens a connection on this loop for an accepted fd.
  void adopt(int fd, const SocketAddress& peer, bool is_tcp);
  /// The open connection with this id, or nullptr.
  Connection* find(std::uint64_t id);
  /// Queues a connection for flush / close processing after the current callback or batch.
  void schedule(Connection& conn) { scheduled_.push_back(&conn); }
  /// A closed connection: forgotten now, destroyed at the end of this iteration (events later in
  /// the same batch may still point at it).
  void retire(Connection& conn);
  /// Time at the start of this iteration (cheap; good enough for timeouts).
  Clock::time_point now() const noexcept { return now_; }
  bool shutting_down() const noexcept { return shutting_down_; }

  const Options& options() const noexcept;
  const Callbacks& callbacks() const noexcept;
  Poller& poller() noexcept { return poller_; }
  ChunkPool& chunks() noexcept { return chunks_; }
  char* read_buffer() noexcept { return read_buffer_.get(); }
  AtomicLoopStats& counters() noexcept { return stats_; }

 private:
  struct HandOff {
    int fd;
    SocketAddress peer;
    bool is_tcp;
  };

  void iterate(int max_timeout_ms);
  void dispatch(const PollEvent& event);
  void request_wake();
  void run_tasks();
  bool take_tasks();
  void run_taken_tasks();
  void flush_scheduled();
  void tick();
  void shutdown();
  void close_listeners();

  ServerCore& server_;
  const std::size_t index_;
  Loop handle_;
  Poller poller_;
  Waker waker_;
  Pollable waker_token_{Pollable::Kind::waker};
  TimerQueue timers_;
  ChunkPool chunks_;
  std::unique_ptr<char[]> read_buffer_;
  std::vector<PollEvent> events_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> connections_;
  std::vector<std::unique_ptr<Connection>> retired_;
  std::vector<Connection*> scheduled_;
  std::uint64_t next_id_;
  Clock::time_point now_{};
  bool shutting_down_ = false;

  // Cross-thread queue. wake_pending_ is set by the first post after the loop last found the
  // queue empty; only that post writes the waker, so a burst of posts costs one wakeup.
  std::mutex mutex_;
  std::vector<Loop::Task> tasks_;   // guarded by mutex_
  std::vector<HandOff> hand_offs_;  // guarded by mutex_
  bool accepting_tasks_ = true;     // guarded by mutex_
  std::vector<Loop::Task> running_tasks_;
  std::vector<HandOff> running_hand_offs_;
  std::atomic<bool> wake_pending_{false};
  std::atomic<std::thread::id> thread_id_{};

  AtomicLoopStats stats_;
};

}  // namespace evloop::detail
