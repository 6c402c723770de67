// The public UDP handles: Udp (loop thread) and UdpRef (any thread) forwarding to the loop's
// UdpSocket. Loop-thread rules are checked in every build type.
#include "event_loop.hpp"
#include "misuse.hpp"
#include "posted_sends.hpp"
#include "udp_socket.hpp"

namespace evloop {
namespace {

constexpr const char* kUseRef =
    "from another thread use udp.ref() (UdpRef::post/send_to) or Loop::post";

void require(const detail::UdpSocket& impl, const char* method) {
  detail::require_loop_thread(impl.loop().in_loop_thread(), method, kUseRef);
}

// Runs `fn` on the socket `id` of `loop` once it is open (see UdpSocket::run_when_open).
bool post_to_socket(detail::EventLoop* loop, std::uint64_t id, std::function<void(Udp&)> fn) {
  if (loop == nullptr) return false;
  return loop->post([loop, id, fn = std::move(fn)]() mutable {
    if (detail::UdpSocket* socket = loop->find_udp(id, true)) {
      socket->run_when_open(std::move(fn), std::nullopt);
    }
  });
}

// A datagram's send (`size`: its payload's size), reserved among the socket's sends on their
// way first (`posted`: see PostedSends). A send that cannot run is counted in datagram_drops: a
// UdpRef's sender never sees a `false`.
bool post_send(detail::EventLoop* loop, std::uint64_t id,
               const std::shared_ptr<detail::PostedSends>& posted, std::size_t size,
               std::function<void(Udp&)> fn) {
  if (loop == nullptr) return false;
  if (!posted->reserve(size)) {
    loop->counters().posted_datagram_drops.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  const bool queued = loop->post([loop, id, posted, fn = std::move(fn), size]() mutable {
    if (detail::UdpSocket* socket = loop->find_udp(id, true)) {
      socket->run_when_open(std::move(fn), size);  // releases it, now or once it runs
    } else {
      posted->release(size);
      detail::bump(loop->counters().datagram_drops);
    }
  });
  if (!queued) posted->release(size);
  return queued;
}

}  // namespace

bool Udp::send_to(const SocketAddress& peer, std::string_view bytes) {
  return send_to(peer, bytes.data(), bytes.size());
}

bool Udp::send_to(const SocketAddress& peer, const void* bytes, std::size_t size) {
  require(*impl_, "Udp::send_to");
  return impl_->send_to(&peer, bytes, size);
}

bool Udp::send(std::string_view bytes) { return send(bytes.data(), bytes.size()); }

bool Udp::send(const void* bytes, std::size_t size) {
  require(*impl_, "Udp::send");
  return impl_->send_to(nullptr, bytes, size);
}

void Udp::close() {
  require(*impl_, "Udp::close");
  impl_->close();
}

std::size_t Udp::queued_datagrams() const {
  require(*impl_, "Udp::queued_datagrams");
  return impl_->queued_datagrams();
}

std::size_t Udp::queued_bytes() const {
  require(*impl_, "Udp::queued_bytes");
  return impl_->queued_bytes();
}

bool Udp::gso() const {
  require(*impl_, "Udp::gso");
  return impl_->gso();
}

bool Udp::gro() const {
  require(*impl_, "Udp::gro");
  return impl_->gro();
}

std::any& Udp::context() {
  require(*impl_, "Udp::context");
  return impl_->context();
}

bool Udp::connected() const noexcept { return impl_->connected(); }
const SocketAddress& Udp::local_address() const noexcept { return impl_->local(); }
const SocketAddress& Udp::remote_address() const noexcept { return impl_->peer(); }
int Udp::native_handle() const noexcept { return impl_->fd(); }
Loop& Udp::loop() const noexcept { return impl_->loop().handle(); }
std::uint64_t Udp::id() const noexcept { return impl_->id(); }
UdpRef Udp::ref() const noexcept { return UdpRef(&impl_->loop(), impl_->id(), impl_->posted()); }

bool UdpRef::post(std::function<void(Udp&)> fn) const {
  detail::require_function(static_cast<bool>(fn), "UdpRef::post");
  return post_to_socket(loop_, id_, std::move(fn));
}

bool UdpRef::send_to(const SocketAddress& peer, std::string bytes) const {
  const std::size_t size = bytes.size();
  return post_send(loop_, id_, posted_, size,
                   [peer, bytes = std::move(bytes)](Udp& udp) { udp.send_to(peer, bytes); });
}

bool UdpRef::send(std::string bytes) const {
  const std::size_t size = bytes.size();
  return post_send(loop_, id_, posted_, size,
                   [bytes = std::move(bytes)](Udp& udp) { udp.send(bytes); });
}

bool UdpRef::close() const {
  if (loop_ == nullptr) return false;
  // Not through post(): a socket still opening gives up (open_failed, errc::cancelled).
  return loop_->post([loop = loop_, id = id_] {
    if (detail::UdpSocket* socket = loop->find_udp(id, true)) socket->close();
  });
}

Udp* UdpRef::get() const {
  if (loop_ == nullptr) return nullptr;
  detail::require_loop_thread(loop_->in_loop_thread(), "UdpRef::get",
                              "from another thread use UdpRef::post");
  detail::UdpSocket* socket = loop_->find_udp(id_);
  return socket != nullptr ? &socket->udp() : nullptr;
}

Loop* UdpRef::loop() const noexcept { return loop_ != nullptr ? &loop_->handle() : nullptr; }

}  // namespace evloop
