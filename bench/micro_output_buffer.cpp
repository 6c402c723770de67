// Micro-benchmarks of the output buffer (src/output_buffer.hpp): append then consume, for small
// and large writes, with consumes that stop mid-chunk the way partial writes do.
#include <benchmark/benchmark.h>
#include <sys/uio.h>

#include <cstddef>
#include <vector>

#include "output_buffer.hpp"

namespace {

using evloop::detail::ChunkPool;
using evloop::detail::OutputBuffer;

// The echo steady state: one write appended, all of it sent at once (pooled chunk reused).
void BM_AppendConsumeAll(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  std::vector<char> data(size, 'x');
  ChunkPool pool;
  OutputBuffer out(pool);
  iovec iov[16];
  for (auto _ : state) {
    out.append(data.data(), size);
    benchmark::DoNotOptimize(out.gather(iov, 16));
    out.consume(out.size());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
}
BENCHMARK(BM_AppendConsumeAll)->Arg(64)->Arg(1024)->Arg(16 * 1024)->Arg(64 * 1024);

// A slow reader: ~100 KiB stays pending; each iteration appends `size` bytes and the "kernel"
// takes the same amount, so consumes end mid-chunk and chunks cycle through the pool.
void BM_AppendPartialConsume(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  std::vector<char> data(size, 'y');
  ChunkPool pool;
  OutputBuffer out(pool);
  std::vector<char> backlog(100 * 1024 + 123, 'z');
  out.append(backlog.data(), backlog.size());
  iovec iov[16];
  for (auto _ : state) {
    out.append(data.data(), size);
    benchmark::DoNotOptimize(out.gather(iov, 16));
    out.consume(size);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
}
BENCHMARK(BM_AppendPartialConsume)->Arg(64)->Arg(1024)->Arg(64 * 1024);

// Many small writes from one callback (a pipelined reply batch), then partial sends of at most
// 48 KiB until empty.
void BM_SmallWritesPartialSends(benchmark::State& state) {
  const auto writes = static_cast<std::size_t>(state.range(0));
  const char msg[64] = {};
  ChunkPool pool;
  OutputBuffer out(pool);
  iovec iov[64];
  for (auto _ : state) {
    for (std::size_t i = 0; i < writes; ++i) out.append(msg, sizeof msg);
    while (!out.empty()) {
      benchmark::DoNotOptimize(out.gather(iov, 64));
      out.consume(out.size() < 48 * 1024 ? out.size() : 48 * 1024);
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * writes * sizeof msg));
}
BENCHMARK(BM_SmallWritesPartialSends)->Arg(16)->Arg(4096);

}  // namespace
