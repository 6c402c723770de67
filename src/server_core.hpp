// Internal. The server behind evloop::Server: validates options, binds listeners, owns the loops
// and their threads, picks a loop for each hand-off.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "evloop/server.hpp"

namespace evloop::detail {

class EventLoop;

class ServerCore {
 public:
  ServerCore(Server& owner, Options options, Callbacks callbacks);
  ~ServerCore();

  Status start();
  void stop() noexcept;
  void wait();
  bool running() const noexcept { return started_.load() && !joined_.load(); }
  /// True once stop() was called; loops poll it every iteration.
  bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }

  /// The loop that gets a connection accepted on a hand-off listener (Options::balance).
  EventLoop& pick_loop(const SocketAddress& peer);

  Server& owner() const noexcept { return owner_; }
  const Options& options() const noexcept { return options_; }
  const Callbacks& callbacks() const noexcept { return callbacks_; }
  const std::vector<SocketAddress>& addresses() const noexcept { return addresses_; }
  const std::vector<std::unique_ptr<EventLoop>>& loops() const noexcept { return loops_; }

 private:
  Status validate_options();
  Status open_listeners(const std::vector<ListenAddress>& addresses);

  Server& owner_;
  Options options_;
  Callbacks callbacks_;
  std::vector<std::unique_ptr<EventLoop>> loops_;
  std::vector<std::thread> threads_;
  std::vector<SocketAddress> addresses_;
  std::atomic<bool> started_{false};
  std::atomic<bool> joined_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> next_loop_{0};
};

}  // namespace evloop::detail
