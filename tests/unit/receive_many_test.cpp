// The batched UDP calls of platform.hpp on real sockets: recvmmsg/sendmmsg (Linux) and the
// recvmsg/sendmsg loops that stand in for them elsewhere (built everywhere, so Linux tests them
// too). Both keep one contract: how many messages were handled, -1 with errno when the first
// fails, and an error that ends a receive batch after its first message is never lost (the
// loop hands it back in `error_after`; Linux's recvmmsg leaves it for the next call).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "platform.hpp"

namespace evloop::detail {
namespace {

// A non-blocking UDP socket on 127.0.0.1, port 0.
struct Socket {
  Socket() {
    fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof address;
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &len), 0);
  }
  ~Socket() { ::close(fd); }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  void send_to(const Socket& to, const std::string& bytes) const {
    ASSERT_EQ(::sendto(fd, bytes.data(), bytes.size(), 0,
                       reinterpret_cast<const sockaddr*>(&to.address), sizeof to.address),
              static_cast<ssize_t>(bytes.size()));
  }
  int fd = -1;
  sockaddr_in address{};
};

// `count` messages, each with its own 64-byte buffer.
struct Messages {
  explicit Messages(unsigned count) : msgs(count), iov(count), buffers(count, std::string(64, 0)) {
    for (unsigned i = 0; i < count; ++i) {
      iov[i] = {buffers[i].data(), buffers[i].size()};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
  }
  std::string bytes(unsigned i) const { return buffers[i].substr(0, msgs[i].msg_len); }
  std::vector<platform::MultiMessage> msgs;
  std::vector<iovec> iov;
  std::vector<std::string> buffers;
};

using Receive = int (*)(int, platform::MultiMessage*, unsigned, unsigned&, int&) noexcept;
using Send = int (*)(int, platform::MultiMessage*, unsigned, unsigned&) noexcept;

struct Calls {
  const char* name;
  Receive receive;
  Send send;
  bool loop;  // the recvmsg/sendmsg loop (one syscall per message)
};

class ReceiveManyTest : public testing::TestWithParam<Calls> {};

TEST_P(ReceiveManyTest, ReceivesWhatIsQueuedInOrderAndStopsWhenNothingIsLeft) {
  Socket receiver, sender;
  for (const char* d : {"one", "two", "three"}) sender.send_to(receiver, d);
  Messages m(8);
  unsigned calls = 0;
  int error_after = -1;
  ASSERT_EQ(GetParam().receive(receiver.fd, m.msgs.data(), 8, calls, error_after), 3);
  EXPECT_EQ(m.bytes(0), "one");
  EXPECT_EQ(m.bytes(1), "two");
  EXPECT_EQ(m.bytes(2), "three");
  EXPECT_EQ(error_after, 0);  // EAGAIN ended it: nothing to report
  EXPECT_EQ(calls, GetParam().loop ? 4u : 1u);
  errno = 0;
  EXPECT_EQ(GetParam().receive(receiver.fd, m.msgs.data(), 8, calls, error_after), -1);
  EXPECT_EQ(errno, EAGAIN);
}

TEST_P(ReceiveManyTest, AnErrorAfterTheFirstMessageIsNeverLost) {
  Socket receiver, sender;
  sender.send_to(receiver, "first");
  sender.send_to(receiver, "second");
  Messages m(2);
  m.iov[1].iov_base = nullptr;  // the kernel cannot copy the second datagram there: EFAULT
  unsigned calls = 0;
  int error_after = -1;
  ASSERT_EQ(GetParam().receive(receiver.fd, m.msgs.data(), 2, calls, error_after), 1);
  EXPECT_EQ(m.bytes(0), "first");
  if (GetParam().loop) {
    EXPECT_EQ(error_after, EFAULT);  // handed back: recvmsg already cleared it
  } else {
    EXPECT_EQ(error_after, 0);  // kept on the socket: the next receive reports it
    errno = 0;
    EXPECT_EQ(GetParam().receive(receiver.fd, m.msgs.data(), 1, calls, error_after), -1);
    EXPECT_EQ(errno, EFAULT);
  }
}

TEST_P(ReceiveManyTest, SendsInOrderAndStopsAtAMessageItCannotSend) {
  Socket receiver, sender;
  Messages m(3);
  const std::string payloads[] = {"a", "bb", "ccc"};
  for (unsigned i = 0; i < 3; ++i) {
    m.iov[i] = {const_cast<char*>(payloads[i].data()), payloads[i].size()};
    m.msgs[i].msg_hdr.msg_name = &receiver.address;
    m.msgs[i].msg_hdr.msg_namelen = sizeof receiver.address;
  }
  unsigned calls = 0;
  ASSERT_EQ(GetParam().send(sender.fd, m.msgs.data(), 3, calls), 3);
  EXPECT_EQ(calls, GetParam().loop ? 3u : 1u);
  Messages got(4);
  int error_after = -1;
  ASSERT_EQ(GetParam().receive(receiver.fd, got.msgs.data(), 4, calls, error_after), 3);
  for (unsigned i = 0; i < 3; ++i) EXPECT_EQ(got.bytes(i), payloads[i]);

  m.iov[1].iov_base = nullptr;  // the second cannot be read from there: EFAULT
  ASSERT_EQ(GetParam().send(sender.fd, m.msgs.data(), 3, calls), 1);
  errno = 0;
  EXPECT_EQ(GetParam().send(sender.fd, m.msgs.data() + 1, 2, calls), -1);  // met again
  EXPECT_EQ(errno, EFAULT);
}

#if defined(__linux__)
constexpr bool kManyIsALoop = false;
#else
constexpr bool kManyIsALoop = true;
#endif

INSTANTIATE_TEST_SUITE_P(
    Platform, ReceiveManyTest,
    testing::Values(Calls{"many", platform::receive_many, platform::send_many, kManyIsALoop},
                    Calls{"each", platform::receive_each, platform::send_each, true}),
    [](const testing::TestParamInfo<Calls>& param) { return std::string(param.param.name); });

}  // namespace
}  // namespace evloop::detail
