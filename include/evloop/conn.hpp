// Public. Connection handles: Conn on the loop thread, ConnRef from any thread, and
// DetachedConn, a socket taken out of evloop with its unread input and unsent output.
#pragma once

#include <any>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "evloop/address.hpp"
#include "evloop/shared_buffer.hpp"

namespace evloop {

namespace detail {
class Connection;
class EventLoop;
}  // namespace detail
class Loop;
class ConnRef;
class DetachedConn;

/// An fd handed to Conn::send_file for evloop to keep: closed once its range is sent or the
/// connection ends (a plain int fd is duplicated instead, leaving the caller's own).
struct TakeFd {
  int fd;  ///< The file to send from; evloop closes it.
};

/// Where a connection is in its life. It moves only forward:
/// connecting -> open -> closing -> closed, or open -> detached; connecting -> closed for a
/// dial or adoption that fails.
enum class ConnState : std::uint8_t {
  connecting,  ///< Dialling (or being adopted): `opened` has not fired yet.
  open,        ///< Open: reading and writing.
  closing,     ///< close() was called: no more reading; closes once pending output is sent.
               ///< Also after the peer's EOF when there is no `eof` handler, and after
               ///< abort() or an error, until the connection closes (at once).
  closed,      ///< Closed (`closed` or `connect_failed` has fired or is firing).
  detached,    ///< Handed back by detach(); evloop no longer owns the fd.
};

/// A connection, as seen from its loop's thread. Handlers receive a `Conn&` that stays valid
/// (same address) from `opened` until the `closed` handler returns; keep it no longer. (It is the
/// public face of evloop's own connection object, which derives from it: it has no state of its
/// own and cannot be created or copied by users.)
///
/// Every method must be called on the connection's loop thread; the ones that change or read
/// mutable state check it in every build type and abort with a message naming the method and
/// the thread-safe alternative. To reach a connection from another thread, use ref().
///
/// No method ends the connection inside the call: close(), abort(), and a write past
/// output_limit take effect once the handler, task or timer that called them returns, and only
/// then does `closed` fire. So a broadcast that walks its own list of connections (removed from
/// it in `closed`) may write to each and abort the ones that fall behind as it goes.
class Conn {
 public:
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  /// Appends bytes to the output, in order; never drops or reorders. Small writes (under
  /// ConnOptions::write_through, 32 KiB by default) are copied and gathered: everything a handler
  /// writes leaves in one send after it returns. A larger write, when the connection is open,
  /// goes to the kernel at once from `bytes`
  /// (together with anything pending, in one sendmsg), and only what the kernel does not take is
  /// copied. While connecting, bytes wait for the connection to open. Past
  /// ConnOptions::output_limit the connection is reset with errc::output_limit. Ignored once the
  /// connection is closing (state() is closing: after close(), abort(), or the peer's EOF when
  /// there is no `eof` handler) and after shutdown_write().
  void write(std::string_view bytes);
  /// Same as write(string_view).
  void write(const void* bytes, std::size_t size);
  /// Same as write(string_view).
  void write(std::span<const std::byte> bytes);
  /// Queues a reference to `buffer`, never a copy (a broadcast holds the bytes once); otherwise
  /// as write(string_view). Toward output_limit it counts its bytes plus the record that holds
  /// the reference (about 48 bytes).
  void write(const SharedBuffer& buffer);
  /// Queues `length` bytes of the file `fd` from `offset`, in order with the other output, sent
  /// with sendfile() (pread()+send() where sendfile() cannot read the file): the bytes are never
  /// held in memory. Except: a range of at most 16 KiB, and any range while 64 are already
  /// pending on the connection, is read into the output at once (as write() copies; it then
  /// counts toward output_limit), so a peer that pipelines requests for files without reading
  /// cannot make the connection hold an fd per request. `fd` must be readable at an offset (a
  /// file or a device, not a pipe or a socket: those reset the connection with ESPIPE). evloop
  /// keeps its own duplicate of `fd` (the caller may close theirs). The range counts in
  /// output_pending() and toward the high-water mark, not toward output_limit; each loop
  /// iteration sends at most a bounded slice of it, so one connection cannot hold its loop. A file
  /// that ends before the range does resets the connection (errc::file_truncated); a read error, or
  /// an fd that cannot be duplicated, resets it with the errno; a range that would take
  /// output_pending() past 2^63-1 bytes (more than any file holds) resets it with EOVERFLOW
  /// (std::errc::value_too_large). Ignored after close(), abort() or shutdown_write(). After a
  /// detach() that returned true the range is read at once into the output handed over (within
  /// output_limit, which resets the connection instead of detaching it).
  void send_file(int fd, std::uint64_t offset, std::uint64_t length);
  /// send_file() that takes `file.fd` instead of duplicating it (one system call fewer per
  /// call, and none to close it): evloop closes it when the range is sent or the connection
  /// ends, also when the call is ignored. From another thread: ConnRef::send_file.
  void send_file(TakeFd file, std::uint64_t offset, std::uint64_t length);

  /// Closes gracefully: reading stops now; pending output is sent, then a FIN. What the peer
  /// sends meanwhile is read and dropped, and the socket is closed (and `closed` fires) once
  /// the peer has acknowledged every byte or ended its side: closing a TCP socket with the
  /// peer's bytes unread would make the kernel reset the connection and drop the end of the
  /// output (a client that pipelines a request behind the last one answered would lose it).
  /// Once the peer has everything, a close that still finds its bytes unread (more than one
  /// check reads: 256 KiB) resets, which the peer can no longer lose anything by. If
  /// the output makes no progress for ConnOptions::close_timeout (the kernel takes no more of
  /// it, or the peer acknowledges no more of what the kernel holds), the connection is reset
  /// (errc::close_timeout): a slow download that keeps moving is not cut short.
  /// While connecting, cancels the dial (`connect_failed` with errc::cancelled). Ignored after
  /// a detach() that returned true.
  void close();
  /// Closes now with a reset (RST: SO_LINGER 0), discarding pending output, so the peer sees a
  /// failure (ECONNRESET), not a clean end. `closed` fires with no error. (On a Unix socket the
  /// peer sees an EOF, or ECONNRESET if it had unread data in our direction.) Ignored after a
  /// detach() that returned true (the output is the receiver's).
  void abort();
  /// Half-close from our side: once pending output is sent, sends a FIN (shutdown(SHUT_WR)) and
  /// keeps reading. Later writes are ignored. When the peer's EOF has been seen too, the
  /// connection closes by itself (clean). Ignored after a detach() that returned true.
  void shutdown_write();

  /// Stops reading from the socket until resume_reading(); the peer is held back by TCP flow
  /// control. Independent of the back-pressure pause (output above the high-water mark): reading
  /// happens only when neither holds it.
  void pause_reading();
  /// Undoes pause_reading().
  void resume_reading();
  /// True while reading is paused, by pause_reading() or by back-pressure.
  bool reading_paused() const;

  /// Takes the socket out of evloop without closing it. After the current handler returns, the
  /// fd leaves the poller, `closed` fires (errc::detached), and `receiver` is called with the fd,
  /// the unconsumed input and the unsent output, so the byte stream can continue elsewhere
  /// (Loop::adopt, another library, another process) with nothing lost or reordered. Returns
  /// false, and does nothing, unless the connection is open (not connecting, closing or closed),
  /// no send_file() range is pending and shutdown_write() was not called (the FIN it owes after
  /// the output cannot be handed over). Once it returns true, writes still go with the
  /// connection (one past output_limit resets it instead: `closed` reports
  /// errc::output_limit and `receiver` is not called), and close(), abort() and
  /// shutdown_write() are ignored. On io_uring the hand-over
  /// waits for the kernel's requests on the socket to end; a connection that fails meanwhile (a
  /// reset) gets `closed` with that error instead, and `receiver` is not called. An empty
  /// `receiver` aborts with a message (misuse): the fd and the bytes would have no owner.
  bool detach(std::function<void(DetachedConn)> receiver);

  /// Where the connection is in its life.
  ConnState state() const;
  /// True once close() or abort() was called, or the peer's end was seen with no `eof` handler.
  bool closing() const;
  /// Bytes written but not yet taken by the kernel.
  std::size_t output_pending() const;

  /// A slot for the user's per-connection state; empty at `opened`, destroyed after `closed`.
  std::any& context();

  /// The peer's address (for a dial, the address being tried until it opens). Empty (family()
  /// 0) for a connection accepted on io_uring whose peer had reset before the loop asked for it.
  SocketAddress remote_address() const;
  /// The local address of this connection (asks the kernel).
  SocketAddress local_address() const;

  /// The loop this connection lives on.
  Loop& loop() const noexcept;
  /// A process-unique id (never reused while its loop lives).
  std::uint64_t id() const noexcept;
  /// A thread-safe reference to this connection.
  ConnRef ref() const noexcept;

 private:
  friend class detail::Connection;
  Conn() = default;
  ~Conn() = default;
  detail::Connection& impl() noexcept;
  const detail::Connection& impl() const noexcept;
};

/// A thread-safe reference to a connection: its loop and id. Copyable; valid while its loops
/// live (the Server or LoopGroup). Operations on a connection that has closed meanwhile (or whose
/// loop stopped) are ignored, since an id is never reused (unlike an fd).
class ConnRef {
 public:
  /// A reference to no connection; every operation is ignored.
  ConnRef() = default;

  /// Runs `fn` on the connection's loop thread with the connection, if it still exists then
  /// (connecting or open; not after `closed`). Returns false if the loop no longer accepts tasks
  /// (stopped); true does not mean it ran. An empty `fn` aborts with a message (misuse).
  bool post(std::function<void(Conn&)> fn) const;
  /// Posts a write of `bytes` (see Conn::write).
  bool write(std::string bytes) const;
  /// Posts a write of a shared buffer (a reference, no copy: see Conn::write(const SharedBuffer&)).
  bool write(SharedBuffer buffer) const;
  /// Posts a send_file(TakeFd) (see Conn::send_file). The fd is evloop's from this call on,
  /// whatever happens: closed once its range is sent, and also when the task does not run (the
  /// connection has closed meanwhile, or the loop no longer accepts tasks: false). For a file
  /// opened on another thread, which a task of your own capturing the fd would leak in those cases.
  bool send_file(TakeFd file, std::uint64_t offset, std::uint64_t length) const;
  /// Posts a close (see Conn::close).
  bool close() const;
  /// Posts an abort (see Conn::abort).
  bool abort() const;
  /// Posts a shutdown_write (see Conn::shutdown_write).
  bool shutdown_write() const;

  /// On the connection's loop thread: the connection, or nullptr once it has closed (or before
  /// a dial requested from another thread has started). Aborts when called from another thread
  /// (use post() there).
  Conn* get() const;

  /// The connection's id (0 for an empty ref).
  std::uint64_t id() const noexcept { return id_; }
  /// The connection's loop (nullptr for an empty ref).
  Loop* loop() const noexcept;
  /// False for a default-constructed ref.
  explicit operator bool() const noexcept { return loop_ != nullptr; }
  /// Two refs are equal when they name the same connection.
  friend bool operator==(const ConnRef& a, const ConnRef& b) noexcept {
    return a.loop_ == b.loop_ && a.id_ == b.id_;
  }

 private:
  friend class Conn;
  friend class detail::EventLoop;
  ConnRef(detail::EventLoop* loop, std::uint64_t id) noexcept : loop_(loop), id_(id) {}
  detail::EventLoop* loop_ = nullptr;
  std::uint64_t id_ = 0;
};

/// A connected socket taken out of evloop by Conn::detach(), with the byte stream's state: what
/// was read but not consumed, and what was written but not sent. Owns the fd (closed by the
/// destructor unless released). The fd is still non-blocking and close-on-exec.
class DetachedConn {
 public:
  /// Holds no socket (fd -1).
  DetachedConn() = default;
  /// Takes ownership of `fd`.
  DetachedConn(int fd, std::string input, std::string output, SocketAddress peer) noexcept;
  /// Closes the fd unless released.
  ~DetachedConn();
  /// Moves the fd and the state; `other` is left holding no socket.
  DetachedConn(DetachedConn&& other) noexcept;
  /// Closes the fd held, then moves `other`'s in; `other` is left holding no socket.
  DetachedConn& operator=(DetachedConn&& other) noexcept;
  DetachedConn(const DetachedConn&) = delete;
  DetachedConn& operator=(const DetachedConn&) = delete;

  /// The socket (-1 once released).
  int fd() const noexcept { return fd_; }
  /// Gives up ownership of the fd and returns it.
  int release() noexcept;

  /// Bytes read from the socket that `data` had not consumed: they come first in the stream.
  std::string input;
  /// Bytes written but not yet sent: send them before anything else.
  std::string output;
  /// The peer's address.
  SocketAddress peer;

 private:
  int fd_ = -1;
};

}  // namespace evloop
