// io_uring asked for on a kernel that refuses it: evloop serves on epoll and says why. The refusals
// are real: without_io_uring makes the kernel fail io_uring_setup (EPERM, as with
// kernel.io_uring_disabled or a container's seccomp profile; ENOSYS, as on a kernel built without
// it) or io_uring_register (a ring but not the features evloop needs) for backend_probe, a real
// server in its own process that reports what it got.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "child_process.hpp"

namespace {

using namespace std::chrono_literals;
using example_test::run_program;

constexpr int kSkipped = 77;  // without_io_uring cannot build a filter on this architecture

std::vector<std::string> without_io_uring(const std::string& call, const std::string& errno_name) {
  return {WITHOUT_IO_URING_BIN, call, errno_name, BACKEND_PROBE_BIN};
}

// Runs the probe under the refusal and checks it served on epoll, saying why in `note`.
void expect_fallback(const std::string& call, const std::string& errno_name,
                     const std::string& note) {
  const auto result = run_program(without_io_uring(call, errno_name), 30s);
  if (result.exit_code == kSkipped) GTEST_SKIP() << result.output;
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("backend epoll\n"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("note " + note + "\n"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("echo ok\n"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("fds ok\n"), std::string::npos) << result.output;
}

TEST(BackendFallback, TheProbeGetsIoUringWhereTheKernelGivesIt) {
  const auto result = run_program({BACKEND_PROBE_BIN}, 30s);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  if (result.output.find("note io_uring unavailable") != std::string::npos) {
    GTEST_SKIP() << "this kernel refuses io_uring itself: " << result.output;
  }
  EXPECT_NE(result.output.find("backend io_uring\n"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("note \n"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("echo ok\n"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("fds ok\n"), std::string::npos) << result.output;
}

TEST(BackendFallback, SetupRefusedWithEpermServesOnEpoll) {
  expect_fallback("setup", "EPERM", "io_uring unavailable (Operation not permitted): using epoll");
}

TEST(BackendFallback, SetupMissingWithEnosysServesOnEpoll) {
  expect_fallback("setup", "ENOSYS",
                  "io_uring unavailable (Function not implemented): using epoll");
}

// A ring is made, then its probe and buffer registration fail: the ring is closed again (no fd
// left: "fds ok") and the loop uses epoll.
TEST(BackendFallback, RegisterRefusedClosesTheRingAndServesOnEpoll) {
  expect_fallback("register", "EINVAL",
                  "io_uring unavailable (Operation not supported): using epoll");
}

TEST(BackendFallback, WithoutIoUringRejectsBadUsage) {
  EXPECT_EQ(run_program({WITHOUT_IO_URING_BIN, "setup"}, 10s).exit_code, 2);
  EXPECT_EQ(run_program({WITHOUT_IO_URING_BIN, "mmap", "EPERM", "true"}, 10s).exit_code, 2);
}

}  // namespace
