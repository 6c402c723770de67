// Internal. Host-name resolution off the loop threads, so getaddrinfo() (which may block for
// seconds on DNS) never runs on a loop thread: one pool per loop group, of at most kMaxThreads
// threads, each started when a lookup finds every thread busy (so one name whose DNS server
// hangs does not hold up the others). Numeric hosts never come here.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
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
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  /// A queued lookup, for cancel(); 0 is none.
  using Ticket = std::uint64_t;

  /// Queues a lookup of `host` for a stream socket of `family` (AF_UNSPEC, AF_INET or AF_INET6)
  /// on `port`. `done` runs on a resolver thread (post the result to a loop from there).
  /// 0 if the resolver is stopping or no thread could start.
  Ticket resolve(std::string host, std::uint16_t port, int family, Done done);
  /// Drops the lookup `ticket` if it is still queued: its `done` never runs. One in progress
  /// runs to its end (its caller ignores the answer). Whoever gives up on a lookup (a dial that
  /// timed out, a socket closed while opening) cancels it, so a DNS server that hangs does not
  /// make the queue grow with every retry.
  void cancel(Ticket ticket);
  /// Drops queued lookups, waits for those in progress (a DNS query that hangs delays this
  /// until the resolver's own timeout), and joins the threads; resolve() then returns 0.
  void stop();

 private:
  struct Job {
    Ticket ticket;
    std::string host;
    std::uint16_t port;
    int family;
    Done done;
  };
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;              // guarded by mutex_
  std::size_t idle_ = 0;              // threads waiting for a job; guarded by mutex_
  bool stopping_ = false;             // guarded by mutex_
  Ticket last_ticket_ = 0;            // guarded by mutex_
  std::vector<std::thread> threads_;  // started under mutex_ by resolve()
};

}  // namespace evloop::detail
