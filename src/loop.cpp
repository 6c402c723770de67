// The public Loop handle, forwarding to its EventLoop. Every method is thread-safe.
#include "event_loop.hpp"
#include "misuse.hpp"

namespace evloop {
namespace {

using detail::EventLoop;

EventLoop::Clock::duration to_clock(std::chrono::nanoseconds d) {
  return std::chrono::duration_cast<EventLoop::Clock::duration>(d);
}

}  // namespace

std::size_t Loop::index() const noexcept { return core_->index(); }
bool Loop::in_loop_thread() const noexcept { return core_->in_loop_thread(); }
bool Loop::post(Task task) const {
  detail::require_function(static_cast<bool>(task), "Loop::post");
  return core_->post(std::move(task));
}
void Loop::wake() const noexcept { core_->notify(); }

TimerId Loop::run_after(std::chrono::nanoseconds delay, Task fn) const {
  detail::require_function(static_cast<bool>(fn), "Loop::run_after");
  return core_->run_after(to_clock(delay), std::move(fn));
}

TimerId Loop::run_every(std::chrono::nanoseconds interval, Task fn) const {
  detail::require_function(static_cast<bool>(fn), "Loop::run_every");
  return core_->run_every(to_clock(interval), std::move(fn));
}

bool Loop::cancel(TimerId id) const { return core_->cancel(id); }

ConnRef Loop::connect(std::string_view address, Handlers handlers, ConnectOptions options) const {
  auto profile = detail::make_profile(std::move(handlers), options);
  return core_->connect(address, std::move(profile), options.connect_timeout,
                        std::move(options.source_address));
}

ConnRef Loop::adopt(int fd, Handlers handlers, AdoptOptions options) const {
  auto profile = detail::make_profile(std::move(handlers), options);
  return core_->adopt(fd, std::move(profile), std::move(options.input), std::move(options.output));
}

UdpRef Loop::bind_udp(std::string_view address, DatagramHandlers handlers,
                      UdpOptions options) const {
  auto profile = std::make_shared<const detail::UdpProfile>(
      detail::UdpProfile{std::move(handlers), std::move(options)});
  return core_->open_udp(address, std::move(profile), false, {});
}

UdpRef Loop::connect_udp(std::string_view address, DatagramHandlers handlers,
                         UdpConnectOptions options) const {
  auto profile = std::make_shared<const detail::UdpProfile>(
      detail::UdpProfile{std::move(handlers), static_cast<const UdpOptions&>(options)});
  return core_->open_udp(address, std::move(profile), true, std::move(options.source_address));
}

LoopStats Loop::stats() const noexcept { return core_->stats(); }

}  // namespace evloop
