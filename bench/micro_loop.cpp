// Micro-benchmarks of the cross-thread path of a running evloop Server (one loop serving
// tcp://127.0.0.1:0): Loop::post() latency from another thread to the task running, and how a
// burst of posts coalesces into eventfd wakeups (Loop::stats(): tasks run per wakeup).
#include <benchmark/benchmark.h>
#include <evloop/evloop.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "micro_support.hpp"

namespace {

using Clock = std::chrono::steady_clock;

/// One server for every benchmark of this file, started on first use, stopped at exit. Its loop
/// thread is pinned to one CPU and the benchmark thread to another, so a post never has to
/// preempt the poster to run (that would measure the scheduler, not the wakeup path).
evloop::Server& server() {
  static evloop::Server* s = [] {
    evloop::Options options;
    options.listen = {"tcp://127.0.0.1:0"};
    auto* srv = new evloop::Server(options, evloop::Callbacks{});
    if (const evloop::Status st = srv->start(); !st) {
      std::fprintf(stderr, "micro_loop: cannot start the server: %s\n", st.message().c_str());
      std::exit(1);
    }
    if (!bench::run_in_loop(srv->loop(0), [] { bench::pin_to_nth_cpu(0); })) {
      std::fprintf(stderr, "micro_loop: the loop did not run a posted task within 5 s\n");
      std::exit(1);
    }
    bench::pin_to_nth_cpu(1);
    std::atexit([] {
      server().stop();
      server().wait();
    });
    return srv;
  }();
  return *s;
}

// Post from this thread to the (idle, blocked in epoll_wait) loop; time until the task runs.
// Every iteration pays one eventfd write and one wakeup: the worst case of a post.
void BM_PostToRun(benchmark::State& state) {
  evloop::Loop& loop = server().loop(0);
  std::vector<double> samples;
  samples.reserve(1 << 20);
  for (auto _ : state) {
    std::atomic<bool> ran{false};
    Clock::time_point ran_at;
    const Clock::time_point posted_at = Clock::now();
    loop.post([&] {
      ran_at = Clock::now();
      ran.store(true, std::memory_order_release);
    });
    if (!bench::await(ran)) {
      state.SkipWithError("posted task did not run within 1 s");
      return;
    }
    samples.push_back(std::chrono::duration<double, std::micro>(ran_at - posted_at).count());
  }
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) { return samples[static_cast<std::size_t>(q * (samples.size() - 1))]; };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
  state.counters["samples"] = static_cast<double>(samples.size());
}
BENCHMARK(BM_PostToRun)->UseRealTime();

// A burst of `n` posts from one thread, then wait for the last task. Reports tasks run per
// wakeup (eventfd write + drain) of the loop. `busy` first parks the loop in a task until the
// burst is posted (the loop is busy when the posts arrive); otherwise the loop starts idle and
// races the poster.
void burst(benchmark::State& state, bool busy) {
  evloop::Loop& loop = server().loop(0);
  const auto n = static_cast<std::size_t>(state.range(0));
  std::uint64_t tasks = 0, wakeups = 0;
  for (auto _ : state) {
    std::atomic<bool> parked{false}, release{false}, done{false};
    std::atomic<std::size_t> count{0};
    if (busy) {
      loop.post([&] {
        parked.store(true, std::memory_order_release);
        bench::await(release);
      });
      if (!bench::await(parked)) {
        state.SkipWithError("loop did not run the parking task within 1 s");
        return;
      }
    }
    const evloop::LoopStats before = loop.stats();
    for (std::size_t i = 0; i < n; ++i)
      loop.post([&] { count.fetch_add(1, std::memory_order_relaxed); });
    loop.post([&] { done.store(true, std::memory_order_release); });
    release.store(true, std::memory_order_release);
    if (!bench::await(done) || count.load() != n) {
      state.SkipWithError("burst did not complete within 1 s");
      return;
    }
    const evloop::LoopStats after = loop.stats();
    tasks += after.tasks - before.tasks;
    wakeups += after.wakeups - before.wakeups;
  }
  state.counters["posts_per_wakeup"] = wakeups ? static_cast<double>(tasks) / wakeups : 0.0;
  state.counters["wakeups_per_burst"] = static_cast<double>(wakeups) / state.iterations();
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}

void BM_PostBurstIdleLoop(benchmark::State& state) { burst(state, false); }
void BM_PostBurstBusyLoop(benchmark::State& state) { burst(state, true); }
BENCHMARK(BM_PostBurstIdleLoop)->Arg(100)->Arg(1000)->Arg(10000)->UseRealTime();
BENCHMARK(BM_PostBurstBusyLoop)->Arg(1000)->UseRealTime();

// The loop-thread check every Conn method makes (in every build type): what one call costs, on
// the loop's own thread (the hot path: the check passes) and measured there by a posted task.
void BM_LoopThreadCheck(benchmark::State& state) {
  evloop::Loop& loop = server().loop(0);
  double seconds = 0;
  for (auto _ : state) {
    std::atomic<bool> done{false};
    std::uint64_t passed = 0;
    const Clock::time_point start = Clock::now();
    Clock::time_point end;
    loop.post([&] {
      for (int i = 0; i < 1'000'000; ++i) {
        benchmark::DoNotOptimize(loop);
        passed += loop.in_loop_thread() ? 1 : 0;
      }
      end = Clock::now();
      done.store(true, std::memory_order_release);
    });
    if (!bench::await(done) || passed != 1'000'000) {
      state.SkipWithError("the check did not pass 10^6 times on the loop thread");
      return;
    }
    const double took = std::chrono::duration<double>(end - start).count();
    seconds += took;
    state.SetIterationTime(took);
  }
  state.counters["ns_per_check"] = seconds * 1e9 / (1e6 * static_cast<double>(state.iterations()));
}
BENCHMARK(BM_LoopThreadCheck)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
