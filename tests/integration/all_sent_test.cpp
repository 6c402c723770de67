// `all_sent`: fires when everything written has been handed to the kernel, whatever the water
// marks did, so a producer can pace a long stream with small chunks and bounded memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>

#include "test_support.hpp"

namespace evloop::test {
namespace {

constexpr std::size_t kStream = kSanitized ? 32u << 20 : 200u << 20;
constexpr std::size_t kChunk = 64 * 1024;

// Byte i of the stream: position-dependent, so order and content are checked without keeping
// 200 MB on either side.
char stream_byte(std::size_t i) { return static_cast<char>((i * 2654435761u) >> 13); }

// A producer writes 64 KiB, waits for `all_sent`, writes the next: 200 MB in all. Pending output
// never exceeds one chunk, and the client gets every byte in order.
TEST(AllSentTest, PacesALongStreamWithBoundedMemory) {
  std::atomic<std::size_t> max_pending{0};
  std::atomic<int> all_sent_calls{0};
  std::string chunk(kChunk, '\0');
  std::size_t produced = 0;  // loop thread only
  auto produce = [&](Conn& c) {
    if (produced == kStream) return c.close();
    const std::size_t n = std::min(kChunk, kStream - produced);
    for (std::size_t i = 0; i < n; ++i) chunk[i] = stream_byte(produced + i);
    produced += n;
    c.write(chunk.data(), n);
    max_pending = std::max(max_pending.load(), c.output_pending());
  };
  Callbacks cb;
  cb.opened = produce;
  cb.all_sent = [&](Conn& c) {
    ++all_sent_calls;
    EXPECT_EQ(c.output_pending(), 0u);
    produce(c);
  };
  Options o = loopback_options();
  o.socket_send_buffer = 64 * 1024;
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  std::size_t got = 0;
  std::size_t mismatches = 0;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(client.fd(), buf, sizeof buf, 0);
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) mismatches += buf[i] != stream_byte(got + i);
    got += static_cast<std::size_t>(n);
  }
  EXPECT_EQ(got, kStream);
  EXPECT_EQ(mismatches, 0u);
  EXPECT_LE(max_pending.load(), kChunk);
  EXPECT_GE(all_sent_calls.load(), static_cast<int>(kStream / kChunk) - 1);
}

// `all_sent` fires after a write the kernel takes at once, with no high-water mark involved
// (`low_water` would not: back-pressure never started).
TEST(AllSentTest, FiresForSmallWritesLowWaterDoesNot) {
  EventCounter all_sent, low_water;
  Callbacks cb;
  cb.opened = [](Conn& c) { c.write("hello"); };
  cb.all_sent = [&](Conn&) { all_sent.add(); };
  cb.low_water = [&](Conn&) { low_water.add(); };
  RunningServer s(loopback_options(), cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  EXPECT_EQ(client.read_exactly(5), "hello");
  ASSERT_TRUE(all_sent.wait_for(1));
  ASSERT_TRUE(settle(s.server));
  EXPECT_EQ(all_sent.value(), 1);
  EXPECT_EQ(low_water.value(), 0);
}

}  // namespace
}  // namespace evloop::test
