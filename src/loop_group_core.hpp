// Internal. The loops behind evloop::LoopGroup (and behind a Server): creates them, runs one
// thread each, stops and joins them, picks a loop for each connection a spreading listener
// accepts, and owns the resolver threads their dials share.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "evloop/loop_group.hpp"
#include "evloop/options.hpp"
#include "resolver.hpp"
#include "socket.hpp"

namespace evloop::detail {

class EventLoop;

class LoopGroupCore {
 public:
  LoopGroupCore(LoopOptions options, LoopHooks hooks);
  ~LoopGroupCore();
  LoopGroupCore(const LoopGroupCore&) = delete;
  LoopGroupCore& operator=(const LoopGroupCore&) = delete;

  /// Checks the options and creates the loops (pollers, wakers), starting no thread. On failure
  /// nothing is left. errc::already_started if the group was started before.
  Status open();
  /// Creates and opens options().loops loops on `wanted` (open()'s second half).
  Status open_loops(Backend wanted);
  /// Destroys the loops open() made (a start that failed after it).
  void discard();
  /// Starts one thread per loop (after open()). On failure (a thread that cannot start: the
  /// system's error, or out of memory) no loop has run, the threads that had started are
  /// joined, and the loops stay, for the caller to give back what it lent them and discard() them.
  Status start_threads();
  /// open(), then start_threads().
  Status start();
  void stop() noexcept;
  Status wait();
  bool running() const noexcept { return started_.load() && !joined_.load(); }
  /// True once stop() was called; loops check it every iteration.
  bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }
  /// A loop's poller failed: remembers why (wait() reports it) and stops the group.
  void loop_failed(std::size_t index, std::error_code error);

  /// The loop that gets a connection accepted by a spreading listener.
  EventLoop& pick_loop(Balance balance, const SocketAddress& peer);

  /// A live upgrade handed over what it could: the group stops by itself once no loop has a
  /// connection left, or after `timeout` at the latest (as by stop()). Any thread.
  void begin_drain(std::chrono::milliseconds timeout);
  /// A draining loop has no connection left (its loop thread; once per loop).
  void loop_drained();

  /// A live upgrade's successor: the Unix socket files of the listeners its predecessor handed
  /// over stay the predecessor's until the handover has ended (`done`, or the predecessor's
  /// end): a successor stopped before then leaves them, and the predecessor serves on with
  /// them. Any thread.
  void lend_handed_unix_files(bool lent) noexcept {
    handed_unix_files_lent_.store(lent, std::memory_order_release);
  }
  bool handed_unix_files_lent() const noexcept {
    return handed_unix_files_lent_.load(std::memory_order_acquire);
  }
  /// A listener closed while its file was lent gives it here (its loop thread): whether the
  /// handover had ended is known only once the successor has read what was on its way.
  void keep_lent_unix_file(UnixPathOwner file);
  /// After the successor's receiving has ended (and the loops): removes the files kept if the
  /// handover had ended (they were this process's), else leaves them to the predecessor.
  void settle_lent_unix_files();

  Resolver& resolver() noexcept { return resolver_; }
  /// The backend the loops use, and why it is not the one asked for (empty when it is).
  const char* backend() const noexcept;
  const std::string& backend_note() const noexcept { return backend_note_; }
  const LoopOptions& options() const noexcept { return options_; }
  const LoopHooks& hooks() const noexcept { return hooks_; }
  const std::vector<std::unique_ptr<EventLoop>>& loops() const noexcept { return loops_; }
  /// True when called on one of the group's loop threads.
  bool on_loop_thread() const noexcept;
  /// Loop `i`'s public handle, for LoopGroup::loop and Server::loop (named `method`). An index
  /// past the last loop (any index before start()) is misuse: aborts with a message.
  Loop& handle(std::size_t i, const char* method) const;
  // What to do instead, for require_off_loop_threads().
  static constexpr const char* kDestroyOffLoopThreads =
      "call stop() there, and destroy it from another thread once wait() has returned";
  static constexpr const char* kWaitOffLoopThreads =
      "call stop() there, and wait() from another thread (the one that called start())";
  /// Aborts with a message naming `method` (a destructor, or wait()) and saying what to do
  /// `instead` when called on one of the group's loop threads: it would join the thread it runs
  /// on.
  void require_off_loop_threads(const char* method, const char* instead) const noexcept;

 private:
  /// start_threads() but for started_: every loop's thread, or none (those started are joined).
  Status spawn_loop_threads();

  LoopOptions options_;
  LoopHooks hooks_;
  Resolver resolver_;  // stopped by wait(), before the loops go: no answer is posted after
  std::vector<std::unique_ptr<EventLoop>> loops_;
  std::vector<std::thread> threads_;
  std::atomic<bool> started_{false};
  std::atomic<bool> joined_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> handed_unix_files_lent_{false};
  std::mutex lent_files_mutex_;
  std::vector<UnixPathOwner> lent_files_;  // guarded by lent_files_mutex_
  std::atomic<std::size_t> next_loop_{0};
  std::atomic<std::size_t> drained_loops_{0};
  std::string backend_note_;
  std::mutex failure_mutex_;
  Status failure_;  // guarded by failure_mutex_
};

}  // namespace evloop::detail
