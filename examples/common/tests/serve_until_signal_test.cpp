// example::serve_until_signal(), in-process: what the example servers' exit code says.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "cli.hpp"
#include "test_support.hpp"

namespace {

// A loop whose poller fails stops the server: the program must not exit 0 as if asked to stop
// (it used to drop wait()'s error), so that a supervisor sees the failure.
TEST(ServeUntilSignal, ALoopThatFailsGivesExitCodeOne) {
  const std::vector<int> before = evloop::test::new_poller_fds({});
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
  const std::vector<int> mine = evloop::test::new_poller_fds(before);
  if (mine.size() != 1) {
    server.stop();
    code.wait();
    GTEST_SKIP() << "not the epoll or io_uring backend";
  }
  ASSERT_TRUE(evloop::test::break_poller(mine[0]));  // the loop's next wait fails
  server.loop(0).wake();
  ASSERT_EQ(code.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(code.get(), 1);
}

}  // namespace
