#include "output_buffer.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

namespace evloop::detail {

union ChunkPool::SmallStorage {
  SmallStorage() {}
  ~SmallStorage() {}
  void* next;
  SharedPiece shared;
  FilePiece file;
};

namespace {
// Small pieces kept for reuse; beyond this they go back to the allocator.
constexpr std::size_t kMaxFreeSmall = 1024;
}  // namespace

ChunkPool::~ChunkPool() {
  while (free_ != nullptr) {
    Chunk* next = static_cast<Chunk*>(free_->next);
    delete free_;
    free_ = next;
  }
  while (free_small_ != nullptr) {
    void* next = *static_cast<void**>(free_small_);
    ::operator delete(free_small_);
    free_small_ = next;
  }
}

Chunk* ChunkPool::acquire() {
  if (free_ == nullptr) return new Chunk;
  Chunk* chunk = free_;
  free_ = static_cast<Chunk*>(chunk->next);
  --free_count_;
  chunk->next = nullptr;
  chunk->begin = chunk->end = 0;
  return chunk;
}

void* ChunkPool::acquire_small() {
  if (free_small_ == nullptr) return ::operator new(sizeof(SmallStorage));
  void* block = free_small_;
  free_small_ = *static_cast<void**>(block);
  --free_small_count_;
  return block;
}

SharedPiece* ChunkPool::make_shared_piece(std::shared_ptr<const std::string> bytes,
                                          std::size_t begin, std::size_t end) {
  return new (acquire_small()) SharedPiece(std::move(bytes), begin, end);
}

FilePiece* ChunkPool::make_file_piece(int fd, std::uint64_t offset, std::uint64_t length) {
  return new (acquire_small()) FilePiece(fd, offset, length);
}

void ChunkPool::release(Piece* piece) noexcept {
  switch (piece->kind) {
    case Piece::Kind::chunk:
      if (free_count_ >= max_free_) {
        delete static_cast<Chunk*>(piece);
        return;
      }
      piece->next = free_;
      free_ = static_cast<Chunk*>(piece);
      ++free_count_;
      return;
    case Piece::Kind::shared:
      static_cast<SharedPiece*>(piece)->~SharedPiece();
      break;
    case Piece::Kind::file:
      ::close(static_cast<FilePiece*>(piece)->fd);
      static_cast<FilePiece*>(piece)->~FilePiece();
      break;
  }
  if (free_small_count_ >= kMaxFreeSmall) {
    ::operator delete(piece);
    return;
  }
  *reinterpret_cast<void**>(piece) = free_small_;
  free_small_ = piece;
  ++free_small_count_;
}

void OutputBuffer::push(Piece* piece) noexcept {
  if (tail_ == nullptr) {
    head_ = tail_ = piece;
  } else {
    tail_->next = piece;
    tail_ = piece;
  }
}

void OutputBuffer::pop_head() noexcept {
  if (head_->kind == Piece::Kind::file) --files_;
  if (head_->kind == Piece::Kind::shared) --shared_;
  Piece* next = head_->next;
  pool_->release(head_);
  head_ = next;
  if (head_ == nullptr) tail_ = nullptr;
}

void OutputBuffer::append(const void* bytes, std::size_t size) {
  const char* src = static_cast<const char*>(bytes);
  size_ += size;
  while (size > 0) {
    auto* tail = tail_ != nullptr && tail_->kind == Piece::Kind::chunk ? static_cast<Chunk*>(tail_)
                                                                       : nullptr;
    if (tail == nullptr || tail->end == Chunk::kCapacity) {
      tail = pool_->acquire();
      push(tail);
    }
    const std::size_t n = std::min(size, Chunk::kCapacity - tail->end);
    std::memcpy(tail->data + tail->end, src, n);
    tail->end += static_cast<std::uint32_t>(n);
    src += n;
    size -= n;
  }
}

void OutputBuffer::append_shared(std::shared_ptr<const std::string> bytes, std::size_t begin,
                                 std::size_t end) {
  if (end <= begin) return;
  size_ += end - begin;
  ++shared_;
  push(pool_->make_shared_piece(std::move(bytes), begin, end));
}

void OutputBuffer::append_file(int fd, std::uint64_t offset, std::uint64_t length) {
  if (length == 0) {
    ::close(fd);
    return;
  }
  size_ += length;
  file_bytes_ += length;
  ++files_;
  push(pool_->make_file_piece(fd, offset, length));
}

int OutputBuffer::gather(iovec* iov, int max) const noexcept {
  int count = 0;
  for (const Piece* p = head_; p != nullptr && count < max; p = p->next) {
    if (p->kind == Piece::Kind::chunk) {
      const auto* c = static_cast<const Chunk*>(p);
      if (c->end == c->begin) continue;
      iov[count].iov_base = const_cast<char*>(c->data + c->begin);
      iov[count].iov_len = c->end - c->begin;
    } else if (p->kind == Piece::Kind::shared) {
      const auto* s = static_cast<const SharedPiece*>(p);
      iov[count].iov_base = const_cast<char*>(s->bytes->data() + s->begin);
      iov[count].iov_len = s->end - s->begin;
    } else {
      break;  // a file piece: sent on its own, after what is before it
    }
    ++count;
  }
  return count;
}

long OutputBuffer::load_file_head() {
  FilePiece* file = file_at_head();
  if (file == nullptr) return 0;
  Chunk* chunk = pool_->acquire();
  const std::size_t want = std::min<std::uint64_t>(file->remaining, Chunk::kCapacity);
  ssize_t got;
  do {
    got = ::pread(file->fd, chunk->data, want, static_cast<off_t>(file->offset));
  } while (got < 0 && errno == EINTR);
  if (got <= 0) {
    pool_->release(chunk);
    return got < 0 ? -errno : 0;
  }
  chunk->end = static_cast<std::uint32_t>(got);
  file->offset += static_cast<std::uint64_t>(got);
  file->remaining -= static_cast<std::uint64_t>(got);
  file_bytes_ -= static_cast<std::size_t>(got);
  chunk->next = head_;
  head_ = chunk;
  if (file->remaining == 0) {  // the file piece is all in memory now: drop it
    chunk->next = file->next;
    if (tail_ == file) tail_ = chunk;
    pool_->release(file);
    --files_;
  }
  return static_cast<long>(got);
}

void OutputBuffer::consume(std::size_t n) noexcept {
  size_ -= n;
  while (n > 0) {
    std::size_t in_head = 0;
    switch (head_->kind) {
      case Piece::Kind::chunk: {
        auto* c = static_cast<Chunk*>(head_);
        in_head = c->end - c->begin;
        if (n < in_head) {
          c->begin += static_cast<std::uint32_t>(n);
          return;
        }
        break;
      }
      case Piece::Kind::shared: {
        auto* s = static_cast<SharedPiece*>(head_);
        in_head = s->end - s->begin;
        if (n < in_head) {
          s->begin += n;
          return;
        }
        break;
      }
      case Piece::Kind::file: {
        auto* f = static_cast<FilePiece*>(head_);
        in_head = static_cast<std::size_t>(f->remaining);
        const std::size_t taken = std::min(n, in_head);
        file_bytes_ -= taken;
        if (n < in_head) {
          f->offset += n;
          f->remaining -= n;
          return;
        }
        break;
      }
    }
    n -= in_head;  // the head piece is fully sent: back to the pool
    pop_head();
  }
}

void OutputBuffer::clear() noexcept {
  while (head_ != nullptr) pop_head();
  size_ = 0;
  file_bytes_ = 0;
}

}  // namespace evloop::detail
