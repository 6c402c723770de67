#include "resolver.hpp"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace evloop::detail {
namespace {

Resolver::Result lookup(const std::string& host, std::uint16_t port, int family) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  Resolver::Result result;
  errno = 0;
  const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    // glibc reports a lookup it could not make for want of an fd (to read /etc/hosts, to open a
    // socket to the DNS server) as EAI_NONAME, with errno EMFILE or ENFILE: the name is not known
    // to be missing, the process (or system) is out of fds, and the dial says so.
    const int error = errno;
    const bool out_of_fds = error == EMFILE || error == ENFILE;
    // (An EAI_SYSTEM that left errno 0 would read as success: resolve_failed then.)
    const bool system_error = (rc == EAI_SYSTEM && error != 0) || out_of_fds;
    result.error = system_error ? std::error_code(error, std::system_category())
                                : make_error_code(errc::resolve_failed);
    return result;
  }
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    result.addresses.emplace_back(ai->ai_addr, ai->ai_addrlen);
  }
  ::freeaddrinfo(list);
  if (result.addresses.empty()) result.error = make_error_code(errc::resolve_failed);
  return result;
}

}  // namespace

Resolver::~Resolver() { stop(std::chrono::milliseconds(0)); }

Resolver::Ticket Resolver::resolve(std::string host, std::uint16_t port, int family, Done done) {
  Shared& s = *shared_;
  std::lock_guard lock(s.mutex);
  if (s.stopping) return 0;
  // Each idle thread takes one queued job: a job beyond them needs a thread of its own.
  if (s.jobs.size() >= s.idle && threads_.size() < kMaxThreads) {
    s.thread_ended.push_back(false);
    try {
      threads_.emplace_back(run, shared_, threads_.size());
    } catch (const std::system_error&) {
      s.thread_ended.pop_back();
      if (threads_.empty()) return 0;  // the running threads will take it in turn
    }
  }
  const Ticket ticket = ++s.last_ticket;
  s.jobs.push_back({ticket, std::move(host), port, family, std::move(done)});
  s.wake.notify_one();
  return ticket;
}

void Resolver::cancel(Ticket ticket) {
  if (ticket == 0) return;
  Shared& s = *shared_;
  std::lock_guard lock(s.mutex);
  std::erase_if(s.jobs, [ticket](const Job& job) { return job.ticket == ticket; });
}

void Resolver::stop(std::chrono::milliseconds patience) {
  Shared& s = *shared_;
  std::vector<std::thread> threads;
  std::vector<bool> ended;
  {
    std::unique_lock lock(s.mutex);
    s.stopping = true;
    s.jobs.clear();
    s.wake.notify_all();
    s.ended.wait_for(lock, patience, [&] {
      return std::find(s.thread_ended.begin(), s.thread_ended.end(), false) == s.thread_ended.end();
    });
    threads = std::move(threads_);
    threads_.clear();
    ended = std::exchange(s.thread_ended, {});
  }
  for (std::size_t i = 0; i < threads.size(); ++i) {
    if (ended[i]) {
      threads[i].join();
    } else {
      threads[i].detach();  // in a lookup that hangs: its answer is dropped (run())
    }
  }
}

void Resolver::run(std::shared_ptr<Shared> shared, std::size_t index) {
  Shared& s = *shared;
  std::unique_lock lock(s.mutex);
  for (;;) {
    ++s.idle;
    s.wake.wait(lock, [&s] { return s.stopping || !s.jobs.empty(); });
    --s.idle;
    if (s.stopping) break;
    Job job = std::move(s.jobs.front());
    s.jobs.pop_front();
    lock.unlock();
    Result result = lookup(job.host, job.port, job.family);
    lock.lock();
    // Under the lock: once stop() has begun, the loops the answer would go to may be gone.
    if (s.stopping) break;
    job.done(std::move(result));
  }
  // A detached thread's index is no longer in thread_ended (stop() took it).
  if (index < s.thread_ended.size()) s.thread_ended[index] = true;
  s.ended.notify_all();
}

}  // namespace evloop::detail
