// Public. Per-loop counters, cheap enough to leave on.
#pragma once

#include <cstdint>

namespace evloop {

/// A snapshot of one loop's counters (Loop::stats(), Server::stats()). Each counter is written only
/// by its loop thread (relaxed atomics), so reading a snapshot from any thread is safe and cheap;
/// counters read in one snapshot are not mutually consistent to the event.
struct LoopStats {
  std::uint64_t waits = 0;         ///< Poller waits (epoll_wait, kevent, io_uring_enter).
  std::uint64_t wakeups = 0;       ///< Times the waker fired and was drained.
  std::uint64_t tasks = 0;         ///< Posted tasks run.
  std::uint64_t reads = 0;         ///< recv calls (io_uring: receives) on connections.
  std::uint64_t writes = 0;        ///< send, sendmsg, sendfile calls (io_uring: sends).
  std::uint64_t bytes_in = 0;      ///< Bytes received (connections and datagrams).
  std::uint64_t bytes_out = 0;     ///< Bytes sent (connections and datagrams).
  std::uint64_t bytes_copied = 0;  ///< Written bytes copied into output chunks (not sent at once).
  std::uint64_t write_arms = 0;    ///< Times write interest was armed (output left pending).
  std::uint64_t read_pauses = 0;   ///< Times reading paused (output above the high-water mark).
  std::uint64_t accepts = 0;       ///< Connections accepted by this loop's listeners.
  /// accept() failures that pause the listener (EMFILE, ENFILE, ENOBUFS, ...; not EAGAIN, EINTR,
  /// the peer giving up, or a network error Linux reports from the new connection), and a
  /// paused listener that the poller refused to take back (retried after another back-off).
  std::uint64_t accept_errors = 0;
  std::uint64_t timers_fired = 0;    ///< Timer callbacks run (including ticks).
  std::uint64_t poller_changes = 0;  ///< Interest changes sent to the poller (epoll_ctl / kevent).
  std::uint64_t dials = 0;           ///< Outgoing connections started (Loop::connect).
  std::uint64_t dial_failures = 0;   ///< Dials and adoptions that failed (`connect_failed`).
  std::uint64_t adoptions = 0;       ///< Sockets adopted (Loop::adopt).
  std::uint64_t detaches = 0;        ///< Connections handed back (Conn::detach).
  std::uint64_t resets = 0;          ///< Connections this loop closed with a reset (RST).
  std::uint64_t opened = 0;          ///< Connections opened on this loop (any way in).
  std::uint64_t closed = 0;          ///< Connections closed on this loop.
  std::uint64_t open_connections = 0;  ///< Connections open now (opened - closed).
  std::uint64_t output_buffered = 0;   ///< Bytes written by callbacks, not yet taken by the kernel.
  std::uint64_t input_buffered = 0;    ///< Unconsumed input bytes kept for `data` (partial frames).
  std::uint64_t datagrams_in = 0;      ///< UDP datagrams received (each of a GRO receive counts).
  std::uint64_t datagrams_out = 0;     ///< UDP datagrams the kernel took (each of a GSO send).
  std::uint64_t datagram_receive_calls = 0;  ///< recvmmsg (or recvmsg) calls on UDP sockets.
  std::uint64_t datagram_send_calls = 0;     ///< sendmmsg (or sendmsg) calls on UDP sockets.
  std::uint64_t datagram_drops = 0;          ///< Datagrams dropped: send queue full (or UdpRef
                                             ///< sends on their way at its bounds), a peer that
                                             ///< cannot be sent to, or socket closed.
  std::uint64_t datagram_truncations = 0;    ///< Datagrams received cut (over max_datagram_size).
  std::uint64_t datagram_send_errors = 0;    ///< Datagrams the kernel refused, or too long for any
                                             ///< UDP datagram (reported to `error`).
  std::uint64_t gso_sends = 0;     ///< Segmented sends (UDP_SEGMENT) of two or more datagrams.
  std::uint64_t gro_receives = 0;  ///< Receives that held two or more datagrams (UDP_GRO).
  std::uint64_t udp_sockets = 0;   ///< UDP sockets open on this loop now.
  /// io_uring: submissions the kernel refused for want of resources (EAGAIN, EBUSY) and that the
  /// loop retried; a refusal that lasts 10 s with nothing submitted stops the loop (loop_failed).
  std::uint64_t submit_refusals = 0;
  /// io_uring: receives that found every provided buffer in use (ENOBUFS) and were asked again
  /// once buffers came back (see LoopOptions::uring_buffers).
  std::uint64_t receive_buffer_waits = 0;

  /// Adds another loop's counters (e.g. to total a server's loops).
  LoopStats& operator+=(const LoopStats& o) noexcept {
    waits += o.waits;
    wakeups += o.wakeups;
    tasks += o.tasks;
    reads += o.reads;
    writes += o.writes;
    bytes_in += o.bytes_in;
    bytes_out += o.bytes_out;
    bytes_copied += o.bytes_copied;
    write_arms += o.write_arms;
    read_pauses += o.read_pauses;
    accepts += o.accepts;
    accept_errors += o.accept_errors;
    timers_fired += o.timers_fired;
    poller_changes += o.poller_changes;
    dials += o.dials;
    dial_failures += o.dial_failures;
    adoptions += o.adoptions;
    detaches += o.detaches;
    resets += o.resets;
    opened += o.opened;
    closed += o.closed;
    open_connections += o.open_connections;
    output_buffered += o.output_buffered;
    input_buffered += o.input_buffered;
    datagrams_in += o.datagrams_in;
    datagrams_out += o.datagrams_out;
    datagram_receive_calls += o.datagram_receive_calls;
    datagram_send_calls += o.datagram_send_calls;
    datagram_drops += o.datagram_drops;
    datagram_truncations += o.datagram_truncations;
    datagram_send_errors += o.datagram_send_errors;
    gso_sends += o.gso_sends;
    gro_receives += o.gro_receives;
    udp_sockets += o.udp_sockets;
    submit_refusals += o.submit_refusals;
    receive_buffer_waits += o.receive_buffer_waits;
    return *this;
  }
};

}  // namespace evloop
