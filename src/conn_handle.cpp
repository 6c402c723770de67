// The public handles (Conn, ConnRef, Loop) forwarding to the loop-internal objects. Loop-thread
// rules are checked with assert in builds without NDEBUG.
#include <cassert>

#include "connection.hpp"
#include "event_loop.hpp"
#include "server_core.hpp"

namespace evloop {

void Conn::write(std::string_view bytes) { write(bytes.data(), bytes.size()); }

void Conn::write(const void* bytes, std::size_t size) {
  assert(impl_->loop().in_loop_thread());
  impl_->write(bytes, size);
}

void Conn::write(std::span<const std::byte> bytes) { write(bytes.data(), bytes.size()); }

void Conn::close() {
  assert(impl_->loop().in_loop_thread());
  impl_->close();
}

void Conn::abort() {
  assert(impl_->loop().in_loop_thread());
  impl_->abort();
}

bool Conn::closing() const noexcept { return impl_->closing(); }
std::size_t Conn::output_pending() const noexcept { return impl_->output_pending(); }
bool Conn::reading_paused() const noexcept { return impl_->reading_paused(); }
std::any& Conn::context() noexcept { return impl_->context(); }
const SocketAddress& Conn::remote_address() const noexcept { return impl_->peer(); }
SocketAddress Conn::local_address() const { return detail::local_address(impl_->fd()); }
Loop& Conn::loop() const noexcept { return impl_->loop().handle(); }
std::uint64_t Conn::id() const noexcept { return impl_->id(); }
ConnRef Conn::ref() const noexcept { return ConnRef(&impl_->loop(), impl_->id()); }

bool ConnRef::post(std::function<void(Conn&)> fn) const {
  if (loop_ == nullptr) return false;
  return loop_->post([loop = loop_, id = id_, fn = std::move(fn)] {
    if (detail::Connection* conn = loop->find(id)) fn(conn->handle());
  });
}

bool ConnRef::write(std::string bytes) const {
  return post([bytes = std::move(bytes)](Conn& conn) { conn.write(bytes); });
}

bool ConnRef::close() const {
  return post([](Conn& conn) { conn.close(); });
}

std::size_t Loop::index() const noexcept { return core_->index(); }
bool Loop::in_loop_thread() const noexcept { return core_->in_loop_thread(); }
Server& Loop::server() const noexcept { return core_->server().owner(); }
bool Loop::post(Task task) const { return core_->post(std::move(task)); }
void Loop::wake() const noexcept { core_->notify(); }

TimerId Loop::run_after(std::chrono::nanoseconds delay, Task fn) const {
  assert(core_->in_loop_thread());
  return core_->run_after(std::chrono::duration_cast<detail::EventLoop::Clock::duration>(delay),
                          std::move(fn));
}

TimerId Loop::run_every(std::chrono::nanoseconds interval, Task fn) const {
  assert(core_->in_loop_thread());
  return core_->run_every(std::chrono::duration_cast<detail::EventLoop::Clock::duration>(interval),
                          std::move(fn));
}

bool Loop::cancel(TimerId id) const {
  assert(core_->in_loop_thread());
  return core_->cancel(id);
}

LoopStats Loop::stats() const noexcept { return core_->stats(); }

}  // namespace evloop
