// Internal. A thin io_uring: the kernel's own interface (io_uring_setup/enter/register and
// <linux/io_uring.h>), no liburing. One ring per loop, used by the loop thread only.
//
// The ring is created disabled and enabled on the loop thread (enable()), so SINGLE_ISSUER binds
// it to that thread even though it is made before the thread starts; requests prepared before
// then are submitted by the first wait. Every wait submits what was prepared since the last one,
// so a loop iteration's receives, sends and polls cost one io_uring_enter together.
#pragma once

#include <linux/io_uring.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <system_error>

namespace evloop::detail {

/// When a refused submission stops being retried. io_uring_enter refuses a whole queue with
/// EAGAIN ("unable to allocate memory for the request, or otherwise ran out of resources") or
/// EBUSY (older kernels: completions overflowed and must be reaped first): both pass once memory
/// is back or completions are reaped, so they are retried until `limit` has gone by with the
/// kernel taking nothing. Any other refusal (EBADF, EBADFD, EFAULT...) is for good.
class SubmitRefusals {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kDefaultLimit{10'000};
  explicit SubmitRefusals(std::chrono::milliseconds limit = kDefaultLimit) : limit_(limit) {}

  /// The kernel took none of the queue with `error` at `now`: true when that is final.
  bool final(int error, Clock::time_point now) noexcept;
  /// The kernel took a submission: a refusal that follows starts a new limit.
  void taken() noexcept { refusing_ = false; }

 private:
  std::chrono::milliseconds limit_;
  bool refusing_ = false;      // refused, and nothing taken since
  Clock::time_point since_{};  // the first refusal of this run
};

class Uring {
 public:
  Uring() = default;
  ~Uring();
  Uring(const Uring&) = delete;
  Uring& operator=(const Uring&) = delete;

  /// Creates the ring (disabled) with the fastest flags the kernel takes: SINGLE_ISSUER,
  /// DEFER_TASKRUN, COOP_TASKRUN, SUBMIT_ALL, each dropped if refused. Also checks the features
  /// evloop needs (EXT_ARG, NODROP, the ops it uses). ENOSYS, EPERM (io_uring_disabled, seccomp),
  /// EOPNOTSUPP (a missing feature), ENOMEM...
  std::error_code open(unsigned entries);
  /// Enables the ring on the calling thread, which becomes its only submitter.
  std::error_code enable();
  static constexpr std::uint16_t kBufferGroups = 2;
  /// Registers a ring of `count` (a power of two) provided buffers of `size` bytes each as group
  /// `group` (< kBufferGroups), and fills it (kernel 5.19+). Its buffers have the IDs first_id to
  /// first_id + count - 1 (the kernel reports a buffer by its ID), so IDs tell the groups apart.
  std::error_code register_buffers(std::uint16_t group, std::uint16_t count, std::uint32_t size,
                                   std::uint16_t first_id);
  /// The bytes of the provided buffer with ID `id` (as the kernel reports it), of whichever group.
  char* buffer(std::uint16_t id) const noexcept {
    const BufferGroup& g = groups_[group_of(id)];
    return g.buffers + std::size_t(id - g.first_id) * g.buffer_size;
  }
  /// Gives buffer `id` back to its group (published with the next wait).
  void recycle_buffer(std::uint16_t id) noexcept;

  /// A zeroed submission entry; submits what is queued first if the queue is full. If the kernel
  /// takes none of a full queue (or the ring is not enabled yet), the entry is kept aside, in
  /// order, and submitted by a later wait: never overwritten, never lost. Nothing is allocated
  /// unless the kernel refuses.
  io_uring_sqe* sqe();
  /// Submits what is queued (first what was kept aside) and waits up to `timeout_ms` (-1: no
  /// limit, 0: not at all) for at least one completion. Returns the number submitted, or -errno
  /// (EINTR and ETIME are not errors: they return 0). A refusal the kernel may lift (EAGAIN,
  /// EBUSY: see SubmitRefusals) returns 0 too, after waiting briefly for completions to reap,
  /// and the queue is submitted again by the next call; one that is final returns the error,
  /// now and at every later call.
  int submit_and_wait(int timeout_ms);
  /// How long a refusal the kernel may lift is retried (tests shorten it).
  void set_refusal_limit(std::chrono::milliseconds limit) noexcept {
    refusals_ = SubmitRefusals(limit);
  }
  /// Bumps `counter` (relaxed; null: none) once for each submission the kernel refuses (see
  /// submit_and_wait()): each one retried, and the final one.
  void count_refusals_in(std::atomic<std::uint64_t>* counter) noexcept { refusal_count_ = counter; }
  /// Submits what is queued and runs the kernel's deferred work (DEFER_TASKRUN), without waiting:
  /// a poll cancelled by what was queued has ended, and let go of its file, when this returns.
  /// Its completions wait for the next submit_and_wait(). A refusal is left to that call to report.
  void submit_now() noexcept;
  /// Calls fn(cqe) for up to `max` completions ready, then marks them seen.
  template <typename Fn>
  unsigned drain_completions(unsigned max, Fn&& fn) {
    unsigned head = *cq_.head;
    const unsigned tail = __atomic_load_n(cq_.tail, __ATOMIC_ACQUIRE);
    unsigned seen = 0;
    for (; head != tail && seen < max; ++head, ++seen) fn(cq_.cqes[head & *cq_.mask]);
    __atomic_store_n(cq_.head, head, __ATOMIC_RELEASE);
    return seen;
  }
  /// True when completions are waiting to be drained.
  bool has_completions() const noexcept {
    return *cq_.head != __atomic_load_n(cq_.tail, __ATOMIC_ACQUIRE);
  }
  int fd() const noexcept { return fd_; }

 private:
  struct SubmissionQueue {
    unsigned* head = nullptr;
    unsigned* tail = nullptr;
    unsigned* mask = nullptr;
    unsigned* array = nullptr;
    io_uring_sqe* sqes = nullptr;
    unsigned local_tail = 0;  // queued, not yet published
  };
  struct CompletionQueue {
    unsigned* head = nullptr;
    unsigned* tail = nullptr;
    unsigned* mask = nullptr;
    io_uring_cqe* cqes = nullptr;
  };
  int enter(unsigned to_submit, unsigned min_complete, unsigned flags, const void* arg,
            std::size_t arg_size) noexcept;
  unsigned publish() noexcept;
  bool sq_full() const noexcept;  // every entry queued and not yet taken by the kernel
  void publish_buffers() noexcept;
  void queue_kept() noexcept;  // moves kept entries into the queue while it has room
  int refused(int error, int timeout_ms);

  int fd_ = -1;
  unsigned flags_ = 0;
  void* ring_ = nullptr;
  std::size_t ring_size_ = 0;
  void* sqes_map_ = nullptr;
  std::size_t sqes_size_ = 0;
  SubmissionQueue sq_;
  CompletionQueue cq_;
  unsigned sq_entries_ = 0;
  int failed_ = 0;  // errno of a final refusal: every later submit_and_wait() returns it
  SubmitRefusals refusals_;
  std::atomic<std::uint64_t>* refusal_count_ = nullptr;
  // An entry as bytes: io_uring_sqe ends in a flexible array, so it cannot be an element.
  struct EntryBytes {
    alignas(io_uring_sqe) unsigned char bytes[sizeof(io_uring_sqe)];
  };
  // Handed out once failed_: written, never submitted.
  EntryBytes scratch_ = {};
  // Entries that did not fit a queue the kernel would not take, oldest first (a deque: a new one
  // does not move those handed out). Empty but for a refusal.
  std::deque<EntryBytes> kept_;
  // A group of provided buffers: its ring (registered with the kernel) and the buffers.
  struct BufferGroup {
    io_uring_buf* ring = nullptr;  // the provided-buffer ring, as its array of entries
    std::size_t ring_size = 0;
    char* buffers = nullptr;
    std::size_t buffers_size = 0;
    std::uint32_t buffer_size = 0;
    std::uint16_t count = 0;
    std::uint16_t first_id = 0;
    std::uint16_t tail = 0;  // local tail of the ring, published with the next wait
  };
  BufferGroup groups_[kBufferGroups];
  // The group of buffer ID `id` (every ID the kernel reports is in a registered group).
  std::size_t group_of(std::uint16_t id) const noexcept {
    std::size_t group = 0;
    while (group + 1 < kBufferGroups && !holds(groups_[group], id)) ++group;
    return group;
  }
  static bool holds(const BufferGroup& g, std::uint16_t id) noexcept {
    return id >= g.first_id && id - g.first_id < g.count;
  }
};

}  // namespace evloop::detail
