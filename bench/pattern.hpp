// Internal to bench/. The bytes the load generator sends, as a pure function of (connection,
// stream offset), so neither side of the check needs a copy of what was sent.
//
// A connection's stream is messages of `size` bytes; message `seq` is the 64-bit words
// base(conn, seq) + j * K, j = 0, 1, ... stored little-endian. Every message of every connection
// differs, and every 8-byte position within a message differs, so a lost, duplicated, reordered,
// shifted or cross-connection byte range fails the comparison.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace bench {

/// Fills dst with bytes [offset, offset + n) of connection `conn`'s stream of `size`-byte messages.
class Pattern {
 public:
  explicit Pattern(std::size_t message_size) noexcept : size_(message_size) {}

  void fill(std::uint32_t conn, std::uint64_t offset, std::size_t n, unsigned char* dst) const {
    while (n > 0) {
      const std::uint64_t seq = offset / size_;
      const std::size_t in_msg = static_cast<std::size_t>(offset % size_);
      const std::size_t take = n < size_ - in_msg ? n : size_ - in_msg;
      fill_message(base(conn, seq), in_msg, take, dst);
      offset += take;
      dst += take;
      n -= take;
    }
  }

 private:
  static constexpr std::uint64_t kStep = 0x9E3779B97F4A7C15ull;

  // splitmix64 of (conn, seq): well spread, cheap.
  static std::uint64_t base(std::uint32_t conn, std::uint64_t seq) noexcept {
    std::uint64_t z = (static_cast<std::uint64_t>(conn) << 40) ^ seq ^ 0x5DEECE66Dull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  static unsigned char byte_at(std::uint64_t base, std::size_t i) noexcept {
    const std::uint64_t word = base + (i >> 3) * kStep;
    return static_cast<unsigned char>(word >> ((i & 7) * 8));
  }

  static void store_le(unsigned char* dst, std::uint64_t w) noexcept {
    if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
    std::memcpy(dst, &w, sizeof w);
  }

  // Bytes [from, from + n) of one message.
  static void fill_message(std::uint64_t base, std::size_t from, std::size_t n,
                           unsigned char* dst) noexcept {
    std::size_t k = 0;
    for (; k < n && ((from + k) & 7) != 0; ++k) dst[k] = byte_at(base, from + k);
    std::uint64_t word = base + ((from + k) >> 3) * kStep;
    for (; k + 8 <= n; k += 8, word += kStep) store_le(dst + k, word);
    for (; k < n; ++k) dst[k] = byte_at(base, from + k);
  }

  std::size_t size_;
};

}  // namespace bench
