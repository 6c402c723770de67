// Internal. A connection's pending output: a queue of fixed-size chunks from a per-loop pool.
//
//   head_                                   tail_
//    v                                        v
//   [....XXXXXXXX] -> [XXXXXXXXXXXX] -> [XXXXX.......]      X = pending bytes
//        ^begin                               ^end
//
// append() copies into the tail chunk and takes more chunks as needed; gather() lists the pending
// pieces for one writev/sendmsg; consume() advances `begin` and returns emptied chunks to the pool.
// Nothing is ever moved after it is appended (no memmove on a partial write), every operation is
// O(pieces touched), and a drained buffer holds no memory. Not thread-safe: one loop owns it.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

namespace evloop::detail {

/// One block of output; its bytes live in data[begin, end).
struct Chunk {
  static constexpr std::size_t kCapacity = 16 * 1024 - 2 * sizeof(void*);
  Chunk* next = nullptr;
  std::uint32_t begin = 0;
  std::uint32_t end = 0;
  char data[kCapacity];
};

/// A per-loop free list of chunks, so steady-state output allocates nothing. Keeps at most
/// `max_free` idle chunks; the rest go back to the allocator (memory is given back after a burst).
class ChunkPool {
 public:
  explicit ChunkPool(std::size_t max_free = 256) noexcept : max_free_(max_free) {}
  ~ChunkPool();
  ChunkPool(const ChunkPool&) = delete;
  ChunkPool& operator=(const ChunkPool&) = delete;

  /// An empty chunk (from the free list, or newly allocated).
  Chunk* acquire();
  /// Returns a chunk to the free list (or frees it when the list is full).
  void release(Chunk* chunk) noexcept;
  /// Chunks on the free list now.
  std::size_t free_count() const noexcept { return free_count_; }

 private:
  Chunk* free_ = nullptr;
  std::size_t free_count_ = 0;
  std::size_t max_free_;
};

/// The output queue of one connection.
class OutputBuffer {
 public:
  explicit OutputBuffer(ChunkPool& pool) noexcept : pool_(&pool) {}
  ~OutputBuffer() { clear(); }
  OutputBuffer(const OutputBuffer&) = delete;
  OutputBuffer& operator=(const OutputBuffer&) = delete;

  /// Appends a copy of `size` bytes.
  void append(const void* bytes, std::size_t size);
  /// Fills up to `max` iovecs with the pending bytes, oldest first; returns how many were filled.
  int gather(iovec* iov, int max) const noexcept;
  /// Calls fn(data, size) for each pending piece, oldest first.
  template <typename Fn>
  void for_each_piece(Fn&& fn) const {
    for (const Chunk* c = head_; c != nullptr; c = c->next) {
      if (c->end > c->begin) fn(c->data + c->begin, std::size_t{c->end - c->begin});
    }
  }
  /// Drops the first `n` pending bytes (n <= size()), e.g. what the kernel accepted.
  void consume(std::size_t n) noexcept;
  /// Drops everything and returns all chunks to the pool.
  void clear() noexcept;

  /// Bytes pending.
  std::size_t size() const noexcept { return size_; }
  /// True when nothing is pending.
  bool empty() const noexcept { return size_ == 0; }

 private:
  ChunkPool* pool_;
  Chunk* head_ = nullptr;
  Chunk* tail_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace evloop::detail
