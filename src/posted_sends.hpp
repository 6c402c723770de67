// Internal. The UdpRef sends on their way to one UDP socket: posted from any thread, not yet run
// on its loop. Shared by the socket and its UdpRefs, and bounded as the socket's send queue is
// (UdpOptions::send_queue_datagrams and send_queue_bytes): threads that send faster than the
// loop runs their tasks cost bounded memory. A send past a bound is refused before it is posted
// (its sender counts it in datagram_drops); one reserved here is released by the loop when its
// task has run or been dropped, whichever way.
#pragma once

#include <atomic>
#include <cstddef>

#include "evloop/udp.hpp"

namespace evloop::detail {

class PostedSends {
 public:
  /// Bounded by the socket's send-queue limits.
  explicit PostedSends(const UdpOptions& options) noexcept
      : max_datagrams_(options.send_queue_datagrams), max_bytes_(options.send_queue_bytes) {}

  /// Any thread: room for one more datagram of `size` bytes on its way; false (and nothing
  /// reserved) past a bound. Two senders racing at a bound may both be refused: never both let
  /// past it.
  bool reserve(std::size_t size) noexcept {
    if (datagrams_.fetch_add(1, std::memory_order_relaxed) >= max_datagrams_) {
      datagrams_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    const std::size_t held = bytes_.fetch_add(size, std::memory_order_relaxed);
    if (size > max_bytes_ || held > max_bytes_ - size) {
      bytes_.fetch_sub(size, std::memory_order_relaxed);
      datagrams_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  /// The loop thread: a reserved datagram's task ran (or never will).
  void release(std::size_t size) noexcept {
    bytes_.fetch_sub(size, std::memory_order_relaxed);
    datagrams_.fetch_sub(1, std::memory_order_relaxed);
  }

 private:
  const std::size_t max_datagrams_;
  const std::size_t max_bytes_;
  std::atomic<std::size_t> datagrams_{0};
  std::atomic<std::size_t> bytes_{0};
};

}  // namespace evloop::detail
