// Internal. Host-name resolution off the loop threads, so getaddrinfo() (which may block for
// seconds on DNS) never runs on a loop thread: one pool per loop group, of at most kMaxThreads
// threads, each started when a lookup finds every thread busy (so one name whose DNS server
// hangs does not hold up the others). Numeric hosts never come here.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "evloop/address.hpp"

namespace evloop::detail {

class Resolver {
 public:
  /// The most lookups in progress at once (libuv's thread pool has as many).
  static constexpr std::size_t kMaxThreads = 4;

  struct Result {
    std::vector<SocketAddress> addresses;  // in getaddrinfo's order (RFC 6724 sorted)
    std::error_code error;                 // errc::resolve_failed, or a system error
  };
  using Done = std::function<void(Result)>;

  Resolver() = default;
  ~Resolver();  // stop() without patience
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  /// A queued lookup, for cancel(); 0 is none.
  using Ticket = std::uint64_t;

  /// Queues a lookup of `host` for a stream socket of `family` (AF_UNSPEC, AF_INET or AF_INET6)
  /// on `port`. `done` runs on a resolver thread (post the result to a loop from there), never
  /// once stop() has begun. 0 if the resolver is stopping or no thread could start.
  Ticket resolve(std::string host, std::uint16_t port, int family, Done done);
  /// Drops the lookup `ticket` if it is still queued: its `done` never runs. One in progress
  /// runs to its end (its caller ignores the answer). Whoever gives up on a lookup (a dial that
  /// timed out, a socket closed while opening) cancels it, so a DNS server that hangs does not
  /// make the queue grow with every retry.
  void cancel(Ticket ticket);
  /// Drops queued lookups and the answers of those in progress, waits up to `patience` for
  /// the threads to end, and joins them; one still in a lookup then (a DNS server that does not
  /// answer holds it for resolv.conf's timeout x attempts per server) is detached, to end by
  /// itself when its lookup does, touching nothing but state it shares. resolve() then returns 0.
  void stop(std::chrono::milliseconds patience);

 private:
  struct Job {
    Ticket ticket;
    std::string host;
    std::uint16_t port;
    int family;
    Done done;
  };
  // What the threads share with the resolver: a thread detached by stop() may outlive it.
  struct Shared {
    std::mutex mutex;
    std::condition_variable wake;    // a job is queued, or stop() began
    std::condition_variable ended;   // a thread left run()
    std::deque<Job> jobs;            // the rest guarded by mutex
    std::vector<bool> thread_ended;  // per thread, by index in threads_
    std::size_t idle = 0;            // threads waiting for a job
    bool stopping = false;
    Ticket last_ticket = 0;
  };
  static void run(std::shared_ptr<Shared> shared, std::size_t index);

  const std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  std::vector<std::thread> threads_;  // changed under shared_->mutex (by resolve() and stop())
};

}  // namespace evloop::detail
