// The thread that starts a group on io_uring is not made a user of its rings. The kernel records
// the thread that creates a ring, and when the ring is closed it interrupts each recorded thread
// still alive (task work with TWA_SIGNAL): its blocking system call at that moment fails with
// EINTR where it cannot be restarted, as epoll_wait() and a connect() with SO_SNDTIMEO cannot. The
// rings closing with a destroyed group, the user's thread that had called start() saw it.
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>

#include "test_support.hpp"

namespace evloop::test {
namespace {

TEST(UringCallerThreadTest, DestroyingAGroupDoesNotInterruptTheThreadThatStartedIt) {
  int interrupted = 0;
  for (int round = 0; round < 5; ++round) {
    {
      LoopOptions options;
      options.loops = 2;
      options.backend = Backend::io_uring;
      LoopGroup group(options);
      ASSERT_TRUE(group.start());
      if (std::string(group.backend()) != "io_uring") GTEST_SKIP() << group.backend_note();
      group.stop();
      ASSERT_TRUE(group.wait());
    }  // the rings close here; the kernel tears them down in the background
    // A blocking wait of this thread, long enough for that teardown to finish.
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    ASSERT_GE(ep, 0);
    epoll_event event{};
    if (::epoll_wait(ep, &event, 1, 200) < 0 && errno == EINTR) ++interrupted;
    ::close(ep);
  }
  EXPECT_EQ(interrupted, 0) << "this thread's epoll_wait() failed with EINTR after a group it had "
                               "started on io_uring was destroyed";
}

}  // namespace
}  // namespace evloop::test
