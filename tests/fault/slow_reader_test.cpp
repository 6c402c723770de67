// Slow readers: a server streaming to a peer that reads 1 byte per millisecond holds no more than
// the high-water mark (plus the producer's chunk), the producer is told when to continue
// (`drained`), and other connections are served meanwhile.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "fault_support.hpp"

namespace evloop::fault {
namespace {

using Clock = std::chrono::steady_clock;

// A producer that streams `total` bytes of `payload` in `chunk`-sized writes while output_pending()
// is at or below the high-water mark, and continues from `drained`: the documented way to write
// more than memory should hold. Loop-thread state only, except the atomics read by the test.
struct PacedProducer {
  const std::string& payload;
  std::size_t chunk;
  std::size_t high_water;
  std::size_t produced = 0;                  // loop thread
  std::atomic<std::size_t> produced_seen{0};
  std::atomic<std::size_t> max_pending{0};
  std::atomic<int> drained_calls{0};

  void pump(Conn& c) {
    while (produced < payload.size() && c.output_pending() <= high_water) {
      const std::size_t n = std::min(chunk, payload.size() - produced);
      c.write(payload.data() + produced, n);
      produced += n;
      produced_seen = produced;
      max_pending = std::max(max_pending.load(), c.output_pending());
    }
  }
};

class SlowReaderTest : public AccountedTest {};

TEST_F(SlowReaderTest, OneBytePerMillisecondReaderKeepsMemoryAtTheHighWaterMark) {
  const std::string payload = test::pattern(4u << 20, 11);
  constexpr std::size_t kHigh = 64 * 1024, kLow = 16 * 1024, kChunk = 8 * 1024;
  PacedProducer producer{payload, kChunk, kHigh};
  std::atomic<std::uint64_t> streaming_id{0};
  ConnRef streaming;
  EventCounter opened;
  Options o = test::loopback_options();
  o.output_high_water = kHigh;
  o.output_low_water = kLow;
  o.socket_send_buffer = 4096;
  Callbacks cb;
  cb.opened = [&](Conn& c) {
    if (streaming_id == 0) {  // the first connection streams; later ones echo
      streaming_id = c.id();
      streaming = c.ref();
      producer.pump(c);
    }
    opened.add();
  };
  cb.low_water = [&](Conn& c) {
    ++producer.drained_calls;
    producer.pump(c);
  };
  cb.data = [&](Conn& c, std::string_view b) {
    if (c.id() != streaming_id) c.write(b);
    return b.size();
  };
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client slow(s.address(), 4096);
  ASSERT_TRUE(opened.wait_for(1));

  // 1 byte per millisecond for a second (the pacing is the load, not a synchronisation).
  std::string got;
  const auto slow_until = Clock::now() + 1s;
  std::size_t max_buffered = 0;
  while (Clock::now() < slow_until) {
    got += slow.read_exactly(1);
    max_buffered = std::max<std::size_t>(max_buffered, test::total_stats(s.server).output_buffered);
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_GT(got.size(), 100u);
  // Meanwhile the server holds at most the mark plus one chunk, and the producer has stopped
  // producing: what it made is that plus the (tiny) kernel buffers, not the 4 MiB it could.
  EXPECT_LE(max_buffered, kHigh + kChunk);
  EXPECT_LE(producer.produced_seen.load(), kHigh + kChunk + got.size() + (256u << 10));
  EXPECT_GE(test::total_stats(s.server).read_pauses, 1u) << "reading was never paused";
  EventCounter checked;
  std::atomic<bool> paused{false};
  streaming.post([&](Conn& c) {
    paused = c.reading_paused();
    checked.add();
  });
  ASSERT_TRUE(checked.wait_for(1));
  EXPECT_TRUE(paused.load());
  {  // another connection is served while this one is stuck
    Client other(s.address());
    ASSERT_TRUE(other.send_all("still served"));
    EXPECT_EQ(other.read_exactly(12), "still served");
  }

  // Now read fast: the rest arrives, in order, paced by `drained`.
  got += slow.read_exactly(payload.size() - got.size());
  ASSERT_EQ(got.size(), payload.size());
  EXPECT_TRUE(got == payload) << "content or order differs";
  EXPECT_GT(producer.drained_calls.load(), 0);
  EXPECT_LE(producer.max_pending.load(), kHigh + kChunk);
}

// The producer stops once output_pending() passes the mark. If the kernel then takes all of it
// at once (a big socket buffer), reading never pauses; `drained` must still tell the producer to
// continue, or the stream stalls forever with nothing pending.
TEST_F(SlowReaderTest, ProducerIsToldToContinueWhenTheKernelTakesTheExcessAtOnce) {
  const std::string payload = test::pattern(8u << 20, 12);
  constexpr std::size_t kHigh = 64 * 1024, kBlock = 256 * 1024;
  PacedProducer producer{payload, kBlock, kHigh};
  Options o = test::loopback_options();
  o.output_high_water = kHigh;
  o.output_low_water = 16 * 1024;
  o.socket_send_buffer = 4 << 20;  // the first flush takes a whole block
  Callbacks cb;
  cb.opened = [&](Conn& c) { producer.pump(c); };
  cb.low_water = [&](Conn& c) {
    ++producer.drained_calls;
    producer.pump(c);
  };
  RunningServer s(o, cb);
  ASSERT_TRUE(s.status);
  Client client(s.address());
  const std::string got = client.read_exactly(payload.size());
  EXPECT_EQ(got.size(), payload.size()) << "the producer was never told to continue (stalled at "
                                        << producer.produced_seen.load() << " bytes produced)";
  EXPECT_TRUE(got == payload);
}

}  // namespace
}  // namespace evloop::fault
