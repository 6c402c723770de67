// Internal. LoopStats as relaxed atomics: written only by the loop thread (a plain load + store,
// no locked read-modify-write on the hot path), read from any thread through snapshot().
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "evloop/stats.hpp"

namespace evloop::detail {

using Counter = std::atomic<std::uint64_t>;

/// Adds `n` to a counter only its loop thread writes.
inline void bump(Counter& counter, std::uint64_t n = 1) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

/// Moves a gauge only its loop thread writes from `before` to `after` (sizes of one buffer).
inline void adjust(Counter& gauge, std::size_t before, std::size_t after) noexcept {
  gauge.store(gauge.load(std::memory_order_relaxed) + after - before, std::memory_order_relaxed);
}

struct AtomicLoopStats {
  Counter waits{0}, wakeups{0}, tasks{0}, reads{0}, writes{0}, bytes_in{0}, bytes_out{0},
      bytes_copied{0}, write_arms{0}, read_pauses{0}, accepts{0}, accept_errors{0}, timers_fired{0},
      poller_changes{0}, dials{0}, dial_failures{0}, adoptions{0}, detaches{0}, resets{0},
      opened{0}, closed{0};
  // UDP sockets.
  Counter datagrams_in{0}, datagrams_out{0}, datagram_receive_calls{0}, datagram_send_calls{0},
      datagram_drops{0}, datagram_truncations{0}, datagram_send_errors{0}, gso_sends{0},
      gro_receives{0};
  // Gauges (loop thread only): bytes held in output buffers and unconsumed-input buffers, UDP
  // sockets open.
  Counter output_buffered{0}, input_buffered{0}, udp_sockets{0};
  // io_uring.
  Counter submit_refusals{0}, receive_buffer_waits{0};
  // The exception to one writer: UdpRef sends refused on their sender's thread (PostedSends),
  // added with fetch_add by any thread; part of datagram_drops.
  Counter posted_datagram_drops{0};

  LoopStats snapshot() const noexcept {
    constexpr auto r = std::memory_order_relaxed;
    LoopStats s;
    s.waits = waits.load(r);
    s.wakeups = wakeups.load(r);
    s.tasks = tasks.load(r);
    s.reads = reads.load(r);
    s.writes = writes.load(r);
    s.bytes_in = bytes_in.load(r);
    s.bytes_out = bytes_out.load(r);
    s.bytes_copied = bytes_copied.load(r);
    s.write_arms = write_arms.load(r);
    s.read_pauses = read_pauses.load(r);
    s.accepts = accepts.load(r);
    s.accept_errors = accept_errors.load(r);
    s.timers_fired = timers_fired.load(r);
    s.poller_changes = poller_changes.load(r);
    s.dials = dials.load(r);
    s.dial_failures = dial_failures.load(r);
    s.adoptions = adoptions.load(r);
    s.detaches = detaches.load(r);
    s.resets = resets.load(r);
    s.opened = opened.load(r);
    s.closed = closed.load(r);
    s.open_connections = s.opened - s.closed;
    s.output_buffered = output_buffered.load(r);
    s.input_buffered = input_buffered.load(r);
    s.datagrams_in = datagrams_in.load(r);
    s.datagrams_out = datagrams_out.load(r);
    s.datagram_receive_calls = datagram_receive_calls.load(r);
    s.datagram_send_calls = datagram_send_calls.load(r);
    s.datagram_drops = datagram_drops.load(r) + posted_datagram_drops.load(r);
    s.datagram_truncations = datagram_truncations.load(r);
    s.datagram_send_errors = datagram_send_errors.load(r);
    s.gso_sends = gso_sends.load(r);
    s.gro_receives = gro_receives.load(r);
    s.udp_sockets = udp_sockets.load(r);
    s.submit_refusals = submit_refusals.load(r);
    s.receive_buffer_waits = receive_buffer_waits.load(r);
    return s;
  }
};

}  // namespace evloop::detail
