// Test helper: the memory of a process as the kernel counts it (/proc/PID/status), to check
// that a server's memory stays bounded under a client and is given back afterwards.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define EXAMPLE_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define EXAMPLE_TEST_SANITIZED 1
#endif

namespace example_test {

/// True in ASan and TSan builds. They run several times slower, and their servers' RSS is not the
/// program's (shadow memory, ASan's quarantine of freed blocks): tests shrink their volumes and
/// print memory figures instead of checking them.
#ifdef EXAMPLE_TEST_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

/// Resident memory of a process, in bytes (0 when it cannot be read).
struct ProcessMemory {
  std::size_t rss = 0;   ///< VmRSS: resident now.
  std::size_t peak = 0;  ///< VmHWM: the most resident since start or since reset_peak().
};

/// Reads VmRSS and VmHWM of `pid`.
ProcessMemory memory_of(pid_t pid);
/// Starts VmHWM afresh from the current RSS (writes 5 to /proc/PID/clear_refs, Linux >= 4.0).
/// False when the kernel does not allow it; VmHWM then still counts from the start.
bool reset_peak(pid_t pid);
/// "12.3 MiB".
std::string mib(std::size_t bytes);

}  // namespace example_test
