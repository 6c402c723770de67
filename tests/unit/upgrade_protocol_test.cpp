// The live upgrade's control socket: frames and their fds cross a real socketpair intact, in
// order, in batches of up to 253 fds, and a reader never hands a frame without its fds.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "platform.hpp"
#include "upgrade_protocol.hpp"

namespace evloop::detail::upgrade {
namespace {

constexpr auto kWait = std::chrono::seconds(10);

struct Pair {
  Pair() {
    int fds[2];
    EXPECT_EQ(platform::socket_pair_nonblocking(fds), 0);
    a = UniqueFd(fds[0]);
    b = UniqueFd(fds[1]);
  }
  UniqueFd a, b;
};

// An fd whose identity can be checked on the other side: one end of a pipe with a byte in it.
struct Marked {
  explicit Marked(char mark) {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    read_end = UniqueFd(fds[0]);
    EXPECT_EQ(::write(fds[1], &mark, 1), 1);
    ::close(fds[1]);
  }
  UniqueFd read_end;
};

char mark_of(int fd) {
  char c = 0;
  return ::read(fd, &c, 1) == 1 ? c : '\0';
}

TEST(UpgradeProtocolTest, PayloadFieldsRoundTripAndOverrunsFail) {
  std::string payload;
  PayloadWriter out(payload);
  out.u32(7);
  out.u64(1ULL << 40);
  out.bytes("state");
  out.bytes("");
  PayloadReader in(payload);
  std::uint32_t a = 0;
  std::uint64_t b = 0;
  std::string c = "x", d = "x";
  ASSERT_TRUE(in.u32(a) && in.u64(b) && in.bytes(c) && in.bytes(d));
  EXPECT_EQ(a, 7u);
  EXPECT_EQ(b, 1ULL << 40);
  EXPECT_EQ(c, "state");
  EXPECT_EQ(d, "");
  EXPECT_TRUE(in.finished());
  EXPECT_FALSE(in.u32(a));
  EXPECT_FALSE(in.finished());
  std::string truncated = payload.substr(0, 20);  // the length of "state" says 5, 0 are left
  PayloadReader short_in(truncated);
  EXPECT_FALSE(short_in.u32(a) && short_in.u64(b) && short_in.bytes(c));
}

TEST(UpgradeProtocolTest, FramesAndTheirFdsArriveInOrder) {
  Pair pair;
  std::vector<Marked> marked;
  for (char m = 'a'; m < 'a' + 5; ++m) marked.emplace_back(m);
  const auto deadline = Clock::now() + kWait;
  ASSERT_EQ(
      send_frame(pair.a.get(), FrameType::hello, "first", {marked[0].read_end.get()}, deadline), 0);
  ASSERT_EQ(send_frame(pair.a.get(), FrameType::ready, "no fds", {}, deadline), 0);
  ASSERT_EQ(
      send_frame(pair.a.get(), FrameType::connections, std::string(100'000, 'z'),
                 {marked[1].read_end.get(), marked[2].read_end.get(), marked[3].read_end.get()},
                 deadline),
      0);
  ASSERT_EQ(send_frame(pair.a.get(), FrameType::done, "", {marked[4].read_end.get()}, deadline), 0);
  pair.a.reset();
  FrameReader reader(pair.b.get());
  Frame f;
  ASSERT_EQ(reader.next(f, deadline), 0);
  EXPECT_EQ(f.type, FrameType::hello);
  EXPECT_EQ(f.payload, "first");
  ASSERT_EQ(f.fds.size(), 1u);
  EXPECT_EQ(mark_of(f.fds[0].get()), 'a');
  EXPECT_EQ(::fcntl(f.fds[0].get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  ASSERT_EQ(reader.next(f, deadline), 0);
  EXPECT_EQ(f.type, FrameType::ready);
  EXPECT_TRUE(f.fds.empty());
  ASSERT_EQ(reader.next(f, deadline), 0);
  EXPECT_EQ(f.type, FrameType::connections);
  EXPECT_EQ(f.payload, std::string(100'000, 'z'));
  ASSERT_EQ(f.fds.size(), 3u);
  EXPECT_EQ(mark_of(f.fds[0].get()), 'b');
  EXPECT_EQ(mark_of(f.fds[2].get()), 'd');
  ASSERT_EQ(reader.next(f, deadline), 0);
  EXPECT_EQ(f.type, FrameType::done);
  ASSERT_EQ(f.fds.size(), 1u);
  EXPECT_EQ(mark_of(f.fds[0].get()), 'e');
  EXPECT_EQ(reader.next(f, deadline), ECONNRESET) << "the end of the stream";
}

TEST(UpgradeProtocolTest, BatchesOfTheMostFdsAFrameCarriesWhileTheReaderKeepsUp) {
  Pair pair;
  constexpr int kFrames = 8;
  std::vector<Marked> marked;
  for (std::size_t i = 0; i < kMaxFdsPerFrame; ++i)
    marked.emplace_back(static_cast<char>('A' + i % 26));
  std::vector<int> fds;
  for (const Marked& m : marked) fds.push_back(m.read_end.get());
  // Big payloads: the socket buffer fills, so sending and reading interleave.
  std::thread sender([&] {
    for (int i = 0; i < kFrames; ++i) {
      const std::vector<int> some(fds.begin(),
                                  fds.begin() + static_cast<long>(kMaxFdsPerFrame) - i);
      EXPECT_EQ(send_frame(pair.a.get(), FrameType::connections,
                           std::string(300'000, char('0' + i)), some, Clock::now() + kWait),
                0);
    }
  });
  FrameReader reader(pair.b.get());
  for (int i = 0; i < kFrames; ++i) {
    Frame f;
    ASSERT_EQ(reader.next(f, Clock::now() + kWait), 0);
    EXPECT_EQ(f.payload.size(), 300'000u);
    EXPECT_EQ(f.payload.front(), char('0' + i));
    ASSERT_EQ(f.fds.size(), kMaxFdsPerFrame - static_cast<std::size_t>(i));
    // Each received fd is a new descriptor of the same pipe: its byte is there once.
    if (i == 0) {
      EXPECT_EQ(mark_of(f.fds[0].get()), 'A');
      EXPECT_EQ(mark_of(f.fds[252].get()), static_cast<char>('A' + 252 % 26));
    }
  }
  sender.join();
  EXPECT_EQ(send_frame(pair.a.get(), FrameType::hello, "", std::vector<int>(254, 0),
                       Clock::now() + kWait),
            EINVAL);
}

TEST(UpgradeProtocolTest, AReaderWaitsNoLongerThanItsDeadlineAndRefusesGarbage) {
  Pair pair;
  FrameReader reader(pair.b.get());
  Frame f;
  const auto start = Clock::now();
  EXPECT_EQ(reader.next(f, Clock::now() + std::chrono::milliseconds(50)), ETIMEDOUT);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  const char garbage[16] = {99, 0, 0, 0};  // type 99
  ASSERT_EQ(::write(pair.a.get(), garbage, sizeof garbage), 16);
  EXPECT_EQ(reader.next(f, Clock::now() + kWait), EPROTO);
  // A header that promises fds that never came.
  Pair other;
  unsigned char header[kHeaderSize];
  encode_header(FrameType::connections, 2, 0, header);
  ASSERT_EQ(::write(other.a.get(), header, sizeof header), 16);
  FrameReader other_reader(other.b.get());
  EXPECT_EQ(other_reader.next(f, Clock::now() + kWait), EPROTO);
}

// A frame cut off after its fds arrived (the predecessor died mid-send): the reader reports the
// end and closes those fds, so their peers see an end. It used to keep them until destroyed.
TEST(UpgradeProtocolTest, TheFdsOfAFrameCutOffCloseWithTheError) {
  Pair pair;
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  ASSERT_EQ(::fcntl(read_end.get(), F_SETFL, O_NONBLOCK), 0);
  // A frame far larger than the socket pair's buffers, with one fd: nobody reads, so the send
  // stops at its deadline with the header, the fd and part of the payload sent; then the end.
  const std::string payload(4 << 20, 'p');
  ASSERT_EQ(send_frame(pair.a.get(), FrameType::connections, payload, {write_end.get()},
                       Clock::now() + std::chrono::milliseconds(50)),
            ETIMEDOUT);
  write_end = UniqueFd();  // the reader's copy is the pipe's only writer now
  pair.a = UniqueFd();
  FrameReader reader(pair.b.get());
  Frame f;
  EXPECT_EQ(reader.next(f, Clock::now() + kWait), ECONNRESET);
  char byte = 0;
  EXPECT_EQ(::read(read_end.get(), &byte, 1), 0) << "the fd of the cut-off frame is still open";
}

}  // namespace
}  // namespace evloop::detail::upgrade
