// Example (not part of the library). The evloop limits that go with the parser's: what the parser
// accepts evloop can hold as input, and what SET accepts GET can send back.
#pragma once

#include <evloop/options.hpp>

#include <algorithm>
#include <cstddef>

#include "resp_parser.hpp"

namespace resp {

/// Room in the output for the other replies made from the same read as the largest bulk reply.
inline constexpr std::size_t kOtherRepliesRoom = 1024 * 1024;

/// Bytes of the reply that carries a bulk string of `size` bytes: "$<size>\r\n<bytes>\r\n".
constexpr std::size_t bulk_reply_size(std::size_t size) noexcept {
  std::size_t digits = 1;
  for (std::size_t n = size; n >= 10; n /= 10) ++digits;
  return 1 + digits + 2 + size + 2;
}

/// Sets the input and output limits of `options` from the parser's `limits` (keeping the
/// high- and low-water marks, which must be set before).
inline void fit_limits(const Limits& limits, evloop::Options& options) {
  // The parser leaves an incomplete command unconsumed, so evloop holds at most one partial
  // command per connection. A command may carry several bulks: allow two of the largest (a SET
  // of the largest key and value) plus inline slack; evloop closes the connection beyond that,
  // like Redis's client-query-buffer-limit.
  options.input_limit = 2 * limits.max_bulk_bytes + 2 * limits.max_inline_bytes;
  // A GET of the largest value the parser accepts must fit, when it is read: behind output that
  // is still pending (at most the high-water mark, above which evloop stops reading) and beside
  // the other replies of that read. Never less than evloop's default. (A read that asks for
  // several of the largest values can still pass it: that needs replies paced by back-pressure.)
  options.output_limit = std::max(
      options.output_limit,
      options.output_high_water + bulk_reply_size(limits.max_bulk_bytes) + kOtherRepliesRoom);
}

}  // namespace resp
