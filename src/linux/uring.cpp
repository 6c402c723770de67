// A thin io_uring over the raw system calls. See uring.hpp.
#include "uring.hpp"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <system_error>
#include <thread>

namespace evloop::detail {
namespace {

std::error_code error(int e) { return {e, std::system_category()}; }

// Creates the ring on a thread of its own that ends at once. The kernel records the creating
// thread as a user of the ring, and when the ring is closed it interrupts every recorded thread
// that is still alive (task work with TWA_SIGNAL), so that thread's blocking system call at that
// moment fails with EINTR where it cannot be restarted: connect() with SO_SNDTIMEO, epoll_wait().
// That thread would be the one that called start(), the user's, long after the loops stopped (a
// test that started a server and connected its clients again saw EINTR on 1 connect in 3). A
// thread that has ended is no ring's user; the loop thread that enables the ring is one anyway.
int setup(unsigned entries, io_uring_params& params) {
  int fd = -1;
  int setup_errno = 0;
  try {
    std::thread([&] {
      fd = static_cast<int>(::syscall(__NR_io_uring_setup, entries, &params));
      setup_errno = errno;
    }).join();
  } catch (const std::system_error& e) {  // no thread to be had: as the kernel says it
    setup_errno = e.code().value() != 0 ? e.code().value() : EAGAIN;
  }
  if (fd < 0) errno = setup_errno;
  return fd;
}

int register_op(int fd, unsigned op, const void* arg, unsigned count) {
  return static_cast<int>(::syscall(__NR_io_uring_register, fd, op, arg, count));
}

void* map(int fd, std::size_t size, off_t offset) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset);
  return p == MAP_FAILED ? nullptr : p;
}

// The operations evloop submits; a kernel that lacks one is not used.
constexpr unsigned kOpsUsed[] = {IORING_OP_POLL_ADD, IORING_OP_RECV,         IORING_OP_SEND,
                                 IORING_OP_SENDMSG,  IORING_OP_ASYNC_CANCEL, IORING_OP_ACCEPT};

bool supports_ops(int fd) {
  // io_uring_probe ends in a flexible array: room for 256 ops after its header.
  constexpr std::size_t kOps = 256;
  alignas(io_uring_probe) unsigned char
      storage[sizeof(io_uring_probe) + kOps * sizeof(io_uring_probe_op)] = {};
  auto* probe = reinterpret_cast<io_uring_probe*>(storage);
  if (register_op(fd, IORING_REGISTER_PROBE, probe, kOps) < 0) return false;
  const auto* ops = reinterpret_cast<const io_uring_probe_op*>(storage + sizeof(io_uring_probe));
  for (const unsigned op : kOpsUsed) {
    if (op > probe->last_op || !(ops[op].flags & IO_URING_OP_SUPPORTED)) return false;
  }
  return true;
}

}  // namespace

Uring::~Uring() {
  for (const BufferGroup& g : groups_) {
    if (g.buffers != nullptr) ::munmap(g.buffers, g.buffers_size);
    if (g.ring != nullptr) ::munmap(g.ring, g.ring_size);
  }
  if (sqes_map_ != nullptr) ::munmap(sqes_map_, sqes_size_);
  if (ring_ != nullptr) ::munmap(ring_, ring_size_);
  if (fd_ >= 0) ::close(fd_);
}

std::error_code Uring::open(unsigned entries) {
  // The best flags first; each refused set (EINVAL from an older kernel) drops the newest flag.
  constexpr unsigned kDisabled = IORING_SETUP_R_DISABLED;
  constexpr unsigned kTries[] = {
      kDisabled | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
          IORING_SETUP_DEFER_TASKRUN,
      kDisabled | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER,
      kDisabled | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
      kDisabled | IORING_SETUP_SUBMIT_ALL,
      kDisabled,
  };
  io_uring_params params{};
  for (const unsigned flags : kTries) {
    params = io_uring_params{};
    params.flags = flags;
    fd_ = setup(entries, params);
    if (fd_ >= 0 || errno != EINVAL) break;
  }
  if (fd_ < 0) return error(errno);
  flags_ = params.flags;
  constexpr unsigned kNeeded = IORING_FEAT_SINGLE_MMAP | IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG;
  if ((params.features & kNeeded) != kNeeded || !supports_ops(fd_)) {
    return error(EOPNOTSUPP);
  }
  sq_entries_ = params.sq_entries;
  ring_size_ = std::max(params.sq_off.array + params.sq_entries * sizeof(unsigned),
                        params.cq_off.cqes + params.cq_entries * sizeof(io_uring_cqe));
  ring_ = map(fd_, ring_size_, IORING_OFF_SQ_RING);
  sqes_size_ = params.sq_entries * sizeof(io_uring_sqe);
  sqes_map_ = map(fd_, sqes_size_, IORING_OFF_SQES);
  if (ring_ == nullptr || sqes_map_ == nullptr) return error(ENOMEM);
  auto* base = static_cast<char*>(ring_);
  sq_.head = reinterpret_cast<unsigned*>(base + params.sq_off.head);
  sq_.tail = reinterpret_cast<unsigned*>(base + params.sq_off.tail);
  sq_.mask = reinterpret_cast<unsigned*>(base + params.sq_off.ring_mask);
  sq_.array = reinterpret_cast<unsigned*>(base + params.sq_off.array);
  sq_.sqes = static_cast<io_uring_sqe*>(sqes_map_);
  sq_.local_tail = *sq_.tail;
  for (unsigned i = 0; i < params.sq_entries; ++i) sq_.array[i] = i;  // slot i is sqe i
  cq_.head = reinterpret_cast<unsigned*>(base + params.cq_off.head);
  cq_.tail = reinterpret_cast<unsigned*>(base + params.cq_off.tail);
  cq_.mask = reinterpret_cast<unsigned*>(base + params.cq_off.ring_mask);
  cq_.cqes = reinterpret_cast<io_uring_cqe*>(base + params.cq_off.cqes);
  return {};
}

std::error_code Uring::enable() {
  return register_op(fd_, IORING_REGISTER_ENABLE_RINGS, nullptr, 0) < 0 ? error(errno)
                                                                        : std::error_code{};
}

std::error_code Uring::register_buffers(std::uint16_t group, std::uint16_t count,
                                        std::uint32_t size, std::uint16_t first_id) {
  BufferGroup& g = groups_[group];
  g.ring_size = std::size_t{count} * sizeof(io_uring_buf);
  void* ring =
      ::mmap(nullptr, g.ring_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ring == MAP_FAILED) return error(errno);
  g.ring = static_cast<io_uring_buf*>(ring);
  g.buffers_size = std::size_t{count} * size;
  void* buffers =
      ::mmap(nullptr, g.buffers_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buffers == MAP_FAILED) return error(errno);
  g.buffers = static_cast<char*>(buffers);
  g.buffer_size = size;
  g.count = count;
  g.first_id = first_id;
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(g.ring);
  reg.ring_entries = count;
  reg.bgid = group;
  if (register_op(fd_, IORING_REGISTER_PBUF_RING, &reg, 1) < 0) return error(errno);
  for (std::uint16_t i = 0; i < count; ++i) {
    recycle_buffer(static_cast<std::uint16_t>(first_id + i));
  }
  publish_buffers();
  return {};
}

void Uring::recycle_buffer(std::uint16_t id) noexcept {
  BufferGroup& g = groups_[group_of(id)];
  io_uring_buf& b = g.ring[g.tail & (g.count - 1)];
  b.addr = reinterpret_cast<std::uint64_t>(buffer(id));
  b.len = g.buffer_size;
  b.bid = id;
  ++g.tail;
}

void Uring::publish_buffers() noexcept {
  // A ring's tail is the `resv` field of its first entry (struct io_uring_buf_ring overlays the
  // two). Addressed by hand: g++ lays the header's flexible array out at offset 8 in C++.
  for (BufferGroup& g : groups_) {
    if (g.ring != nullptr) __atomic_store_n(&g.ring[0].resv, g.tail, __ATOMIC_RELEASE);
  }
}

io_uring_sqe* Uring::sqe() {
  if (failed_ != 0) {
    std::memset(scratch_.bytes, 0, sizeof scratch_.bytes);
    return reinterpret_cast<io_uring_sqe*>(scratch_.bytes);
  }
  if (kept_.empty() && sq_full()) {
    // Full: hand what is queued to the kernel now to make room. Submission only: no completions
    // are reaped or waited for here (they must reach the caller's next wait).
    if (enter(publish(), 0, 0, nullptr, 0) > 0) refusals_.taken();
  }
  if (!kept_.empty() || sq_full()) {
    // The kernel took none (out of resources, or the ring is not enabled yet): the entry waits
    // aside, after those already kept, for submit_and_wait(), which decides if that is final.
    EntryBytes& kept = kept_.emplace_back();
    std::memset(kept.bytes, 0, sizeof kept.bytes);
    return reinterpret_cast<io_uring_sqe*>(kept.bytes);
  }
  io_uring_sqe* entry = &sq_.sqes[sq_.local_tail & *sq_.mask];
  std::memset(entry, 0, sizeof *entry);
  ++sq_.local_tail;
  return entry;
}

void Uring::queue_kept() noexcept {
  for (; !kept_.empty() && !sq_full(); kept_.pop_front()) {
    std::memcpy(&sq_.sqes[sq_.local_tail & *sq_.mask], kept_.front().bytes, sizeof(io_uring_sqe));
    ++sq_.local_tail;
  }
}

unsigned Uring::publish() noexcept {
  __atomic_store_n(sq_.tail, sq_.local_tail, __ATOMIC_RELEASE);
  publish_buffers();
  return sq_.local_tail - __atomic_load_n(sq_.head, __ATOMIC_ACQUIRE);
}

int Uring::enter(unsigned to_submit, unsigned min_complete, unsigned flags, const void* arg,
                 std::size_t arg_size) noexcept {
  const long rc =
      ::syscall(__NR_io_uring_enter, fd_, to_submit, min_complete, flags, arg, arg_size);
  return rc < 0 ? -errno : static_cast<int>(rc);
}

bool Uring::sq_full() const noexcept {
  return sq_.local_tail - __atomic_load_n(sq_.head, __ATOMIC_ACQUIRE) >= sq_entries_;
}

void Uring::submit_now() noexcept {
  if (failed_ != 0) return;
  queue_kept();
  (void)enter(publish(), 0, IORING_ENTER_GETEVENTS, nullptr, 0);
}

bool SubmitRefusals::final(int error, Clock::time_point now) noexcept {
  if (error != EAGAIN && error != EBUSY) return true;
  if (!refusing_) {
    refusing_ = true;
    since_ = now;
    return false;
  }
  return now - since_ >= limit_;
}

int Uring::refused(int error, int timeout_ms) {
  if (refusal_count_ != nullptr) refusal_count_->fetch_add(1, std::memory_order_relaxed);
  if (refusals_.final(error, std::chrono::steady_clock::now())) {
    failed_ = error;
    return -error;
  }
  // Submitted again by the next call. Completions already there are reaped by the caller first
  // (reaping is what frees what the kernel lacks); with none yet, wait briefly for one without
  // submitting, so a loop with nothing else to do does not spin on the refusal.
  if (!has_completions() && timeout_ms != 0) {
    constexpr int kRetryMs = 10;
    const int ms = timeout_ms < 0 ? kRetryMs : std::min(timeout_ms, kRetryMs);
    __kernel_timespec ts{0, ms * 1'000'000L};
    io_uring_getevents_arg arg{};
    arg.ts = reinterpret_cast<std::uint64_t>(&ts);
    (void)enter(0, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
  }
  return 0;
}

int Uring::submit_and_wait(int timeout_ms) {
  if (failed_ != 0) return -failed_;
  // Entries kept aside by sqe() go first, in order. While more are kept than the queue holds,
  // the queue is submitted alone to make room (only after a refusal: the usual call is one
  // io_uring_enter that submits and waits).
  for (queue_kept(); !kept_.empty(); queue_kept()) {
    const int rc = enter(publish(), 0, 0, nullptr, 0);
    if (rc == -EINTR) return 0;
    if (rc <= 0) return refused(rc == 0 ? EBUSY : -rc, timeout_ms);
    refusals_.taken();
  }
  const unsigned queued = publish();
  // Completions already waiting: collect them without blocking.
  const unsigned want = timeout_ms == 0 || has_completions() ? 0 : 1;
  int rc;
  if (want == 0 || timeout_ms < 0) {
    rc = enter(queued, want, IORING_ENTER_GETEVENTS, nullptr, 0);
  } else {
    __kernel_timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1'000'000L};
    io_uring_getevents_arg arg{};
    arg.ts = reinterpret_cast<std::uint64_t>(&ts);
    rc = enter(queued, want, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
  }
  // EAGAIN, EBUSY: nothing was submitted (a submission that took some returns its count).
  if (rc == -EAGAIN || rc == -EBUSY) return refused(-rc, timeout_ms);
  if (rc == -EINTR || rc == -ETIME) return 0;
  if (rc > 0) refusals_.taken();
  return rc;
}

}  // namespace evloop::detail
