#include "receive_batch.hpp"

#include <algorithm>
#include <cerrno>

namespace evloop::detail {
namespace {

constexpr std::size_t kControlWords =
    (std::max<std::size_t>(platform::kUdpControlSpace, 1) + 7) / 8;

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
}

int ReceiveBatch::receive(int fd, unsigned count, std::size_t size, bool want_segments,
                          unsigned& calls) {
  // The kernel rewrites the name and control lengths and the flags of each message it fills,
  // so every field is set again for each call.
  for (unsigned i = 0; i < count; ++i) {
    iov_[i].iov_base = bytes_.get() + std::size_t{i} * slot_;
    iov_[i].iov_len = size;
    msghdr& msg = messages_[i].msg_hdr;
    msg.msg_name = peers_[i].data();
    msg.msg_namelen = static_cast<socklen_t>(SocketAddress::capacity());
    msg.msg_iov = &iov_[i];
    msg.msg_iovlen = 1;
    msg.msg_control = want_segments ? control_.get() + std::size_t{i} * kControlWords : nullptr;
    msg.msg_controllen = want_segments ? platform::kUdpControlSpace : 0;
    msg.msg_flags = 0;
  }
  const int n = platform::receive_many(fd, messages_.data(), count, calls);
  if (n < 0) return -errno;
  for (int i = 0; i < n; ++i) peers_[i].set_size(messages_[i].msg_hdr.msg_namelen);
  return n;
}

}  // namespace evloop::detail
