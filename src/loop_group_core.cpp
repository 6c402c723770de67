#include "loop_group_core.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <future>
#include <new>
#include <optional>
#include <string>
#include <string_view>

#include "event_loop.hpp"
#include "misuse.hpp"
#include "timeouts.hpp"

namespace evloop {
namespace detail {
namespace {

Status bad_option(const std::string& why) {
  return {make_error_code(errc::bad_option), "options: " + why};
}

// FNV-1a over the peer's IP address bytes (not its port), so one client host sticks to one loop.
std::size_t hash_ip(const SocketAddress& peer) {
  const void* ip = nullptr;
  std::size_t size = 0;
  if (peer.family() == AF_INET) {
    ip = &static_cast<const sockaddr_in*>(peer.data())->sin_addr;
    size = sizeof(in_addr);
  } else if (peer.family() == AF_INET6) {
    ip = &static_cast<const sockaddr_in6*>(peer.data())->sin6_addr;
    size = sizeof(in6_addr);
  }
  std::uint64_t h = 1469598103934665603ULL;
  for (std::size_t i = 0; i < size; ++i) {
    h = (h ^ static_cast<const unsigned char*>(ip)[i]) * 1099511628211ULL;
  }
  return static_cast<std::size_t>(h);
}

// The backend to ask for: the option, or EVLOOP_BACKEND when the option is `automatic`.
Status resolve_backend(Backend option, Backend& out) {
  out = option;
  if (option == Backend::epoll || option == Backend::io_uring) return {};
  if (option != Backend::automatic) {
    return bad_option("backend (" + std::to_string(static_cast<int>(option)) +
                      ") is not a Backend: use Backend::automatic, epoll or io_uring");
  }
  const char* env = std::getenv("EVLOOP_BACKEND");
  const std::string_view value = env != nullptr ? env : "";
  if (value.empty() || value == "auto" || value == "kqueue") return {};  // the build's default
  if (value == "epoll") {
    out = Backend::epoll;
  } else if (value == "io_uring") {
    out = Backend::io_uring;
  } else {
    return bad_option("EVLOOP_BACKEND=" + std::string(value) +
                      " is not a backend: use auto, epoll or io_uring");
  }
  return {};
}

// A loop thread could not start: the ones that did (waiting at `gate`, if it was made) end
// without running their loop, and are joined.
void close_gate(std::optional<std::promise<bool>>& gate, std::vector<std::thread>& threads) {
  if (gate) gate->set_value(false);
  for (auto& t : threads) t.join();
  threads.clear();
}

}  // namespace

LoopGroupCore::LoopGroupCore(LoopOptions options, LoopHooks hooks)
    : options_(std::move(options)), hooks_(std::move(hooks)) {}

LoopGroupCore::~LoopGroupCore() {
  stop();
  wait();
  settle_lent_unix_files();
}

void LoopGroupCore::keep_lent_unix_file(UnixPathOwner file) {
  std::lock_guard lock(lent_files_mutex_);
  lent_files_.push_back(std::move(file));
}

void LoopGroupCore::settle_lent_unix_files() {
  std::vector<UnixPathOwner> files;
  {
    std::lock_guard lock(lent_files_mutex_);
    files.swap(lent_files_);
  }
  if (!handed_unix_files_lent()) return;  // this process's: removed as `files` goes
  for (UnixPathOwner& file : files) file.release();
}

Status LoopGroupCore::open() {
  // A stop() before start() also counts: starting anyway would run loops that stop at once
  // (start() ok, running() true, nothing served), so the group refuses like a stopped one.
  if (started_.load() || stopping_.load() || !loops_.empty()) {
    return {make_error_code(errc::already_started),
            started_.load()    ? "already started: loops run once; after stop(), create a new "
                                 "Server or LoopGroup to serve again"
            : stopping_.load() ? "stopped before start: a stopped Server or LoopGroup cannot "
                                 "start; create a new one"
                               : "already started"};
  }
  LoopOptions& o = options_;
  if (o.loops == LoopOptions::kAutoLoops)
    o.loops = std::max(1u, std::thread::hardware_concurrency());
  if (o.loops > 4096) {
    return bad_option("loops (" + std::to_string(o.loops) + ") must be at most 4096");
  }
  if (o.read_buffer_size == 0 || o.read_buffer_size > LoopOptions::kMaxReadBufferSize) {
    return bad_option("read_buffer_size (" + std::to_string(o.read_buffer_size) + ") must be 1.." +
                      std::to_string(LoopOptions::kMaxReadBufferSize) + " (1 GiB)");
  }
  if (o.shutdown_grace.count() < 0) return bad_option("shutdown_grace must not be negative");
  if (o.uring_buffers > LoopOptions::kMaxUringBuffers ||
      (o.uring_buffers & (o.uring_buffers - 1)) != 0) {
    return bad_option("uring_buffers (" + std::to_string(o.uring_buffers) +
                      ") must be 0 (the default) or a power of two up to " +
                      std::to_string(LoopOptions::kMaxUringBuffers));
  }
  Backend wanted;
  if (Status s = resolve_backend(o.backend, wanted); !s) return s;
  return open_loops(wanted);
}

Status LoopGroupCore::open_loops(Backend wanted) {
  const LoopOptions& o = options_;
  for (unsigned i = 0; i < o.loops; ++i) {
    try {
      loops_.push_back(std::make_unique<EventLoop>(*this, i));
    } catch (const std::bad_alloc&) {  // the read buffer, or the loop itself
      discard();
      return {std::make_error_code(std::errc::not_enough_memory),
              "loop " + std::to_string(i) + ": out of memory (read_buffer_size " +
                  std::to_string(o.read_buffer_size) + ")"};
    }
    std::string note;
    Status s = loops_.back()->open(wanted, note);
    if (!s) {
      discard();
      return {s.code(), "loop " + std::to_string(i) + ": " + s.message()};
    }
    if (i == 0) {
      backend_note_ = note;
    } else if (!note.empty() && backend_note_.empty()) {
      // The kernel refused io_uring to this loop (out of locked memory or address space...)
      // after giving it to the loops before: every loop is opened again on epoll, so that one
      // backend() describes them all. (Linux only: a BSD build gives every loop the same note.)
      discard();
      if (Status again = open_loops(Backend::epoll); !again) return again;
      backend_note_ = "loop " + std::to_string(i) + ": " + note + " on every loop";
      return {};
    }
  }
  return {};
}

void LoopGroupCore::discard() { loops_.clear(); }

Status LoopGroupCore::start_threads() {
  // Set before the threads exist, so a stop() racing with start() always notifies the loops.
  started_.store(true, std::memory_order_release);
  Status s = spawn_loop_threads();
  if (!s) started_.store(false);
  return s;
}

Status LoopGroupCore::spawn_loop_threads() {
  // Each thread waits at the gate until all exist: should one fail to start, none has run its
  // loop (no hook fired, no listener closed), and the caller still owns every loop. The gate is
  // always opened or closed before this returns: a thread left waiting on a promise destroyed
  // unset would get a broken_promise exception, and std::terminate with it.
  std::optional<std::promise<bool>> gate;
  try {
    gate.emplace();
    std::shared_future<bool> go = gate->get_future().share();
    threads_.reserve(loops_.size());  // so that only a thread's own start can fail below
    for (auto& loop : loops_) {
      threads_.emplace_back([l = loop.get(), go] {
        if (go.get()) l->run();
      });
    }
  } catch (const std::system_error& e) {  // pthread_create: EAGAIN (a task limit, no memory)
    close_gate(gate, threads_);
    return {e.code(), std::string("start loop thread: ") + e.what()};
  } catch (const std::bad_alloc&) {  // the gate's state, the list, or a thread's own state
    close_gate(gate, threads_);
    return {std::make_error_code(std::errc::not_enough_memory), "start loop thread: out of memory"};
  }
  gate->set_value(true);
  return {};
}

Status LoopGroupCore::start() {
  if (Status s = open(); !s) return s;
  Status s = start_threads();
  if (!s) discard();
  return s;
}

void LoopGroupCore::stop() noexcept {
  // Async-signal-safe: an atomic store and one write() per loop; `loops_` does not change after
  // start() returns.
  if (stopping_.exchange(true)) return;
  if (!started_.load(std::memory_order_acquire)) return;
  for (auto& loop : loops_) loop->notify();
}

bool LoopGroupCore::on_loop_thread() const noexcept {
  return std::any_of(loops_.begin(), loops_.end(),
                     [](const auto& loop) { return loop->in_loop_thread(); });
}

Loop& LoopGroupCore::handle(std::size_t i, const char* method) const {
  if (i >= loops_.size()) [[unlikely]] {
    const std::string problem = "no loop " + std::to_string(i) + ": the group has " +
                                std::to_string(loops_.size()) +
                                " loops (none before a successful start())";
    misuse(method, problem.c_str(),
           "call it after start() succeeded, with an index below loop_count()");
  }
  return loops_[i]->handle();
}

void LoopGroupCore::require_off_loop_threads(const char* method,
                                             const char* instead) const noexcept {
  if (on_loop_thread()) [[unlikely]] {
    misuse(method, "called on one of its own loop threads (it would join itself)", instead);
  }
}

Status LoopGroupCore::wait() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  // A lookup that hangs (its DNS server does not answer) does not hold the stop for longer than
  // the shutdown grace gave the loops: its thread is left to end by itself.
  resolver_.stop(capped(options_.shutdown_grace));
  if (started_.load()) joined_.store(true);
  std::lock_guard lock(failure_mutex_);
  return failure_;
}

void LoopGroupCore::loop_failed(std::size_t index, std::error_code error) {
  {
    std::lock_guard lock(failure_mutex_);
    if (failure_.ok()) {  // the first failure is the one to report
      failure_ = {make_error_code(errc::loop_failed),
                  "loop " + std::to_string(index) +
                      ": waiting for events failed: " + error.message() + " (the loops stopped)"};
    }
  }
  stop();
}

const char* LoopGroupCore::backend() const noexcept {
  return loops_.empty() ? "" : loops_.front()->backend();
}

EventLoop& LoopGroupCore::pick_loop(Balance balance, const SocketAddress& peer) {
  const std::size_t n = loops_.size();
  switch (balance) {
    case Balance::round_robin:
      return *loops_[next_loop_.fetch_add(1, std::memory_order_relaxed) % n];
    case Balance::least_connections: {
      std::size_t best = 0;
      for (std::size_t i = 1; i < n; ++i) {
        if (loops_[i]->load.load(std::memory_order_relaxed) <
            loops_[best]->load.load(std::memory_order_relaxed)) {
          best = i;
        }
      }
      return *loops_[best];
    }
    case Balance::source_hash:
      return *loops_[hash_ip(peer) % n];
  }
  return *loops_[0];
}

void LoopGroupCore::begin_drain(std::chrono::milliseconds timeout) {
  for (auto& loop : loops_) {
    loop->post([l = loop.get()] { l->begin_drain(); });
  }
  loops_.front()->run_after(timeout, [this] { stop(); });
}

void LoopGroupCore::loop_drained() {
  if (drained_loops_.fetch_add(1) + 1 == loops_.size()) stop();
}

}  // namespace detail

LoopGroup::LoopGroup(LoopOptions options, LoopHooks hooks)
    : core_(std::make_unique<detail::LoopGroupCore>(std::move(options), std::move(hooks))) {}

LoopGroup::~LoopGroup() {
  core_->require_off_loop_threads("LoopGroup::~LoopGroup",
                                  detail::LoopGroupCore::kDestroyOffLoopThreads);
}

Status LoopGroup::start() { return core_->start(); }

Status LoopGroup::run() {
  if (Status s = core_->start(); !s) return s;
  return core_->wait();
}

void LoopGroup::stop() noexcept { core_->stop(); }
Status LoopGroup::wait() {
  core_->require_off_loop_threads("LoopGroup::wait", detail::LoopGroupCore::kWaitOffLoopThreads);
  return core_->wait();
}
bool LoopGroup::running() const noexcept { return core_->running(); }
std::size_t LoopGroup::loop_count() const noexcept { return core_->loops().size(); }
Loop& LoopGroup::loop(std::size_t i) const { return core_->handle(i, "LoopGroup::loop"); }

const char* LoopGroup::backend() const noexcept { return core_->backend(); }
const std::string& LoopGroup::backend_note() const noexcept { return core_->backend_note(); }

std::vector<LoopStats> LoopGroup::stats() const {
  std::vector<LoopStats> out;
  for (const auto& loop : core_->loops()) out.push_back(loop->stats());
  return out;
}

}  // namespace evloop
