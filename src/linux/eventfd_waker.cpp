// Linux waker: an eventfd in the loop's epoll set. Contract: src/poller.hpp.
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "poller.hpp"

namespace evloop::detail {

Waker::~Waker() {
  if (fd_ >= 0) ::close(fd_);
}

std::error_code Waker::open(Poller& poller, void* token) {
  fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd_ < 0) return {errno, std::system_category()};
  return poller.add(fd_, kRead, token);
}

void Waker::notify() noexcept {
  const std::uint64_t one = 1;
  // EAGAIN means the counter is at its maximum: a wake is pending anyway. write() is
  // async-signal-safe, so stop() may call this from a signal handler.
  [[maybe_unused]] ssize_t n = ::write(fd_, &one, sizeof one);
}

void Waker::drain() noexcept {
  // One read returns the whole counter and resets it to zero (no EFD_SEMAPHORE), so the
  // level-triggered epoll stops reporting it. Without this the loop would spin (the evio bug).
  std::uint64_t count = 0;
  [[maybe_unused]] ssize_t n = ::read(fd_, &count, sizeof count);
}

}  // namespace evloop::detail
