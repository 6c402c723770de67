// example::serve_until_signal(), in-process: what the example servers' exit code says.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "cli.hpp"

namespace {

// This process's epoll and io_uring fds.
std::vector<int> poller_fds() {
  std::vector<int> fds;
  for (int fd = 0; fd < 1024; ++fd) {
    char link[64] = {};
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    if (::readlink(path.c_str(), link, sizeof link - 1) > 0 &&
        (std::string(link) == "anon_inode:[eventpoll]" ||
         std::string(link) == "anon_inode:[io_uring]")) {
      fds.push_back(fd);
    }
  }
  return fds;
}

// A loop whose poller fails stops the server: the program must not exit 0 as if asked to stop
// (it used to drop wait()'s error), so that a supervisor sees the failure.
TEST(ServeUntilSignal, ALoopThatFailsGivesExitCodeOne) {
  const std::vector<int> before = poller_fds();
  std::promise<void> serving;
  evloop::Options options;
  options.listen = {"tcp://127.0.0.1:0"};
  evloop::Callbacks callbacks;
  callbacks.serving = [&](const evloop::ServingInfo&) { serving.set_value(); };
  evloop::Server server(options, callbacks);
  const example::Program program{"serve-test", "usage\n", "tcp://127.0.0.1:0"};
  char name[] = "serve-test";
  char* argv[] = {name, nullptr};
  std::future<int> code = std::async(
      std::launch::async, [&] { return example::serve_until_signal(program, server, 1, argv); });
  ASSERT_EQ(serving.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  std::vector<int> mine;
  for (int fd : poller_fds()) {
    if (std::find(before.begin(), before.end(), fd) == before.end()) mine.push_back(fd);
  }
  if (mine.size() != 1) {
    server.stop();
    code.wait();
    GTEST_SKIP() << "not the epoll or io_uring backend";
  }
  // The poller's fd becomes /dev/null (the number stays taken): the loop's next wait fails.
  const int placeholder = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_EQ(::dup2(placeholder, mine[0]), mine[0]);
  ::close(placeholder);
  server.loop(0).wake();
  ASSERT_EQ(code.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(code.get(), 1);
}

}  // namespace
