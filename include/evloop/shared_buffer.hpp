// Public. An immutable, reference-counted byte buffer: written to many connections (a
// broadcast) without a copy per connection.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace evloop {

namespace detail {
class Connection;
}

/// Immutable bytes shared by reference. Conn::write(const SharedBuffer&) queues a reference, not
/// a copy, so one buffer written to 1,000 connections is held once; it is freed when the last
/// connection has sent it (and the last SharedBuffer copy is gone). Copying a SharedBuffer copies
/// a reference (an atomic increment). Thread-safe to share between threads.
class SharedBuffer {
 public:
  /// An empty buffer.
  SharedBuffer() = default;
  /// Takes `bytes` (moved in: no copy).
  explicit SharedBuffer(std::string bytes)
      : bytes_(std::make_shared<const std::string>(std::move(bytes))) {}

  /// The bytes.
  std::string_view view() const noexcept {
    return bytes_ ? std::string_view(*bytes_) : std::string_view();
  }
  /// The first byte (nullptr for a default-constructed buffer).
  const char* data() const noexcept { return view().data(); }
  /// How many bytes.
  std::size_t size() const noexcept { return bytes_ ? bytes_->size() : 0; }
  /// True when it holds no bytes.
  bool empty() const noexcept { return size() == 0; }

 private:
  friend class detail::Connection;
  std::shared_ptr<const std::string> bytes_;
};

}  // namespace evloop
