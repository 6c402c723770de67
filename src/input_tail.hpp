// Internal. A connection's unconsumed input: the tail of a partial frame that `data` did not
// consume, kept until more bytes come. Holds no memory at all (one pointer) until a protocol
// leaves a tail, so a connection that consumes everything costs nothing for it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace evloop::detail {

class InputTail {
 public:
  bool empty() const noexcept { return !bytes_ || bytes_->empty(); }
  std::size_t size() const noexcept { return bytes_ ? bytes_->size() : 0; }
  std::string_view view() const noexcept { return bytes_ ? *bytes_ : std::string_view(); }

  void append(const char* bytes, std::size_t size) {
    if (size == 0) return;
    if (!bytes_) bytes_ = std::make_unique<std::string>();
    bytes_->append(bytes, size);
  }
  /// Drops the first `n` bytes; gives memory back when a large tail has been consumed.
  void consume(std::size_t n, std::size_t keep_capacity) {
    if (!bytes_) return;
    bytes_->erase(0, n);
    if (bytes_->empty() && bytes_->capacity() > keep_capacity) bytes_.reset();
  }
  /// Moves the bytes out (the tail is then empty).
  std::string take() {
    std::string out = bytes_ ? std::move(*bytes_) : std::string();
    bytes_.reset();
    return out;
  }
  void assign(std::string bytes) {
    if (bytes.empty()) return bytes_.reset();
    bytes_ = std::make_unique<std::string>(std::move(bytes));
  }
  void clear() noexcept { bytes_.reset(); }

 private:
  std::unique_ptr<std::string> bytes_;
};

}  // namespace evloop::detail
