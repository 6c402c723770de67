// Internal. Misuse of the API, checked in every build type: a call no correct program makes (a
// loop-thread method from another thread, an argument with no meaning) aborts with a message
// that names the method and what to do instead. An assert would vanish from the Release builds
// users ship; going on would spin, race or lose data silently.
#pragma once

namespace evloop::detail {

/// Prints "evloop: METHOD: PROBLEM; INSTEAD" to stderr and aborts.
[[noreturn]] void misuse(const char* method, const char* problem, const char* instead) noexcept;

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

/// Aborts with misuse(method, ...) when a function handed over to be called later is empty: it
/// would throw std::bad_function_call on the loop thread when its time came, far from the call.
inline void require_function(bool callable, const char* method) noexcept {
  if (!callable) [[unlikely]] {
    misuse(method,
           "the function is empty (calling it on the loop thread would throw "
           "std::bad_function_call)",
           "pass a function to call");
  }
}

}  // namespace evloop::detail
