// Replaces the global operator new of the binary that includes this header (from exactly one
// source file) to count the allocations made by threads that opted in with t_counting: a test or
// benchmark turns it on in the loop thread only. Used by tests/integration/alloc_test.cpp and
// bench/micro_broadcast.cpp.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
// GCC pairs the replaced operator delete (free) with the inlined operator new it cannot see
// through, and warns falsely about a mismatch.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace evloop::test {
/// Allocations made by threads whose t_counting is set, since the program started.
inline std::atomic<long> g_counted_allocations{0};
/// Set on a thread (e.g. in a task posted to a loop) to count its allocations.
inline thread_local bool t_counting = false;
}  // namespace evloop::test

void* operator new(std::size_t size) {
  if (evloop::test::t_counting) {
    evloop::test::g_counted_allocations.fetch_add(1, std::memory_order_relaxed);
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
