// Internal to bench/. What the google-benchmark files share: pinning a thread (the benchmark's
// own, or a loop's through a posted task) to a CPU, and a bounded spin on a flag.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <evloop/evloop.hpp>

#include <atomic>
#include <chrono>
#include <memory>

namespace bench {

/// Pins the calling thread to the `nth` CPU this process may use (no-op with fewer CPUs).
inline void pin_to_nth_cpu(int nth) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
  for (int c = 0, seen = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &allowed) || seen++ != nth) continue;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(c, &one);
    pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    return;
  }
}

/// Spins until `flag` is set, for at most `limit`; false on timeout.
inline bool await(const std::atomic<bool>& flag,
                  std::chrono::steady_clock::duration limit = std::chrono::seconds(1)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!flag.load(std::memory_order_acquire)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
  }
  return true;
}

/// Runs `task` on `loop`'s thread and waits for it, 5 s at most; false on timeout (the task may
/// still run later: callers give up on the loop then, they exit).
template <typename Task>
bool run_in_loop(const evloop::Loop& loop, Task task) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  const bool posted = loop.post([done, task]() mutable {
    task();
    done->store(true, std::memory_order_release);
  });
  return posted && await(*done, std::chrono::seconds(5));
}

}  // namespace bench
