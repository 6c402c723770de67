// Internal. The arrays of one batched receive (recvmmsg), shared by the UDP sockets of a loop:
// one socket receives at a time and its handlers see the datagrams only during the call, as the
// connections share the loop's read buffer. Allocated when the loop's first UDP socket opens and
// grown when a socket needs more (a larger batch or datagram size); never per datagram.
//
//   bytes   [ slot 0 | slot 1 | ... ]   slot_ bytes each; only the pages a datagram touches
//                                       become resident
//   per message: an iovec on its slot, a SocketAddress for the sender, room for a GRO cmsg.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "evloop/address.hpp"
#include "platform.hpp"

namespace evloop::detail {

class ReceiveBatch {
 public:
  /// Makes room for `batch` messages of up to `size` bytes each (allocates only to grow).
  void reserve(unsigned batch, std::size_t size);

  /// Receives up to `count` (<= the reserved batch) datagrams of up to `size` bytes each (<= the
  /// reserved size) from `fd`, with room for a GRO cmsg when `want_segments`. Returns how many,
  /// or -errno when the first receive failed; `calls` is the number of syscalls made.
  int receive(int fd, unsigned count, std::size_t size, bool want_segments, unsigned& calls);
  /// The error that ended the last receive after its first message, to report now; 0 if none
  /// (always on Linux, whose recvmmsg keeps it for the next receive: see platform::receive_many).
  int error_after() const noexcept { return error_after_; }

  // Message i of the last receive:
  const SocketAddress& peer(unsigned i) const noexcept { return peers_[i]; }
  const char* data(unsigned i) const noexcept { return bytes_.get() + std::size_t{i} * slot_; }
  std::size_t size(unsigned i) const noexcept { return messages_[i].msg_len; }
  /// The datagram was longer than the receive size: the kernel cut it (MSG_TRUNC). Also, with
  /// GRO, a receive whose control messages did not fit (MSG_CTRUNC) and that carries no GRO
  /// segment size: it may hold several datagrams whose boundaries were lost, so it is never
  /// passed off as one whole datagram.
  bool truncated(unsigned i) const noexcept {
    const int flags = messages_[i].msg_hdr.msg_flags;
    return (flags & MSG_TRUNC) != 0 ||
           (prepared_segments_ && (flags & MSG_CTRUNC) != 0 && segment_size(i) == 0);
  }
  /// GRO: the size of the datagrams this receive holds back to back; 0 when it holds one.
  std::size_t segment_size(unsigned i) const noexcept {
    return platform::gro_segment_size(messages_[i].msg_hdr);
  }

 private:
  // Sets every field of the first `count` messages.
  void prepare(unsigned count, std::size_t size, bool want_segments);

  unsigned capacity_ = 0;
  std::size_t slot_ = 0;
  std::unique_ptr<char[]> bytes_;
  std::vector<platform::MultiMessage> messages_;
  std::vector<iovec> iov_;
  std::vector<SocketAddress> peers_;
  std::unique_ptr<std::uint64_t[]> control_;
  // What the messages are set up for (a socket with other settings sets them up again), and how
  // many the last receive may have changed.
  unsigned prepared_ = 0;
  std::size_t prepared_size_ = 0;
  bool prepared_segments_ = false;
  unsigned filled_ = 0;
  int error_after_ = 0;
};

}  // namespace evloop::detail
