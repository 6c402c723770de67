// Test helper: a temporary directory tree of files, directories, symbolic links and FIFOs,
// removed with everything in it at the end.
#pragma once

#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace http_test {

class TempTree {
 public:
  TempTree() {
    char name[] = "/tmp/evloop-http-XXXXXX";
    if (::mkdtemp(name) != nullptr) path_ = name;
  }
  ~TempTree() {
    if (path_.empty()) return;
    ::nftw(
        path_.c_str(),
        [](const char* p, const struct stat*, int, struct FTW*) {
          ::remove(p);
          return 0;
        },
        16, FTW_DEPTH | FTW_PHYS);
  }
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;

  /// The tree's directory (empty if it could not be made).
  const std::string& path() const { return path_; }
  /// The absolute path of `name` in the tree.
  std::string at(std::string_view name) const { return path_ + "/" + std::string(name); }

  bool file(std::string_view name, std::string_view bytes) const {
    const int fd = ::open(at(name).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    bool ok = true;
    while (ok && !bytes.empty()) {
      const ssize_t n = ::write(fd, bytes.data(), bytes.size());
      ok = n > 0;
      if (ok) bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return ::close(fd) == 0 && ok;
  }
  bool dir(std::string_view name) const { return ::mkdir(at(name).c_str(), 0755) == 0; }
  bool link(std::string_view name, const std::string& target) const {
    return ::symlink(target.c_str(), at(name).c_str()) == 0;
  }
  bool fifo(std::string_view name) const { return ::mkfifo(at(name).c_str(), 0644) == 0; }

 private:
  std::string path_;
};

/// `size` bytes that differ from position to position, seeded so files differ from each other:
/// a pseudo-random 64 KiB block, repeated with each copy's number written into its first 8 bytes
/// (so a misplaced block shows; and quick to make under a sanitizer).
inline std::string pattern_bytes(std::size_t size, unsigned seed) {
  constexpr std::size_t kBlock = 64 * 1024;
  std::string bytes(size, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (std::size_t i = 0; i < std::min(size, kBlock); ++i) {
    x = x * 1664525u + 1013904223u;
    bytes[i] = static_cast<char>(x >> 24);
  }
  for (std::size_t at = kBlock; at < size; at += kBlock) {
    const std::size_t n = std::min(kBlock, size - at);
    std::memcpy(bytes.data() + at, bytes.data(), n);
    const std::uint64_t block = at / kBlock;
    std::memcpy(bytes.data() + at, &block, std::min(n, sizeof block));
  }
  return bytes;
}

}  // namespace http_test
