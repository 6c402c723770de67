// The Linux poller: epoll, or io_uring when asked for and available. Contract: src/poller.hpp.
#include <cstdlib>
#include <cstring>

#include "poller.hpp"
#include "uring_poller.hpp"

namespace evloop::detail {

Poller::Poller() = default;
Poller::~Poller() = default;

std::error_code Poller::open() { return epoll_.open(); }

std::error_code Poller::open(const PollerSetup& setup, std::string& note) {
  if (setup.wanted == Backend::io_uring) {
    auto ring = std::make_unique<UringPoller>();
    const std::error_code ec = ring->open(setup.uring_buffers, setup.submit_refusals);
    if (!ec) {
      uring_ = std::move(ring);
      return {};
    }
    note = "io_uring unavailable (" + ec.message() + "): using epoll";
  }
  return epoll_.open();
}

std::error_code Poller::add(int fd, unsigned interest, void* token) {
  return uring_ ? uring_->add(fd, interest, token) : epoll_.add(fd, interest, token);
}

std::error_code Poller::modify(int fd, unsigned from, unsigned to, void* token) {
  return uring_ ? uring_->modify(fd, from, to, token) : epoll_.modify(fd, from, to, token);
}

void Poller::remove(int fd, unsigned interest) {
  if (uring_) return uring_->remove(fd, interest);
  epoll_.remove(fd, interest);
}

int Poller::wait(PollEvent* out, int capacity, int timeout_ms) {
  return uring_ ? uring_->wait(out, capacity, timeout_ms) : epoll_.wait(out, capacity, timeout_ms);
}

std::error_code Poller::watch_write_space(int fd, void* token) {
  return uring_->watch_write_space(fd, token);
}

bool Poller::polls_ending() const noexcept { return uring_ && uring_->polls_ending(); }

void Poller::receive(int fd, void* token, bool large) { uring_->receive(fd, token, large); }
void Poller::send(int fd, const msghdr* msg, void* token) { uring_->send(fd, msg, token); }
void Poller::accept(int fd, void* token) { uring_->accept(fd, token); }
void Poller::cancel(void* token, PollEvent::Op op) {
  switch (op) {
    case PollEvent::Op::sent:
      return uring_->cancel(token, UringPoller::kSend);
    case PollEvent::Op::accepted:
      return uring_->cancel(token, UringPoller::kAccept);
    default:
      return uring_->cancel(token, UringPoller::kReceive);
  }
}

}  // namespace evloop::detail
