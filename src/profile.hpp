// Internal. A connection's profile: its handlers and its options, shared by every connection
// that has the same (all connections a listener accepts), immutable once made. A connection
// reads its own profile directly on the hot path. A UDP socket has the same, with its own
// handlers and options (shared by the per-loop sockets of one listen address).
#pragma once

#include <memory>
#include <string_view>

#include "evloop/conn_options.hpp"
#include "evloop/error.hpp"
#include "evloop/handlers.hpp"
#include "evloop/udp.hpp"

namespace evloop::detail {

struct Profile {
  Handlers handlers;
  ConnOptions options;
};

using ProfilePtr = std::shared_ptr<const Profile>;

/// A connection profile, its timeouts capped at kLongestTimeout (timeouts.hpp).
ProfilePtr make_profile(Handlers handlers, ConnOptions options);

struct UdpProfile {
  DatagramHandlers handlers;
  UdpOptions options;
};

using UdpProfilePtr = std::shared_ptr<const UdpProfile>;

/// Checks `options`; errc::bad_option with a message naming the field (and, where two fields
/// disagree, which of them the user set and which kept its default). `where` starts the message
/// ("options", "connect tcp://...").
Status validate(const ConnOptions& options, std::string_view where);
/// The same for a UDP socket's options.
Status validate(const UdpOptions& options, std::string_view where);

}  // namespace evloop::detail
