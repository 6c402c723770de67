#include "resolver.hpp"

#include <netdb.h>
#include <sys/socket.h>

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
  const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    result.error = rc == EAI_SYSTEM ? std::error_code(errno, std::system_category())
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

Resolver::~Resolver() { stop(); }

Resolver::Ticket Resolver::resolve(std::string host, std::uint16_t port, int family, Done done) {
  std::lock_guard lock(mutex_);
  if (stopping_) return 0;
  // Each idle thread takes one queued job: a job beyond them needs a thread of its own.
  if (jobs_.size() >= idle_ && threads_.size() < kMaxThreads) {
    try {
      threads_.emplace_back([this] { run(); });
    } catch (const std::system_error&) {
      if (threads_.empty()) return 0;  // the running threads will take it in turn
    }
  }
  const Ticket ticket = ++last_ticket_;
  jobs_.push_back({ticket, std::move(host), port, family, std::move(done)});
  wake_.notify_one();
  return ticket;
}

void Resolver::cancel(Ticket ticket) {
  if (ticket == 0) return;
  std::lock_guard lock(mutex_);
  std::erase_if(jobs_, [ticket](const Job& job) { return job.ticket == ticket; });
}

void Resolver::stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    jobs_.clear();
    threads = std::move(threads_);
    threads_.clear();
  }
  wake_.notify_all();
  for (std::thread& t : threads) t.join();
}

void Resolver::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    ++idle_;
    wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    --idle_;
    if (stopping_) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job.done(lookup(job.host, job.port, job.family));
    lock.lock();
  }
}

}  // namespace evloop::detail
