#include "receive_batch.hpp"

#include <algorithm>
#include <cerrno>

namespace evloop::detail {
namespace {

constexpr std::size_t kControlWords =
    (std::max<std::size_t>(platform::kUdpReceiveControlSpace, 1) + 7) / 8;

}  // namespace

void ReceiveBatch::reserve(unsigned batch, std::size_t size) {
  if (batch <= capacity_ && size <= slot_) return;
  capacity_ = std::max(batch, capacity_);
  slot_ = std::max(size, slot_);
  // Not zeroed: the kernel writes each datagram before anyone reads it, and untouched pages of
  // a large slot stay unmapped.
  bytes_.reset(new char[std::size_t{capacity_} * slot_]);
  messages_.assign(capacity_, platform::MultiMessage{});
  iov_.assign(capacity_, iovec{});
  peers_.assign(capacity_, SocketAddress{});
  control_.reset(new std::uint64_t[std::size_t{capacity_} * kControlWords]);
  prepared_ = 0;  // the arrays are new: prepare them at the next receive
}

int ReceiveBatch::receive(int fd, unsigned count, std::size_t size, bool want_segments,
                          unsigned& calls) {
  if (count > prepared_ || size != prepared_size_ || want_segments != prepared_segments_) {
    prepare(count, size, want_segments);
  } else {
    // The kernel rewrote the name and control lengths and the flags of the messages it filled
    // last time (and only those): set them again.
    for (unsigned i = 0; i < filled_; ++i) {
      msghdr& msg = messages_[i].msg_hdr;
      msg.msg_namelen = static_cast<socklen_t>(SocketAddress::capacity());
      msg.msg_controllen = want_segments ? platform::kUdpReceiveControlSpace : 0;
      msg.msg_flags = 0;
    }
  }
  const int n = platform::receive_many(fd, messages_.data(), count, calls, error_after_);
  // A failed receive may have touched the message it failed on.
  filled_ = std::min(count, static_cast<unsigned>(n < 0 ? 0 : n) + 1);
  if (n < 0) return -errno;
  for (int i = 0; i < n; ++i) peers_[i].set_size(messages_[i].msg_hdr.msg_namelen);
  return n;
}

void ReceiveBatch::prepare(unsigned count, std::size_t size, bool want_segments) {
  for (unsigned i = 0; i < count; ++i) {
    iov_[i].iov_base = bytes_.get() + std::size_t{i} * slot_;
    iov_[i].iov_len = size;
    msghdr& msg = messages_[i].msg_hdr;
    msg.msg_name = peers_[i].data();
    msg.msg_namelen = static_cast<socklen_t>(SocketAddress::capacity());
    msg.msg_iov = &iov_[i];
    msg.msg_iovlen = 1;
    msg.msg_control = want_segments ? control_.get() + std::size_t{i} * kControlWords : nullptr;
    msg.msg_controllen = want_segments ? platform::kUdpReceiveControlSpace : 0;
    msg.msg_flags = 0;
  }
  prepared_ = count;
  prepared_size_ = size;
  prepared_segments_ = want_segments;
  filled_ = 0;
}

}  // namespace evloop::detail
