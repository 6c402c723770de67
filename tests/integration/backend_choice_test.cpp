// The loops of a group share one backend, so backend() is each loop's. io_uring refused to a later
// loop only must not leave loop 0 on io_uring, loop 1 on epoll, and backend() saying io_uring.
// The refusal is real: an RLIMIT_DATA that holds one loop's provided receive buffers (12 MiB of
// private memory) but not a second loop's, so the kernel fails the second loop's mmap (ENOMEM).
// Which backend each loop really has is read from the kernel objects the process holds.
#include <dirent.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "test_support.hpp"

namespace evloop::test {
namespace {

struct KernelObjects {
  int rings = 0;   // io_uring instances
  int epolls = 0;  // epoll instances
};

KernelObjects kernel_objects() {
  KernelObjects found;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return found;
  while (const dirent* entry = ::readdir(dir)) {
    char target[256] = {};
    const std::string path = std::string("/proc/self/fd/") + entry->d_name;
    if (::readlink(path.c_str(), target, sizeof target - 1) <= 0) continue;
    if (std::strcmp(target, "anon_inode:[io_uring]") == 0) ++found.rings;
    if (std::strcmp(target, "anon_inode:[eventpoll]") == 0) ++found.epolls;
  }
  ::closedir(dir);
  return found;
}

// This process's private writable memory (what RLIMIT_DATA limits), in bytes; 0 if unknown.
rlim_t data_size() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    unsigned long kib = 0;
    if (std::sscanf(line.c_str(), "VmData: %lu kB", &kib) == 1) return rlim_t{kib} * 1024;
  }
  return 0;
}

LoopOptions io_uring_loops(unsigned loops) {
  LoopOptions options;
  options.loops = loops;
  options.backend = Backend::io_uring;
  return options;
}

// Every loop of `group` runs: a task posted to each one runs.
bool every_loop_runs(const LoopGroup& group) {
  EventCounter ran;
  for (std::size_t i = 0; i < group.loop_count(); ++i) {
    if (!group.loop(i).post([&ran] { ran.add(); })) return false;
  }
  return ran.wait_for(static_cast<long>(group.loop_count()));
}

TEST(BackendChoiceTest, EveryLoopGetsIoUringWhenTheKernelGivesItToEach) {
  LoopGroup group(io_uring_loops(2));
  ASSERT_TRUE(group.start());
  if (std::string(group.backend()) != "io_uring") {
    GTEST_SKIP() << "io_uring unavailable here: " << group.backend_note();
  }
  const KernelObjects objects = kernel_objects();
  EXPECT_EQ(objects.rings, 2);
  EXPECT_EQ(objects.epolls, 0);
  EXPECT_EQ(group.backend_note(), "");
  EXPECT_TRUE(every_loop_runs(group));
}

TEST(BackendChoiceTest, IoUringRefusedToTheSecondLoopOnlyPutsEveryLoopOnEpoll) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "TSan's pthread_create refuses the small default stack this test needs "
                  "(EINVAL); the normal and ASan builds run it";
#endif
  {  // Does this kernel give a loop io_uring at all?
    LoopGroup probe(io_uring_loops(1));
    ASSERT_TRUE(probe.start());
    if (std::string(probe.backend()) != "io_uring") {
      GTEST_SKIP() << "io_uring unavailable here: " << probe.backend_note();
    }
  }
  ASSERT_EQ(kernel_objects().rings, 0);
  // Thread stacks are private writable memory too (8 MiB each by default): small ones keep the
  // loop threads out of the limit's way.
  pthread_attr_t attr;
  ASSERT_EQ(::pthread_attr_init(&attr), 0);
  ASSERT_EQ(::pthread_attr_setstacksize(&attr, 256 * 1024), 0);
  ASSERT_EQ(::pthread_setattr_default_np(&attr), 0);
  ::pthread_attr_destroy(&attr);
  // Room for one loop's buffers (8 MiB small + 4 MiB large) and 5 MiB more: not for the second
  // loop's 8 MiB of small buffers.
  const rlim_t now = data_size();
  ASSERT_GT(now, 0u);
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_DATA, &saved), 0);
  const rlimit tight{now + (17u << 20), saved.rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_DATA, &tight), 0);
  LoopGroup group(io_uring_loops(2));
  const Status started = group.start();
  const KernelObjects objects = kernel_objects();
  ASSERT_EQ(::setrlimit(RLIMIT_DATA, &saved), 0);
  ASSERT_TRUE(started) << started.message();
  EXPECT_STREQ(group.backend(), "epoll");
  EXPECT_EQ(objects.rings, 0) << "a loop kept io_uring while backend() says " << group.backend();
  EXPECT_EQ(objects.epolls, 2);
  EXPECT_EQ(group.backend_note(),
            "loop 1: io_uring unavailable (Cannot allocate memory): using epoll on every loop");
  EXPECT_TRUE(every_loop_runs(group));
}

}  // namespace
}  // namespace evloop::test
