// The thin io_uring (src/linux/uring.*): a full submission queue is handed to the kernel, and a
// queue the kernel will not take fails the ring loudly instead of losing a request.
#include "linux/uring.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <set>
#include <string>

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

TEST(UringTest, AFullQueueTheKernelRefusesFailsTheRingInsteadOfLosingARequest) {
  Uring ring;
  if (const std::string why = open_failure(ring); !why.empty()) {
    GTEST_SKIP() << "io_uring unavailable here: " << why;
  }
  // Not enabled yet: the kernel refuses every submission (EBADFD), as it would a queue it could
  // not take under load.
  for (std::uint64_t id = 1; id <= kEntries; ++id) queue_nop(ring, id);
  queue_nop(ring, kEntries + 1);  // the queue is full and cannot be flushed
  ASSERT_FALSE(ring.enable());
  // Either every request completes as asked, or the ring says it failed, now and for good; never
  // a request overwritten before it was submitted.
  const int rc = ring.submit_and_wait(0);
  ASSERT_LT(rc, 0) << "the fifth request had no room, and submit_and_wait() did not say so";
  EXPECT_EQ(rc, -EBADFD);
  EXPECT_EQ(ring.submit_and_wait(0), -EBADFD) << "a failed ring must stay failed";
  queue_nop(ring, kEntries + 2);  // still safe to ask for an entry: it goes nowhere
  EXPECT_EQ(ring.submit_and_wait(0), -EBADFD);
}

}  // namespace
}  // namespace evloop::detail
