// OutputBuffer: order, partial consumes across chunk boundaries, memory given back.
#include <gtest/gtest.h>

#include <unistd.h>

#include <memory>
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

// Copied bytes, shared ranges and a file range keep their order; gather() stops at the file;
// consume() crosses piece kinds; size() counts the file, memory_size() does not.
TEST(OutputBufferTest, MixedPiecesKeepTheirOrder) {
  ChunkPool pool;
  OutputBuffer buf(pool);
  auto shared = std::make_shared<const std::string>("0123456789");
  buf.append("ab", 2);
  buf.append_shared(shared, 2, 6);  // "2345"
  buf.append("cd", 2);
  const int file = ::dup(1);  // any fd: the buffer owns and closes it
  buf.append_file(file, 100, 50);
  buf.append_shared(shared, 0, 3);  // "012"
  EXPECT_EQ(buf.size(), 2u + 4 + 2 + 50 + 3);
  EXPECT_EQ(buf.memory_size(), 2u + 4 + 2 + 3);
  EXPECT_TRUE(buf.has_file());
  EXPECT_EQ(drain_some(buf, 3), "ab2");  // gather stops at the file piece
  EXPECT_EQ(drain_some(buf, 100), "345cd");
  const FilePiece* piece = buf.file_at_head();
  ASSERT_NE(piece, nullptr);
  const FilePiece& f = *piece;
  EXPECT_EQ(f.offset, 100u);
  buf.consume(20);  // part of the file
  EXPECT_EQ(f.offset, 120u);
  EXPECT_EQ(f.remaining, 30u);
  buf.consume(30);
  EXPECT_FALSE(buf.has_file());
  EXPECT_EQ(buf.file_at_head(), nullptr);
  EXPECT_EQ(drain_some(buf, 100), "012");
  EXPECT_TRUE(buf.empty());
  EXPECT_EQ(shared.use_count(), 1) << "the buffer let go of the shared bytes";
}

}  // namespace
}  // namespace evloop::detail
