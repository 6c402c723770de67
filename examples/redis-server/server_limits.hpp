// Example (not part of the library). The evloop limits that go with the parser's: what the parser
// accepts evloop can hold as input, and what SET accepts GET can send back.
#pragma once

#include <evloop/options.hpp>

#include <algorithm>
#include <cstddef>

#include "commands.hpp"
#include "resp_parser.hpp"

namespace resp {

/// Room in the output for the other replies gathered with the largest bulk reply.
inline constexpr std::size_t kOtherRepliesRoom = 1024 * 1024;

/// Sets the input and output limits of `options` from the parser's `limits` (keeping the
/// high- and low-water marks, which must be set before).
inline void fit_limits(const Limits& limits, evloop::Options& options) {
  // The parser leaves an incomplete command unconsumed, so evloop holds at most one partial
  // command per connection. A command may carry several bulks: allow two of the largest (a SET
  // of the largest key and value) plus inline slack; evloop closes the connection beyond that,
  // like Redis's client-query-buffer-limit.
  options.input_limit = 2 * limits.max_bulk_bytes + 2 * limits.max_inline_bytes;
  // A GET of the largest value the parser accepts must fit: behind output that is still pending
  // (at most the high-water mark, above which the session runs no further command) and beside
  // the other replies gathered with it (under 64 KiB). Never less than evloop's default. (One
  // command whose reply alone is larger, an MGET of several of the largest values, can still
  // pass it and is cut, as Redis cuts at client-output-buffer-limit.)
  options.output_limit = std::max(
      options.output_limit,
      options.output_high_water + bulk_reply_size(limits.max_bulk_bytes) + kOtherRepliesRoom);
}

}  // namespace resp
