// The thin io_uring (src/linux/uring.*): a full submission queue is handed to the kernel; requests
// a full queue the kernel will not take are kept and submitted later, never lost; a refusal is
// retried while it may pass (EAGAIN, EBUSY) and fails the ring loudly when final.
#include "linux/uring.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace evloop::detail {
namespace {

constexpr unsigned kEntries = 4;

// Opens a ring of kEntries: empty, or why the kernel refused io_uring.
std::string open_failure(Uring& ring) {
  const std::error_code ec = ring.open(kEntries);
  return ec ? ec.message() : std::string{};
}

void queue_nop(Uring& ring, std::uint64_t id) {
  io_uring_sqe* sqe = ring.sqe();
  sqe->opcode = IORING_OP_NOP;
  sqe->user_data = id;
}

// The user_data of every completion that arrives within a bounded number of waits.
std::multiset<std::uint64_t> completions(Uring& ring, std::size_t expected) {
  std::multiset<std::uint64_t> seen;
  for (int waits = 0; seen.size() < expected && waits < 100; ++waits) {
    EXPECT_GE(ring.submit_and_wait(1000), 0);
    ring.drain_completions(64, [&](const io_uring_cqe& cqe) {
      EXPECT_EQ(cqe.res, 0);
      seen.insert(cqe.user_data);
    });
  }
  return seen;
}

TEST(UringTest, MoreRequestsThanTheQueueHoldsAllComplete) {
  Uring ring;
  if (const std::string why = open_failure(ring); !why.empty()) {
    GTEST_SKIP() << "io_uring unavailable here: " << why;
  }
  ASSERT_FALSE(ring.enable());
  constexpr std::uint64_t kRequests = 3 * kEntries + 1;  // three flushes of a full queue
  std::multiset<std::uint64_t> expected;
  for (std::uint64_t id = 1; id <= kRequests; ++id) {
    queue_nop(ring, id);
    expected.insert(id);
  }
  EXPECT_EQ(completions(ring, kRequests), expected);
}

// The kernel refuses a full queue (here: the ring is not enabled yet, so every submission fails
// with EBADFD; under load: EAGAIN or EBUSY). The requests that did not fit are kept, in order,
// and every one is submitted once the kernel takes them: none lost, none overwritten, and the
// ring does not fail. (It used to fail for good at the first refusal: the loop stopped.)
TEST(UringTest, RequestsAFullQueueTheKernelRefusedAreKeptAndSubmittedInOrderLater) {
  Uring ring;
  if (const std::string why = open_failure(ring); !why.empty()) {
    GTEST_SKIP() << "io_uring unavailable here: " << why;
  }
  std::atomic<std::uint64_t> refusals{0};
  ring.count_refusals_in(&refusals);
  // Three queues' worth: more kept aside than the queue holds, so submitting them takes rounds.
  constexpr std::uint64_t kRequests = 3 * kEntries + 1;
  for (std::uint64_t id = 1; id <= kRequests; ++id) queue_nop(ring, id);
  ASSERT_FALSE(ring.enable());
  std::vector<std::uint64_t> order;
  for (int waits = 0; order.size() < kRequests && waits < 100; ++waits) {
    ASSERT_GE(ring.submit_and_wait(1000), 0);
    ring.drain_completions(64, [&](const io_uring_cqe& cqe) {
      EXPECT_EQ(cqe.res, 0);
      order.push_back(cqe.user_data);
    });
  }
  std::vector<std::uint64_t> expected;
  for (std::uint64_t id = 1; id <= kRequests; ++id) expected.push_back(id);
  EXPECT_EQ(order, expected) << "a NOP completes as it is submitted: in the order queued";
  EXPECT_EQ(refusals.load(), 0u) << "enabled, the ring took every kept request at once";
}

// A refusal that is not for want of resources (EBADFD: a ring never enabled) is final: the ring
// says so at once and at every later wait, and asking for an entry stays safe.
TEST(UringTest, ARingTheKernelRefusesForGoodFailsLoudly) {
  Uring ring;
  if (const std::string why = open_failure(ring); !why.empty()) {
    GTEST_SKIP() << "io_uring unavailable here: " << why;
  }
  std::atomic<std::uint64_t> refusals{0};
  ring.count_refusals_in(&refusals);
  for (std::uint64_t id = 1; id <= kEntries + 1; ++id) queue_nop(ring, id);
  EXPECT_EQ(ring.submit_and_wait(0), -EBADFD);
  EXPECT_EQ(ring.submit_and_wait(0), -EBADFD) << "a failed ring must stay failed";
  queue_nop(ring, kEntries + 2);  // still safe to ask for an entry: it goes nowhere
  EXPECT_EQ(ring.submit_and_wait(0), -EBADFD);
  EXPECT_EQ(refusals.load(), 1u) << "counted once: a failed ring is not submitted again";
}

// The retry policy itself, on a clock the test moves (this kernel never refuses with EAGAIN or
// EBUSY short of a memory cgroup's OOM: see RELIABILITY.md).
TEST(SubmitRefusalsTest, EagainAndEbusyAreRetriedUntilTheLimitPassesWithNothingTaken) {
  using namespace std::chrono_literals;
  SubmitRefusals refusals(100ms);
  const SubmitRefusals::Clock::time_point t0{};
  for (const int error : {EAGAIN, EBUSY}) {
    EXPECT_FALSE(refusals.final(error, t0));
    EXPECT_FALSE(refusals.final(error, t0 + 50ms));
    EXPECT_FALSE(refusals.final(error, t0 + 99ms));
    EXPECT_TRUE(refusals.final(error, t0 + 100ms)) << "refused for the whole limit: final";
    refusals.taken();
  }
}

TEST(SubmitRefusalsTest, ASubmissionTakenStartsTheLimitAgain) {
  using namespace std::chrono_literals;
  SubmitRefusals refusals(100ms);
  const SubmitRefusals::Clock::time_point t0{};
  EXPECT_FALSE(refusals.final(EAGAIN, t0));
  EXPECT_FALSE(refusals.final(EAGAIN, t0 + 90ms));
  refusals.taken();  // progress: the kernel took something
  EXPECT_FALSE(refusals.final(EAGAIN, t0 + 150ms));
  EXPECT_FALSE(refusals.final(EBUSY, t0 + 240ms));
  EXPECT_TRUE(refusals.final(EAGAIN, t0 + 250ms));
}

TEST(SubmitRefusalsTest, OtherErrorsAreFinalAtOnce) {
  SubmitRefusals refusals;
  const SubmitRefusals::Clock::time_point t0{};
  for (const int error : {EBADF, EBADFD, EFAULT, EINVAL, EOPNOTSUPP}) {
    EXPECT_TRUE(refusals.final(error, t0)) << error;
  }
}

}  // namespace
}  // namespace evloop::detail
