#include "event_loop.hpp"

#include <unistd.h>

#include <algorithm>

#include "connection.hpp"
#include "listener.hpp"
#include "server_core.hpp"

namespace evloop::detail {
namespace {
constexpr int kMaxEvents = 256;
}  // namespace

EventLoop::EventLoop(ServerCore& server, std::size_t index)
    : server_(server),
      index_(index),
      handle_(*this),
      read_buffer_(new char[server.options().read_buffer_size]),
      events_(kMaxEvents),
      next_id_((static_cast<std::uint64_t>(index) << 48) + 1) {}

EventLoop::~EventLoop() {
  // Normally empty: shutdown() closed everything. Left over only when start() failed.
  for (HandOff& h : hand_offs_) ::close(h.fd);
}

Status EventLoop::open() {
  if (std::error_code ec = poller_.open()) return {ec, "create poller: " + ec.message()};
  if (std::error_code ec = waker_.open(poller_, &waker_token_)) {
    return {ec, "create waker: " + ec.message()};
  }
  return {};
}

Status EventLoop::add_listener(std::unique_ptr<Listener> listener) {
  if (std::error_code ec = poller_.add(listener->fd.get(), kRead, listener.get())) {
    return {ec, "register listener " + listener->bound.to_url() + ": " + ec.message()};
  }
  listeners_.push_back(std::move(listener));
  return {};
}

const Options& EventLoop::options() const noexcept { return server_.options(); }
const Callbacks& EventLoop::callbacks() const noexcept { return server_.callbacks(); }

void EventLoop::run() {
  thread_id_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  now_ = Clock::now();
  if (index_ == 0 && callbacks().tick) run_after(Clock::duration::zero(), [this] { tick(); });
  while (!server_.stopping()) iterate(-1);
  shutdown();
}

void EventLoop::iterate(int max_timeout_ms) {
  now_ = Clock::now();
  int timeout = timers_.next_timeout_ms(now_);
  if (max_timeout_ms >= 0 && (timeout < 0 || timeout > max_timeout_ms)) timeout = max_timeout_ms;
  // A post made on this thread sets wake_pending_ without writing the waker: do not sleep on it.
  if (wake_pending_.load(std::memory_order_relaxed)) timeout = 0;

  const int n = poller_.wait(events_.data(), static_cast<int>(events_.size()), timeout);
  bump(stats_.waits);
  now_ = Clock::now();
  for (int i = 0; i < n; ++i) {
    dispatch(events_[static_cast<std::size_t>(i)]);
    flush_scheduled();  // what this event's callbacks wrote goes out now, in one send
  }
  run_tasks();
  flush_scheduled();
  bump(stats_.timers_fired, timers_.run_due(now_));
  flush_scheduled();
  retired_.clear();
}

void EventLoop::dispatch(const PollEvent& event) {
  auto* target = static_cast<Pollable*>(event.token);
  switch (target->kind) {
    case Pollable::Kind::waker:
      waker_.drain();
      bump(stats_.wakeups);
      break;
    case Pollable::Kind::listener:
      accept_batch(*this, *static_cast<Listener*>(target));
      break;
    case Pollable::Kind::connection:
      static_cast<Connection*>(target)->on_event(event);
      break;
  }
}

void EventLoop::flush_scheduled() {
  // Indexed loop: servicing one connection can schedule others (a `closed` or `drained`
  // callback that writes), which appends here.
  for (std::size_t i = 0; i < scheduled_.size(); ++i) scheduled_[i]->service();
  scheduled_.clear();
}

bool EventLoop::post(Loop::Task task) {
  {
    std::lock_guard lock(mutex_);
    if (!accepting_tasks_) return false;
    tasks_.push_back(std::move(task));
  }
  request_wake();
  return true;
}

void EventLoop::hand_off(int fd, const SocketAddress& peer, bool is_tcp) {
  {
    std::lock_guard lock(mutex_);
    if (!accepting_tasks_) {
      ::close(fd);
      assigned.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
    hand_offs_.push_back({fd, peer, is_tcp});
  }
  request_wake();
}

void EventLoop::request_wake() {
  // Only a request that finds no wake pending writes the waker. The loop clears the flag only
  // after finding the queue empty, and then takes the queue once more, so a request that found
  // the flag set is always seen.
  if (!wake_pending_.exchange(true, std::memory_order_acq_rel) && !in_loop_thread()) {
    waker_.notify();
  }
}

bool EventLoop::take_tasks() {
  std::lock_guard lock(mutex_);
  running_tasks_.swap(tasks_);
  running_hand_offs_.swap(hand_offs_);
  return !running_tasks_.empty() || !running_hand_offs_.empty();
}

void EventLoop::run_taken_tasks() {
  for (HandOff& h : running_hand_offs_) adopt(h.fd, h.peer, h.is_tcp);
  running_hand_offs_.clear();
  for (Loop::Task& task : running_tasks_) {
    bump(stats_.tasks);
    task();
  }
  running_tasks_.clear();  // keeps capacity: a steady stream of posts allocates no vector
}

void EventLoop::run_tasks() {
  if (!wake_pending_.load(std::memory_order_acquire)) return;
  // One batch per iteration, so I/O keeps its turn. While batches keep coming the flag stays
  // set: posters add without writing the waker and the next wait does not block, so a burst
  // costs one wakeup, not one per batch the loop takes.
  if (take_tasks()) return run_taken_tasks();
  wake_pending_.store(false, std::memory_order_seq_cst);
  if (take_tasks()) run_taken_tasks();  // posted between the empty take and the clear
}

void EventLoop::adopt(int fd, const SocketAddress& peer, bool is_tcp) {
  if (shutting_down_) {
    ::close(fd);
    assigned.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  const Options& opt = options();
  configure_connection(
      fd, is_tcp,
      {opt.tcp_nodelay, opt.keepalive, opt.socket_send_buffer, opt.socket_receive_buffer});
  const std::uint64_t id = next_id_++;
  auto conn = std::make_unique<Connection>(*this, UniqueFd(fd), id, peer);
  Connection& ref = *conn;
  connections_.emplace(id, std::move(conn));
  ref.start();
}

Connection* EventLoop::find(std::uint64_t id) {
  auto it = connections_.find(id);
  return it == connections_.end() || it->second->closed() ? nullptr : it->second.get();
}

void EventLoop::retire(Connection& conn) {
  auto it = connections_.find(conn.id());
  if (it == connections_.end()) return;
  retired_.push_back(std::move(it->second));
  connections_.erase(it);
  assigned.fetch_sub(1, std::memory_order_relaxed);
  // A closed fd may be what a listener paused for (EMFILE): try accepting again now.
  for (auto& listener : listeners_) {
    if (listener->paused) resume_accepting(*this, *listener);
  }
}

TimerId EventLoop::run_after(Clock::duration delay, Loop::Task fn) {
  return timers_.add(Clock::now() + delay, Clock::duration::zero(), std::move(fn));
}

TimerId EventLoop::run_every(Clock::duration interval, Loop::Task fn) {
  interval = std::max(interval, Clock::duration(1));
  return timers_.add(Clock::now() + interval, interval, std::move(fn));
}

bool EventLoop::cancel(TimerId id) { return timers_.cancel(id); }

void EventLoop::tick() {
  // Each tick schedules the next with the delay the user returns; a negative delay stops.
  const std::chrono::milliseconds next = callbacks().tick(handle_);
  if (next.count() >= 0 && !shutting_down_) run_after(next, [this] { tick(); });
}

void EventLoop::close_listeners() {
  for (auto& listener : listeners_) {
    if (listener->resume_timer != 0) timers_.cancel(listener->resume_timer);
    poller_.remove(listener->fd.get(), listener->paused ? kNone : kRead);
  }
  listeners_.clear();  // closes the fds and removes Unix socket files
}

void EventLoop::shutdown() {
  shutting_down_ = true;
  now_ = Clock::now();
  close_listeners();
  std::vector<Connection*> open;
  open.reserve(connections_.size());
  for (auto& [id, conn] : connections_) open.push_back(conn.get());
  for (Connection* conn : open) conn->begin_shutdown();
  flush_scheduled();  // connections with nothing pending close now

  // Keep sending what is pending, up to the grace period.
  const auto deadline = now_ + server_.options().shutdown_grace;
  while (!connections_.empty() && Clock::now() < deadline) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    iterate(static_cast<int>(std::max<long long>(0, left.count())));
  }
  open.clear();
  for (auto& [id, conn] : connections_) open.push_back(conn.get());
  for (Connection* conn : open) conn->finalize(make_error_code(errc::close_timeout));
  scheduled_.clear();  // a `closed` callback may have scheduled a connection closed just after
  retired_.clear();

  std::vector<Loop::Task> dropped;
  {
    std::lock_guard lock(mutex_);
    accepting_tasks_ = false;
    dropped.swap(tasks_);
    running_hand_offs_.swap(hand_offs_);
  }
  for (HandOff& h : running_hand_offs_) ::close(h.fd);  // never opened: no `closed` owed
  running_hand_offs_.clear();
  timers_ = TimerQueue{};
}

}  // namespace evloop::detail
