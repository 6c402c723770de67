// Internal. A UDP socket's send queue: the datagrams its handlers queued that the kernel has not
// taken yet, bounded in datagrams and in bytes, and the sendmmsg batches built from it. Loop
// thread only.
//
// No allocation per datagram in steady state: payloads are copied into one byte arena and their
// records (peer, offset, size) into one vector; both only grow, up to the bounds, and are reused.
//
//   arena    [ taken by the kernel | queued datagrams, oldest first |   room   ]
//            0                     begin_                            end_       capacity
//   records  [ taken ...           | head_ ...                       ]
//
// When the kernel takes everything (the usual case after each batch of handlers) both reset to
// empty. An append that does not fit at the end moves the queued part to the front first (which
// happens only while the kernel is behind), then grows the arena if it must.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "platform.hpp"

namespace evloop::detail {

/// The arrays of one sendmmsg call, allocated once per socket.
struct SendBatch {
  explicit SendBatch(unsigned capacity);

  unsigned capacity() const noexcept { return static_cast<unsigned>(messages.size()); }

  std::vector<platform::MultiMessage> messages;
  std::vector<iovec> iov;                    // one per message: its datagrams are contiguous
  std::vector<std::uint32_t> datagrams;      // per message: how many datagrams it carries
  std::unique_ptr<std::uint64_t[]> control;  // per message: room for a UDP_SEGMENT cmsg
};

class DatagramQueue {
 public:
  /// The largest payload of one segmented send (the IPv4 limit, 65535 - 20 - 8; IPv6 allows a
  /// little more).
  static constexpr std::size_t kMaxSegmentedBytes = 65507;
  /// The longest peer address a record holds (sockaddr_in6).
  static constexpr std::size_t kMaxPeerSize = 28;

  DatagramQueue(std::size_t max_bytes, std::size_t max_datagrams) noexcept
      : max_bytes_(max_bytes), max_datagrams_(max_datagrams) {}

  /// Appends a copy of `bytes` for `peer` (`peer_size` 0: the connected peer). False, and
  /// nothing queued, when a bound would be passed or the peer address is too long.
  bool push(const void* peer, std::size_t peer_size, const void* bytes, std::size_t size);
  /// Removes the `count` oldest datagrams.
  void pop(std::size_t count) noexcept;
  /// Removes everything.
  void clear() noexcept;

  bool empty() const noexcept { return head_ == records_.size(); }
  std::size_t datagrams() const noexcept { return records_.size() - head_; }
  std::size_t bytes() const noexcept { return end_ - begin_; }

  /// Fills `batch` with up to batch.capacity() messages made of the oldest datagrams and returns
  /// how many. With `gso`, a run of datagrams to one peer, all of one size but the last (which
  /// may be shorter), up to 64 and kMaxSegmentedBytes, becomes one segmented message. The
  /// messages point into the queue: valid until it changes.
  unsigned build(SendBatch& batch, bool gso);

 private:
  struct Record {
    std::uint32_t offset;  // into arena_
    std::uint32_t size;
    std::uint32_t peer_size;  // 0: the connected peer
    unsigned char peer[kMaxPeerSize];
  };

  bool same_peer(const Record& a, const Record& b) const noexcept;
  // How many records from `first` go into one message, and their total size.
  std::size_t run_length(std::size_t first, bool gso, std::size_t& total) const noexcept;
  void compact() noexcept;
  void grow(std::size_t size);

  const std::size_t max_bytes_;
  const std::size_t max_datagrams_;
  std::vector<char> arena_;
  std::size_t begin_ = 0;  // offset of the oldest queued byte
  std::size_t end_ = 0;    // offset past the newest queued byte
  std::vector<Record> records_;
  std::size_t head_ = 0;  // index of the oldest queued record
};

}  // namespace evloop::detail
