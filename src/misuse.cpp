#include "misuse.hpp"

#include <cstdio>
#include <cstdlib>

namespace evloop::detail {

void misuse(const char* method, const char* problem, const char* instead) noexcept {
  std::fprintf(stderr, "evloop: %s: %s; %s\nevloop: aborting (misuse of the API)\n", method,
               problem, instead);
  std::fflush(stderr);
  std::abort();
}

void thread_misuse(const char* method, const char* instead) noexcept {
  std::fprintf(stderr,
               "evloop: %s called from a thread that is not its loop's thread; %s\n"
               "evloop: aborting (a loop's connections and timers are not thread-safe)\n",
               method, instead);
  std::fflush(stderr);
  std::abort();
}

}  // namespace evloop::detail
