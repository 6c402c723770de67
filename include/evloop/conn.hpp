// Public. Connection handles: Conn on the loop thread, ConnRef from any thread.
#pragma once

#include <any>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "evloop/address.hpp"

namespace evloop {

namespace detail {
class Connection;
class EventLoop;
}  // namespace detail
class Loop;
class ConnRef;

/// A connection, as seen from its loop's thread. Callbacks receive a `Conn&` that stays valid (same
/// address) from `opened` until the `closed` callback returns; keep it no longer. Every method must
/// be called on the connection's loop thread. To reach a connection from another thread, use ref().
class Conn {
 public:
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  /// Appends bytes to the output. They are sent after the current callback returns, as far as the
  /// kernel takes them; the rest waits, in order. Never drops or reorders. Past
  /// Options::output_limit the connection is closed with errc::output_limit. Ignored after close().
  void write(std::string_view bytes);
  /// Same as write(string_view).
  void write(const void* bytes, std::size_t size);
  /// Same as write(string_view).
  void write(std::span<const std::byte> bytes);

  /// Closes after all pending output is sent (bounded by Options::close_timeout). Reading stops
  /// now; `closed` fires once, later, with no error (or with the write error, if sending fails).
  void close();
  /// Closes now and discards pending output; `closed` fires with no error.
  void abort();
  /// True once close() or abort() was called, or the peer's end was seen with no `eof` callback.
  bool closing() const noexcept;

  /// Bytes written but not yet taken by the kernel.
  std::size_t output_pending() const noexcept;
  /// True while reading is paused because output is above Options::output_high_water.
  bool reading_paused() const noexcept;

  /// A slot for the user's per-connection state; empty at `opened`, destroyed after `closed`.
  std::any& context() noexcept;

  /// The peer's address.
  const SocketAddress& remote_address() const noexcept;
  /// The local address of this connection (asks the kernel).
  SocketAddress local_address() const;

  /// The loop this connection lives on.
  Loop& loop() const noexcept;
  /// A process-unique id (never reused while the server runs).
  std::uint64_t id() const noexcept;
  /// A thread-safe reference to this connection.
  ConnRef ref() const noexcept;

 private:
  friend class detail::Connection;
  explicit Conn(detail::Connection& impl) noexcept : impl_(&impl) {}
  detail::Connection* impl_;
};

/// A thread-safe reference to a connection: its loop and id. Copyable; valid while its Server
/// lives. Operations on a connection that has closed meanwhile (or whose loop stopped) are ignored,
/// since an id is never reused (unlike an fd).
class ConnRef {
 public:
  /// A reference to no connection; every operation is ignored.
  ConnRef() = default;

  /// Runs `fn` on the connection's loop thread with the connection, if it is still open then.
  /// Returns false if the loop no longer accepts tasks (stopped); true does not mean it ran.
  bool post(std::function<void(Conn&)> fn) const;
  /// Posts a write of `bytes` (see Conn::write). Thread-safe.
  bool write(std::string bytes) const;
  /// Posts a close (see Conn::close). Thread-safe.
  bool close() const;

  /// The connection's id (0 for an empty ref).
  std::uint64_t id() const noexcept { return id_; }
  /// False for a default-constructed ref.
  explicit operator bool() const noexcept { return loop_ != nullptr; }

 private:
  friend class Conn;
  ConnRef(detail::EventLoop* loop, std::uint64_t id) noexcept : loop_(loop), id_(id) {}
  detail::EventLoop* loop_ = nullptr;
  std::uint64_t id_ = 0;
};

}  // namespace evloop
