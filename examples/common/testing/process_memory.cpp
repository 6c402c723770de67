// Test helper: process memory from /proc (see process_memory.hpp).
#include "process_memory.hpp"

#include <cstdio>
#include <fstream>
#include <string>

namespace example_test {

ProcessMemory memory_of(pid_t pid) {
  ProcessMemory m;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    // "VmRSS:     1234 kB"
    std::size_t* field = line.rfind("VmRSS:", 0) == 0   ? &m.rss
                         : line.rfind("VmHWM:", 0) == 0 ? &m.peak
                                                        : nullptr;
    if (field != nullptr) *field = std::stoull(line.substr(6)) * 1024;
  }
  return m;
}

bool reset_peak(pid_t pid) {
  std::ofstream clear("/proc/" + std::to_string(pid) + "/clear_refs");
  clear << "5";
  clear.flush();
  return clear.good();
}

std::string mib(std::size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return text;
}

}  // namespace example_test
