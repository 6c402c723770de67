// Starting the loop threads when an allocation fails (LoopGroupCore::start_threads): whatever
// allocation fails (the gate's shared state, the thread list, a std::thread's own state, before or
// after other loop threads exist), the threads already started are stopped and joined, and the
// caller gets a Status saying so; never std::terminate (a broken gate), never a hang.
//
// The failure is made by this binary's operator new (its own binary: it replaces the global one),
// on the thread that calls start_threads() only, at its K-th allocation, for every K until the
// start succeeds. No OS limit makes one chosen small allocation fail: RLIMIT_AS makes
// pthread_create's stack mapping fail first (a std::system_error, which start_failure_test.cpp
// covers with a real RLIMIT_NPROC). Each K runs in a child process, so that a terminate is seen
// as the child's end by a signal, not as this test's.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <new>
#include <string>
#include <thread>

#include "loop_group_core.hpp"
#include "test_support.hpp"

namespace {
/// Counts down the allocations of the thread that set it; the one that reaches 0 fails.
thread_local long t_allocations_left = -1;
}  // namespace

void* operator new(std::size_t size) {
  if (t_allocations_left > 0 && --t_allocations_left == 0) throw std::bad_alloc();
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace evloop::test {
namespace {

constexpr unsigned kLoops = 4;

// The child: opens a group of kLoops loops, fails its `k`-th allocation in start_threads(), and
// says on `out` what happened: "started", or "failed: <message> threads=<left over>". Exit code
// 0 either way; 3 if an exception left start_threads() (and the threads it had started ended).
[[noreturn]] void start_with_failing_allocation(long k, int out) {
  auto say = [out](const std::string& s) { (void)!::write(out, s.data(), s.size()); };
  detail::LoopGroupCore group(LoopOptions{.loops = kLoops}, {});
  if (Status s = group.open(); !s) {
    say("open failed: " + s.message());
    ::_exit(2);
  }
  std::thread([] {}).join();  // TSan starts a thread of its own with the first: not ours
  const int threads_before = count_threads();
  Status s;
  try {
    t_allocations_left = k;
    s = group.start_threads();
    t_allocations_left = -1;
  } catch (const std::exception& e) {
    t_allocations_left = -1;
    say(std::string("exception: ") + e.what());
    group.stop();
    group.wait();  // joins the threads that had started, if they end
    ::_exit(3);
  }
  if (s) {
    group.stop();
    group.wait();
    say("started");
    ::_exit(0);
  }
  say("failed: " + s.message() + " threads=" + std::to_string(count_threads() - threads_before));
  group.discard();
  ::_exit(0);
}

struct Outcome {
  std::string said;
  std::string ended;  // "exit N", "signal N", or "hung"
};

Outcome run_child(long k) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return {"", "pipe failed"};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipe_fds[0]);
    start_with_failing_allocation(k, pipe_fds[1]);
  }
  ::close(pipe_fds[1]);
  Outcome outcome;
  // Until the child's end closes the pipe, bounded.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{pipe_fds[0], POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      ::kill(pid, SIGKILL);
      outcome.ended = "hung";
      break;
    }
    char buf[512];
    const ssize_t n = ::read(pipe_fds[0], buf, sizeof buf);
    if (n <= 0) break;
    outcome.said.append(buf, static_cast<std::size_t>(n));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (outcome.ended.empty()) {
    outcome.ended = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                      : "signal " + std::to_string(WTERMSIG(status));
  }
  return outcome;
}

TEST(LoopThreadStart, AnAllocationThatFailsAnywhereInStartThreadsFailsCleanly) {
  int clean_failures = 0;
  bool started = false;
  for (long k = 1; k <= 64 && !started; ++k) {
    SCOPED_TRACE("allocation " + std::to_string(k) + " fails");
    const Outcome o = run_child(k);
    if (o.ended != "exit 0") {
      ADD_FAILURE() << "the child ended by " << o.ended << " (said: '" << o.said << "')";
      continue;  // on to the next allocation: every one is reported
    }
    if (o.said == "started") {
      started = true;
      continue;
    }
    EXPECT_NE(o.said.find("start loop thread: out of memory"), std::string::npos) << o.said;
    EXPECT_NE(o.said.find(" threads=0"), std::string::npos) << "threads left running: " << o.said;
    ++clean_failures;
  }
  EXPECT_TRUE(started) << "start_threads() made more than 64 allocations";
  // The gate's state, the list of threads, and one std::thread state per loop at least.
  EXPECT_GE(clean_failures, static_cast<int>(kLoops) + 1);
}

}  // namespace
}  // namespace evloop::test
