// Internal. Loop-thread rules, checked in every build type: a method meant for a loop's own
// thread, called from another, aborts with a message that names it and the thread-safe
// alternative (an assert would vanish from the Release builds users ship).
#pragma once

namespace evloop::detail {

/// Prints "evloop: METHOD called from a thread that is not its loop's thread; INSTEAD" to stderr
/// and aborts.
[[noreturn]] void thread_misuse(const char* method, const char* instead) noexcept;

/// Aborts with thread_misuse(method, instead) unless `on_loop_thread`.
inline void require_loop_thread(bool on_loop_thread, const char* method,
                                const char* instead) noexcept {
  if (!on_loop_thread) [[unlikely]] {
    thread_misuse(method, instead);
  }
}

}  // namespace evloop::detail
