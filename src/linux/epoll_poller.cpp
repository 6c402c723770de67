// Linux epoll (level-triggered). Contract: src/poller.hpp.
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "poller.hpp"

namespace evloop::detail {
namespace {

std::uint32_t to_epoll(unsigned interest) {
  std::uint32_t ev = 0;
  if (interest & kRead) ev |= EPOLLIN;
  if (interest & kWrite) ev |= EPOLLOUT;
  return ev;
}

std::error_code last_error() { return {errno, std::system_category()}; }

}  // namespace

EpollPoller::~EpollPoller() {
  if (epfd_ >= 0) ::close(epfd_);
}

std::error_code EpollPoller::open() {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  return epfd_ < 0 ? last_error() : std::error_code{};
}

std::error_code EpollPoller::add(int fd, unsigned interest, void* token) {
  epoll_event ev{};
  ev.events = to_epoll(interest);
  ev.data.ptr = token;
  return ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0 ? last_error() : std::error_code{};
}

std::error_code EpollPoller::modify(int fd, unsigned from, unsigned to, void* token) {
  if (from == to) return {};
  epoll_event ev{};
  ev.events = to_epoll(to);
  ev.data.ptr = token;
  return ::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) < 0 ? last_error() : std::error_code{};
}

void EpollPoller::remove(int fd, unsigned /*interest*/) {
  // Closing the fd would remove it too, but only once no other descriptor (a dup, a fork) refers
  // to the same file; removing explicitly keeps the set exact.
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
}

int EpollPoller::wait(PollEvent* out, int capacity, int timeout_ms) {
  epoll_event events[kBatch];
  int n = ::epoll_wait(epfd_, events, std::min(capacity, kBatch), timeout_ms);
  if (n < 0) return errno == EINTR ? 0 : -errno;
  for (int i = 0; i < n; ++i) {
    const std::uint32_t ev = events[i].events;
    out[i] = PollEvent{};
    out[i].token = events[i].data.ptr;
    out[i].readable = (ev & EPOLLIN) != 0;
    out[i].writable = (ev & EPOLLOUT) != 0;
    out[i].error = (ev & EPOLLERR) != 0;
    out[i].hangup = (ev & EPOLLHUP) != 0;
  }
  return n;
}

}  // namespace evloop::detail
