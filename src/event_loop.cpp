#include "event_loop.hpp"

#include <unistd.h>

#include <algorithm>

#include "connection.hpp"
#include "listener.hpp"
#include "loop_group_core.hpp"
#include "misuse.hpp"
#include "platform.hpp"
#include "posted_sends.hpp"
#include "receive_batch.hpp"
#include "timeouts.hpp"
#include "udp_socket.hpp"

namespace evloop::detail {
namespace {
constexpr int kMaxEvents = 256;
// Dials and adoptions queued from other threads, opened per loop iteration at most.
constexpr std::size_t kOpeningsPerBatch = 256;
}  // namespace

EventLoop::EventLoop(LoopGroupCore& group, std::size_t index)
    : group_(group),
      index_(index),
      read_buffer_size_(group.options().read_buffer_size),
      handle_(*this),
      read_buffer_(new char[read_buffer_size_]),
      events_(kMaxEvents),
      next_id_((static_cast<std::uint64_t>(index) << 48) + 1) {}

EventLoop::~EventLoop() {
  // Normally empty: shutdown() closed everything. Left over only when start() failed.
  for (HandOff& h : hand_offs_) ::close(h.fd);
}

Status EventLoop::open(Backend wanted, std::string& note) {
  const PollerSetup setup{wanted, group_.options().uring_buffers, &stats_.submit_refusals};
  if (std::error_code ec = poller_.open(setup, note)) {
    return {ec, "create poller: " + ec.message()};
  }
  if (std::error_code ec = waker_.open(poller_, &waker_token_)) {
    return {ec, "create waker: " + ec.message()};
  }
  return {};
}

Status EventLoop::add_listener(std::unique_ptr<Listener> listener) {
  if (std::error_code ec = begin_accepting(*this, *listener)) {
    if (listener->inherited) listener->fd.release();           // still the caller's
    if (listener->handed_over) listener->unix_path.release();  // still the predecessor's
    return {ec, "register listener " + listener->bound.to_url() + ": " + ec.message()};
  }
  listeners_.push_back(std::move(listener));
  return {};
}

Status EventLoop::add_udp_socket(UniqueFd fd, UdpProfilePtr profile, std::size_t endpoint) {
  UdpSocket& socket =
      create_udp(next_id_.fetch_add(1, std::memory_order_relaxed), std::move(profile));
  if (std::error_code ec = socket.open_bound(std::move(fd), endpoint)) {
    const std::string where = socket.local().to_udp_url();
    udp_sockets_.erase(socket.id());  // never registered, never scheduled: closes its fd
    return {ec,
            "register UDP socket " + where + " with the " + backend() + " poller: " + ec.message()};
  }
  return {};
}

void EventLoop::release_borrowed_listeners() {
  for (auto& listener : listeners_) {
    if (listener->handed_over) listener->unix_path.release();  // the predecessor serves it
    if (!listener->inherited) continue;
    end_accepting(*this, *listener);
    // Never submitted (the loop's thread did not start): no accept in the kernel holds the fd.
    listener->fd.release();
  }
}

void EventLoop::run() {
  thread_id_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  platform::block_sigpipe_in_this_thread();  // sendfile() cannot be told MSG_NOSIGNAL
  now_ = Clock::now();
  const LoopHooks& hooks = group_.hooks();
  if (hooks.loop_started) hooks.loop_started(handle_);
  settle_scheduled();  // what the hook started (dials, say)
  if (hooks.tick) run_after(Clock::duration::zero(), [this] { tick(); });
  while (!group_.stopping()) iterate(-1);
  // What was posted before stop() runs before the shutdown, on open connections: a goodbye a
  // task writes goes before the FIN (within shutdown_grace), instead of after the close. One
  // batch: what those tasks post runs as the loop stops, as any post made after stop().
  if (take_tasks()) run_taken_tasks();
  settle_scheduled();
  shutdown();
  stop_taking_tasks();
  if (hooks.loop_stopping) hooks.loop_stopping(handle_);
  settle_scheduled();  // a dial the hook started fails at once (server_stopped)
  destroy_retired();
  timers_.clear();
  thread_id_.store(std::thread::id{}, std::memory_order_relaxed);
}

void EventLoop::iterate(int max_timeout_ms) {
  now_ = Clock::now();
  int timeout = timers_.next_timeout_ms(now_);
  if (max_timeout_ms >= 0 && (timeout < 0 || timeout > max_timeout_ms)) timeout = max_timeout_ms;
  // A post made on this thread sets wake_pending_ without writing the waker: do not sleep on it,
  // nor while busy UDP sockets wait to be read.
  if (wake_pending_.load(std::memory_order_relaxed) || !polled_udp_.empty()) timeout = 0;

  const bool skipped = skips_wait();
  const int n =
      skipped ? 0 : poller_.wait(events_.data(), static_cast<int>(events_.size()), timeout);
  if (!skipped) bump(stats_.waits);  // counted once it returns: a loop asleep in it has not woken
  if (n < 0) {
    // Not EINTR (the backend returns 0 for that): the poller itself is broken (EBADF, EINVAL,
    // ENOMEM). Waiting again would fail again at once, a silent spin: stop, and say why.
    poller_failed_ = true;
    group_.loop_failed(index_, std::error_code(-n, std::system_category()));
    return;
  }
  // A wait that could not block returned at once: the time read before it still holds.
  if (!skipped) now_ = last_wait_ = timeout == 0 ? now_ : Clock::now();
  for (int i = 0; i < n; ++i) {
    dispatch(events_[static_cast<std::size_t>(i)]);
    settle_scheduled();  // what this event's handlers wrote goes out now, in one send
  }
  if (!polled_udp_.empty()) poll_busy_sockets();
  run_tasks();
  settle_scheduled();
  bump(stats_.timers_fired, timers_.run_due(now_));
  settle_scheduled();
  destroy_retired();
}

bool EventLoop::skips_wait() {
  // While busy UDP sockets are read every iteration (out of the poller), a wait would not block
  // and would mostly find nothing else: on a readiness backend the loop asks the poller only
  // every kPollEvery iterations, or once kPollInterval has passed since the last wait returned
  // (checked between iterations: one iteration reads up to 4 batches per busy socket). On
  // io_uring the wait is also what submits the loop's requests, so it runs every iteration.
  // Tasks and timers run every iteration either way; only other sockets' readiness waits.
  if (!polled_udp_.empty() && !poller_.completions() && ++iterations_unpolled_ < kPollEvery &&
      now_ - last_wait_ < kPollInterval) {
    return true;
  }
  iterations_unpolled_ = 0;
  return false;
}

void EventLoop::dispatch(const PollEvent& event) {
  auto* target = static_cast<Pollable*>(event.token);
  switch (target->kind) {
    case Pollable::Kind::waker:
      waker_.drain();
      bump(stats_.wakeups);
      break;
    case Pollable::Kind::listener:
      on_listener_event(*this, *static_cast<Listener*>(target), event);
      break;
    case Pollable::Kind::connection:
      static_cast<Connection*>(target)->on_event(event);
      break;
    case Pollable::Kind::udp:
      static_cast<UdpSocket*>(target)->on_event(event);
      break;
  }
}

void EventLoop::poll_busy_sockets() {
  // Each busy socket gets what a readiness would give it. One that drains leaves the list (the
  // next one moves to index i).
  for (std::size_t i = 0; i < polled_udp_.size();) {
    UdpSocket* socket = polled_udp_[i];
    socket->on_polled();
    settle_scheduled();
    if (i < polled_udp_.size() && polled_udp_[i] == socket) ++i;
  }
}

void EventLoop::stop_polling(UdpSocket& socket) {
  polled_udp_.erase(std::remove(polled_udp_.begin(), polled_udp_.end(), &socket),
                    polled_udp_.end());
}

void EventLoop::settle_scheduled() {
  // Indexed loop: settling one socket can schedule others (a `closed` or `low_water` handler
  // that writes), which appends here. Only connections and UDP sockets are ever scheduled.
  for (std::size_t i = 0; i < scheduled_.size(); ++i) {
    Pollable* socket = scheduled_[i];
    if (socket->kind == Pollable::Kind::connection) {
      static_cast<Connection*>(socket)->settle();
    } else {
      static_cast<UdpSocket*>(socket)->settle();
    }
  }
  scheduled_.clear();
}

// --- cross-thread work -------------------------------------------------------------------------

bool EventLoop::post(Loop::Task task) {
  {
    std::lock_guard lock(mutex_);
    if (!accepting_tasks_) return false;
    tasks_.push_back(std::move(task));
  }
  request_wake();
  return true;
}

void EventLoop::hand_off(int fd, const SocketAddress& peer, ProfilePtr profile) {
  {
    std::lock_guard lock(mutex_);
    if (accepting_tasks_) {
      hand_offs_.push_back({fd, peer, std::move(profile)});
      fd = -1;
    }
  }
  if (fd >= 0) {
    ::close(fd);
    load.fetch_sub(1, std::memory_order_relaxed);
    return;
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

bool EventLoop::run_opening(Loop::Task open) {
  if (in_loop_thread()) {
    // A stopping loop starts nothing on its own thread: what it opened would only fail with
    // server_stopped at once, and a `connect_failed` (or `open_failed`) handler that opens again
    // on every failure would feed the stop forever.
    if (shutting_down_) return false;
    open();
    return true;
  }
  {
    std::lock_guard lock(mutex_);
    if (!accepting_tasks_) return false;
    openings_.push_back({std::move(open), tasks_taken_ + tasks_.size()});
  }
  request_wake();
  return true;
}

bool EventLoop::take_tasks() {
  std::lock_guard lock(mutex_);
  running_hand_offs_.swap(hand_offs_);
  if (openings_.size() <= kOpeningsPerBatch) {
    running_openings_.swap(openings_);
    running_tasks_.swap(tasks_);
  } else {
    // Thousands at once (a live upgrade's adoptions): a batch per iteration, so the ones opened
    // are read before the rest are opened, instead of all waiting for the last. Tasks posted
    // after the first opening left queued wait for it: one may act on what it opens.
    const auto end = openings_.begin() + kOpeningsPerBatch;
    std::move(openings_.begin(), end, std::back_inserter(running_openings_));
    openings_.erase(openings_.begin(), end);
    const auto before = static_cast<std::ptrdiff_t>(openings_.front().tasks_before - tasks_taken_);
    std::move(tasks_.begin(), tasks_.begin() + before, std::back_inserter(running_tasks_));
    tasks_.erase(tasks_.begin(), tasks_.begin() + before);
  }
  tasks_taken_ += running_tasks_.size();
  return !running_tasks_.empty() || !running_hand_offs_.empty() || !running_openings_.empty();
}

void EventLoop::run_taken_tasks() {
  for (HandOff& h : running_hand_offs_) open_accepted(h.fd, h.peer, std::move(h.profile));
  running_hand_offs_.clear();
  for (Opening& opening : running_openings_) opening.open();
  running_openings_.clear();
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

void EventLoop::stop_taking_tasks() {
  {
    std::lock_guard lock(mutex_);
    accepting_tasks_ = false;
    running_hand_offs_.swap(hand_offs_);
    running_openings_.swap(openings_);
    running_tasks_.swap(tasks_);
  }
  for (HandOff& h : running_hand_offs_) ::close(h.fd);  // never opened: no `closed` owed
  running_hand_offs_.clear();
  // Dials and adoptions accepted before the stop still report: they fail (server_stopped). Then
  // the tasks whose post() returned true run, as promised, in the order posted (a post from one
  // of them now returns false).
  for (Opening& opening : running_openings_) opening.open();
  running_openings_.clear();
  for (Loop::Task& task : running_tasks_) {
    bump(stats_.tasks);
    task();
  }
  running_tasks_.clear();
  settle_scheduled();
}

// --- connections -------------------------------------------------------------------------------

Connection& EventLoop::create(std::uint64_t id, ProfilePtr profile) {
  return connections_
      .try_emplace(id, *this, id, std::move(profile))  // built in place: never moved
      .first->second;
}

void EventLoop::open_accepted(int fd, const SocketAddress& peer, ProfilePtr profile) {
  if (shutting_down_) {
    ::close(fd);
    load.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  create(next_id_.fetch_add(1, std::memory_order_relaxed), std::move(profile))
      .open_accepted(UniqueFd(fd), peer);
}

ConnRef EventLoop::connect(std::string_view address, ProfilePtr profile,
                           std::chrono::milliseconds timeout, std::string source_address) {
  const std::uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
  load.fetch_add(1, std::memory_order_relaxed);
  auto start = [this, id, address = std::string(address), profile = std::move(profile), timeout,
                source = std::move(source_address)]() mutable {
    Connection& conn = create(id, std::move(profile));
    conn.dial(address, timeout, source);
    if (shutting_down_) conn.begin_shutdown();
  };
  if (!run_opening(std::move(start))) {
    load.fetch_sub(1, std::memory_order_relaxed);
    return {};
  }
  return ConnRef(this, id);
}

ConnRef EventLoop::adopt(int fd, ProfilePtr profile, std::string input, std::string output,
                         std::optional<MovedState> moved) {
  const std::uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
  load.fetch_add(1, std::memory_order_relaxed);
  auto start = [this, id, fd, profile = std::move(profile), input = std::move(input),
                output = std::move(output), moved = std::move(moved)]() mutable {
    Connection& conn = create(id, std::move(profile));
    conn.open_adopted(fd, std::move(input), std::move(output), std::move(moved));
    if (shutting_down_) conn.begin_shutdown();
  };
  if (!run_opening(std::move(start))) {
    ::close(fd);
    load.fetch_sub(1, std::memory_order_relaxed);
    return {};
  }
  return ConnRef(this, id);
}

UdpRef EventLoop::open_udp(std::string_view address, UdpProfilePtr profile, bool connect,
                           std::string source_address) {
  const std::uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
  // The returned UdpRef bounds its sends from the start, before the socket exists.
  auto posted = std::make_shared<PostedSends>(profile->options);
  auto start = [this, id, address = std::string(address), profile = std::move(profile), connect,
                source = std::move(source_address), posted]() mutable {
    UdpSocket& socket = create_udp(id, std::move(profile), std::move(posted));
    socket.open(address, connect, source);
    if (shutting_down_) socket.begin_shutdown();
  };
  if (!run_opening(std::move(start))) return {};
  return UdpRef(this, id, std::move(posted));
}

UdpSocket& EventLoop::create_udp(std::uint64_t id, UdpProfilePtr profile,
                                 std::shared_ptr<PostedSends> posted) {
  auto socket = std::make_unique<UdpSocket>(*this, id, std::move(profile), std::move(posted));
  UdpSocket& ref = *socket;
  udp_sockets_.emplace(id, std::move(socket));
  return ref;
}

UdpSocket* EventLoop::find_udp(std::uint64_t id, bool opening) {
  auto it = udp_sockets_.find(id);
  if (it == udp_sockets_.end()) return nullptr;
  return it->second->is_open() || opening ? it->second.get() : nullptr;
}

ReceiveBatch& EventLoop::receive_batch() {
  if (!receive_batch_) receive_batch_ = std::make_unique<ReceiveBatch>();
  return *receive_batch_;
}

Connection* EventLoop::find(std::uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return nullptr;
  const ConnState state = it->second.state();
  return state == ConnState::closed || state == ConnState::detached ? nullptr : &it->second;
}

void EventLoop::retire(Connection& conn) {
  retired_.push_back(conn.id());
  load.fetch_sub(1, std::memory_order_relaxed);
  resume_listeners();
}

void EventLoop::retire(UdpSocket& socket) {
  auto it = udp_sockets_.find(socket.id());
  if (it == udp_sockets_.end()) return;
  retired_udp_.push_back(std::move(it->second));
  udp_sockets_.erase(it);
  resume_listeners();
}

void EventLoop::resume_listeners() {
  // A closed fd may be what a listener paused for (EMFILE): try accepting again now.
  for (auto& listener : listeners_) {
    if (listener->paused) resume_accepting(*this, *listener);
  }
  if (draining_) check_drained();
}

void EventLoop::destroy_retired() {
  if (retired_.empty() && retired_udp_.empty() && closing_listeners_.empty()) return;
  // A closed connection whose requests the kernel still holds (completion backends) waits for
  // their completions; the rest go now.
  std::size_t kept = 0;
  for (const std::uint64_t id : retired_) {
    auto it = connections_.find(id);
    if (it == connections_.end()) continue;
    if (it->second.busy()) {
      retired_[kept++] = id;
    } else {
      connections_.erase(it);
    }
  }
  retired_.resize(kept);
  retired_udp_.clear();
  std::erase_if(closing_listeners_,
                [](const auto& listener) { return !listener->accept_in_kernel; });
}

// --- live upgrade ------------------------------------------------------------------------------

void EventLoop::stop_accepting() {
  for (auto& listener : listeners_) {
    if (listener->resume_timer != 0) timers_.cancel(listener->resume_timer);
    listener->resume_timer = 0;
    end_accepting(*this, *listener);
    listener->paused = false;
    stopped_listeners_.push_back(std::move(listener));
  }
  listeners_.clear();
  for (UdpSocket* socket : server_udp_sockets()) socket->set_handed_over(true);
}

void EventLoop::accept_again() {
  // Every one is a listener of this loop again, accepting or paused (listener.hpp): each gets its
  // Unix socket file back from the upgrade (upgrade_predecessor.cpp), to remove as it closes.
  for (auto& listener : stopped_listeners_) {
    detail::accept_again(*this, *listener);
    listeners_.push_back(std::move(listener));
  }
  stopped_listeners_.clear();
  for (UdpSocket* socket : server_udp_sockets()) socket->set_handed_over(false);
}

std::vector<UdpSocket*> EventLoop::server_udp_sockets() {
  std::vector<UdpSocket*> sockets;
  for (auto& [id, socket] : udp_sockets_) {
    if (socket->endpoint() != UdpSocket::kNoEndpoint) sockets.push_back(socket.get());
  }
  return sockets;
}

std::vector<Connection*> EventLoop::open_connections() {
  std::vector<Connection*> open;
  for (auto& [id, conn] : connections_) {
    if (conn.state() == ConnState::open) open.push_back(&conn);
  }
  return open;
}

void EventLoop::begin_drain() {
  draining_ = true;
  check_drained();
}

void EventLoop::check_drained() {
  // Every connection left is retired (closed, or detached): erased at the end of the iteration.
  if (drained_reported_ || connections_.size() != retired_.size()) return;
  drained_reported_ = true;
  group_.loop_drained();
}

// --- timers ------------------------------------------------------------------------------------

TimerId EventLoop::run_after(Clock::duration delay, Loop::Task fn) {
  const auto when = Clock::now() + capped(delay);
  if (in_loop_thread()) return timers_.add(when, Clock::duration::zero(), std::move(fn));
  return add_timer_later(when, Clock::duration::zero(), std::move(fn));
}

TimerId EventLoop::run_every(Clock::duration interval, Loop::Task fn) {
  if (interval <= Clock::duration::zero()) {
    misuse("Loop::run_every", "the interval must be positive (a zero interval would spin the loop)",
           "use run_after() to run once, or an interval of at least a microsecond");
  }
  interval = std::min(interval, capped(Clock::duration::max()));
  const auto when = Clock::now() + interval;
  if (in_loop_thread()) return timers_.add(when, interval, std::move(fn));
  return add_timer_later(when, interval, std::move(fn));
}

TimerId EventLoop::add_timer_later(Clock::time_point when, Clock::duration interval,
                                   Loop::Task fn) {
  // The id is known now; the timer is added by a task. A cancel on the loop thread before that
  // task runs (the id passed along by the caller) stops the add.
  const TimerId id = timers_.reserve();
  const bool posted = post([this, id, when, interval, fn = std::move(fn)]() mutable {
    timers_.add_reserved(id, when, interval, std::move(fn));
  });
  if (posted) return id;
  timers_.unreserve(id);
  return 0;
}

bool EventLoop::cancel(TimerId id) {
  if (in_loop_thread()) return timers_.cancel(id);
  return post([this, id] { timers_.cancel(id); });
}

void EventLoop::tick() {
  // Each tick schedules the next with the delay the user returns; a negative delay stops.
  const std::chrono::milliseconds next = group_.hooks().tick(handle_);
  if (next.count() >= 0 && !shutting_down_) run_after(next, [this] { tick(); });
}

// --- shutdown ----------------------------------------------------------------------------------

template <typename Fn>
void EventLoop::for_each_socket(Fn fn) {
  // Over a copy: what `fn` does may close (and retire) sockets.
  std::vector<Connection*> conns;
  conns.reserve(connections_.size());
  for (auto& [id, conn] : connections_) conns.push_back(&conn);
  std::vector<UdpSocket*> udps;
  udps.reserve(udp_sockets_.size());
  for (auto& [id, socket] : udp_sockets_) udps.push_back(socket.get());
  for (Connection* conn : conns) fn(*conn);
  for (UdpSocket* socket : udps) fn(*socket);
}

void EventLoop::close_listeners() {
  for (auto& listener : listeners_) {
    if (listener->resume_timer != 0) timers_.cancel(listener->resume_timer);
    // Perhaps still the predecessor's (its handover has not ended): the group decides.
    if (listener->handed_over && group_.handed_unix_files_lent()) {
      group_.keep_lent_unix_file(std::move(listener->unix_path));
    }
    end_accepting(*this, *listener);
    close_listener(std::move(listener));  // now, or once its accept has ended
  }
  listeners_.clear();
  // A successor serves these sockets: closing our fds leaves them open there, and their files.
  for (auto& listener : stopped_listeners_) {
    listener->unix_path.release();
    close_listener(std::move(listener));
  }
  stopped_listeners_.clear();
}

void EventLoop::close_listener(std::unique_ptr<Listener> listener) {
  if (!listener->accept_in_kernel) return;  // destroyed here
  // Its accept, cancelled, ends at the next wait (which may also be what submits it): until it
  // reports that end the kernel may use the fd and the token, so both stay till then. The
  // socket file goes now.
  listener->closing = true;
  listener->unix_path = UnixPathOwner();
  closing_listeners_.push_back(std::move(listener));
}

void EventLoop::shutdown() {
  shutting_down_ = true;
  now_ = Clock::now();
  close_listeners();
  for_each_socket([](auto& socket) { socket.begin_shutdown(); });
  settle_scheduled();  // sockets with nothing pending close now

  // Keep sending what is pending, up to the grace period (not if the poller is broken).
  const auto deadline = now_ + capped(group_.options().shutdown_grace);
  destroy_retired();
  while ((!connections_.empty() || !udp_sockets_.empty()) && !poller_failed_ &&
         Clock::now() < deadline) {
    iterate(wait_ms(deadline - Clock::now()));
  }
  for_each_socket([](auto& socket) { socket.end_shutdown(); });
  settle_scheduled();  // a `closed` handler may have scheduled a socket closed just after
  destroy_retired();
  // Completion backends: requests the kernel still holds end with ECANCELED; wait for those
  // completions (briefly) so no request outlives the memory it points at, and no removed poll
  // keeps a closed connection's socket open (its peer would see no end until the ring closes).
  const auto cancel_deadline = Clock::now() + std::chrono::seconds(1);
  while ((!retired_.empty() || !closing_listeners_.empty() || poller_.polls_ending()) &&
         !poller_failed_ && Clock::now() < cancel_deadline) {
    iterate(10);
  }
}

}  // namespace evloop::detail
