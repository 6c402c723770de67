// OutputBuffer: order, partial consumes across chunk boundaries, memory given back.
#include <gtest/gtest.h>

#include <string>

#include "output_buffer.hpp"
#include "test_support.hpp"

namespace evloop::detail {
namespace {

std::string drain_some(OutputBuffer& buf, std::size_t max) {
  iovec iov[8];
  const int n = buf.gather(iov, 8);
  std::string out;
  for (int i = 0; i < n && out.size() < max; ++i) {
    const std::size_t take = std::min(iov[i].iov_len, max - out.size());
    out.append(static_cast<const char*>(iov[i].iov_base), take);
  }
  buf.consume(out.size());
  return out;
}

TEST(OutputBufferTest, KeepsOrderAcrossChunksAndPartialConsumes) {
  ChunkPool pool;
  OutputBuffer buf(pool);
  const std::string data = test::pattern(5 * Chunk::kCapacity + 123);
  // Appends of awkward sizes, consumes of other awkward sizes, interleaved.
  std::size_t appended = 0;
  std::string received;
  std::size_t step = 1;
  while (received.size() < data.size()) {
    const std::size_t add = std::min(data.size() - appended, step * 977 % 20000 + 1);
    buf.append(data.data() + appended, add);
    appended += add;
    received += drain_some(buf, step * 1543 % 30000 + 1);
    ASSERT_EQ(buf.size(), appended - received.size());
    ++step;
  }
  EXPECT_EQ(received, data);
  EXPECT_TRUE(buf.empty());
}

TEST(OutputBufferTest, GivesChunksBackWhenDrained) {
  ChunkPool pool(4);
  {
    OutputBuffer buf(pool);
    const std::string data = test::pattern(10 * Chunk::kCapacity);
    buf.append(data.data(), data.size());
    EXPECT_EQ(pool.free_count(), 0u);
    buf.consume(buf.size());
    EXPECT_TRUE(buf.empty());
    // The pool keeps at most 4 idle chunks; the rest went back to the allocator.
    EXPECT_EQ(pool.free_count(), 4u);
  }
  OutputBuffer reuse(pool);
  reuse.append("x", 1);
  EXPECT_EQ(pool.free_count(), 3u);  // steady state takes from the pool, allocates nothing
}

TEST(OutputBufferTest, GatherListsPiecesOldestFirst) {
  ChunkPool pool;
  OutputBuffer buf(pool);
  const std::string data = test::pattern(3 * Chunk::kCapacity);
  buf.append(data.data(), data.size());
  buf.consume(10);
  iovec iov[2];
  ASSERT_EQ(buf.gather(iov, 2), 2);  // capped at max
  EXPECT_EQ(iov[0].iov_len, Chunk::kCapacity - 10);
  EXPECT_EQ(std::string(static_cast<const char*>(iov[0].iov_base), 5), data.substr(10, 5));
  buf.clear();
  EXPECT_EQ(buf.gather(iov, 2), 0);
}

}  // namespace
}  // namespace evloop::detail
