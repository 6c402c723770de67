// The public connection handles: Conn (loop thread) and ConnRef (any thread) forwarding to the
// loop's Connection, and DetachedConn. Loop-thread rules are checked in every build type.
#include <unistd.h>

#include "connection.hpp"
#include "event_loop.hpp"
#include "thread_check.hpp"

namespace evloop {
namespace {

constexpr const char* kUseRef =
    "from another thread use conn.ref() (ConnRef::post/write/close) or Loop::post";

void require(const detail::Connection& impl, const char* method) {
  detail::require_loop_thread(impl.loop().in_loop_thread(), method, kUseRef);
}

}  // namespace

void Conn::write(std::string_view bytes) { write(bytes.data(), bytes.size()); }

void Conn::write(const void* bytes, std::size_t size) {
  require(*impl_, "Conn::write");
  impl_->write(bytes, size);
}

void Conn::write(std::span<const std::byte> bytes) { write(bytes.data(), bytes.size()); }

void Conn::write(const SharedBuffer& buffer) {
  require(*impl_, "Conn::write");
  impl_->write_shared(buffer);
}

void Conn::send_file(int fd, std::uint64_t offset, std::uint64_t length) {
  require(*impl_, "Conn::send_file");
  impl_->send_file(fd, offset, length);
}

void Conn::close() {
  require(*impl_, "Conn::close");
  impl_->close();
}

void Conn::abort() {
  require(*impl_, "Conn::abort");
  impl_->abort();
}

void Conn::shutdown_write() {
  require(*impl_, "Conn::shutdown_write");
  impl_->shutdown_write();
}

void Conn::pause_reading() {
  require(*impl_, "Conn::pause_reading");
  impl_->pause_reading();
}

void Conn::resume_reading() {
  require(*impl_, "Conn::resume_reading");
  impl_->resume_reading();
}

bool Conn::reading_paused() const {
  require(*impl_, "Conn::reading_paused");
  return impl_->reading_paused();
}

bool Conn::detach(std::function<void(DetachedConn)> receiver) {
  require(*impl_, "Conn::detach");
  return impl_->detach(std::move(receiver));
}

ConnState Conn::state() const {
  require(*impl_, "Conn::state");
  return impl_->state();
}

bool Conn::closing() const {
  require(*impl_, "Conn::closing");
  return impl_->closing();
}

std::size_t Conn::output_pending() const {
  require(*impl_, "Conn::output_pending");
  return impl_->output_pending();
}

std::any& Conn::context() {
  require(*impl_, "Conn::context");
  return impl_->context();
}

const SocketAddress& Conn::remote_address() const noexcept { return impl_->peer(); }
SocketAddress Conn::local_address() const { return detail::local_address(impl_->fd()); }
Loop& Conn::loop() const noexcept { return impl_->loop().handle(); }
std::uint64_t Conn::id() const noexcept { return impl_->id(); }
ConnRef Conn::ref() const noexcept { return ConnRef(&impl_->loop(), impl_->id()); }

bool ConnRef::post(std::function<void(Conn&)> fn) const {
  if (loop_ == nullptr) return false;
  return loop_->post([loop = loop_, id = id_, fn = std::move(fn)] {
    if (detail::Connection* conn = loop->find(id)) fn(conn->conn());
  });
}

bool ConnRef::write(std::string bytes) const {
  return post([bytes = std::move(bytes)](Conn& conn) { conn.write(bytes); });
}

bool ConnRef::write(SharedBuffer buffer) const {
  return post([buffer = std::move(buffer)](Conn& conn) { conn.write(buffer); });
}

bool ConnRef::close() const {
  return post([](Conn& conn) { conn.close(); });
}

bool ConnRef::abort() const {
  return post([](Conn& conn) { conn.abort(); });
}

bool ConnRef::shutdown_write() const {
  return post([](Conn& conn) { conn.shutdown_write(); });
}

Conn* ConnRef::get() const {
  if (loop_ == nullptr) return nullptr;
  detail::require_loop_thread(loop_->in_loop_thread(), "ConnRef::get",
                              "from another thread use ConnRef::post");
  detail::Connection* conn = loop_->find(id_);
  return conn != nullptr ? &conn->conn() : nullptr;
}

Loop* ConnRef::loop() const noexcept { return loop_ != nullptr ? &loop_->handle() : nullptr; }

DetachedConn::DetachedConn(int fd, std::string in, std::string out, SocketAddress from) noexcept
    : input(std::move(in)), output(std::move(out)), peer(from), fd_(fd) {}

DetachedConn::~DetachedConn() {
  if (fd_ >= 0) ::close(fd_);
}

DetachedConn::DetachedConn(DetachedConn&& other) noexcept
    : input(std::move(other.input)),
      output(std::move(other.output)),
      peer(other.peer),
      fd_(std::exchange(other.fd_, -1)) {}

DetachedConn& DetachedConn::operator=(DetachedConn&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    input = std::move(other.input);
    output = std::move(other.output);
    peer = other.peer;
  }
  return *this;
}

int DetachedConn::release() noexcept { return std::exchange(fd_, -1); }

}  // namespace evloop
