// Public. UDP: datagram sockets owned by one loop. `Udp` on the loop thread, `UdpRef` from any
// thread, their handlers (`DatagramHandlers`) and options (`UdpOptions`).
//
// A UDP socket comes from Server::listen_udp(address, DatagramHandlers, UdpOptions) (one socket per
// loop with reuse-port, else one on loop 0), from Loop::bind_udp (one unconnected socket) or from
// Loop::connect_udp (a socket connected to one peer: a client flow). Datagrams are received in
// batches (recvmmsg) and handed to `datagram` one by one, in order; what the handlers send is
// queued and sent in batches (sendmmsg) after they return.
#pragma once

#include <any>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "evloop/address.hpp"

namespace evloop {

namespace detail {
class UdpSocket;
class EventLoop;
class PostedSends;
}  // namespace detail
class Loop;
class Udp;
class UdpRef;

/// Limits and socket options of one UDP socket. Checked when used: a bad value fails
/// Server::start() or the socket's opening (`open_failed`) with errc::bad_option.
struct UdpOptions {
  /// SO_SNDBUF in bytes; 0 = the kernel's default. Must not be negative.
  int socket_send_buffer = 0;
  /// SO_RCVBUF in bytes; 0 = the kernel's default. A larger one rides out bursts the loop is
  /// too busy to read (the kernel drops what does not fit). Must not be negative.
  int socket_receive_buffer = 0;

  /// Datagrams per receive and per send syscall (recvmmsg / sendmmsg; where those are missing,
  /// the same number of recvmsg / sendmsg calls). 1..1024. A readiness report reads at most
  /// 4 batches before the loop serves its other sockets.
  unsigned batch = 32;
  /// The largest datagram received whole, 1..65536 (the default takes any UDP datagram). A longer
  /// one is cut by the kernel: it is counted (LoopStats::datagram_truncations) and handed to
  /// `truncated`, never to `datagram`. Each loop keeps batch x this much receive space (address
  /// space; only the pages datagrams touch become resident).
  std::size_t max_datagram_size = 65536;

  /// Bounds of the send queue: datagrams queued and not yet taken by the kernel. They wait until
  /// the current handlers (and posted tasks) return, and longer only when the kernel says EAGAIN
  /// (its send buffer is full). A queue that reaches a bound before the kernel was asked (one
  /// handler that sends more than a bound) is handed to the kernel at once, and queueing goes
  /// on. Past either bound while the kernel says EAGAIN, send_to() drops the datagram, counts it
  /// (LoopStats::datagram_drops) and returns false. Both positive; send_queue_bytes at most
  /// 4 GiB - 1.
  std::size_t send_queue_bytes = 4 * 1024 * 1024;
  /// The other bound of the send queue (above): datagrams, whatever their size.
  std::size_t send_queue_datagrams = 4096;

  /// Linux 4.18+: UDP generic segmentation offload. Consecutive queued datagrams to one peer,
  /// of one size (the last may be shorter), go to the kernel as one segmented send (UDP_SEGMENT,
  /// up to 64 datagrams): far fewer trips through the stack for a stream of equal datagrams.
  /// Probed when the socket opens; where it is missing (other kernels, other systems) datagrams
  /// go one by one. If the kernel refuses a segmented send (EIO: the route's device cannot
  /// checksum; EINVAL/EMSGSIZE: segments larger than the path MTU), GSO is off for that socket
  /// for good and its datagrams are sent one by one: nothing is lost. Off by default.
  bool gso = false;
  /// Linux 5.0+: UDP generic receive offload (UDP_GRO). The kernel may hand over several
  /// datagrams of one flow in one receive (a sender's segmented send arrives whole over
  /// loopback); evloop splits them again, so `datagram` still sees each datagram alone (a
  /// receive whose control messages overflowed evloop's 256 bytes, with socket options set
  /// through native_handle(), cannot be split: it is counted and handed to `truncated`). Where
  /// it is missing, datagrams arrive one by one. Off by default.
  bool gro = false;
};

/// UdpOptions for Loop::connect_udp, plus a local address to bind first.
struct UdpConnectOptions : UdpOptions {
  /// "127.0.0.2", "127.0.0.2:4000", "[::1]:0": bound before connecting. A numeric host with an
  /// optional port and no `?options`; anything else fails the open with errc::bad_address.
  /// Empty = the kernel picks.
  std::string source_address;
};

/// A UDP socket's handlers. Every one is optional. They run on the socket's loop thread, never
/// concurrently for one socket, and may call any Udp method; what they send goes out after they
/// return. They must not throw.
///
/// Order of events: `opened` (or, for Loop::bind_udp/connect_udp that cannot open, `open_failed`
/// and nothing else), then any number of `datagram`, `truncated` and `error`, then `closed`
/// exactly once.
struct DatagramHandlers {
  /// The socket is bound (and, from connect_udp, connected): it can send.
  std::function<void(Udp&)> opened;
  /// A datagram from `peer` (for a connected socket, always its peer). `bytes` and `peer` are
  /// valid only during the call. Datagrams are handed over in the order the kernel queued them.
  std::function<void(Udp&, const SocketAddress& peer, std::string_view bytes)> datagram;
  /// A datagram longer than UdpOptions::max_datagram_size arrived cut: `head` is its first
  /// max_datagram_size bytes (a DNS server can answer "truncated" from it). Counted in
  /// LoopStats::datagram_truncations whether or not this handler is set.
  std::function<void(Udp&, const SocketAddress& peer, std::string_view head)> truncated;
  /// An error the socket survives: an ICMP error reported by the kernel (on a connected socket:
  /// ECONNREFUSED when nobody listens on the peer's port, EHOSTUNREACH, ...), or a datagram the
  /// kernel refused to send (EMSGSIZE, ENETUNREACH, EACCES, ENOBUFS, ...; refused twice in a
  /// row, since a send first returns an error the socket held; that datagram is then dropped
  /// and counted in LoopStats::datagram_send_errors), or one send_to() refused as longer than
  /// any UDP datagram (EMSGSIZE, counted there too).
  std::function<void(Udp&, std::error_code error)> error;
  /// The socket closed: exactly once per `opened`. No error after close(); errc::server_stopped
  /// when the loops stopped; an errno when the poller would not take the socket (ENOMEM, ENOSPC:
  /// fs.epoll.max_user_watches).
  std::function<void(Udp&, std::error_code error)> closed;
  /// Loop::bind_udp or Loop::connect_udp could not open the socket: errc::bad_address,
  /// errc::bad_option, errc::resolve_failed, errc::server_stopped, errc::cancelled (UdpRef::close
  /// came first), or an errno (EADDRINUSE, ENETUNREACH, ...). `closed` will not fire.
  std::function<void(Udp&, std::error_code error)> open_failed;
};

/// A UDP socket, as seen from its loop's thread. Handlers receive a `Udp&` that stays valid from
/// `opened` until the `closed` handler returns. Every method must be called on the socket's loop
/// thread; from elsewhere use ref(). The call is checked in every build type (a call from another
/// thread aborts with a message naming the method), except in the accessors of what is fixed once
/// the socket opened: connected(), local_address(), remote_address(), native_handle(), loop(),
/// id() and ref().
class Udp {
 public:
  Udp(const Udp&) = delete;
  Udp& operator=(const Udp&) = delete;

  /// Queues `bytes` as one datagram to `peer` (an IPv4 or IPv6 address). It is sent after the
  /// current handler returns, together with the others queued (one sendmmsg per batch). Returns
  /// false when the datagram is dropped: the socket is closing, or (counted in
  /// LoopStats::datagram_drops) the send queue is at a UdpOptions bound or `peer` cannot be sent
  /// to: not an IP address, shorter than its family's sockaddr, or IPv6 on an IPv4 socket (its
  /// size may be larger, e.g. a whole sockaddr_storage: only the family's bytes are used). A
  /// datagram longer than any UDP datagram (65,527 bytes) is refused at once whatever the queue's
  /// bounds: false, counted in LoopStats::datagram_send_errors and reported to `error` as
  /// EMSGSIZE after the handler returns, as the kernel's own refusals are (it refuses 65,508 to
  /// 65,527 bytes over IPv4). On a connected socket use send(): Linux sends to any peer given
  /// here, macOS and the BSDs refuse (EISCONN, reported through `error`).
  bool send_to(const SocketAddress& peer, std::string_view bytes);
  /// Same as send_to(peer, string_view).
  bool send_to(const SocketAddress& peer, const void* bytes, std::size_t size);
  /// A datagram to the connected peer (a socket from Loop::connect_udp); as send_to otherwise.
  /// False (and counted in datagram_drops) on a socket that is not connected.
  bool send(std::string_view bytes);
  /// Same as send(string_view).
  bool send(const void* bytes, std::size_t size);

  /// Closes after the current handler returns: what is queued is offered to the kernel once,
  /// what it does not take is dropped (and counted); then `closed` fires. No `datagram` after
  /// this call: the rest of a batch being delivered is counted in LoopStats::datagrams_in and
  /// datagram_drops.
  void close();

  /// Datagrams queued and not yet taken by the kernel.
  std::size_t queued_datagrams() const;
  /// Bytes of those datagrams.
  std::size_t queued_bytes() const;
  /// True for a socket from Loop::connect_udp.
  bool connected() const noexcept;
  /// True when segmented sends (UdpOptions::gso) are in use on this socket now.
  bool gso() const;
  /// True when receive offload (UdpOptions::gro) is on for this socket.
  bool gro() const;

  /// The bound local address (port 0 resolved).
  const SocketAddress& local_address() const noexcept;
  /// The connected peer (empty for an unconnected socket).
  const SocketAddress& remote_address() const noexcept;
  /// The socket's fd, for options evloop does not set (multicast membership, TTL, TOS,
  /// SO_BROADCAST). Do not read, write, close it or change its blocking mode.
  int native_handle() const noexcept;

  /// A slot for the user's per-socket state; empty at `opened`, destroyed after `closed`.
  std::any& context();
  /// The loop this socket lives on.
  Loop& loop() const noexcept;
  /// A process-unique id (never reused while its loop lives).
  std::uint64_t id() const noexcept;
  /// A thread-safe reference to this socket.
  UdpRef ref() const noexcept;

 private:
  friend class detail::UdpSocket;
  explicit Udp(detail::UdpSocket& impl) noexcept : impl_(&impl) {}
  detail::UdpSocket* impl_;
};

/// A thread-safe reference to a UDP socket: its loop and id. Copyable; valid while its loops
/// live. Operations on a socket that has closed meanwhile (or whose loop stopped) are ignored;
/// on one still opening (Loop::connect_udp returns before it has), they wait for `opened`.
class UdpRef {
 public:
  /// A reference to no socket; every operation is ignored.
  UdpRef() = default;

  /// Runs `fn` on the socket's loop thread with the socket, if it is still open then; if it is
  /// still opening, right after its `opened` handler (tasks in the order they were posted), and
  /// never if it fails to open. Returns false if the loop no longer accepts tasks; true does not
  /// mean it ran. An empty `fn` aborts with a message (misuse).
  bool post(std::function<void(Udp&)> fn) const;
  /// Posts a send_to (see Udp::send_to; a datagram dropped there is counted, not reported here).
  /// The sends on their way to the socket (posted, not yet run by its loop; also those that
  /// wait for a socket still opening, whose host name may take seconds to resolve) are bounded
  /// as its send queue is (UdpOptions::send_queue_datagrams and send_queue_bytes, counted apart
  /// from the queue): past a bound, a send is dropped and counted at once, on the calling
  /// thread, and not posted. So threads that send faster than the loop runs their sends cost
  /// bounded memory.
  bool send_to(const SocketAddress& peer, std::string bytes) const;
  /// Posts a send (see Udp::send); bounded on its way as send_to is.
  bool send(std::string bytes) const;
  /// Posts a close (see Udp::close). A socket still opening when the close runs gives up:
  /// `open_failed` fires with errc::cancelled, and `opened` never does. One that has opened by
  /// then (a numeric address often opens at once, always when bound or connected on the loop
  /// thread) closes as usual: `opened`, then `closed`.
  bool close() const;

  /// On the socket's loop thread: the socket, or nullptr once it has closed (or before it
  /// opened). Aborts when called from another thread (use post() there).
  Udp* get() const;

  /// The socket's id (0 for an empty ref).
  std::uint64_t id() const noexcept { return id_; }
  /// The socket's loop (nullptr for an empty ref).
  Loop* loop() const noexcept;
  /// False for a default-constructed ref.
  explicit operator bool() const noexcept { return loop_ != nullptr; }
  /// Two refs are equal when they name the same socket.
  friend bool operator==(const UdpRef& a, const UdpRef& b) noexcept {
    return a.loop_ == b.loop_ && a.id_ == b.id_;
  }

 private:
  friend class Udp;
  friend class detail::EventLoop;
  UdpRef(detail::EventLoop* loop, std::uint64_t id,
         std::shared_ptr<detail::PostedSends> posted) noexcept
      : loop_(loop), id_(id), posted_(std::move(posted)) {}
  detail::EventLoop* loop_ = nullptr;
  std::uint64_t id_ = 0;
  std::shared_ptr<detail::PostedSends> posted_;  // the socket's sends on their way (bounded)
};

}  // namespace evloop
