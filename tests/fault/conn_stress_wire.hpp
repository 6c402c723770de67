// The conn stress test's wire format: what the loop side writes is a sequence of records, each
// with a header that says who wrote it and in what order, and bytes derived from it, so that a
// peer can tell a byte out of place, missing, duplicated or from another connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace evloop::fault::stress {

// Every record starts with this header; the peer parses the stream as records.
enum Kind : std::uint8_t { kWrite = 1, kFileHead = 2, kFiller = 3 };
struct Header {
  std::uint8_t kind;
  std::uint8_t source;  // 0: the loop side (its writes are counted); 1..kPosters: ConnRef::write
  std::uint16_t epoch;  // how many times the stream was detached and adopted before this write
  std::uint32_t seq;    // per (epoch, source), from 0, with no gap
  std::uint32_t len;    // payload bytes that follow
  std::uint32_t param;  // kFileHead: offset in the file of the raw bytes that follow
};
static_assert(sizeof(Header) == 16);
constexpr std::size_t kFillerSize = 4096;  // the file is kFileRecords filler records
constexpr std::size_t kFileRecords = 256;
constexpr std::size_t kFileSize = kFillerSize * kFileRecords;

inline std::uint8_t mix_byte(std::uint64_t key, std::uint64_t i) {
  std::uint64_t x = (key ^ (i * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull;
  return static_cast<std::uint8_t>(x >> 56);
}
inline std::uint64_t record_key(std::uint64_t stream, unsigned epoch, unsigned source,
                                std::uint32_t seq) {
  return (stream << 40) ^ (std::uint64_t{epoch} << 32) ^ (std::uint64_t{source} << 28) ^ seq ^
         0x5bd1e995ull;
}
// What peer `stream` sends after its 8-byte hello, at offset `i`.
inline std::uint8_t input_byte(std::uint64_t stream, std::uint64_t i) {
  return mix_byte(~stream, i);
}

inline std::string header_bytes(const Header& h) {
  return std::string(reinterpret_cast<const char*>(&h), sizeof h);
}
inline std::string make_record(std::uint64_t stream, unsigned epoch, unsigned source,
                               std::uint32_t seq, std::size_t len) {
  const Header h{kWrite, static_cast<std::uint8_t>(source), static_cast<std::uint16_t>(epoch),
                 seq,    static_cast<std::uint32_t>(len),   0};
  std::string r = header_bytes(h);
  r.resize(sizeof h + len);
  const std::uint64_t key = record_key(stream, epoch, source, seq);
  for (std::size_t i = 0; i < len; ++i) r[sizeof h + i] = static_cast<char>(mix_byte(key, i));
  return r;
}
// The file sent with send_file: filler records, so that any whole number of them is a valid
// piece of the stream (what a poster sends with ConnRef::send_file).
inline std::string make_file_content() {
  std::string f(kFileSize, '\0');
  for (std::size_t k = 0; k < kFileRecords; ++k) {
    const Header h{kFiller, 0, 0, static_cast<std::uint32_t>(k), kFillerSize - sizeof(Header), 0};
    std::memcpy(&f[k * kFillerSize], &h, sizeof h);
    for (std::size_t i = sizeof h; i < kFillerSize; ++i) {
      f[k * kFillerSize + i] = static_cast<char>(mix_byte(k * 7919 + 13, i));
    }
  }
  return f;
}

}  // namespace evloop::fault::stress
