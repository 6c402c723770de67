// Internal. For completion backends (io_uring): the msghdr and iovecs of a send in flight, which
// must stay valid until its completion. One per connection with a send in flight, from a per-loop
// free list (an idle connection holds none).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <memory>
#include <vector>

namespace evloop::detail {

struct SendSlot {
  static constexpr int kMaxIov = 64;
  msghdr msg{};
  iovec iov[kMaxIov];
};

class SendSlots {
 public:
  SendSlot* acquire() {
    if (free_.empty()) {
      all_.push_back(std::make_unique<SendSlot>());
      return all_.back().get();
    }
    SendSlot* slot = free_.back();
    free_.pop_back();
    return slot;
  }
  void release(SendSlot* slot) { free_.push_back(slot); }

 private:
  std::vector<std::unique_ptr<SendSlot>> all_;
  std::vector<SendSlot*> free_;
};

}  // namespace evloop::detail
