#include "thread_check.hpp"

#include <cstdio>
#include <cstdlib>

namespace evloop::detail {

void thread_misuse(const char* method, const char* instead) noexcept {
  std::fprintf(stderr,
               "evloop: %s called from a thread that is not its loop's thread; %s\n"
               "evloop: aborting (a loop's connections and timers are not thread-safe)\n",
               method, instead);
  std::fflush(stderr);
  std::abort();
}

}  // namespace evloop::detail
