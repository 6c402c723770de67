// Internal. What a poller token points at, and what the loop settles after handlers (a
// connection or a UDP socket). The loop dispatches on `kind` with a switch, so an event costs no
// virtual call.
#pragma once

#include <cstdint>

namespace evloop::detail {

struct Pollable {
  enum class Kind : std::uint8_t { waker, listener, connection, udp };
  explicit Pollable(Kind k) noexcept : kind(k) {}
  Kind kind;
};

}  // namespace evloop::detail
