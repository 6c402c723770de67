// The UDP send queue: its bounds, the order and content of what it hands to sendmmsg, the GSO
// runs it builds, and its reuse of memory when the kernel is behind.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>
#include <vector>

#include "datagram_queue.hpp"

namespace evloop::detail {
namespace {

sockaddr_in peer(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

bool push(DatagramQueue& q, std::uint16_t port, const std::string& bytes) {
  const sockaddr_in a = peer(port);
  return q.push(&a, sizeof a, bytes.data(), bytes.size());
}

std::string payload(const SendBatch& b, unsigned m) {
  return {static_cast<const char*>(b.iov[m].iov_base), b.iov[m].iov_len};
}

std::uint16_t port_of(const SendBatch& b, unsigned m) {
  return ntohs(static_cast<const sockaddr_in*>(b.messages[m].msg_hdr.msg_name)->sin_port);
}

TEST(DatagramQueueTest, RefusesWhatPassesEitherBound) {
  DatagramQueue q(1000, 3);
  EXPECT_TRUE(push(q, 1, std::string(400, 'a')));
  EXPECT_TRUE(push(q, 1, std::string(400, 'b')));
  EXPECT_FALSE(push(q, 1, std::string(201, 'c')));  // 1001 bytes
  EXPECT_TRUE(push(q, 1, std::string(200, 'c')));   // exactly 1000
  EXPECT_FALSE(push(q, 1, ""));                     // a fourth datagram
  EXPECT_EQ(q.datagrams(), 3u);
  EXPECT_EQ(q.bytes(), 1000u);
  q.pop(1);
  EXPECT_TRUE(push(q, 1, std::string(400, 'd')));
  const char long_peer[64] = {};
  EXPECT_FALSE(q.push(long_peer, sizeof long_peer, "x", 1));  // not an IP address
}

TEST(DatagramQueueTest, BuildsOneMessagePerDatagramInOrderWithoutGso) {
  DatagramQueue q(1 << 20, 100);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(push(q, static_cast<std::uint16_t>(100 + i), std::to_string(i)));
  SendBatch batch(3);
  ASSERT_EQ(q.build(batch, false), 3u);
  for (unsigned m = 0; m < 3; ++m) {
    EXPECT_EQ(payload(batch, m), std::to_string(m));
    EXPECT_EQ(port_of(batch, m), 100 + m);
    EXPECT_EQ(batch.messages[m].msg_hdr.msg_controllen, 0u);
    EXPECT_EQ(batch.datagrams[m], 1u);
  }
  q.pop(3);
  ASSERT_EQ(q.build(batch, false), 2u);
  EXPECT_EQ(payload(batch, 0), "3");
  EXPECT_EQ(payload(batch, 1), "4");
}

TEST(DatagramQueueTest, ConnectedDatagramsHaveNoName) {
  DatagramQueue q(1 << 20, 100);
  ASSERT_TRUE(q.push(nullptr, 0, "hi", 2));
  SendBatch batch(4);
  ASSERT_EQ(q.build(batch, false), 1u);
  EXPECT_EQ(batch.messages[0].msg_hdr.msg_name, nullptr);
  EXPECT_EQ(batch.messages[0].msg_hdr.msg_namelen, 0u);
}

TEST(DatagramQueueTest, GsoRunsHoldOnePeerAndOneSizeWithAShorterLast) {
  if (!platform::kHasUdpOffload) GTEST_SKIP() << "no UDP GSO on this system";
  DatagramQueue q(1 << 20, 1000);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(push(q, 1, std::string(100, 'a')));
  ASSERT_TRUE(push(q, 1, std::string(60, 'b')));   // ends the run
  ASSERT_TRUE(push(q, 1, std::string(100, 'c')));  // a new run...
  ASSERT_TRUE(push(q, 2, std::string(100, 'd')));  // ...broken by another peer
  ASSERT_TRUE(push(q, 2, std::string(150, 'e')));  // longer: a run of its own
  SendBatch batch(8);
  ASSERT_EQ(q.build(batch, true), 4u);
  EXPECT_EQ(batch.datagrams[0], 4u);
  EXPECT_EQ(payload(batch, 0), std::string(300, 'a') + std::string(60, 'b'));
  EXPECT_GT(batch.messages[0].msg_hdr.msg_controllen, 0u);
  EXPECT_EQ(batch.datagrams[1], 1u);
  EXPECT_EQ(batch.messages[1].msg_hdr.msg_controllen, 0u);  // one datagram: a plain send
  EXPECT_EQ(batch.datagrams[2], 1u);
  EXPECT_EQ(port_of(batch, 2), 2);
  EXPECT_EQ(batch.datagrams[3], 1u);
  EXPECT_EQ(payload(batch, 3), std::string(150, 'e'));
}

TEST(DatagramQueueTest, GsoRunsStopAt64SegmentsAndTheSizeLimit) {
  if (!platform::kHasUdpOffload) GTEST_SKIP() << "no UDP GSO on this system";
  DatagramQueue q(8 << 20, 1000);
  for (int i = 0; i < 130; ++i) ASSERT_TRUE(push(q, 1, std::string(10, 'x')));
  SendBatch batch(8);
  ASSERT_EQ(q.build(batch, true), 3u);
  EXPECT_EQ(batch.datagrams[0], 64u);
  EXPECT_EQ(batch.datagrams[1], 64u);
  EXPECT_EQ(batch.datagrams[2], 2u);
  q.clear();
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(push(q, 1, std::string(1400, 'y')));
  ASSERT_EQ(q.build(batch, true), 2u);
  EXPECT_EQ(batch.datagrams[0], DatagramQueue::kMaxSegmentedBytes / 1400);  // 46
  EXPECT_LE(batch.iov[0].iov_len, DatagramQueue::kMaxSegmentedBytes);
}

TEST(DatagramQueueTest, KeepsOrderAndContentWhileTheKernelIsBehind) {
  // Push and pop at different paces, so the queue compacts and grows many times; every datagram
  // comes out once, in order, intact.
  DatagramQueue q(64 * 1024, 500);
  SendBatch batch(7);
  int pushed = 0, popped = 0;
  for (int step = 0; step < 4000; ++step) {
    for (int k = 0; k < 1 + step % 5; ++k) {
      const std::string d =
          std::to_string(pushed) + std::string(static_cast<std::size_t>(pushed % 97), 'z');
      if (!push(q, 9, d)) break;
      ++pushed;
    }
    const unsigned n = q.build(batch, false);
    const unsigned take = std::min(n, 1u + static_cast<unsigned>(step % 4));
    for (unsigned m = 0; m < take; ++m) {
      const std::string want =
          std::to_string(popped) + std::string(static_cast<std::size_t>(popped % 97), 'z');
      ASSERT_EQ(payload(batch, m), want) << popped;
      ++popped;
    }
    q.pop(take);
  }
  EXPECT_GT(popped, 3000);
  EXPECT_EQ(static_cast<std::size_t>(pushed - popped), q.datagrams());
}

TEST(DatagramQueueTest, ZeroLengthDatagramsAreQueuedAndSent) {
  DatagramQueue q(100, 100000);
  SendBatch batch(1);
  for (int i = 0; i < 50000; ++i) {
    ASSERT_TRUE(push(q, 1, ""));
    if (i % 2 == 1) q.pop(1);  // the kernel takes one of every two
  }
  EXPECT_EQ(q.datagrams(), 25000u);
  ASSERT_EQ(q.build(batch, true), 1u);
  EXPECT_EQ(batch.iov[0].iov_len, 0u);
}

}  // namespace
}  // namespace evloop::detail
