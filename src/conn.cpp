// The public connection handles: Conn (loop thread) and ConnRef (any thread) forwarding to the
// loop's Connection, and DetachedConn. Loop-thread rules are checked in every build type.
#include <unistd.h>

#include <memory>
#include <utility>

#include "connection.hpp"
#include "event_loop.hpp"
#include "misuse.hpp"

namespace evloop {
namespace {

constexpr const char* kUseRef =
    "from another thread use conn.ref() (ConnRef::post/write/close) or Loop::post";

void require(const detail::Connection& impl, const char* method, const char* instead = kUseRef) {
  detail::require_loop_thread(impl.loop().in_loop_thread(), method, instead);
}

// A task posted with the fd captured would leak it if the connection closed first.
constexpr const char* kUseRefSendFile =
    "from another thread use conn.ref().send_file(TakeFd{fd}, offset, length), which closes the "
    "fd whatever happens";

// An fd on its way to a loop in a posted task: closed when the last copy of the task is
// destroyed unless the task took it (std::function needs a copyable task, hence shared). A
// task dropped unrun (the connection closed meanwhile, the loop refused it) closes the fd.
std::shared_ptr<int> own_posted_fd(int fd) {
  return std::shared_ptr<int>(new int(fd), [](int* owned) {
    if (*owned >= 0) ::close(*owned);
    delete owned;
  });
}

}  // namespace

detail::Connection& Conn::impl() noexcept { return static_cast<detail::Connection&>(*this); }
const detail::Connection& Conn::impl() const noexcept {
  return static_cast<const detail::Connection&>(*this);
}

void Conn::write(std::string_view bytes) { write(bytes.data(), bytes.size()); }

void Conn::write(const void* bytes, std::size_t size) {
  require(impl(), "Conn::write");
  impl().write(bytes, size);
}

void Conn::write(std::span<const std::byte> bytes) { write(bytes.data(), bytes.size()); }

void Conn::write(const SharedBuffer& buffer) {
  require(impl(), "Conn::write");
  impl().write_shared(buffer);
}

void Conn::send_file(int fd, std::uint64_t offset, std::uint64_t length) {
  require(impl(), "Conn::send_file", kUseRefSendFile);
  impl().send_file_copy(fd, offset, length);
}

void Conn::send_file(TakeFd file, std::uint64_t offset, std::uint64_t length) {
  require(impl(), "Conn::send_file", kUseRefSendFile);
  impl().send_file(file.fd, offset, length);
}

void Conn::close() {
  require(impl(), "Conn::close");
  impl().close();
}

void Conn::abort() {
  require(impl(), "Conn::abort");
  impl().abort();
}

void Conn::shutdown_write() {
  require(impl(), "Conn::shutdown_write");
  impl().shutdown_write();
}

void Conn::pause_reading() {
  require(impl(), "Conn::pause_reading");
  impl().pause_reading();
}

void Conn::resume_reading() {
  require(impl(), "Conn::resume_reading");
  impl().resume_reading();
}

bool Conn::reading_paused() const {
  require(impl(), "Conn::reading_paused");
  return impl().reading_paused();
}

bool Conn::detach(std::function<void(DetachedConn)> receiver) {
  require(impl(), "Conn::detach");
  detail::require_function(static_cast<bool>(receiver), "Conn::detach");
  return impl().detach(std::move(receiver));
}

ConnState Conn::state() const {
  require(impl(), "Conn::state");
  return impl().state();
}

bool Conn::closing() const {
  require(impl(), "Conn::closing");
  return impl().closing();
}

std::size_t Conn::output_pending() const {
  require(impl(), "Conn::output_pending");
  return impl().output_pending();
}

std::any& Conn::context() {
  require(impl(), "Conn::context");
  return impl().context();
}

SocketAddress Conn::remote_address() const {
  require(impl(), "Conn::remote_address");  // a dial moves on to the next address meanwhile
  return impl().peer();
}
SocketAddress Conn::local_address() const {
  require(impl(), "Conn::local_address");  // the fd may be closed and reused meanwhile
  return detail::local_address(impl().fd());
}
Loop& Conn::loop() const noexcept { return impl().loop().handle(); }
std::uint64_t Conn::id() const noexcept { return impl().id(); }
ConnRef Conn::ref() const noexcept { return ConnRef(&impl().loop(), impl().id()); }

bool ConnRef::post(std::function<void(Conn&)> fn) const {
  detail::require_function(static_cast<bool>(fn), "ConnRef::post");
  if (loop_ == nullptr) return false;
  return loop_->post([loop = loop_, id = id_, fn = std::move(fn)] {
    if (detail::Connection* conn = loop->find(id)) fn(*conn);
  });
}

bool ConnRef::write(std::string bytes) const {
  return post([bytes = std::move(bytes)](Conn& conn) { conn.write(bytes); });
}

bool ConnRef::write(SharedBuffer buffer) const {
  return post([buffer = std::move(buffer)](Conn& conn) { conn.write(buffer); });
}

bool ConnRef::send_file(TakeFd file, std::uint64_t offset, std::uint64_t length) const {
  std::shared_ptr<int> fd = own_posted_fd(file.fd);
  if (loop_ == nullptr) return false;
  // Not through post(): the task closes the fd itself when the connection is gone, rather than
  // leave it to the task's destruction, which comes after the loop's whole batch of tasks.
  return loop_->post([loop = loop_, id = id_, fd = std::move(fd), offset, length] {
    const int taken = std::exchange(*fd, -1);
    if (detail::Connection* conn = loop->find(id)) {
      conn->Conn::send_file(TakeFd{taken}, offset, length);
    } else {
      ::close(taken);
    }
  });
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
  return conn;
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
