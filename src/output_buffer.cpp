#include "output_buffer.hpp"

#include <algorithm>
#include <cstring>

namespace evloop::detail {

ChunkPool::~ChunkPool() {
  while (free_ != nullptr) {
    Chunk* next = free_->next;
    delete free_;
    free_ = next;
  }
}

Chunk* ChunkPool::acquire() {
  if (free_ == nullptr) return new Chunk;
  Chunk* chunk = free_;
  free_ = chunk->next;
  --free_count_;
  chunk->next = nullptr;
  chunk->begin = chunk->end = 0;
  return chunk;
}

void ChunkPool::release(Chunk* chunk) noexcept {
  if (free_count_ >= max_free_) {
    delete chunk;
    return;
  }
  chunk->next = free_;
  free_ = chunk;
  ++free_count_;
}

void OutputBuffer::append(const void* bytes, std::size_t size) {
  const char* src = static_cast<const char*>(bytes);
  size_ += size;
  while (size > 0) {
    if (tail_ == nullptr || tail_->end == Chunk::kCapacity) {
      Chunk* chunk = pool_->acquire();
      if (tail_ == nullptr) {
        head_ = tail_ = chunk;
      } else {
        tail_->next = chunk;
        tail_ = chunk;
      }
    }
    const std::size_t n = std::min(size, Chunk::kCapacity - tail_->end);
    std::memcpy(tail_->data + tail_->end, src, n);
    tail_->end += static_cast<std::uint32_t>(n);
    src += n;
    size -= n;
  }
}

int OutputBuffer::gather(iovec* iov, int max) const noexcept {
  int count = 0;
  for (Chunk* c = head_; c != nullptr && count < max; c = c->next) {
    if (c->end == c->begin) continue;
    iov[count].iov_base = c->data + c->begin;
    iov[count].iov_len = c->end - c->begin;
    ++count;
  }
  return count;
}

void OutputBuffer::consume(std::size_t n) noexcept {
  size_ -= n;
  while (n > 0) {
    const std::size_t in_head = head_->end - head_->begin;
    if (n < in_head) {
      head_->begin += static_cast<std::uint32_t>(n);
      return;
    }
    n -= in_head;  // the head chunk is fully sent: back to the pool
    Chunk* next = head_->next;
    pool_->release(head_);
    head_ = next;
  }
  if (head_ == nullptr) tail_ = nullptr;
}

void OutputBuffer::clear() noexcept {
  while (head_ != nullptr) {
    Chunk* next = head_->next;
    pool_->release(head_);
    head_ = next;
  }
  tail_ = nullptr;
  size_ = 0;
}

}  // namespace evloop::detail
