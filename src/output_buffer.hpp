// Internal. A connection's pending output: an ordered list of pieces.
//
//   head_                                                              tail_
//    v                                                                   v
//   [Chunk ..XXXX] -> [Shared: buf[b, e)] -> [File: fd, offset, n] -> [Chunk XXX...]
//
//   Chunk   bytes copied in, in 16 KiB blocks from the per-loop pool (small writes, and what the
//           kernel did not take of a large one)
//   Shared  a range of an immutable, reference-counted buffer (SharedBuffer): no copy, however
//           many connections it is written to
//   File    a range of a file (send_file), sent with sendfile(): no memory held for its bytes
//
// gather() lists the memory pieces at the head (up to the first file piece) for one sendmsg;
// file_at_head() is the file piece to send next when it is first. consume() drops what the kernel
// took and returns emptied pieces to the pool. Nothing is moved after it is appended, every
// operation is O(pieces touched), and a drained buffer holds no memory. Loop thread only.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace evloop::detail {

/// What every piece starts with.
struct Piece {
  enum class Kind : std::uint8_t { chunk, shared, file };
  explicit Piece(Kind k) noexcept : kind(k) {}
  Piece* next = nullptr;
  Kind kind;
};

/// Copied bytes; its bytes live in data[begin, end). 16 KiB in all.
struct Chunk final : Piece {
  static constexpr std::size_t kSize = 16 * 1024;
  Chunk() noexcept : Piece(Kind::chunk) {}
  std::uint32_t begin = 0;
  std::uint32_t end = 0;
  char data[kSize - sizeof(Piece) - 2 * sizeof(std::uint32_t)];
  static constexpr std::size_t kCapacity = sizeof data;
};
static_assert(sizeof(Chunk) == Chunk::kSize);

/// A range [begin, end) of a shared buffer, held by reference.
struct SharedPiece final : Piece {
  SharedPiece(std::shared_ptr<const std::string> b, std::size_t from, std::size_t to) noexcept
      : Piece(Kind::shared), bytes(std::move(b)), begin(from), end(to) {}
  std::shared_ptr<const std::string> bytes;
  std::size_t begin;
  std::size_t end;
};

/// A range of a file: `remaining` bytes from `offset`. Owns `fd` (a dup of the caller's).
struct FilePiece final : Piece {
  FilePiece(int f, std::uint64_t off, std::uint64_t n) noexcept
      : Piece(Kind::file), fd(f), offset(off), remaining(n) {}
  int fd;
  bool use_pread = false;  // sendfile() refused this file (EINVAL/ENOSYS): pread() + send()
  std::uint64_t offset;
  std::uint64_t remaining;
};

/// A per-loop free list of chunks and of small pieces, so steady-state output allocates nothing.
/// Keeps at most `max_free_chunks` idle chunks; the rest go back to the allocator (memory is
/// given back after a burst).
class ChunkPool {
 public:
  explicit ChunkPool(std::size_t max_free_chunks = 256) noexcept : max_free_(max_free_chunks) {}
  ~ChunkPool();
  ChunkPool(const ChunkPool&) = delete;
  ChunkPool& operator=(const ChunkPool&) = delete;

  /// An empty chunk (from the free list, or newly allocated).
  Chunk* acquire();
  /// A shared or file piece, constructed in pooled storage.
  SharedPiece* make_shared_piece(std::shared_ptr<const std::string> bytes, std::size_t begin,
                                 std::size_t end);
  FilePiece* make_file_piece(int fd, std::uint64_t offset, std::uint64_t length);
  /// Returns a piece: a chunk to the free list (or the allocator when the list is full), a
  /// shared piece's reference dropped, a file piece's fd closed.
  void release(Piece* piece) noexcept;
  /// Chunks on the free list now.
  std::size_t free_count() const noexcept { return free_count_; }

 private:
  union SmallStorage;  // room for a SharedPiece or a FilePiece
  void* acquire_small();

  Chunk* free_ = nullptr;
  std::size_t free_count_ = 0;
  std::size_t max_free_;
  void* free_small_ = nullptr;  // a list threaded through the first word of each block
  std::size_t free_small_count_ = 0;
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
  /// Appends bytes [begin, end) of a shared buffer, by reference.
  void append_shared(std::shared_ptr<const std::string> bytes, std::size_t begin, std::size_t end);
  /// Appends `length` bytes of the file `fd` from `offset`; takes ownership of `fd`.
  void append_file(int fd, std::uint64_t offset, std::uint64_t length);

  /// Fills up to `max` iovecs with the memory pieces at the head, oldest first, stopping at the
  /// first file piece; returns how many were filled.
  int gather(iovec* iov, int max) const noexcept;
  /// The file piece to send next, when it is at the head; nullptr otherwise.
  FilePiece* file_at_head() const noexcept {
    return head_ != nullptr && head_->kind == Piece::Kind::file ? static_cast<FilePiece*>(head_)
                                                                : nullptr;
  }
  /// Reads up to one chunk of the file piece at the head into a chunk placed before it, so the
  /// next bytes can be sent from memory (completion backends, which have no sendfile): bytes
  /// read, 0 when the file ended early, or -errno.
  long load_file_head();
  /// Drops the first `n` pending bytes (n <= size()), e.g. what the kernel accepted.
  void consume(std::size_t n) noexcept;
  /// Drops everything and returns all pieces to the pool.
  void clear() noexcept;
  /// Calls fn(data, size) for each pending memory piece, oldest first (file pieces are skipped:
  /// callers check has_file() first when that matters).
  template <typename Fn>
  void for_each_piece(Fn&& fn) const {
    for (const Piece* p = head_; p != nullptr; p = p->next) {
      if (p->kind == Piece::Kind::chunk) {
        const auto* c = static_cast<const Chunk*>(p);
        if (c->end > c->begin) fn(c->data + c->begin, std::size_t{c->end - c->begin});
      } else if (p->kind == Piece::Kind::shared) {
        const auto* s = static_cast<const SharedPiece*>(p);
        fn(s->bytes->data() + s->begin, s->end - s->begin);
      }
    }
  }

  /// Bytes pending, file ranges included.
  std::size_t size() const noexcept { return size_; }
  /// Bytes pending that are held in memory (chunks and shared buffers).
  std::size_t memory_size() const noexcept { return size_ - file_bytes_; }
  /// What one pending shared range holds beside its bytes: its record (and the reference).
  static constexpr std::size_t kSharedRecord = sizeof(SharedPiece);
  /// Memory the pending output holds: memory_size() plus a record per shared range, which a
  /// stream of tiny SharedBuffer writes would otherwise hold many times its bytes in. What
  /// output_limit bounds.
  std::size_t held_memory() const noexcept { return memory_size() + shared_ * kSharedRecord; }
  /// True when a file range is pending.
  bool has_file() const noexcept { return file_bytes_ > 0; }
  /// Bytes of the file ranges pending.
  std::uint64_t file_bytes() const noexcept { return file_bytes_; }
  /// File ranges pending (each holds an fd).
  std::size_t files() const noexcept { return files_; }
  /// True when nothing is pending.
  bool empty() const noexcept { return size_ == 0; }

 private:
  void push(Piece* piece) noexcept;
  void pop_head() noexcept;

  ChunkPool* pool_;
  Piece* head_ = nullptr;
  Piece* tail_ = nullptr;
  std::size_t size_ = 0;
  std::size_t file_bytes_ = 0;  // a file piece is never empty: > 0 while one is queued
  std::size_t files_ = 0;
  std::size_t shared_ = 0;  // shared pieces queued
};

}  // namespace evloop::detail
