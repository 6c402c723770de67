#include <algorithm>
#include <cstring>
#include <system_error>

#include "event_loop.hpp"
#include "listener.hpp"
#include "platform.hpp"
#include "server_core.hpp"

namespace evloop {
namespace detail {
namespace {

Status bad_option(const std::string& why) { return {make_error_code(errc::bad_option), why}; }

// FNV-1a over the peer's IP address (not its port), so one client host sticks to one loop.
std::size_t hash_ip(const SocketAddress& peer) {
  std::string ip = peer.to_string();
  if (const std::size_t colon = ip.rfind(':'); colon != std::string::npos && peer.port() != 0) {
    ip.resize(colon);
  }
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : ip) h = (h ^ c) * 1099511628211ULL;
  return static_cast<std::size_t>(h);
}

}  // namespace

ServerCore::ServerCore(Server& owner, Options options, Callbacks callbacks)
    : owner_(owner), options_(std::move(options)), callbacks_(std::move(callbacks)) {}

ServerCore::~ServerCore() {
  stop();
  wait();
}

Status ServerCore::validate_options() {
  Options& o = options_;
  if (o.listen.empty()) return {make_error_code(errc::no_address), "no listen address given"};
  if (o.loops == Options::kAutoLoops) o.loops = std::max(1u, std::thread::hardware_concurrency());
  if (o.loops > 4096) return bad_option("loops must be at most 4096");
  if (o.read_buffer_size == 0) return bad_option("read_buffer_size must be positive");
  if (o.output_low_water > o.output_high_water) {
    return bad_option("output_low_water must not exceed output_high_water");
  }
  if (o.output_high_water > o.output_limit) {
    return bad_option("output_high_water must not exceed output_limit");
  }
  if (o.close_timeout.count() < 0 || o.shutdown_grace.count() < 0 || o.idle_timeout.count() < 0 ||
      o.keepalive.count() < 0) {
    return bad_option("timeouts must not be negative");
  }
  return {};
}

Status ServerCore::open_listeners(const std::vector<ListenAddress>& addresses) {
  for (const ListenAddress& addr : addresses) {
    const bool is_tcp = addr.transport != Transport::unix_socket;
    // Reuse-port only where the kernel balances it; otherwise one loop accepts and hands off.
    const bool per_loop = is_tcp && platform::kReuseportBalances && loops_.size() > 1 &&
                          addr.reuseport.value_or(options_.reuseport);
    std::uint16_t port = addr.port;
    for (std::size_t i = 0; i < (per_loop ? loops_.size() : 1); ++i) {
      OpenedListener opened;
      if (Status s = open_listener(addr, per_loop, port, opened); !s) return s;
      if (i == 0) {
        addresses_.push_back(opened.bound);
        port = opened.bound.port();  // the other loops bind the port the kernel chose
      }
      auto listener =
          std::make_unique<Listener>(std::move(opened), !per_loop && loops_.size() > 1, is_tcp);
      if (Status s = loops_[i]->add_listener(std::move(listener)); !s) return s;
    }
  }
  return {};
}

Status ServerCore::start() {
  if (started_.load() || !loops_.empty()) {
    return {make_error_code(errc::already_started), "server already started"};
  }
  if (Status s = validate_options(); !s) return s;
  std::vector<ListenAddress> parsed(options_.listen.size());
  for (std::size_t i = 0; i < parsed.size(); ++i) {
    if (Status s = parse_listen_address(options_.listen[i], parsed[i]); !s) return s;
  }
  // Everything that can fail happens before any thread starts; on failure the loops (and with
  // them every fd opened so far) are destroyed.
  auto fail = [this](Status s) {
    loops_.clear();
    addresses_.clear();
    return s;
  };
  for (unsigned i = 0; i < options_.loops; ++i) {
    loops_.push_back(std::make_unique<EventLoop>(*this, i));
    if (Status s = loops_.back()->open(); !s) return fail(s);
  }
  if (Status s = open_listeners(parsed); !s) return fail(s);

  if (callbacks_.serving) callbacks_.serving(ServingInfo{addresses_, loops_.size()});
  // Set before the threads exist, so a stop() racing with start() always notifies the loops.
  started_.store(true, std::memory_order_release);
  try {
    for (auto& loop : loops_) threads_.emplace_back([l = loop.get()] { l->run(); });
  } catch (const std::system_error& e) {
    stopping_.store(true);
    for (auto& loop : loops_) loop->notify();
    for (auto& t : threads_) t.join();
    threads_.clear();
    started_.store(false);
    return fail({e.code(), std::string("start loop thread: ") + e.what()});
  }
  return {};
}

void ServerCore::stop() noexcept {
  // Async-signal-safe: an atomic store and one write() per loop; `loops_` does not change after
  // start() returns.
  if (stopping_.exchange(true)) return;
  if (!started_.load(std::memory_order_acquire)) return;
  for (auto& loop : loops_) loop->notify();
}

void ServerCore::wait() {
  for (auto& loop : loops_) {
    if (loop->in_loop_thread()) return;  // joining ourselves would deadlock
  }
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  if (started_.load()) joined_.store(true);
}

EventLoop& ServerCore::pick_loop(const SocketAddress& peer) {
  const std::size_t n = loops_.size();
  switch (options_.balance) {
    case Balance::round_robin:
      return *loops_[next_loop_.fetch_add(1, std::memory_order_relaxed) % n];
    case Balance::least_connections: {
      std::size_t best = 0;
      for (std::size_t i = 1; i < n; ++i) {
        if (loops_[i]->assigned.load(std::memory_order_relaxed) <
            loops_[best]->assigned.load(std::memory_order_relaxed)) {
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

}  // namespace detail

Server::Server(Options options, Callbacks callbacks)
    : core_(std::make_unique<detail::ServerCore>(*this, std::move(options), std::move(callbacks))) {
}

Server::~Server() = default;

Status Server::start() { return core_->start(); }

Status Server::run() {
  Status s = core_->start();
  if (s) core_->wait();
  return s;
}

void Server::stop() noexcept { core_->stop(); }
void Server::wait() { core_->wait(); }
bool Server::running() const noexcept { return core_->running(); }
const std::vector<SocketAddress>& Server::addresses() const noexcept { return core_->addresses(); }
std::size_t Server::loop_count() const noexcept { return core_->loops().size(); }
Loop& Server::loop(std::size_t i) const { return core_->loops().at(i)->handle(); }

std::vector<LoopStats> Server::stats() const {
  std::vector<LoopStats> out;
  for (const auto& loop : core_->loops()) out.push_back(loop->stats());
  return out;
}

}  // namespace evloop
