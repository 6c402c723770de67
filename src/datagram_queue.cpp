#include "datagram_queue.hpp"

#include <algorithm>
#include <cstring>

namespace evloop::detail {
namespace {

constexpr std::size_t kControlWords =
    (std::max<std::size_t>(platform::kUdpSendControlSpace, 1) + 7) / 8;

}  // namespace

SendBatch::SendBatch(unsigned capacity)
    : messages(capacity),
      iov(capacity),
      datagrams(capacity),
      control(new std::uint64_t[std::size_t{capacity} * kControlWords]) {}

bool DatagramQueue::push(const void* peer, std::size_t peer_size, const void* bytes,
                         std::size_t size) {
  if (datagrams() + 1 > max_datagrams_ || this->bytes() + size > max_bytes_ ||
      peer_size > kMaxPeerSize) {
    return false;
  }
  if (empty()) clear();  // start at the front again
  // The kernel is behind: move what is queued to the front when the arena's end is reached (or
  // the taken records outnumber the queued ones, which zero-length datagrams could cause).
  if (end_ + size > arena_.size() || head_ > records_.size() / 2 + 64) compact();
  grow(size);
  Record& r = records_.emplace_back();
  r.offset = static_cast<std::uint32_t>(end_);
  r.size = static_cast<std::uint32_t>(size);
  r.peer_size = static_cast<std::uint32_t>(peer_size);
  if (peer_size > 0) std::memcpy(r.peer, peer, peer_size);
  if (size > 0) std::memcpy(arena_.data() + end_, bytes, size);
  end_ += size;
  return true;
}

void DatagramQueue::compact() noexcept {
  if (begin_ > 0) std::memmove(arena_.data(), arena_.data() + begin_, end_ - begin_);
  for (std::size_t i = head_; i < records_.size(); ++i) {
    records_[i].offset -= static_cast<std::uint32_t>(begin_);
  }
  records_.erase(records_.begin(), records_.begin() + static_cast<std::ptrdiff_t>(head_));
  head_ = 0;
  end_ -= begin_;
  begin_ = 0;
}

void DatagramQueue::grow(std::size_t size) {
  if (end_ + size <= arena_.size()) return;
  // Geometrically, never past what the bound can hold (after compact(), end_ + size <= bound).
  const std::size_t want = std::max(end_ + size, std::max<std::size_t>(arena_.size() * 2, 4096));
  arena_.resize(std::min(want, std::max(max_bytes_, end_ + size)));
}

void DatagramQueue::pop(std::size_t count) noexcept {
  for (; count > 0 && !empty(); --count) {
    const Record& r = records_[head_++];
    begin_ = r.offset + r.size;
  }
  if (empty()) clear();
}

void DatagramQueue::clear() noexcept {
  records_.clear();  // keeps its capacity
  head_ = 0;
  begin_ = end_ = 0;
}

bool DatagramQueue::same_peer(const Record& a, const Record& b) const noexcept {
  return a.peer_size == b.peer_size && std::memcmp(a.peer, b.peer, a.peer_size) == 0;
}

std::size_t DatagramQueue::run_length(std::size_t first, bool gso,
                                      std::size_t& total) const noexcept {
  const Record& lead = records_[first];
  total = lead.size;
  if (!gso || lead.size == 0) return 1;
  std::size_t n = 1;
  while (first + n < records_.size() && n < platform::kMaxGsoSegments) {
    const Record& next = records_[first + n];
    if (next.size == 0 || next.size > lead.size || !same_peer(lead, next) ||
        total + next.size > kMaxSegmentedBytes) {
      break;
    }
    total += next.size;
    ++n;
    if (next.size < lead.size) break;  // a shorter datagram ends a run
  }
  return n;
}

unsigned DatagramQueue::build(SendBatch& batch, bool gso) {
  unsigned count = 0;
  std::size_t i = head_;
  while (i < records_.size() && count < batch.capacity()) {
    std::size_t total = 0;
    const std::size_t n = run_length(i, gso, total);
    Record& r = records_[i];
    iovec& iov = batch.iov[count];
    iov.iov_base = arena_.data() + r.offset;  // the run's datagrams are contiguous
    iov.iov_len = total;
    msghdr& msg = batch.messages[count].msg_hdr;
    msg = msghdr{};
    msg.msg_name = r.peer_size > 0 ? r.peer : nullptr;
    msg.msg_namelen = static_cast<socklen_t>(r.peer_size);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (n > 1) {
      platform::set_gso_segment(msg, batch.control.get() + std::size_t{count} * kControlWords,
                                static_cast<std::uint16_t>(r.size));
    }
    batch.datagrams[count] = static_cast<std::uint32_t>(n);
    ++count;
    i += n;
  }
  return count;
}

}  // namespace evloop::detail
