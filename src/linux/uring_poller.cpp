// The io_uring backend's poller. See uring_poller.hpp.
#include "uring_poller.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>

#include "poller.hpp"

namespace evloop::detail {
namespace {

constexpr unsigned kRingEntries = 2048;
// The most one send moves (Linux's MAX_RW_COUNT: INT_MAX rounded down to a page).
constexpr std::size_t kMaxSend = 0x7ffff000;
// Provided buffers for receives, in two groups. Small ones, by default (kDefaultBuffers) enough
// for every reading connection of a busy batch to get one (a receive that finds none ends with
// ENOBUFS and is re-armed after the next recycle); and an eighth as many large ones for
// connections whose last receive filled a small one, so a stream of large messages arrives in
// one completion each, as one read does on epoll. Buffer IDs run on from one group to the next.
// Counts are powers of two (LoopOptions::uring_buffers).
constexpr std::uint16_t kSmallGroup = 0;
constexpr std::uint32_t kSmallSize = 16 * 1024;
constexpr std::uint16_t kLargeGroup = 1;
constexpr std::uint32_t kLargeSize = 64 * 1024;
static_assert(kLargeGroup < Uring::kBufferGroups);

// user_data of a poll: the fd, its generation and the tag; of a completion request: the token
// with the operation in its low 3 bits.
constexpr std::uint64_t kTagBits = 7;
constexpr std::uint32_t kGenerationMask = (1u << 29) - 1;

std::uint64_t poll_data(int fd, std::uint32_t generation) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(fd)) << 32) |
         (static_cast<std::uint64_t>(generation & kGenerationMask) << 3) | UringPoller::kPoll;
}

std::uint64_t op_data(void* token, UringPoller::Op op) {
  return reinterpret_cast<std::uint64_t>(token) | op;
}

unsigned poll_mask(unsigned interest) {
  return ((interest & kRead) ? POLLIN : 0u) | ((interest & kWrite) ? POLLOUT : 0u);
}

}  // namespace

std::error_code UringPoller::open(unsigned buffers, std::atomic<std::uint64_t>* submit_refusals) {
  const auto small = static_cast<std::uint16_t>(buffers == 0 ? kDefaultBuffers : buffers);
  const auto large = static_cast<std::uint16_t>(std::max(1, small / 8));
  if (std::error_code ec = ring_.open(kRingEntries)) return ec;
  ring_.count_refusals_in(submit_refusals);
  if (std::error_code ec = ring_.register_buffers(kSmallGroup, small, kSmallSize, 0)) {
    return ec;
  }
  return ring_.register_buffers(kLargeGroup, large, kLargeSize, small);
}

UringPoller::FdState& UringPoller::state(int fd) {
  if (static_cast<std::size_t>(fd) >= fds_.size()) fds_.resize(static_cast<std::size_t>(fd) + 256);
  return fds_[static_cast<std::size_t>(fd)];
}

std::error_code UringPoller::add(int fd, unsigned interest, void* token) {
  return register_fd(fd, interest, token, interest == kNone);
}

std::error_code UringPoller::watch_write_space(int fd, void* token) {
  return register_fd(fd, kWrite, token, true);
}

std::error_code UringPoller::register_fd(int fd, unsigned interest, void* token, bool multishot) {
  if (fd < 0) return {EBADF, std::system_category()};
  FdState& st = state(fd);
  // Any completion of an earlier registration of this fd is stale now; a poll of it still in the
  // kernel (a caller that did not remove() first) is cancelled, not left holding the socket.
  disarm(fd, st);
  st.token = token;
  st.want = static_cast<unsigned char>(interest);
  st.multishot = multishot;
  st.registered = true;
  queue_rearm(fd);
  return {};
}

std::error_code UringPoller::modify(int fd, unsigned from, unsigned to, void* token) {
  FdState& st = state(fd);
  st.token = token;
  if (from == to && st.want == to) return {};
  st.want = static_cast<unsigned char>(to);
  st.multishot = to == kNone;
  disarm(fd, st);  // the poll in the kernel asks for the old mask
  queue_rearm(fd);
  return {};
}

void UringPoller::remove(int fd, unsigned /*interest*/) {
  FdState& st = state(fd);
  const bool was_armed = st.armed;
  disarm(fd, st);
  st.token = nullptr;
  st.want = 0;
  st.registered = false;
  // The poll holds the socket's file until its cancel has run: submitted with the next wait, a
  // close(fd) that follows this call would leave the socket open until then (its port bound, its
  // FIN or reset unsent). Submitted now, the file is let go before the caller closes it, as on
  // epoll, whose remove is a system call too. Not before the loop thread owns the ring.
  if (was_armed && enabled_) ring_.submit_now();
}

void UringPoller::disarm(int fd, FdState& st) {
  if (st.armed) {
    // ASYNC_CANCEL, not POLL_REMOVE: a POLL_REMOVE that finds a wake-up of the poll pending fails
    // with EALREADY, and a multishot poll then stays armed, holding the file: the socket would
    // never close. A cancel marks the poll, which ends at its next run.
    io_uring_sqe* sqe = ring_.sqe();
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = poll_data(fd, st.generation);
    sqe->user_data = kInternal;
    st.armed = false;
    ++ending_;  // its last report (no MORE flag), of the old generation, is counted in translate()
  }
  ++st.generation;  // a report from the removed poll, already on its way, is dropped
}

void UringPoller::queue_rearm(int fd) {
  FdState& st = state(fd);
  if (st.queued) return;
  st.queued = true;
  rearm_.push_back(fd);
}

void UringPoller::rearm_all() {
  for (const int fd : rearm_) {
    FdState& st = fds_[static_cast<std::size_t>(fd)];
    st.queued = false;
    if (st.registered && !st.armed) arm(fd, st);
  }
  rearm_.clear();
}

void UringPoller::arm(int fd, FdState& st) {
  // One-shot: re-armed after each report (level-triggered). Except without interest, and for
  // watch_write_space(): the kernel adds POLLERR, POLLHUP and POLLRDHUP to every poll, so a
  // one-shot poll re-armed after the peer's FIN would report it at every wait. A multishot poll
  // reports each wake-up once and stays armed, and translate() drops a report of the FIN alone:
  // without interest, only errors and hang-ups pass, as epoll reports them.
  io_uring_sqe* sqe = ring_.sqe();
  sqe->opcode = IORING_OP_POLL_ADD;
  sqe->fd = fd;
  sqe->poll32_events = poll_mask(st.want);
  if (st.multishot) sqe->len = IORING_POLL_ADD_MULTI;
  sqe->user_data = poll_data(fd, st.generation);
  st.armed = true;
}

void UringPoller::receive(int fd, void* token, bool large) {
  // One-shot, re-armed by the core after each completion: a pause then takes effect after at most
  // one more buffer, where a multishot receive would keep filling buffers until its cancel ran.
  io_uring_sqe* sqe = ring_.sqe();
  sqe->opcode = IORING_OP_RECV;
  sqe->fd = fd;
  sqe->flags = IOSQE_BUFFER_SELECT;
  sqe->buf_group = large ? kLargeGroup : kSmallGroup;
  sqe->user_data = op_data(token, kReceive);
}

void UringPoller::send(int fd, const msghdr* msg, void* token) {
  io_uring_sqe* sqe = ring_.sqe();
  sqe->fd = fd;
  if (msg->msg_iovlen == 1) {  // SEND: no msghdr to import, the kernel's cheaper path
    sqe->opcode = IORING_OP_SEND;
    sqe->addr = reinterpret_cast<std::uint64_t>(msg->msg_iov[0].iov_base);
    // A 32-bit length: capped (at the most one send moves anyway), never wrapped, so a piece of
    // 4 GiB or more (a shared buffer) is not asked for as 0 bytes, which would spin.
    sqe->len = static_cast<std::uint32_t>(std::min<std::size_t>(msg->msg_iov[0].iov_len, kMaxSend));
  } else {
    sqe->opcode = IORING_OP_SENDMSG;
    sqe->addr = reinterpret_cast<std::uint64_t>(msg);
    sqe->len = 1;
  }
  sqe->msg_flags = MSG_NOSIGNAL;
  sqe->user_data = op_data(token, kSend);
}

void UringPoller::accept(int fd, void* token) {
  // Multishot: the kernel accepts each connection as it arrives (in this thread's next wait, with
  // DEFER_TASKRUN), no poll re-armed and no accept4 per connection. No address buffer: every
  // accept of a batch would write the same one; the core asks getpeername per connection.
  io_uring_sqe* sqe = ring_.sqe();
  sqe->opcode = IORING_OP_ACCEPT;
  sqe->fd = fd;
  sqe->ioprio = IORING_ACCEPT_MULTISHOT;
  sqe->accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
  sqe->user_data = op_data(token, kAccept);
}

void UringPoller::cancel(void* token, Op op) {
  io_uring_sqe* sqe = ring_.sqe();
  sqe->opcode = IORING_OP_ASYNC_CANCEL;
  sqe->fd = -1;
  sqe->addr = op_data(token, op);
  sqe->user_data = kInternal;
}

bool UringPoller::translate(const io_uring_cqe& cqe, PollEvent& out) {
  out = PollEvent{};
  const std::uint64_t data = cqe.user_data;
  switch (data & kTagBits) {
    case kPoll: {
      const int fd = static_cast<int>(data >> 32);
      FdState& st = state(fd);
      if (((data >> 3) & kGenerationMask) != (st.generation & kGenerationMask)) {
        // A removed poll's report: its last one (cancelled, or completed before the cancel came)
        // means it has let go of the file.
        if (!(cqe.flags & IORING_CQE_F_MORE) && ending_ > 0) --ending_;
        return false;
      }
      if (!(cqe.flags & IORING_CQE_F_MORE)) {  // a multishot poll stays armed while MORE is set
        st.armed = false;
        if (st.registered) queue_rearm(fd);  // level-triggered: asked again before the next wait
      }
      if (cqe.res == -ECANCELED) return false;
      out.token = st.token;
      if (cqe.res < 0) {
        out.error = true;
        out.result = cqe.res;
      } else {
        out.readable = (cqe.res & POLLIN) != 0;
        out.writable = (cqe.res & POLLOUT) != 0;
        out.error = (cqe.res & POLLERR) != 0;
        out.hangup = (cqe.res & POLLHUP) != 0;
        // A FIN alone (see arm()) is no news: epoll would not report it without read interest.
        if (!(out.readable || out.writable || out.error || out.hangup)) return false;
      }
      return out.token != nullptr;
    }
    case kReceive:
      out.token = reinterpret_cast<void*>(data & ~kTagBits);
      out.op = PollEvent::Op::received;
      out.result = cqe.res;
      out.more = (cqe.flags & IORING_CQE_F_MORE) != 0;
      if (cqe.flags & IORING_CQE_F_BUFFER) {
        const auto id = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
        out.data = ring_.buffer(id);
        out.large = static_cast<std::uint32_t>(cqe.res) >= kSmallSize;
        used_.push_back(id);  // back to the kernel at the next wait: the core is done with it
      }
      return true;
    case kSend:
      out.token = reinterpret_cast<void*>(data & ~kTagBits);
      out.op = PollEvent::Op::sent;
      out.result = cqe.res;
      return true;
    case kAccept:
      out.token = reinterpret_cast<void*>(data & ~kTagBits);
      out.op = PollEvent::Op::accepted;
      out.result = cqe.res;
      out.more = (cqe.flags & IORING_CQE_F_MORE) != 0;
      return true;
    default:
      return false;  // a cancel's or a poll removal's own completion
  }
}

int UringPoller::wait(PollEvent* out, int capacity, int timeout_ms) {
  if (!enabled_) {
    // The first wait runs on the loop thread: it becomes the ring's only submitter.
    if (std::error_code ec = ring_.enable()) return -ec.value();
    enabled_ = true;
  }
  for (const std::uint16_t id : used_) ring_.recycle_buffer(id);
  used_.clear();
  rearm_all();
  // Submits this iteration's requests (sends, receives, accepts, cancels, re-armed polls) and
  // waits, in one system call; without waiting when completions are already there.
  if (const int rc = ring_.submit_and_wait(timeout_ms); rc < 0) return rc;
  int n = 0;
  ring_.drain_completions(static_cast<unsigned>(capacity), [&](const io_uring_cqe& cqe) {
    if (translate(cqe, out[n])) ++n;
  });
  return n;
}

}  // namespace evloop::detail
