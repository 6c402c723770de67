// Internal. What a poller token points at. The loop dispatches on `kind` with a switch, so an
// event costs no virtual call.
#pragma once

#include <cstdint>

namespace evloop::detail {

struct Pollable {
  enum class Kind : std::uint8_t { waker, listener, connection };
  explicit Pollable(Kind k) noexcept : kind(k) {}
  Kind kind;
};

}  // namespace evloop::detail
